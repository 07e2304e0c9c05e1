//! `sample`: a subset of the input, for a quick eval loop on a slice of a
//! large set: the first `n` records, or with a `seed` a seeded random `n`.
//!
//! The seeded pick ranks each record by the blake3 hash of the seed and the
//! record's `id` (its content when it has none) and keeps the `n` lowest,
//! in input order. So the pick depends on which records there are, not on
//! their order; a larger `n` keeps every record a smaller one picked (the
//! slices nest); and the same seed picks the same records on every machine.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;

use flow_engine::node::META_JSON;
use flow_engine::{
    Arity, Artifact, BarrierStage, BuildCx, CheckCx, FieldSet, Node, NodeError, PortType, Record, Shape, Stage,
};

pub struct Sample;

/// `kind: sample`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// How many records to keep (all of them when the input has fewer).
    pub n: u64,
    /// Keep a seeded random `n` instead of the first `n`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl crate::Face for Sample {}

impl Node for Sample {
    type Config = SampleConfig;
    const KIND: &'static str = "sample";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "keeps a subset of its input: the first `n` records, or a seeded random `n`";
    const INPUTS: Arity = Arity::One;
    const SHAPE: Shape = Shape::Barrier;

    fn check(config: &SampleConfig, cx: &mut CheckCx<'_>) -> PortType {
        if config.n == 0 {
            cx.error(&cx.field("n"), "`n: 0` keeps no record", Some("set `n` to the number of records to keep".into()));
        }
        cx.inputs().first().map_or_else(|| PortType::records(FieldSet::Open), |i| i.ty.clone())
    }

    fn build(config: &SampleConfig, _: &BuildCx) -> Result<Stage, NodeError> {
        Ok(Stage::Barrier(Box::new(config.clone())))
    }
}

impl BarrierStage for SampleConfig {
    fn run(
        self: Box<Self>,
        mut inputs: Vec<Vec<Record>>,
    ) -> BoxFuture<'static, Result<(Vec<Record>, Vec<Artifact>), NodeError>> {
        Box::pin(async move {
            let records = inputs.pop().unwrap_or_default();
            let kept = pick(&records, self.n, self.seed);
            let meta = json!({"records": records.len(), "kept": kept.len(), "seed": self.seed});
            let meta = Artifact { name: META_JSON.into(), bytes: meta.to_string().into_bytes() };
            Ok((kept, vec![meta]))
        })
    }
}

/// The records kept, in input order.
pub(crate) fn pick(records: &[Record], n: u64, seed: Option<u64>) -> Vec<Record> {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    let Some(seed) = seed else { return records.iter().take(n).cloned().collect() };
    if records.len() <= n {
        return records.to_vec();
    }
    let mut ranked: Vec<([u8; 32], usize)> = records.iter().enumerate().map(|(i, r)| (rank(seed, r), i)).collect();
    // The `n` lowest ranks (ties, equal records, by position), then back
    // into input order.
    ranked.select_nth_unstable(n - 1);
    let mut kept: Vec<usize> = ranked[..n].iter().map(|&(_, i)| i).collect();
    kept.sort_unstable();
    kept.into_iter().map(|i| records[i].clone()).collect()
}

fn rank(seed: u64, record: &Record) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    match record.get("id") {
        Some(id) => h.update(id.to_string().as_bytes()),
        None => h.update(serde_json::Value::Object((**record).clone()).to_string().as_bytes()),
    };
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn records(ids: impl Iterator<Item = usize>) -> Vec<Record> {
        ids.map(|i| Arc::new(json!({"id": format!("r{i}")}).as_object().unwrap().clone())).collect()
    }

    fn ids(rs: &[Record]) -> Vec<String> {
        rs.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn without_a_seed_the_first_n() {
        assert_eq!(ids(&pick(&records(0..10), 3, None)), ["r0", "r1", "r2"]);
        assert_eq!(pick(&records(0..2), 5, None).len(), 2);
    }

    #[test]
    fn a_seeded_pick_is_in_input_order_independent_of_it_and_nested() {
        let all = records(0..1000);
        let some = ids(&pick(&all, 50, Some(7)));
        assert_eq!(some.len(), 50);
        let positions: Vec<usize> = some.iter().map(|id| id[1..].parse().unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "in input order: {positions:?}");
        assert!(positions.iter().any(|&p| p >= 50), "not the first 50: {positions:?}");
        // Reversed input, the same records.
        let reversed: Vec<Record> = all.iter().rev().cloned().collect();
        let mut again = ids(&pick(&reversed, 50, Some(7)));
        again.sort();
        let mut sorted = some.clone();
        sorted.sort();
        assert_eq!(again, sorted);
        // A larger n keeps the smaller pick; another seed picks others.
        let more = ids(&pick(&all, 200, Some(7)));
        assert!(some.iter().all(|id| more.contains(id)));
        assert_ne!(ids(&pick(&all, 50, Some(8))), some);
    }

    #[test]
    fn a_spec_checks_n_where_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data.jsonl"), "{\"id\": \"a\", \"q\": 1}\n").unwrap();
        let spec = dir.path().join("spec.yaml");
        let write = |n: u64| {
            let text = format!("flow: 1\nnodes:\n  data: {{kind: load, path: data.jsonl}}\n  slice:\n    kind: sample\n    input: data\n    n: {n}\n");
            std::fs::write(&spec, text).unwrap();
        };
        write(2);
        let plan = flow_engine::compile(&spec, &[], &crate::registry()).unwrap_or_else(|d| panic!("{d}"));
        let slice = &plan.nodes[plan.index_of("slice").unwrap()];
        assert_eq!(slice.compiled.output.has_field("q"), Some(true), "the input's fields pass through");
        write(0);
        let problems = flow_engine::compile(&spec, &[], &crate::registry()).unwrap_err().to_string();
        assert!(problems.contains("spec.yaml:7:8") && problems.contains("`n: 0` keeps no record"), "{problems}");
    }
}
