//! `synthesize`: feedback pairs (a bad output and its fixed version) to
//! prompt rules, and the rules to a hook script.
//!
//! The pairs are measured one by one ([`analysis`]), rules are induced
//! over all of them deterministically, each with the pairs that back it,
//! and contradictions are settled by support and reported ([`induce`]).
//! With `backend:`, an LLM rewords the rules with the measurements as
//! evidence, guarded by the induction ([`reword`]). The node emits one
//! `Rule` record per rule, `rules.json` (rules, contradictions, the
//! per-pair measurements) and `generated_prompt_hook.py` ([`hook`]). A
//! `run` node with `rules: <this node>` applies the active rules
//! ([`rules::RuleSet`]): in its system prompt, and on its outputs where a
//! rule is mechanical.

pub mod analysis;
pub mod hook;
pub mod induce;
pub mod reword;
pub mod rules;
pub mod view;

/// The artifact that holds the rules, the contradictions and the
/// measurements.
pub const RULES_JSON: &str = "rules.json";

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use flow_engine::{
    Arity, Artifact, BackendSpec, BarrierOutput, BarrierStage, BuildCx, CheckCx, FieldSet, Meter, Node, NodeError,
    PlannedCall, PortType, Record, Shape, Spool, Stage, META_JSON, SUMMARY_MD,
};

use crate::backend::{self, Backend, Backends, CallOpts, Endpoint};
use analysis::Pair;
use induce::Settings;
use rules::{Rule, RuleKind, RuleSet, RULE_FIELDS};

pub struct Synthesize;

/// `kind: synthesize`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SynthesizeConfig {
    /// A backend that rewords the induced rules (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Pairs needed to back a rule; default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_support: Option<u32>,
    /// A fix below this length ratio (fixed / bad words) shortened the
    /// answer; default 0.8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shorter_below: Option<f64>,
    /// ... above this, lengthened it; default 1.25.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longer_above: Option<f64>,
    /// The most `avoid` rules, and the most `include` rules; default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_terms: Option<u32>,
    /// The longest phrase a term rule may be, in words; default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_phrase_words: Option<u32>,
    /// Rule kinds enforced on outputs (by `run` with `rules:` and the
    /// hook); default every kind that can be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce: Option<Vec<RuleKind>>,
    /// A backend whose embeddings measure how far each fix moved the
    /// meaning (the cosine distance between bad and fixed output), beside
    /// the edit distance; one call per pair, memoized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<String>,
    /// With `embeddings`: a pair whose distance is past this corrected the
    /// answer's content, not its style, and backs no rule; default 0.4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_shift: Option<f64>,
}

impl SynthesizeConfig {
    fn settings(&self) -> Settings {
        let d = Settings::default();
        Settings {
            min_support: self.min_support.map_or(d.min_support, |n| n as usize),
            shorter_below: self.shorter_below.unwrap_or(d.shorter_below),
            longer_above: self.longer_above.unwrap_or(d.longer_above),
            max_terms: self.max_terms.map_or(d.max_terms, |n| n as usize),
            max_phrase_words: self.max_phrase_words.map_or(d.max_phrase_words, |n| n as usize),
            enforce: self.enforce.as_ref().map_or(d.enforce, |e| e.iter().copied().collect()),
            max_shift: self.max_shift.unwrap_or(d.max_shift),
        }
    }
}

/// The fields a feedback pair must have.
pub const PAIR_FIELDS: &[&str] = &["bad_output", "fixed_output"];

impl Node for Synthesize {
    type Config = SynthesizeConfig;
    const KIND: &'static str = "synthesize";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "induces prompt rules and a hook script from bad → fixed feedback pairs";
    const INPUTS: Arity = Arity::One;
    const SHAPE: Shape = Shape::Barrier;

    fn check(c: &SynthesizeConfig, cx: &mut CheckCx<'_>) -> PortType {
        if let Some(b) = &c.backend {
            cx.chat_backend(&cx.field("backend"), b);
            // One call for the whole input, not per record.
            cx.calls_per_record(1);
        }
        if let Some(b) = &c.embeddings {
            cx.backend(&cx.field("embeddings"), b);
        }
        if let Some(m) = c.max_shift {
            if c.embeddings.is_none() {
                let hint = "add `embeddings: <backend>` to measure the shift, or remove `max_shift`";
                cx.error_at_key(&cx.field("max_shift"), "`max_shift` needs `embeddings`", Some(hint.into()));
            } else if !(m > 0.0 && m <= 2.0) {
                let hint = "a cosine distance: 0 same meaning, 1 unrelated; e.g. `max_shift: 0.4`";
                cx.error(&cx.field("max_shift"), format!("`max_shift` must be in (0, 2], not {m}"), Some(hint.into()));
            }
        }
        if c.min_support == Some(0) {
            let hint = "a rule needs at least one pair behind it; the default is 2";
            cx.error(&cx.field("min_support"), "`min_support` must be at least 1", Some(hint.into()));
        }
        if let Some(r) = c.shorter_below.filter(|r| !(*r > 0.0 && *r <= 1.0)) {
            let msg = format!("`shorter_below` must be in (0, 1], not {r}");
            cx.error(&cx.field("shorter_below"), msg, Some("e.g. `shorter_below: 0.8` (20% fewer words)".into()));
        }
        if let Some(r) = c.longer_above.filter(|r| !(r.is_finite() && *r >= 1.0)) {
            let msg = format!("`longer_above` must be a number ≥ 1, not {r}");
            cx.error(&cx.field("longer_above"), msg, Some("e.g. `longer_above: 1.25` (25% more words)".into()));
        }
        if let Some(n) = c.max_phrase_words.filter(|n| !(1..=30).contains(n)) {
            cx.error(&cx.field("max_phrase_words"), format!("`max_phrase_words` must be 1 to 30, not {n}"), None);
        }
        for (i, k) in c.enforce.iter().flatten().enumerate() {
            if !RuleKind::ENFORCEABLE.contains(k) {
                let can: Vec<&str> = RuleKind::ENFORCEABLE.iter().map(|k| k.name()).collect();
                cx.error(
                    &cx.field("enforce").index(i),
                    format!("`{}` rules cannot be enforced on an output; they only go into the prompt", k.name()),
                    Some(format!("kinds that can be enforced: {}", can.join(", "))),
                );
            }
        }
        let at = cx.field("input");
        cx.require_fields(&PAIR_FIELDS.iter().map(|f| (f.to_string(), at.clone())).collect::<Vec<_>>());
        PortType { name: "Rule".into(), fields: FieldSet::Known(RULE_FIELDS.iter().map(|f| f.to_string()).collect()) }
    }

    /// Each pair's embeddings call, and the rewording call when there is
    /// a backend and a rule to reword. (With embeddings the rules depend on
    /// the answers, so the rewording call is known only once they are in
    /// the memo.)
    fn plan_batch_calls(
        c: &SynthesizeConfig,
        records: &[Record],
        backends: &BTreeMap<String, BackendSpec>,
    ) -> Option<Vec<PlannedCall>> {
        let Ok(pairs) = read_pairs(records) else { return Some(Vec::new()) };
        let mut keys = Vec::new();
        if let Some(name) = &c.embeddings {
            let spec = backends.get(name)?;
            keys.extend(pairs.iter().map(|p| embed_call(name, spec, p)));
        }
        let Some(name) = &c.backend else { return Some(keys) };
        let spec = backends.get(name)?;
        if c.embeddings.is_some() {
            // The rules wait for the distances: the plan cannot know them.
            return None;
        }
        let rules = induce::induce(&pairs, &c.settings());
        if rules.iter().any(|r| r.active) {
            let body = backend::chat_body(spec, &reword::messages(&pairs, &rules), true, 0);
            keys.push(backend::planned(name, spec, Endpoint::Chat, &body, 0));
        }
        Some(keys)
    }

    fn build(c: &SynthesizeConfig, cx: &BuildCx) -> Result<Stage, NodeError> {
        let backend = match &c.backend {
            Some(name) => Some(Backends::of(cx, name)?),
            None => None,
        };
        let embeddings = match &c.embeddings {
            Some(name) => Some(Backends::of(cx, name)?),
            None => None,
        };
        Ok(Stage::Barrier(Box::new(SynthesizeStage {
            node: cx.node.clone(),
            settings: c.settings(),
            backend,
            embeddings,
            meter: cx.meter.clone(),
            memo_reads: cx.memo_reads,
        })))
    }
}

/// The texts of a pair's embeddings call: the bad output, then the fixed.
fn embed_texts(p: &Pair) -> Vec<String> {
    vec![p.bad.raw.clone(), p.fixed.raw.clone()]
}

/// A pair's embeddings call on backend `name`, filed as [`Backend::embed`]
/// files it.
fn embed_call(name: &str, spec: &BackendSpec, p: &Pair) -> PlannedCall {
    backend::planned(name, spec, Endpoint::Embeddings, &backend::embed_body(spec, &embed_texts(p), None), 0)
}

/// A feedback record that is not a pair: one of its outputs is missing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("feedback record {record} (id `{id}`) has no `{field}`; every pair needs `bad_output` and `fixed_output`")]
pub struct PairError {
    /// Its position in the input, from 1.
    pub record: usize,
    pub id: String,
    pub field: String,
}

/// The pairs of the input records, or the first record that is not one.
fn read_pairs(records: &[Record]) -> Result<Vec<Pair>, PairError> {
    records.iter().enumerate().map(|(i, r)| pair(i, r)).collect()
}

/// The pairs of a barrier's input, read back record by record.
fn read_spooled_pairs(input: &Spool) -> Result<Vec<Pair>, NodeError> {
    let err = |e: &dyn std::fmt::Display| NodeError::new(e.to_string());
    let mut pairs = Vec::with_capacity(input.len());
    for (i, r) in input.records().map_err(|e| err(&e))?.enumerate() {
        pairs.push(pair(i, &r.map_err(|e| err(&e))?).map_err(|e| err(&e))?);
    }
    Ok(pairs)
}

/// Record `i` (from 0) as a pair.
fn pair(i: usize, r: &Record) -> Result<Pair, PairError> {
    let id = match r.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Number(_)) => v.to_string(),
        _ => format!("#{}", i + 1),
    };
    let text = |field: &str| -> Result<String, PairError> {
        match r.get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            None | Some(Value::Null) => Err(PairError { record: i + 1, id: id.clone(), field: field.to_string() }),
            Some(other) => Ok(other.to_string()),
        }
    };
    let prompt = match r.get("input_prompt") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(other) => Some(other.to_string()),
    };
    let context = r.get("context").cloned().unwrap_or(Value::Null);
    Ok(Pair::new(id.clone(), prompt, context, &text("bad_output")?, &text("fixed_output")?))
}

struct SynthesizeStage {
    node: String,
    settings: Settings,
    backend: Option<Arc<Backend>>,
    embeddings: Option<Arc<Backend>>,
    meter: Arc<Meter>,
    memo_reads: bool,
}

/// What the backend made of the rules.
struct Reworded {
    backend: String,
    model: String,
    outcome: reword::Outcome,
}

impl BarrierStage for SynthesizeStage {
    fn run(self: Box<Self>, inputs: Vec<Vec<Record>>) -> BoxFuture<'static, BarrierOutput> {
        self.run_spooled(inputs.into_iter().map(Spool::in_memory).collect())
    }

    /// Reads the pairs from the input as it goes: only they are held.
    fn run_spooled(self: Box<Self>, inputs: Vec<Spool>) -> BoxFuture<'static, BarrierOutput> {
        Box::pin(async move {
            let settings = self.settings.clone();
            let panicked = |e: tokio::task::JoinError| NodeError::new(format!("synthesize panicked: {e}"));
            // Diffs and edit distances over every pair: a blocking thread's work.
            let mut pairs = tokio::task::spawn_blocking(move || {
                let input = inputs.into_iter().next().unwrap_or_default();
                read_spooled_pairs(&input)
            })
            .await
            .map_err(panicked)??;
            if let Some(b) = &self.embeddings {
                self.measure_shifts(b, &mut pairs).await?;
            }
            let (pairs, mut rules) = tokio::task::spawn_blocking(move || {
                let rules = induce::induce(&pairs, &settings);
                (pairs, rules)
            })
            .await
            .map_err(panicked)?;

            let mut reworded = None;
            if let Some(b) = self.backend.as_ref().filter(|_| rules.iter().any(|r| r.active)) {
                let opts = CallOpts { meter: &self.meter, memo_reads: self.memo_reads, sample: 0 };
                let reply = b.chat(&reword::messages(&pairs, &rules), true, opts).await.map_err(|e| {
                    NodeError::new(format!("rewording the rules through backend `{}` failed: {}", b.name, e.message))
                })?;
                let outcome = reword::apply(&mut rules, &reply.text);
                reworded = Some(Reworded { backend: b.name.clone(), model: reply.model, outcome });
            }
            let set = RuleSet::new(&rules).map_err(|e| NodeError::new(e.to_string()))?;
            let artifacts = self.artifacts(&pairs, &rules, &set, reworded.as_ref());
            Ok((rules.iter().map(Rule::to_record).collect(), artifacts))
        })
    }
}

/// One contradiction: its rules, the winner, the reason.
fn contradictions(rules: &[Rule]) -> Vec<Value> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for r in rules {
        let Some(c) = &r.conflict else { continue };
        let mut members: Vec<String> = c.with.clone();
        members.push(r.id.clone());
        members.sort();
        if seen.insert(members.clone()) {
            out.push(json!({"rules": members, "winner": c.winner, "reason": c.reason}));
        }
    }
    out
}

impl SynthesizeStage {
    /// Each pair's vector distance, its two outputs embedded in one call,
    /// the calls in flight together (the backend bounds them; a batch
    /// backend sends them as one batch).
    async fn measure_shifts(&self, b: &Backend, pairs: &mut [Pair]) -> Result<(), NodeError> {
        let opts = CallOpts { meter: &self.meter, memo_reads: self.memo_reads, sample: 0 };
        b.flush_batch();
        let answers = futures::future::join_all(pairs.iter().map(|p| async move {
            let texts = embed_texts(p);
            b.embed(&texts, opts).await
        }))
        .await;
        for (p, answer) in pairs.iter_mut().zip(answers) {
            let v = answer.map_err(|e| {
                NodeError::new(format!("embedding pair `{}` through backend `{}` failed: {}", p.id, b.name, e.message))
            })?;
            let cosine = crate::evaluate::embedding_cosine(&v[0], &v[1]);
            p.vector_distance = Some(1.0 - cosine);
        }
        Ok(())
    }

    fn artifacts(&self, pairs: &[Pair], rules: &[Rule], set: &RuleSet, reworded: Option<&Reworded>) -> Vec<Artifact> {
        let active = rules.iter().filter(|r| r.active).count();
        let enforced = rules.iter().filter(|r| r.active && r.enforced).count();
        let conflicts = contradictions(rules);
        let s = &self.settings;
        let settings = json!({
            "min_support": s.min_support, "shorter_below": s.shorter_below, "longer_above": s.longer_above,
            "max_terms": s.max_terms, "max_phrase_words": s.max_phrase_words,
            "max_shift": self.embeddings.is_some().then_some(s.max_shift),
            "enforce": s.enforce.iter().map(|k| k.name()).collect::<Vec<_>>(),
        });
        let reword_json = reworded.map(|r| {
            json!({"backend": r.backend, "model": r.model, "reworded": r.outcome.reworded,
                   "kept": r.outcome.kept, "unusable": r.outcome.unusable})
        });
        let n = pairs.len().max(1) as f64;
        let similarity = pairs.iter().map(|p| p.similarity).sum::<f64>() / n;
        let ratios: Vec<f64> = pairs.iter().filter_map(|p| p.length_ratio).collect();
        let ratio = ratios.iter().sum::<f64>() / ratios.len().max(1) as f64;
        let content: Vec<Value> = induce::content_fixes(pairs, s)
            .iter()
            .map(|p| json!({"id": p.id, "vector_distance": p.vector_distance.map(analysis::round3)}))
            .collect();
        let shifts: Vec<f64> = pairs.iter().filter_map(|p| p.vector_distance).collect();
        let mean_shift =
            (!shifts.is_empty()).then(|| analysis::round3(shifts.iter().sum::<f64>() / shifts.len() as f64));
        let report = json!({
            "node": self.node,
            "pairs": pairs.len(),
            "settings": settings,
            "mean_vector_distance": mean_shift,
            "content_fixes": content,
            "mean_similarity": analysis::round3(similarity),
            "mean_length_ratio": analysis::round3(ratio),
            "rules": rules,
            "contradictions": conflicts,
            "prompt_block": set.block(),
            "post_processing": set.ops_json(),
            "reword": reword_json,
            "analysis": pairs.iter().map(Pair::to_json).collect::<Vec<_>>(),
        });
        let meta = json!({
            "pairs": pairs.len(), "rules": rules.len(), "active": active, "inactive": rules.len() - active,
            "enforced": enforced, "contradictions": conflicts.len(),
            "reworded": reworded.map(|r| r.outcome.reworded),
        });

        let mut md = String::new();
        let _ = writeln!(
            md,
            "{} feedback pairs → {} rules ({active} active, {enforced} enforced on outputs), {} contradiction{}; mean similarity {similarity:.2}, mean length ratio {ratio:.2}",
            pairs.len(),
            rules.len(),
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" }
        );
        if let Some(shift) = mean_shift {
            let _ = write!(md, "mean vector distance {shift:.2}");
            match content.len() {
                0 => md.push_str("; no fix corrected the content\n"),
                n => {
                    let ids: Vec<&str> = content.iter().filter_map(|c| c["id"].as_str()).take(10).collect();
                    let _ = writeln!(
                        md,
                        "; {n} fix{} moved the meaning past {} (content corrections, backing no rule): {}",
                        if n == 1 { "" } else { "es" },
                        s.max_shift,
                        ids.join(", ")
                    );
                }
            }
        }
        if !rules.is_empty() {
            md.push_str("\n| rule | support | pairs | status |\n|---|---|---|---|\n");
            for r in rules {
                let mut ids: Vec<&str> = r.pairs.iter().take(5).map(String::as_str).collect();
                let more = r.pairs.len().saturating_sub(5);
                let more = if more > 0 { format!(" +{more}") } else { String::new() };
                if ids.is_empty() {
                    ids.push("-");
                }
                let status = match (&r.conflict, r.active) {
                    (_, true) if r.enforced => "active, enforced".to_string(),
                    (_, true) => "active".to_string(),
                    (Some(c), false) => match &c.winner {
                        Some(w) => format!("overridden by `{w}`"),
                        None => "not applied (tie)".to_string(),
                    },
                    (None, false) => "inactive".to_string(),
                };
                let _ = writeln!(md, "| `{}` | {} | {}{more} | {status} |", r.id, r.support, ids.join(", "));
            }
        }
        if !conflicts.is_empty() {
            md.push_str("\ncontradictions:\n");
            for c in &conflicts {
                let _ = writeln!(md, "- {}", c["reason"].as_str().unwrap_or_default());
            }
        }
        if let Some(r) = reworded {
            let o = &r.outcome;
            let _ = write!(md, "\nreworded by `{}` ({}): {} of {active} rules", r.backend, r.model, o.reworded);
            match &o.unusable {
                Some(why) => {
                    let _ = writeln!(md, "; the answer was not usable ({why}), so the induced texts stand");
                }
                None if !o.kept.is_empty() => {
                    let kept: Vec<String> = o.kept.iter().map(|(id, why)| format!("`{id}` ({why})")).collect();
                    let _ = writeln!(md, "; kept the induced text of {}", kept.join(", "));
                }
                None => md.push('\n'),
            }
        }
        let _ = writeln!(md, "\nfiles: rules.json, {}", hook::HOOK_FILE);

        let json_bytes = |v: &Value| {
            let mut b = serde_json::to_vec_pretty(v).expect("json");
            b.push(b'\n');
            b
        };
        vec![
            Artifact { name: RULES_JSON.into(), bytes: json_bytes(&report) },
            Artifact {
                name: hook::HOOK_FILE.into(),
                bytes: hook::script(&self.node, pairs.len(), rules, set).into_bytes(),
            },
            Artifact { name: META_JSON.into(), bytes: json_bytes(&meta) },
            Artifact { name: SUMMARY_MD.into(), bytes: md.into_bytes() },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(v: Value) -> Record {
        Arc::new(v.as_object().unwrap().clone())
    }

    #[test]
    fn pairs_need_both_outputs() {
        let ok = record(json!({"id": "a", "bad_output": "x", "fixed_output": {"k": 1}, "context": {"c": 1}}));
        let pairs = read_pairs(std::slice::from_ref(&ok)).unwrap();
        assert_eq!(pairs[0].fixed.raw, "{\"k\":1}");
        assert_eq!(pairs[0].context, json!({"c": 1}));
        let bad = record(json!({"bad_output": "x"}));
        let e = read_pairs(&[ok, bad]).unwrap_err().to_string();
        assert_eq!(
            e,
            "feedback record 2 (id `#2`) has no `fixed_output`; every pair needs `bad_output` and `fixed_output`"
        );
    }

    #[tokio::test]
    async fn writes_records_and_artifacts() {
        let recs: Vec<Record> = (0..3)
            .map(|i| {
                record(json!({"id": format!("fb-{i}"), "bad_output": format!("Sorry! The total is {i} dollars, as shown on the invoice we sent."), "fixed_output": format!("Total: {i} dollars.")}))
            })
            .collect();
        let stage = SynthesizeStage {
            node: "improve".into(),
            settings: Settings::default(),
            backend: None,
            embeddings: None,
            meter: Arc::default(),
            memo_reads: true,
        };
        let (out, artifacts) = Box::new(stage).run(vec![recs]).await.unwrap();
        let ids: Vec<&str> = out.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert!(ids.contains(&"avoid:sorry") && ids.contains(&"max_words"), "{ids:?}");
        let names: Vec<&str> = artifacts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["rules.json", "generated_prompt_hook.py", "meta.json", "summary.md"]);
        let md = String::from_utf8(artifacts[3].bytes.clone()).unwrap();
        assert!(md.starts_with("3 feedback pairs → "), "{md}");
        assert!(md.contains("| `avoid:sorry` | 3 | fb-0, fb-1, fb-2 | active, enforced |"), "{md}");
    }

    /// With `embeddings:`, each pair's vector distance is the cosine
    /// distance of its outputs' embeddings (here sim's), one memoized call
    /// per pair, in `rules.json` and the summary.
    #[tokio::test]
    async fn embeddings_measure_each_fix() {
        let spec: BackendSpec = serde_yaml::from_str("{provider: sim}").unwrap();
        let specs = BTreeMap::from([("emb".to_string(), spec)]);
        let backends = Backends::new(&specs, &BTreeMap::new(), &["emb".into()], None, &[], &|_| None).unwrap();
        let texts = [("Sorry! The total is 3 dollars.", "The total is 3 dollars."), ("It is Lyon.", "It is Paris.")];
        let recs: Vec<Record> = texts
            .iter()
            .enumerate()
            .map(|(i, (b, f))| record(json!({"id": format!("fb-{i}"), "bad_output": b, "fixed_output": f})))
            .collect();
        let meter = Arc::new(Meter::default());
        let stage = SynthesizeStage {
            node: "improve".into(),
            settings: Settings::default(),
            backend: None,
            embeddings: backends.get("emb"),
            meter: meter.clone(),
            memo_reads: true,
        };
        let (_, artifacts) = Box::new(stage).run(vec![recs]).await.unwrap();
        let report: Value = serde_json::from_slice(&artifacts[0].bytes).unwrap();
        for (i, (b, f)) in texts.iter().enumerate() {
            let want =
                1.0 - crate::evaluate::embedding_cosine(&backend::sim::embed(b, 64), &backend::sim::embed(f, 64));
            let got = report["analysis"][i]["vector_distance"].as_f64().unwrap();
            assert!((got - analysis::round3(want)).abs() < 1e-9, "pair {i}: {got} vs {want}");
        }
        assert_eq!(meter.snapshot().unwrap().requests, 2, "one call per pair");
        let md = String::from_utf8(artifacts[3].bytes.clone()).unwrap();
        assert!(md.contains("mean vector distance "), "{md}");
    }
}
