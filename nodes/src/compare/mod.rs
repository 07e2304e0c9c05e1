//! `compare`: is the candidate better or worse than the baseline, and is the
//! difference real? The gate a CI job runs after two `evaluate` nodes.
//!
//! The baseline is the first of `inputs` (each other input is a candidate),
//! or a node's output stored by a past run (`baseline: {run: latest, node:
//! scores}`), whose content hash joins the node key like an input file's.
//! Records are joined by a key; per metric the node reports each side's
//! mean, the delta with a seeded paired-bootstrap interval, a paired test
//! (exact McNemar for pass/fail metrics, the bootstrap's p otherwise) and
//! the records that flipped. `fail_if` rules turn a regression into a
//! failed run (a [`GATE_FAILED`] artifact) while the report stays cached.
//!
//! The statistics are in [`stats`], the join and figures in [`analysis`]
//! (shared with `flow compare`) over sides read into an [`index`], the
//! texts in [`report`].

pub mod analysis;
pub mod cases;
pub mod index;
pub mod report;
pub mod stats;
pub mod view;

/// The artifact that holds the whole comparison (`flow compare` prints it).
pub const REPORT_JSON: &str = "report.json";

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::PathBuf;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use std::io::BufRead;

use flow_engine::cache::HashingReader;
use flow_engine::diag::did_you_mean;
use flow_engine::{
    Arity, Artifact, BarrierOutput, BarrierStage, BuildCx, CheckCx, FieldSet, Fields, FileInput, Node, NodeError,
    PortType, Record, Shape, Spool, Stage, GATE_FAILED, SUMMARY_MD,
};

pub use analysis::{compare, compare_indexed, Comparison, Settings, Side};
pub use index::{Index, Indexing};

pub struct Compare;

/// `kind: compare`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompareConfig {
    /// A stored run's output as the baseline, instead of the first input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<StoredBaseline>,
    /// The field records are joined by, or a list of fields (`[id,
    /// sample]`). A record's `variant` and `sample` are joined by too when
    /// it has them and the key does not name them.
    #[serde(default)]
    pub key: Key,
    /// With one input whose records carry prompt variants (a `run` node's
    /// `prompts:`): the variant the others are compared with; default the
    /// first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_variant: Option<String>,
    /// Metrics to compare; default: every metric both sides scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<String>>,
    /// Of the delta's interval, and the level `significant_drop` tests at.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Paired bootstrap resamples.
    #[serde(default = "default_resamples")]
    pub resamples: u32,
    /// Seeds the bootstrap: the same seed gives the same figures.
    #[serde(default)]
    pub seed: u64,
    /// Rules that fail the run when a candidate breaks one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fail_if: Vec<Gate>,
}

/// `baseline: {run: latest | <run-id>, node: <name>}`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoredBaseline {
    pub run: String,
    pub node: String,
}

/// One `fail_if` rule: exactly one of `drop_more_than` and
/// `significant_drop`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    pub metric: String,
    /// Trips when candidate mean − baseline mean < −this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_more_than: Option<f64>,
    /// Trips when the delta is negative and significant at `confidence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub significant_drop: Option<bool>,
}

/// `key: id` or `key: [id, sample]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Key {
    One(String),
    Many(Vec<String>),
}

impl Default for Key {
    fn default() -> Self {
        Key::One("id".into())
    }
}

impl Key {
    pub fn fields(&self) -> Vec<String> {
        match self {
            Key::One(f) => vec![f.clone()],
            Key::Many(fs) => fs.clone(),
        }
    }
}

fn default_confidence() -> f64 {
    Settings::default().confidence
}

fn default_resamples() -> u32 {
    Settings::default().resamples
}

impl CompareConfig {
    fn settings(&self) -> Settings {
        Settings {
            key: self.key.fields(),
            metrics: self.metrics.clone(),
            confidence: self.confidence,
            resamples: self.resamples,
            seed: self.seed,
        }
    }
}

/// Fields of the records `compare` emits, one per candidate and metric.
const OUTPUT_FIELDS: &[&str] = &[
    "id",
    "baseline",
    "candidate",
    "metric",
    "pairs",
    "skipped",
    "baseline_mean",
    "candidate_mean",
    "delta",
    "ci",
    "confidence",
    "p",
    "test",
    "significant_drop",
    "mcnemar_p",
    "pass_rate",
    "pass_to_fail",
    "fail_to_pass",
    "gates_tripped",
];

impl Node for Compare {
    type Config = CompareConfig;
    const KIND: &'static str = "compare";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "compares scored runs: deltas with bootstrap CIs, McNemar, flipped records, fail_if gates";
    const INPUTS: Arity = Arity::Many;
    const SHAPE: Shape = Shape::Barrier;

    fn check(config: &CompareConfig, cx: &mut CheckCx<'_>) -> PortType {
        // No input at all is the engine's error already (`Arity::Many`).
        let n = cx.inputs().len();
        let inputs_at = cx.field(if n == 1 { "input" } else { "inputs" });
        match &config.baseline {
            Some(b) => {
                if n > 1 {
                    let msg = format!("node `{}` has a stored `baseline:`, so it takes one input, not {n}", cx.node());
                    cx.error(&inputs_at, msg, Some("write `input: <candidate>`".into()));
                }
                let at = cx.field("baseline");
                cx.stored_output(&at, &b.run, &b.node);
            }
            // One input of several prompt variants compares them; its
            // fields may not be known before it runs.
            None if n == 1 && cx.inputs()[0].ty.has_field("variant") == Some(false) => {
                let msg = format!("node `{}` has nothing to compare its input with", cx.node());
                let hint = "write `inputs: [baseline, candidate]`, give the `run` node `prompts:` variants to \
                            compare, or keep `input:` and add `baseline: {run: latest, node: <name>}` to compare \
                            with a stored run";
                cx.error(&inputs_at, msg, Some(hint.into()));
            }
            None => {}
        }
        if config.baseline_variant.is_some() && (n != 1 || config.baseline.is_some()) {
            let msg = "`baseline_variant` picks among the variants of one input";
            let hint = "remove it, or write one `input:` whose records carry `variant`";
            cx.error_at_key(&cx.field("baseline_variant"), msg, Some(hint.into()));
        }
        let key_at = cx.field("key");
        let keys = config.key.fields();
        if keys.is_empty() {
            cx.error(&key_at, "`key` is an empty list", Some("e.g. `key: id` or `key: [id, sample]`".into()));
        }
        let mut needs: Vec<(String, _)> = keys.into_iter().map(|k| (k, key_at.clone())).collect();
        needs.push(("scores".to_string(), inputs_at));
        cx.require_fields(&needs);

        if !(config.confidence > 0.0 && config.confidence < 1.0) {
            let msg = format!("`confidence` must be between 0 and 1 (exclusive), not {}", config.confidence);
            cx.error(&cx.field("confidence"), msg, Some("e.g. `confidence: 0.95`".into()));
        }
        if config.resamples < 100 {
            let msg = format!("`resamples` must be at least 100, not {}", config.resamples);
            cx.error(&cx.field("resamples"), msg, Some("the default, 2000, gives stable intervals".into()));
        }
        let mut listed = BTreeSet::new();
        if let Some(metrics) = &config.metrics {
            let at = cx.field("metrics");
            if metrics.is_empty() {
                cx.error(
                    &at,
                    "`metrics` is empty",
                    Some("list metric names, or leave `metrics` out to compare every metric".into()),
                );
            }
            for (i, m) in metrics.iter().enumerate() {
                if !listed.insert(m.as_str()) {
                    cx.error(&at.index(i), format!("metric `{m}` is listed twice"), None);
                }
            }
        }
        let rules_at = cx.field("fail_if");
        for (i, rule) in config.fail_if.iter().enumerate() {
            let at = rules_at.index(i);
            let shape = "a rule is `{metric: m, drop_more_than: 0.02}` or `{metric: m, significant_drop: true}`";
            match (rule.drop_more_than, rule.significant_drop) {
                (Some(_), Some(_)) | (None, None) => {
                    let msg = format!("`fail_if[{i}]` needs exactly one of `drop_more_than` and `significant_drop`");
                    cx.error_at_key(&at.key("metric"), msg, Some(shape.into()));
                }
                (Some(d), None) if !(d.is_finite() && d >= 0.0) => {
                    let msg = format!("`drop_more_than` must be a number ≥ 0, not {d}");
                    cx.error(
                        &at.key("drop_more_than"),
                        msg,
                        Some("e.g. `drop_more_than: 0.02` (a drop of 2 points)".into()),
                    );
                }
                (None, Some(false)) => {
                    let msg = "`significant_drop: false` checks nothing".to_string();
                    cx.error(
                        &at.key("significant_drop"),
                        msg,
                        Some("write `significant_drop: true`, or remove the rule".into()),
                    );
                }
                _ => {}
            }
            if !listed.is_empty() && !listed.contains(rule.metric.as_str()) {
                let hint = match did_you_mean(&rule.metric, listed.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`? a gate checks one of `metrics`"),
                    None => "add it to `metrics`, or leave `metrics` out to compare every metric".to_string(),
                };
                cx.error(
                    &at.key("metric"),
                    format!("`fail_if[{i}]` checks metric `{}`, which is not in `metrics`", rule.metric),
                    Some(hint),
                );
            }
        }
        PortType {
            name: Cow::Borrowed("Comparison"),
            fields: FieldSet::Known(OUTPUT_FIELDS.iter().map(|f| f.to_string()).collect()),
        }
    }

    fn build(config: &CompareConfig, cx: &BuildCx) -> Result<Stage, NodeError> {
        // The only file a compare node registers is its stored baseline.
        let stored = match &config.baseline {
            Some(_) => {
                Some(cx.files.first().cloned().ok_or_else(|| NodeError::new("the stored baseline was not resolved"))?)
            }
            None => None,
        };
        Ok(Stage::Barrier(Box::new(CompareStage { config: config.clone(), names: cx.input_names.clone(), stored })))
    }
}

struct CompareStage {
    config: CompareConfig,
    /// The inputs' names, in the order written.
    names: Vec<String>,
    stored: Option<FileInput>,
}

impl BarrierStage for CompareStage {
    fn run(self: Box<Self>, inputs: Vec<Vec<Record>>) -> BoxFuture<'static, BarrierOutput> {
        self.run_spooled(inputs.into_iter().map(Spool::in_memory).collect())
    }

    /// Indexes each input as it reads it back: only keys and scores stay in
    /// memory, whatever the inputs' size.
    fn run_spooled(self: Box<Self>, inputs: Vec<Spool>) -> BoxFuture<'static, BarrierOutput> {
        Box::pin(async move {
            // Reading the inputs (and the stored baseline) and a few
            // thousand resamples per metric: work for a blocking thread,
            // not the scheduler's.
            tokio::task::spawn_blocking(move || self.compare(inputs))
                .await
                .map_err(|e| NodeError::new(format!("compare panicked: {e}")))?
        })
    }
}

impl CompareStage {
    fn compare(self, inputs: Vec<Spool>) -> BarrierOutput {
        let name = |i: usize| self.names.get(i).cloned().unwrap_or_else(|| format!("input {}", i + 1));
        let key = &self.config.key.fields();
        // The baseline first, so that its problems are named first.
        let stored = self.stored.as_ref().map(|file| read_stored(file, key)).transpose()?;
        // One input and no stored baseline: its prompt variants are the sides.
        let split = stored.is_none() && inputs.len() == 1;
        let mut sides = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.into_iter().enumerate() {
            let records = input.records().map_err(|e| NodeError::new(e.to_string()))?;
            if split {
                sides.extend(Index::by_variant(&name(i), key, records).map_err(indexing)?);
            } else {
                sides.push(Index::new(&name(i), key, records).map_err(indexing)?);
            }
            // Each input's records (and its spill file) go once indexed.
        }
        let baseline = match stored {
            Some(index) => index,
            None => sides.remove(self.baseline_side(&sides, split, &name(0))?),
        };
        let settings = self.config.settings();
        let comparison = checked(compare_indexed(&baseline, &sides, &settings), &self.config)?;
        drop((baseline, sides));
        let gates = report::check_gates(&comparison, &self.config.fail_if);

        let mut records = Vec::new();
        for cand in &comparison.candidates {
            for m in &cand.metrics {
                let serde_json::Value::Object(fields) = report::record(&comparison, cand, m, &gates) else {
                    unreachable!("a record is an object")
                };
                records.push(std::sync::Arc::new(fields));
            }
        }
        let md = report::markdown(&comparison, &gates);
        let mut json = serde_json::to_vec_pretty(&report::json_report(&comparison, &gates)).expect("report serializes");
        json.push(b'\n');
        let mut artifacts = vec![
            Artifact { name: REPORT_JSON.into(), bytes: json },
            Artifact { name: "report.md".into(), bytes: md.clone().into_bytes() },
            Artifact { name: SUMMARY_MD.into(), bytes: md.into_bytes() },
        ];
        if let Some(text) = report::gate_text(&gates) {
            artifacts.push(Artifact { name: GATE_FAILED.into(), bytes: format!("{text}\n").into_bytes() });
        }
        Ok((records, artifacts))
    }
}

impl CompareStage {
    /// Which of `sides` is the baseline: the first, or with one input split
    /// into its variants, `baseline_variant`.
    fn baseline_side(&self, sides: &[Index], split: bool, input: &str) -> Result<usize, NodeError> {
        if split && sides.len() < 2 {
            return Err(NodeError::new(format!(
                "the records of `{input}` carry no `variant` (or only one), so there is nothing to compare; \
                 give its `run` node `prompts:` variants, or write `inputs: [baseline, candidate]`"
            )));
        }
        let Some(wanted) = &self.config.baseline_variant else { return Ok(0) };
        let names: Vec<&str> = sides.iter().map(|s| s.name.as_str()).collect();
        names.iter().position(|n| n == wanted).ok_or_else(|| {
            let hint = match did_you_mean(wanted, names.iter().copied()) {
                Some(c) => format!("did you mean `{c}`? "),
                None => String::new(),
            };
            NodeError::new(format!(
                "`baseline_variant: {wanted}` is not a variant of `{input}`; {hint}its variants: {}",
                names.join(", ")
            ))
        })
    }
}

fn indexing<E: std::fmt::Display>(e: Indexing<E>) -> NodeError {
    match e {
        Indexing::Compare(e) => NodeError::new(e.to_string()),
        Indexing::Read(e) => NodeError::new(e.to_string()),
    }
}

/// The comparison, after checking that every gated metric was compared
/// (without `metrics`, a gate's metric must be one both sides scored).
fn checked(
    result: Result<Comparison, analysis::CompareError>,
    config: &CompareConfig,
) -> Result<Comparison, NodeError> {
    let c = result.map_err(|e| NodeError::new(e.to_string()))?;
    for (i, rule) in config.fail_if.iter().enumerate() {
        for cand in &c.candidates {
            if cand.metrics.iter().any(|m| m.metric == rule.metric) {
                continue;
            }
            let compared: Vec<&str> = cand.metrics.iter().map(|m| m.metric.as_str()).collect();
            let mean = match did_you_mean(&rule.metric, compared.iter().copied()) {
                Some(m) => format!("did you mean `{m}`? "),
                None => String::new(),
            };
            return Err(NodeError::new(format!(
                "`fail_if[{i}]` checks metric `{}`, which `{}` and `{}` do not both score; {mean}both have: {}",
                rule.metric,
                c.baseline,
                cand.name,
                compared.join(", ")
            )));
        }
    }
    Ok(c)
}

/// Why the stored baseline (`baseline:`, as written) cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("cannot read the stored baseline {written} ({}): {source}", .path.display())]
    Read { written: String, path: PathBuf, source: std::io::Error },
    /// Its content is not what the plan hashed.
    #[error("the stored baseline {written} changed since the plan was made; run again")]
    Changed { written: String },
    #[error("the stored baseline {written}: {source}")]
    Jsonl { written: String, source: JsonlError },
}

/// Stored output that is not JSONL records.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    #[error("not UTF-8: {0}")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// Line `line` (from 1) is not a JSON object.
    #[error("line {line}: {source}")]
    Line { line: usize, source: serde_json::Error },
}

/// The stored baseline, indexed by `key` as it is read line by line, and
/// checked against the hash its node key has.
fn read_stored(file: &FileInput, key: &[String]) -> Result<Index, NodeError> {
    let written = || file.written.clone();
    let read_err = |source| BaselineError::Read { written: written(), path: file.path.clone(), source };
    let opened = std::fs::File::open(&file.path).map_err(|e| NodeError::new(read_err(e).to_string()))?;
    let mut hashing = HashingReader::new(opened);
    let index = {
        let lines = std::io::BufReader::with_capacity(256 * 1024, &mut hashing).split(b'\n').enumerate();
        let records = lines.filter_map(|(n, line)| {
            let line = match line {
                Ok(line) => line,
                Err(e) => return Some(Err(read_err(e))),
            };
            let jsonl = |source| BaselineError::Jsonl { written: written(), source };
            let text = match std::str::from_utf8(&line) {
                Ok(t) => t,
                Err(e) => return Some(Err(jsonl(JsonlError::NotUtf8(e)))),
            };
            if text.trim().is_empty() {
                return None;
            }
            Some(
                serde_json::from_str::<Fields>(text)
                    .map(std::sync::Arc::new)
                    .map_err(|source| jsonl(JsonlError::Line { line: n + 1, source })),
            )
        });
        Index::new(&file.written, key, records)
    };
    // What was read must be what the plan hashed, whatever it held.
    let _ = std::io::copy(&mut hashing, &mut std::io::sink());
    if hashing.hash() != file.hash {
        return Err(NodeError::new(BaselineError::Changed { written: written() }.to_string()));
    }
    index.map_err(indexing)
}

/// Records from a stored JSONL output.
pub fn read_jsonl(bytes: &[u8]) -> Result<Vec<Record>, JsonlError> {
    let text = std::str::from_utf8(bytes).map_err(JsonlError::NotUtf8)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str::<Fields>(l)
                .map(std::sync::Arc::new)
                .map_err(|source| JsonlError::Line { line: n + 1, source })
        })
        .collect()
}
