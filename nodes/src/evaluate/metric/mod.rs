//! A metric as it runs: built from its [`MetricConfig`], it gives each
//! record a [`Score`] or says why it has none ([`ScoreError`]). The checks
//! computed on a record alone live by family: text checks in [`text`],
//! JSON checks in [`json`], overlap with a reference in [`overlap`] (edit
//! distance, ROUGE-L) and [`bleu`]. Those that call a backend or a command
//! (`judge`, `embedding_similarity`, `exec`) are computed a chunk at a time
//! by the scorer, in their own modules one level up.

pub mod bleu;
pub mod json;
pub mod overlap;
pub mod text;
pub mod tool_call;

use std::borrow::Cow;

use serde_json::Value;

use flow_engine::template::RenderError;
use flow_engine::{BuildCx, NodeError, Record, Template};

use super::config::{MetricConfig, MetricType};
use super::embedding::EmbeddingSimilarity;
use super::exec::{self, Exec};
use super::field::{FieldPath, PathError};
use super::judge::{self, Judge};
use crate::backend::Backends;

/// How a metric computes its verdict.
pub enum Check {
    Text(text::TextCheck),
    Json(json::JsonCheck),
    Overlap(overlap::OverlapCheck),
    Bleu {
        expected: Template,
        threshold: f64,
    },
    Latency {
        max_ms: f64,
    },
    Cost {
        max_usd: f64,
    },
    /// `logprob` (`perplexity: false`) or `perplexity`, against `bound`.
    Logprobs {
        perplexity: bool,
        bound: f64,
    },
    Judge(Judge),
    Exec(Exec),
    Embedding(EmbeddingSimilarity),
    ToolCall(tool_call::ToolCallCheck),
}

/// One metric of the node.
pub struct Metric {
    pub name: String,
    pub field: FieldPath,
    pub weight: f64,
    pub negate: bool,
    pub check: Check,
}

/// A metric's verdict on a record, or why it has none.
pub type Verdict = Result<Score, ScoreError>;

/// Why a metric has no verdict on a record: the metric's `error` in the
/// record's `scores` (the record fails; the node goes on, up to
/// `max_errors`).
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
    /// `logprob`/`perplexity` of an answer that came without them.
    #[error(
        "no `{field}`: the answer came without token log probabilities; hint: set `params: {{logprobs: true}}` on \
         the run's backend (OpenAI, vLLM and llama.cpp's server send them; Anthropic has none)"
    )]
    NoLogprobs { field: String },
    /// A path into the field finds nothing there.
    #[error("no `{field}`: `{at}` has no {seg}")]
    NoPath { field: String, at: String, seg: String },
    #[error("no `{field}`: `{at}` is text, not JSON")]
    NotJson { field: String, at: String },
    #[error("`{field}` is null")]
    Null { field: String },
    /// A metric argument reads a field the record lacks.
    #[error(transparent)]
    Argument(#[from] RenderError),
    /// A templated `pattern` that is no regex once the record's values are in.
    #[error("invalid regex: {}", regex_error(.0))]
    Regex(#[source] regex::Error),
    /// `equals_json`'s `expected`, filled from the record, is not JSON.
    #[error("`expected` is not JSON ({0})")]
    ExpectedNotJson(#[source] serde_json::Error),
    /// `latency` or `cost` of a value that is not a number.
    #[error("field `{field}` is not a number")]
    NotANumber { field: String },
    #[error(transparent)]
    Judge(#[from] judge::JudgeError),
    #[error("embeddings call failed: {0}")]
    Embed(#[source] crate::backend::CallError),
    /// `tool_call` of a value that is not a list of calls.
    #[error("field `{field}` is not a list of tool calls (give the `run` node `tools:`)")]
    NotToolCalls { field: String },
    /// What an `exec` command printed as the record's `error`.
    #[error("{0}")]
    Reported(String),
}

/// One metric's verdict on one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// In 0..=1.
    pub score: f64,
    pub pass: bool,
    /// Why (a judge's or a command's explanation, what a check missed).
    pub reason: Option<String>,
    /// The measured value: a latency, a count, a distance, a cosine,
    /// sacreBLEU's figure.
    pub value: Option<f64>,
}

impl Score {
    pub fn flag(pass: bool) -> Self {
        Self { score: if pass { 1.0 } else { 0.0 }, pass, reason: None, value: None }
    }

    pub fn of(score: f64, pass: bool) -> Self {
        Self { score, pass, reason: None, value: None }
    }

    /// A pass/fail verdict with the reason given when it fails.
    pub fn failing_because(pass: bool, reason: impl FnOnce() -> String) -> Self {
        Self { reason: (!pass).then(reason), ..Self::flag(pass) }
    }

    pub fn with_value(self, v: f64) -> Self {
        Self { value: Some(v), ..self }
    }

    /// The verdict of `negate: true`.
    pub fn negated(self) -> Self {
        Self { score: 1.0 - self.score, pass: !self.pass, ..self }
    }
}

pub fn template(s: &str) -> Result<Template, NodeError> {
    Template::parse(s).map_err(|e| NodeError::new(e.to_string()))
}

/// An argument the node's `check` made sure of.
fn arg<'a, T>(m: &MetricConfig, v: &'a Option<T>, name: &str) -> Result<&'a T, NodeError> {
    v.as_ref().ok_or_else(|| NodeError::new(format!("`{}` needs `{name}`", m.kind.name())))
}

impl Metric {
    pub fn new(m: &MetricConfig, cx: &BuildCx) -> Result<Self, NodeError> {
        let threshold = m.threshold();
        let check = match m.kind {
            MetricType::ExactMatch
            | MetricType::Contains
            | MetricType::Icontains
            | MetricType::ContainsAny
            | MetricType::ContainsAll
            | MetricType::StartsWith
            | MetricType::EndsWith
            | MetricType::Regex
            | MetricType::LabelIn
            | MetricType::WordCount
            | MetricType::Length => Check::Text(text::TextCheck::new(m)?),
            MetricType::JsonValid | MetricType::EqualsJson | MetricType::JsonSchema | MetricType::ContainsJson => {
                Check::Json(json::JsonCheck::new(m, cx)?)
            }
            MetricType::Similarity | MetricType::Levenshtein | MetricType::RougeL => {
                Check::Overlap(overlap::OverlapCheck::new(m)?)
            }
            MetricType::Bleu => Check::Bleu { expected: template(arg(m, &m.expected, "expected")?)?, threshold },
            MetricType::Latency => Check::Latency { max_ms: *arg(m, &m.max_ms, "max_ms")? },
            MetricType::Cost => Check::Cost { max_usd: *arg(m, &m.max_usd, "max_usd")? },
            MetricType::Logprob => {
                Check::Logprobs { perplexity: false, bound: *arg(m, &m.min_logprob, "min_logprob")? }
            }
            MetricType::Perplexity => {
                Check::Logprobs { perplexity: true, bound: *arg(m, &m.max_perplexity, "max_perplexity")? }
            }
            MetricType::Judge => Check::Judge(Judge::new(
                Backends::of(cx, arg(m, &m.backend, "backend")?)?,
                template(arg(m, &m.rubric, "rubric")?)?,
                threshold,
            )),
            MetricType::EmbeddingSimilarity => Check::Embedding(EmbeddingSimilarity::new(
                Backends::of(cx, arg(m, &m.backend, "backend")?)?,
                template(arg(m, &m.expected, "expected")?)?,
                threshold,
            )),
            MetricType::Exec => Check::Exec(exec::Exec::new(
                m.name(),
                arg(m, &m.command, "command")?.clone(),
                cx.spec_dir.clone(),
                threshold,
            )),
            MetricType::ToolCall => Check::ToolCall(tool_call::ToolCallCheck::new(m)?),
        };
        let field = FieldPath::parse(m.field()).map_err(|e| NodeError::new(format!("`field`: {e}")))?;
        Ok(Self { name: m.name(), field, weight: m.weight(), negate: m.negated(), check })
    }

    /// Whether the verdicts come a chunk at a time (a backend, a command).
    pub fn by_chunk(&self) -> bool {
        matches!(self.check, Check::Judge(_) | Check::Exec(_) | Check::Embedding(_))
    }

    /// The verdict of a metric computed on the record alone, or why it
    /// could not be computed; before `negate`. `judge`, `embedding_similarity`
    /// and `exec` are computed by the chunk.
    pub fn score(&self, record: &Record) -> Verdict {
        let value = self.value(record)?;
        match &self.check {
            Check::Text(t) => t.score(&as_text(&value), record),
            Check::Json(j) => j.score(&value, self.field.is_top_level(), record),
            Check::Overlap(o) => o.score(&as_text(&value), record),
            Check::Bleu { expected, threshold } => {
                let bleu = bleu::sentence_bleu(&as_text(&value), &expected.render(record)?);
                Ok(Score::of(bleu / 100.0, bleu / 100.0 >= *threshold).with_value(round6(bleu)))
            }
            Check::Latency { max_ms: max } | Check::Cost { max_usd: max } => {
                let v = value.as_f64().ok_or_else(|| ScoreError::NotANumber { field: self.field.written().into() })?;
                Ok(Score::flag(v <= *max).with_value(v))
            }
            Check::ToolCall(t) => t.score(&value, self.field.written()),
            Check::Logprobs { perplexity, bound } => {
                let mean = value["mean"]
                    .as_f64()
                    .ok_or_else(|| ScoreError::NoLogprobs { field: self.field.written().into() })?;
                Ok(if *perplexity {
                    let ppl = (-mean).exp();
                    Score::flag(ppl <= *bound).with_value(round6(ppl))
                } else {
                    Score::flag(mean >= *bound).with_value(round6(mean))
                })
            }
            Check::Judge(_) | Check::Exec(_) | Check::Embedding(_) => {
                unreachable!("judge, embedding_similarity and exec are scored by the chunk")
            }
        }
    }

    /// The value under test, or why the record has none.
    pub fn value<'r>(&self, record: &'r Record) -> Result<Cow<'r, Value>, ScoreError> {
        let value = value_at(&self.field, record, matches!(self.check, Check::Cost { .. }));
        match (&self.check, value) {
            (Check::Logprobs { .. }, Err(ScoreError::NoField { field })) => Err(ScoreError::NoLogprobs { field }),
            (_, value) => value,
        }
    }

    /// The value under test as text (see [`as_text`]).
    pub fn text<'r>(&self, record: &'r Record) -> Result<Cow<'r, str>, ScoreError> {
        Ok(as_text_owned(self.value(record)?))
    }
}

/// The value at `field` in `record`, or why there is none; `cost` says an
/// unpriced model's null `cost_usd` for what it is.
pub fn value_at<'r>(field: &FieldPath, record: &'r Record, cost: bool) -> Result<Cow<'r, Value>, ScoreError> {
    let written = || field.written().to_string();
    field.resolve(record).map_err(|e| match e {
        PathError::Absent => {
            let head = field.head().to_string();
            match record.get("error").and_then(Value::as_str) {
                Some(error) => ScoreError::UpstreamFailed { field: head, error: error.to_string() },
                None if cost && record.contains_key(&head) => ScoreError::Unpriced { field: head },
                None => ScoreError::NoField { field: head },
            }
        }
        PathError::Missing { at, seg } => ScoreError::NoPath { field: written(), at, seg },
        PathError::NotJson { at } => ScoreError::NotJson { field: written(), at },
        PathError::Null => ScoreError::Null { field: written() },
    })
}

/// A value as the text metrics read it: a string as it is, anything else
/// as JSON.
pub fn as_text<'v>(v: &'v Value) -> Cow<'v, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

fn as_text_owned(v: Cow<'_, Value>) -> Cow<'_, str> {
    match v {
        Cow::Borrowed(v) => as_text(v),
        Cow::Owned(Value::String(s)) => Cow::Owned(s),
        Cow::Owned(other) => Cow::Owned(other.to_string()),
    }
}

/// The last line of a regex error ("unclosed group"): the full text repeats
/// the pattern with a caret, which the diagnostic already shows.
pub fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines().last().unwrap_or(&text).trim_start_matches("error: ").to_string()
}

/// At most `n` characters of `s`, with `…` when cut: reasons quote the
/// output, which may be long.
pub fn shorten(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Summaries and values are compared byte for byte across runs: keep
/// floats short and stable.
pub fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builds metrics from YAML and scores records, for the families' tests.

    use std::sync::Arc;

    use serde_json::Value;

    use super::{Metric, MetricConfig, Score};
    use flow_engine::{BuildCx, Record};

    pub fn rec(v: Value) -> Record {
        Arc::new(v.as_object().unwrap().clone())
    }

    pub fn metric(yaml: &str) -> Metric {
        let cx = BuildCx::new("scores", ".".into());
        Metric::new(&serde_yaml::from_str::<MetricConfig>(yaml).unwrap(), &cx).unwrap()
    }

    /// The verdict of the metric in `yaml` on `record`, `negate` applied.
    pub fn score(yaml: &str, record: &Record) -> Result<Score, String> {
        let m = metric(yaml);
        m.score(record).map(|s| if m.negate { s.negated() } else { s }).map_err(|e| e.to_string())
    }

    /// Figures from `sacrebleu` and `rouge-score` on a fixed corpus,
    /// written by `scripts/metric-references.py`.
    pub fn references() -> Value {
        serde_json::from_str(include_str!("../testdata/metric-references.json")).unwrap()
    }

    /// (score, pass) on a record whose `output` is `output`.
    pub fn verdict(yaml: &str, output: &str) -> (f64, bool) {
        let s = score(yaml, &rec(serde_json::json!({"output": output}))).unwrap();
        (s.score, s.pass)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::testing::*;

    #[test]
    fn missing_values_say_why() {
        let r = rec(json!({"output": "{\"a\": 1}", "text": "plain", "n": null}));
        let e = |yaml: &str| score(yaml, &r).unwrap_err();
        assert_eq!(e("{type: contains, value: x, field: nope}"), "record has no field `nope`");
        assert_eq!(e("{type: contains, value: x, field: output.b}"), "no `output.b`: `output` has no `b`");
        assert_eq!(e("{type: contains, value: x, field: text.b}"), "no `text.b`: `text` is text, not JSON");
        assert_eq!(e("{type: exact_match, expected: '{{nope}}'}"), "record has no field `nope`");
        let failed = rec(json!({"output": null, "latency_ms": null, "error": "HTTP 400"}));
        let e = score("{type: latency, max_ms: 100}", &failed).unwrap_err();
        assert!(e.contains("the call failed (HTTP 400)"), "{e}");
        // A path's value is scored like a field: `1` as text.
        assert_eq!(verdict_of("{type: exact_match, expected: '1', field: output.a}", &r), (1.0, true));
    }

    #[test]
    fn logprob_and_perplexity_read_the_answers_log_probabilities() {
        // Two tokens at −0.25 and −0.75: mean −0.5, perplexity e^0.5.
        let r = rec(json!({"output": "a b", "logprobs": {"tokens": 2, "sum": -1.0, "mean": -0.5}}));
        let s = score("{type: logprob, min_logprob: -0.6}", &r).unwrap();
        assert_eq!((s.pass, s.value), (true, Some(-0.5)));
        assert!(!score("{type: logprob, min_logprob: -0.4}", &r).unwrap().pass);
        let s = score("{type: perplexity, max_perplexity: 1.6}", &r).unwrap();
        assert_eq!((s.pass, s.value), (false, Some(1.648721)));
        assert!(score("{type: perplexity, max_perplexity: 1.7}", &r).unwrap().pass);
        let e = score("{type: perplexity, max_perplexity: 2}", &rec(json!({"output": "x"}))).unwrap_err();
        assert!(e.contains("set `params: {logprobs: true}` on the run's backend"), "{e}");
    }

    fn verdict_of(yaml: &str, r: &flow_engine::Record) -> (f64, bool) {
        let s = score(yaml, r).unwrap();
        (s.score, s.pass)
    }

    #[test]
    fn latency_and_cost_thresholds() {
        let r = rec(json!({"output": "x", "latency_ms": 120, "cost_usd": 0.002}));
        let s = score("{type: latency, max_ms: 100}", &r).unwrap();
        assert_eq!((s.pass, s.value), (false, Some(120.0)));
        assert!(score("{type: latency, max_ms: 150}", &r).unwrap().pass);
        assert!(score("{type: cost, max_usd: 0.01}", &r).unwrap().pass);
        let unpriced = rec(json!({"output": "x", "cost_usd": null, "error": null}));
        let e = score("{type: cost, max_usd: 0.01}", &unpriced).unwrap_err();
        assert!(e.contains("price is unknown"), "{e}");
    }

    #[test]
    fn negate_turns_any_verdict_around() {
        let r = rec(json!({"output": "I am sorry, I cannot"}));
        let s = score("{type: contains, value: sorry, negate: true}", &r).unwrap();
        assert_eq!((s.score, s.pass), (0.0, false));
        assert_eq!(metric("{type: contains, value: sorry, negate: true}").name, "not_contains");
        let s = score("{type: similarity, expected: 'I am sorry, I can', negate: true}", &r).unwrap();
        let sim = strsim::normalized_levenshtein("I am sorry, I cannot", "I am sorry, I can");
        assert!((s.score - (1.0 - sim)).abs() < 1e-12 && !s.pass, "{s:?}");
    }
}
