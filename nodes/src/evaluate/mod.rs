//! `evaluate`: scores each record.
//!
//! Metrics: deterministic text checks (`exact_match`, `contains`, `regex`,
//! `json_valid`, `similarity`), thresholds on what `run` measured
//! (`latency`, `cost`), an LLM judge through a backend (`judge`, in
//! [`judge`]), and custom metrics as a command (`exec`, in [`exec`]).
//! Metric arguments are `{{field}}` templates filled per record. Each record
//! comes out with `scores` (per metric: `score`, `pass`, a `reason` where
//! the metric gives one, and `error` when it could not be computed) and an
//! overall `pass`. The node writes a summary (per metric: mean, pass rate,
//! count) as JSON and Markdown.
//!
//! Without `judge` or `exec` the node is a plain streaming map; with them it
//! scores chunks of records as they arrive, the judge calls of a chunk in
//! flight together and each `exec` command run once per chunk.

mod exec;
mod judge;
mod metric;
pub mod view;

pub use metric::{MetricConfig, MetricType};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use futures::future::join_all;
use futures::StreamExt;

use flow_engine::{
    Arity, Artifact, BatchStream, BuildCx, CheckCx, FieldSet, MapStage, Meter, Node, NodeError, PortType, Record,
    RecordStream, Shape, Stage, StreamStage, Template, BATCH_SIZE, SUMMARY_MD,
};

use crate::backend::{self, Backends, CallOpts, Endpoint};
use flow_engine::cache::ContentHash;
use flow_engine::node::SUMMARY_JSON;
use flow_engine::template::RenderError;
use flow_engine::BackendSpec;

pub struct Evaluate;

/// `kind: evaluate`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateConfig {
    pub metrics: Vec<MetricConfig>,
}

impl Node for Evaluate {
    type Config = EvaluateConfig;
    const KIND: &'static str = "evaluate";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "scores records: exact_match, contains, regex, json_valid, similarity, judge, latency, cost, exec";
    const INPUTS: Arity = Arity::One;
    const SHAPE: Shape = Shape::Streaming;

    fn check(config: &EvaluateConfig, cx: &mut CheckCx<'_>) -> PortType {
        let at = cx.field("metrics");
        if config.metrics.is_empty() {
            let hint = "add a metric, e.g. `- {type: exact_match, expected: \"{{expected}}\"}`";
            cx.error(&at, "`metrics` is empty", Some(hint.into()));
        }
        let mut seen = BTreeMap::new();
        let mut needs = Vec::new();
        let mut judges = 0;
        for (i, m) in config.metrics.iter().enumerate() {
            let mp = at.index(i);
            let name = m.name();
            let ty = m.kind.name();
            if let Some(prev) = seen.insert(name.clone(), i) {
                let at = if m.name.is_some() { mp.key("name") } else { mp.key("type") };
                cx.error_at_key(
                    &at,
                    format!("metric name `{name}` is used twice (metrics[{prev}] and metrics[{i}])"),
                    Some("give one of them `name: <unique name>`".into()),
                );
            }
            let (required, optional) = m.kind.arguments();
            let takes = || {
                let all: Vec<&str> = required.iter().chain(optional).copied().collect();
                if all.is_empty() {
                    format!("{ty} takes no arguments besides `name` and `field`")
                } else {
                    format!("{ty} takes: {}", all.join(", "))
                }
            };
            for arg in m.set_arguments() {
                if !required.contains(&arg) && !optional.contains(&arg) {
                    cx.error_at_key(&mp.key(arg), format!("`{arg}` does not apply to `{ty}`"), Some(takes()));
                }
            }
            for arg in required {
                if !m.set_arguments().contains(arg) {
                    cx.error_at_key(&mp.key("type"), format!("`{ty}` needs `{arg}`"), Some(takes()));
                }
            }
            // `exec` reads whole records; the others read their field.
            if m.kind != MetricType::Exec {
                needs.push((m.field().to_string(), mp.key(if m.field.is_some() { "field" } else { "type" })));
            }
            if let Some((arg, text)) = m.argument() {
                match Template::parse(text) {
                    Ok(t) => needs.extend(t.fields().map(|f| (f.to_string(), mp.key(arg)))),
                    Err(e) => {
                        cx.error(&mp.key(arg), e.to_string(), Some("field references look like `{{expected}}`".into()))
                    }
                }
            }
            if let (MetricType::Regex, Some(pattern)) = (m.kind, &m.pattern) {
                if !pattern.contains("{{") {
                    if let Err(e) = regex::Regex::new(pattern) {
                        cx.error(&mp.key("pattern"), format!("invalid regex: {}", regex_error(&e)), None);
                    }
                }
            }
            if let Some(t) = m.threshold.filter(|t| !(0.0..=1.0).contains(t)) {
                cx.error(&mp.key("threshold"), format!("threshold {t} is outside 0..=1"), None);
            }
            for (arg, v) in [("max_ms", m.max_ms), ("max_usd", m.max_usd)] {
                if let Some(v) = v.filter(|v| !v.is_finite() || *v < 0.0) {
                    cx.error(&mp.key(arg), format!("`{arg}` must be a number ≥ 0, not {v}"), None);
                }
            }
            if let (MetricType::Judge, Some(b)) = (m.kind, &m.backend) {
                cx.backend(&mp.key("backend"), b);
                judges += 1;
            }
            if let (MetricType::Exec, Some(command)) = (m.kind, &m.command) {
                exec::check(command, &mp.key("command"), cx);
            }
        }
        cx.require_fields(&needs);
        cx.calls_per_record(judges);
        cx.output_records(flow_engine::OutputRecords::PerInput(1));
        let input = cx.inputs().first().map(|i| i.ty.clone()).unwrap_or_else(|| PortType::records(FieldSet::Open));
        input.extend("Scored", &["scores", "pass"])
    }

    /// One key per judge metric, as [`judge::Judge::grade`] asks; none for a
    /// record a judge cannot grade (no call is made for it).
    fn call_keys(
        config: &EvaluateConfig,
        record: &Record,
        backends: &BTreeMap<String, BackendSpec>,
    ) -> Option<Vec<ContentHash>> {
        let mut keys = Vec::new();
        for m in config.metrics.iter().filter(|m| m.kind == MetricType::Judge) {
            let spec = backends.get(m.backend.as_deref()?)?;
            let rubric = Template::parse(m.rubric.as_deref()?).ok()?;
            if let Ok(messages) = judge::messages(&rubric, m.field(), record) {
                let body = backend::chat_body(spec, &messages, true, 0);
                keys.push(backend::memo_key(spec, Endpoint::Chat, &body, 0));
            }
        }
        Some(keys)
    }

    fn build(config: &EvaluateConfig, cx: &BuildCx) -> Result<Stage, NodeError> {
        let metrics = config.metrics.iter().map(|m| Metric::new(m, cx)).collect::<Result<Vec<_>, _>>()?;
        let totals = Totals { metrics: vec![Stats::default(); metrics.len()], ..Totals::default() };
        let asynchronous = metrics.iter().any(|m| matches!(m.check, Check::Judge(_) | Check::Exec(_)));
        let scorer = Scorer { metrics, totals: Mutex::new(totals), meter: cx.meter.clone(), memo_reads: cx.memo_reads };
        Ok(if asynchronous { Stage::Stream(Arc::new(scorer)) } else { Stage::Map(Box::new(scorer)) })
    }
}

enum Check {
    Exact { expected: Template, case_sensitive: bool, trim: bool },
    Contains { value: Template, case_sensitive: bool },
    Regex(Pattern),
    JsonValid,
    Similarity { expected: Template, threshold: f64 },
    Latency { max_ms: f64 },
    Cost { max_usd: f64 },
    Judge(judge::Judge),
    Exec(exec::Exec),
}

enum Pattern {
    Fixed(regex::Regex),
    Templated(Template),
}

struct Metric {
    name: String,
    field: String,
    check: Check,
}

/// A metric's verdict on a record, or why it has none.
type Verdict = Result<Score, ScoreError>;

/// Why a metric has no verdict on a record: the metric's `error` in the
/// record's `scores` (the record fails; the node goes on).
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The scored field is missing because the record's own call failed.
    #[error("no `{field}`: the call failed ({error})")]
    UpstreamFailed { field: String, error: String },
    /// `cost` of a call whose model has no price.
    #[error("no `{field}`: the model's price is unknown; add it under `prices:` in the spec")]
    Unpriced { field: String },
    #[error("record has no field `{field}`")]
    NoField { field: String },
    /// A metric argument reads a field the record lacks.
    #[error(transparent)]
    Argument(#[from] RenderError),
    /// A templated `pattern` that is no regex once the record's values are in.
    #[error("invalid regex: {}", regex_error(.0))]
    Regex(#[source] regex::Error),
    /// `latency` or `cost` of a value that is not a number.
    #[error("field `{field}` is not a number")]
    NotANumber { field: String },
    #[error(transparent)]
    Judge(#[from] judge::JudgeError),
    /// What an `exec` command printed as the record's `error`.
    #[error("{0}")]
    Reported(String),
}

/// One metric's verdict on one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub score: f64,
    pub pass: bool,
    /// Why (a judge's or a command's explanation).
    pub reason: Option<String>,
    /// The measured value, for thresholds (`latency`, `cost`).
    pub value: Option<f64>,
}

impl Score {
    fn flag(pass: bool) -> Self {
        Self { score: if pass { 1.0 } else { 0.0 }, pass, reason: None, value: None }
    }

    fn of(score: f64, pass: bool) -> Self {
        Self { score, pass, reason: None, value: None }
    }
}

fn template(s: &str) -> Result<Template, NodeError> {
    Template::parse(s).map_err(|e| NodeError::new(e.to_string()))
}

impl Metric {
    fn new(m: &MetricConfig, cx: &BuildCx) -> Result<Self, NodeError> {
        fn arg<'a, T>(m: &MetricConfig, v: &'a Option<T>, name: &str) -> Result<&'a T, NodeError> {
            v.as_ref().ok_or_else(|| NodeError::new(format!("`{}` needs `{name}`", m.kind.name())))
        }
        let case_sensitive = m.case_sensitive.unwrap_or(true);
        let check = match m.kind {
            MetricType::ExactMatch => Check::Exact {
                expected: template(arg(m, &m.expected, "expected")?)?,
                case_sensitive,
                trim: m.trim.unwrap_or(true),
            },
            MetricType::Contains => Check::Contains { value: template(arg(m, &m.value, "value")?)?, case_sensitive },
            MetricType::Regex => {
                let pattern = arg(m, &m.pattern, "pattern")?;
                if pattern.contains("{{") {
                    Check::Regex(Pattern::Templated(template(pattern)?))
                } else {
                    Check::Regex(Pattern::Fixed(regex::Regex::new(pattern).map_err(|e| NodeError::new(e.to_string()))?))
                }
            }
            MetricType::JsonValid => Check::JsonValid,
            MetricType::Similarity => Check::Similarity {
                expected: template(arg(m, &m.expected, "expected")?)?,
                threshold: m.threshold.unwrap_or(0.8),
            },
            MetricType::Latency => Check::Latency { max_ms: *arg(m, &m.max_ms, "max_ms")? },
            MetricType::Cost => Check::Cost { max_usd: *arg(m, &m.max_usd, "max_usd")? },
            MetricType::Judge => Check::Judge(judge::Judge::new(
                Backends::of(cx, arg(m, &m.backend, "backend")?)?,
                template(arg(m, &m.rubric, "rubric")?)?,
                m.field().to_string(),
                m.threshold.unwrap_or(0.5),
            )),
            MetricType::Exec => Check::Exec(exec::Exec::new(
                m.name(),
                arg(m, &m.command, "command")?.clone(),
                cx.spec_dir.clone(),
                m.threshold.unwrap_or(0.5),
            )),
        };
        Ok(Self { name: m.name(), field: m.field().to_string(), check })
    }

    /// The verdict of a metric computed on the record alone, or why it
    /// could not be computed. `judge` and `exec` are computed by the chunk.
    fn score(&self, record: &Record) -> Verdict {
        let value = match record.get(&self.field) {
            Some(Value::String(s)) => std::borrow::Cow::Borrowed(s.as_str()),
            Some(Value::Null) | None => return Err(self.missing(record)),
            Some(other) => std::borrow::Cow::Owned(other.to_string()),
        };
        Ok(match &self.check {
            Check::Exact { expected, case_sensitive, trim } => {
                let want = expected.render(record)?;
                let (a, b) = if *trim { (value.trim(), want.trim()) } else { (&*value, &*want) };
                Score::flag(if *case_sensitive { a == b } else { a.to_lowercase() == b.to_lowercase() })
            }
            Check::Contains { value: needle, case_sensitive } => {
                let n = needle.render(record)?;
                Score::flag(if *case_sensitive {
                    value.contains(&*n)
                } else {
                    value.to_lowercase().contains(&n.to_lowercase())
                })
            }
            Check::Regex(Pattern::Fixed(re)) => Score::flag(re.is_match(&value)),
            Check::Regex(Pattern::Templated(t)) => {
                let re = regex::Regex::new(&t.render_with(record, regex::escape)?).map_err(ScoreError::Regex)?;
                Score::flag(re.is_match(&value))
            }
            Check::JsonValid => Score::flag(serde_json::from_str::<Value>(&value).is_ok()),
            Check::Similarity { expected, threshold } => {
                let s = strsim::normalized_levenshtein(&value, &expected.render(record)?);
                Score::of(s, s >= *threshold)
            }
            Check::Latency { max_ms: max } | Check::Cost { max_usd: max } => {
                let v = record
                    .get(&self.field)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| ScoreError::NotANumber { field: self.field.clone() })?;
                Score { value: Some(v), ..Score::flag(v <= *max) }
            }
            Check::Judge(_) | Check::Exec(_) => unreachable!("judge and exec are scored by the chunk"),
        })
    }

    /// Why a record has no value to score.
    fn missing(&self, record: &Record) -> ScoreError {
        let upstream_error = record.get("error").and_then(Value::as_str);
        let field = self.field.clone();
        match (&self.check, upstream_error) {
            (_, Some(e)) => ScoreError::UpstreamFailed { field, error: e.to_string() },
            (Check::Cost { .. }, None) if record.contains_key(&self.field) => ScoreError::Unpriced { field },
            _ => ScoreError::NoField { field },
        }
    }
}

/// The last line of a regex error ("unclosed group"): the full text repeats
/// the pattern with a caret, which the diagnostic already shows.
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines().last().unwrap_or(&text).trim_start_matches("error: ").to_string()
}

#[derive(Debug, Clone, Default)]
struct Stats {
    count: u64,
    sum: f64,
    passed: u64,
    errors: u64,
}

/// Running totals for the summary, behind one lock taken once per record.
#[derive(Default)]
struct Totals {
    metrics: Vec<Stats>,
    records: u64,
    /// Records that passed every metric.
    passed: u64,
}

struct Scorer {
    metrics: Vec<Metric>,
    totals: Mutex<Totals>,
    meter: Arc<Meter>,
    memo_reads: bool,
}

impl Scorer {
    /// Scores one record; `external(i)` holds the verdict of metric `i` when
    /// it was computed for the whole chunk (`judge`, `exec`).
    fn scored(&self, record: &Record, mut external: impl FnMut(usize) -> Option<Verdict>) -> Record {
        let mut scores = serde_json::Map::new();
        let mut all = true;
        let mut totals = self.totals.lock().expect("totals lock");
        for (i, (m, st)) in self.metrics.iter().zip(totals.metrics.iter_mut()).enumerate() {
            st.count += 1;
            let verdict = external(i).unwrap_or_else(|| m.score(record));
            let entry = match verdict {
                Ok(s) => {
                    st.sum += s.score;
                    st.passed += s.pass as u64;
                    all &= s.pass;
                    let mut e = json!({"score": s.score, "pass": s.pass});
                    if let Some(v) = s.value {
                        e["value"] = json!(v);
                    }
                    if let Some(r) = s.reason {
                        e["reason"] = json!(r);
                    }
                    e
                }
                Err(e) => {
                    st.errors += 1;
                    all = false;
                    json!({"score": null, "pass": false, "error": e.to_string()})
                }
            };
            scores.insert(m.name.clone(), entry);
        }
        totals.records += 1;
        totals.passed += all as u64;
        drop(totals);
        let mut fields = (**record).clone();
        fields.insert("scores".into(), Value::Object(scores));
        fields.insert("pass".into(), Value::Bool(all));
        Arc::new(fields)
    }

    /// Scores a chunk: each `exec` command once for the chunk, the judge
    /// calls of the chunk in flight together, then every record.
    async fn chunk(self: Arc<Self>, chunk: Vec<Record>) -> Result<Vec<Record>, NodeError> {
        // Per metric, for chunk-scored metrics: each record's verdict, taken
        // out as the record is assembled.
        let mut external: Vec<Option<Vec<Option<Verdict>>>> = Vec::with_capacity(self.metrics.len());
        for m in &self.metrics {
            external.push(match &m.check {
                Check::Exec(x) => {
                    let verdicts = x.run(&chunk).await.map_err(|e| NodeError::new(e.to_string()))?;
                    Some(verdicts.into_iter().map(Some).collect())
                }
                Check::Judge(j) => {
                    let opts = CallOpts { meter: &self.meter, memo_reads: self.memo_reads, sample: 0 };
                    let verdicts = join_all(chunk.iter().map(|r| j.grade(r, opts))).await;
                    // The memo can keep no more answers: the node stops, not these records.
                    if let Some(halted) = j.halted() {
                        return Err(NodeError::new(halted.to_string()));
                    }
                    Some(verdicts.into_iter().map(Some).collect())
                }
                _ => None,
            });
        }
        Ok(chunk
            .iter()
            .enumerate()
            .map(|(k, r)| self.scored(r, |i| external[i].as_mut().and_then(|v| v[k].take())))
            .collect())
    }
}

impl MapStage for Scorer {
    fn map(&self, record: &Record, out: &mut Vec<Record>) -> Result<(), NodeError> {
        out.push(self.scored(record, |_| None));
        Ok(())
    }

    fn finish(&self) -> Result<Vec<Artifact>, NodeError> {
        self.summary()
    }
}

impl StreamStage for Scorer {
    fn run(self: Arc<Self>, input: RecordStream) -> BatchStream {
        input
            .ready_chunks(BATCH_SIZE)
            .map(move |chunk| self.clone().chunk(chunk))
            // The next chunk's calls start while this one finishes.
            .buffered(2)
            .boxed()
    }

    fn finish(&self) -> Result<Vec<Artifact>, NodeError> {
        self.summary()
    }
}

impl Scorer {
    fn summary(&self) -> Result<Vec<Artifact>, NodeError> {
        let totals = self.totals.lock().expect("totals lock");
        let (stats, records, passed) = (&totals.metrics, totals.records, totals.passed);
        let ratio = |a: u64, b: u64| {
            if b == 0 {
                None
            } else {
                Some(a as f64 / b as f64)
            }
        };
        let mut metrics = serde_json::Map::new();
        let mut md = format!(
            "records: {records}, passed every metric: {passed} ({})\n\n| metric | mean | pass rate | count | errors |\n|---|---:|---:|---:|---:|\n",
            pct(ratio(passed, records))
        );
        for (m, s) in self.metrics.iter().zip(stats.iter()) {
            let scored = s.count - s.errors;
            let mean = if scored == 0 { None } else { Some(s.sum / scored as f64) };
            let rate = ratio(s.passed, s.count);
            metrics.insert(
                m.name.clone(),
                json!({"mean": mean.map(round6), "pass_rate": rate.map(round6), "count": s.count, "errors": s.errors}),
            );
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                m.name,
                mean.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into()),
                pct(rate),
                s.count,
                s.errors
            );
        }
        let summary = json!({"records": records, "passed": passed, "pass_rate": ratio(passed, records).map(round6), "metrics": metrics});
        let mut json_bytes = serde_json::to_vec_pretty(&summary).expect("summary serializes");
        json_bytes.push(b'\n');
        Ok(vec![
            Artifact { name: SUMMARY_JSON.into(), bytes: json_bytes },
            Artifact { name: SUMMARY_MD.into(), bytes: md.into_bytes() },
        ])
    }
}

fn pct(r: Option<f64>) -> String {
    r.map(|v| format!("{:.1}%", v * 100.0)).unwrap_or_else(|| "-".into())
}

/// Summaries are compared byte for byte across runs: keep floats short and
/// stable.
fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: Value) -> Record {
        Arc::new(v.as_object().unwrap().clone())
    }

    fn metric(yaml: &str) -> Metric {
        let cx = BuildCx::new("scores", ".".into());
        Metric::new(&serde_yaml::from_str::<MetricConfig>(yaml).unwrap(), &cx).unwrap()
    }

    fn verdict(m: &str, r: &Record) -> Result<(f64, bool), String> {
        metric(m).score(r).map(|s| (s.score, s.pass)).map_err(|e| e.to_string())
    }

    #[test]
    fn metrics_score_records() {
        let r = rec(json!({"output": " Paris ", "expected": "paris", "json": "{\"a\": 1}", "city": "Par.s"}));
        assert_eq!(verdict("{type: exact_match, expected: '{{expected}}'}", &r), Ok((0.0, false)));
        assert_eq!(
            verdict("{type: exact_match, expected: '{{expected}}', case_sensitive: false}", &r),
            Ok((1.0, true))
        );
        assert_eq!(verdict("{type: contains, value: ari}", &r), Ok((1.0, true)));
        assert_eq!(verdict("{type: regex, pattern: '^\\s*P\\w+'}", &r), Ok((1.0, true)));
        // Inserted values are escaped: `Par.s` must match literally.
        assert_eq!(verdict("{type: regex, pattern: '{{city}}'}", &r), Ok((0.0, false)));
        assert_eq!(verdict("{type: json_valid, field: json}", &r), Ok((1.0, true)));
        assert_eq!(verdict("{type: json_valid}", &r), Ok((0.0, false)));
        let (s, pass) = verdict("{type: similarity, expected: 'Pariss', threshold: 0.5}", &r).unwrap();
        assert!((s - strsim::normalized_levenshtein(" Paris ", "Pariss")).abs() < 1e-12 && pass);
        assert_eq!(verdict("{type: exact_match, expected: '{{nope}}'}", &r), Err("record has no field `nope`".into()));
    }

    #[test]
    fn latency_and_cost_thresholds() {
        let r = rec(json!({"output": "x", "latency_ms": 120, "cost_usd": 0.002}));
        let s = metric("{type: latency, max_ms: 100}").score(&r).unwrap();
        assert_eq!((s.pass, s.value), (false, Some(120.0)));
        assert!(metric("{type: latency, max_ms: 150}").score(&r).unwrap().pass);
        assert!(metric("{type: cost, max_usd: 0.01}").score(&r).unwrap().pass);
        let unpriced = rec(json!({"output": "x", "cost_usd": null, "error": null}));
        let e = metric("{type: cost, max_usd: 0.01}").score(&unpriced).unwrap_err().to_string();
        assert!(e.contains("price is unknown"), "{e}");
        let failed = rec(json!({"output": null, "latency_ms": null, "error": "HTTP 400"}));
        let e = metric("{type: latency, max_ms: 100}").score(&failed).unwrap_err().to_string();
        assert!(e.contains("the call failed (HTTP 400)"), "{e}");
    }
}
