//! How `evaluate` is written in a spec: each metric under `metrics:` (its
//! type, its arguments, and which arguments apply to which type), the
//! `fail_if` gates and `max_errors`. Checking the combinations is the
//! node's `check`; computing them is [`super::metric`].

use serde::{Deserialize, Serialize};

use crate::run::MaxErrors;

/// `kind: evaluate`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateConfig {
    /// What to score, each a metric (see docs/metrics.md).
    pub metrics: Vec<MetricConfig>,
    /// Absolute gates: the run fails (exit 1) when one trips; the scores
    /// stay cached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fail_if: Vec<GateConfig>,
    /// Records a metric may error on (a judge call that failed, a record
    /// whose own call failed) before the node fails: a count or a
    /// percentage of the records, for each metric; default `50%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_errors: Option<MaxErrors>,
}

/// The metric types `evaluate` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricType {
    /// The field equals `expected`.
    ExactMatch,
    /// The field contains `value`.
    Contains,
    /// The field contains `value`, ignoring case.
    Icontains,
    /// The field contains at least one of `values`.
    ContainsAny,
    /// The field contains every one of `values`.
    ContainsAll,
    /// The field starts with `value`.
    StartsWith,
    /// The field ends with `value`.
    EndsWith,
    /// The field matches `pattern`.
    Regex,
    /// The field, trimmed, is one of `labels`.
    LabelIn,
    /// The field's word count is within `min`..=`max`.
    WordCount,
    /// The field's length in characters is within `min`..=`max`.
    Length,
    /// The field parses as JSON.
    JsonValid,
    /// The field is the same JSON as `expected` (key order and number
    /// formatting aside).
    EqualsJson,
    /// The field is JSON valid against `schema` or `schema_file`.
    JsonSchema,
    /// The field's text holds a JSON object or array (in prose, in a code
    /// fence), valid against `schema` or `schema_file` when given.
    ContainsJson,
    /// Normalized Levenshtein similarity to `expected`, passing at `threshold`.
    Similarity,
    /// Levenshtein edit distance to `expected`, passing at `max_distance`.
    Levenshtein,
    /// ROUGE-L F-measure against `expected`, passing at `threshold`.
    RougeL,
    /// Sentence BLEU (sacreBLEU's defaults) against `expected`, over 100,
    /// passing at `threshold`.
    Bleu,
    /// Cosine of the embeddings of the field and `expected` through
    /// `backend`, passing at `threshold`.
    EmbeddingSimilarity,
    /// An LLM grades the field against a `rubric` through `backend`.
    Judge,
    /// `latency_ms` (from `run`) at most `max_ms`.
    Latency,
    /// `cost_usd` (from `run`) at most `max_usd`.
    Cost,
    /// A command reads records as JSONL on stdin and prints one score per line.
    Exec,
    /// The answer called `tool` (from `run`'s `tool_calls`), with
    /// `arguments` (`match: exact` or `subset`) and/or valid against `schema`.
    ToolCall,
    /// The answer's mean token log probability (from `run`'s `logprobs`,
    /// with `params: {logprobs: true}` on its backend) at least `min_logprob`.
    Logprob,
    /// The answer's perplexity, exp(−mean token log probability), at most
    /// `max_perplexity`.
    Perplexity,
}

/// Every type, in the order the docs list them.
pub const METRIC_TYPES: &[MetricType] = &[
    MetricType::ExactMatch,
    MetricType::Contains,
    MetricType::Icontains,
    MetricType::ContainsAny,
    MetricType::ContainsAll,
    MetricType::StartsWith,
    MetricType::EndsWith,
    MetricType::Regex,
    MetricType::LabelIn,
    MetricType::WordCount,
    MetricType::Length,
    MetricType::JsonValid,
    MetricType::EqualsJson,
    MetricType::JsonSchema,
    MetricType::ContainsJson,
    MetricType::Similarity,
    MetricType::Levenshtein,
    MetricType::RougeL,
    MetricType::Bleu,
    MetricType::EmbeddingSimilarity,
    MetricType::Judge,
    MetricType::Latency,
    MetricType::Cost,
    MetricType::Exec,
    MetricType::ToolCall,
    MetricType::Logprob,
    MetricType::Perplexity,
];

impl MetricType {
    pub fn name(self) -> &'static str {
        match self {
            MetricType::ExactMatch => "exact_match",
            MetricType::Contains => "contains",
            MetricType::Icontains => "icontains",
            MetricType::ContainsAny => "contains_any",
            MetricType::ContainsAll => "contains_all",
            MetricType::StartsWith => "starts_with",
            MetricType::EndsWith => "ends_with",
            MetricType::Regex => "regex",
            MetricType::LabelIn => "label_in",
            MetricType::WordCount => "word_count",
            MetricType::Length => "length",
            MetricType::JsonValid => "json_valid",
            MetricType::EqualsJson => "equals_json",
            MetricType::JsonSchema => "json_schema",
            MetricType::ContainsJson => "contains_json",
            MetricType::Similarity => "similarity",
            MetricType::Levenshtein => "levenshtein",
            MetricType::RougeL => "rouge_l",
            MetricType::Bleu => "bleu",
            MetricType::EmbeddingSimilarity => "embedding_similarity",
            MetricType::Judge => "judge",
            MetricType::Latency => "latency",
            MetricType::Cost => "cost",
            MetricType::Exec => "exec",
            MetricType::ToolCall => "tool_call",
            MetricType::Logprob => "logprob",
            MetricType::Perplexity => "perplexity",
        }
    }

    /// The field a metric of this type reads unless `field:` says otherwise.
    pub(super) fn default_field(self) -> &'static str {
        match self {
            MetricType::Latency => "latency_ms",
            MetricType::Cost => "cost_usd",
            MetricType::ToolCall => "tool_calls",
            MetricType::Logprob | MetricType::Perplexity => "logprobs",
            _ => "output",
        }
    }

    /// (required arguments, optional arguments). `name`, `field`, `weight`
    /// and `negate` apply to every type. `json_schema` needs one of its
    /// optional two, `word_count` and `length` at least one of theirs: the
    /// node's `check` says so.
    pub(super) fn arguments(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            MetricType::ExactMatch => (&["expected"], &["case_sensitive", "trim"]),
            MetricType::Contains => (&["value"], &["case_sensitive"]),
            MetricType::Icontains => (&["value"], &[]),
            MetricType::ContainsAny | MetricType::ContainsAll => (&["values"], &["case_sensitive"]),
            MetricType::StartsWith | MetricType::EndsWith => (&["value"], &["case_sensitive", "trim"]),
            MetricType::Regex => (&["pattern"], &[]),
            MetricType::LabelIn => (&["labels"], &["case_sensitive"]),
            MetricType::WordCount | MetricType::Length => (&[], &["min", "max"]),
            MetricType::JsonValid => (&[], &[]),
            MetricType::EqualsJson => (&["expected"], &[]),
            MetricType::JsonSchema | MetricType::ContainsJson => (&[], &["schema", "schema_file"]),
            MetricType::Similarity | MetricType::RougeL | MetricType::Bleu => (&["expected"], &["threshold"]),
            MetricType::Levenshtein => (&["expected", "max_distance"], &["case_sensitive"]),
            MetricType::EmbeddingSimilarity => (&["backend", "expected"], &["threshold"]),
            MetricType::Judge => (&["backend", "rubric"], &["threshold"]),
            MetricType::Latency => (&["max_ms"], &[]),
            MetricType::Cost => (&["max_usd"], &[]),
            MetricType::Exec => (&["command"], &["threshold"]),
            MetricType::ToolCall => (&["tool"], &["arguments", "match", "schema"]),
            MetricType::Logprob => (&["min_logprob"], &[]),
            MetricType::Perplexity => (&["max_perplexity"], &[]),
        }
    }

    /// The pass mark when `threshold` is not given, for the types that
    /// take one.
    pub(super) fn default_threshold(self) -> f64 {
        match self {
            MetricType::Similarity | MetricType::EmbeddingSimilarity => 0.8,
            // sacreBLEU 30: the usual line for an understandable translation.
            MetricType::Bleu => 0.3,
            _ => 0.5,
        }
    }

    /// Whether the type calls a backend (its verdicts come a chunk at a time).
    pub(super) fn calls_backend(self) -> bool {
        matches!(self, MetricType::Judge | MetricType::EmbeddingSimilarity)
    }
}

/// One metric, as written under `metrics:`. A flat struct rather than a
/// tagged enum, so a bad value is reported at its own line and column; which
/// arguments apply to which `type` is checked at compile time.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    #[serde(rename = "type")]
    pub kind: MetricType,
    /// Name in scores and summaries; defaults to the type (`not_<type>`
    /// with `negate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The record field under test; default `output` (`latency_ms` for
    /// `latency`, `cost_usd` for `cost`). A path reads into JSON, also into
    /// a string that holds JSON: `output.answer`, `output.items[0].name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Share of the record's weighted `score`; default 1 (0: reported, not
    /// counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Passes when the metric would fail (the score becomes 1 − score):
    /// `{type: contains, value: sorry, negate: true}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negate: Option<bool>,
    /// `exact_match`, `equals_json`, `similarity`, `levenshtein`, `rouge_l`,
    /// `bleu`, `embedding_similarity`: the expected text (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// `contains`, `icontains`, `starts_with`, `ends_with`: the text to find
    /// (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `contains_any`, `contains_all`: the texts to find (templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    /// `label_in`: the allowed labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// `regex`: Rust regex syntax; `{{field}}` values are inserted escaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// `exact_match`, `contains`, `contains_any`, `contains_all`,
    /// `starts_with`, `ends_with`, `label_in`, `levenshtein`: default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_sensitive: Option<bool>,
    /// `exact_match`, `starts_with`, `ends_with`: ignore surrounding
    /// whitespace; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trim: Option<bool>,
    /// `json_schema`: the JSON Schema, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// `json_schema`: a JSON file holding the JSON Schema, relative to the
    /// spec; part of the node's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_file: Option<String>,
    /// `word_count`, `length`: the fewest that pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    /// `word_count`, `length`: the most that pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    /// `levenshtein`: the most edits that pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_distance: Option<u64>,
    /// Pass mark in 0..=1: `similarity`, `embedding_similarity` (default
    /// 0.8), `rouge_l`, `judge`, `exec` (default 0.5), `bleu` (default 0.3,
    /// i.e. BLEU 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// `judge`, `embedding_similarity`: a name under the spec's `backends:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// `judge`: what a good answer is (a template: `The answer is {{expected}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rubric: Option<String>,
    /// `latency`: the most milliseconds that pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<f64>,
    /// `cost`: the most USD per record that pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_usd: Option<f64>,
    /// `logprob`: the lowest mean token log probability that passes (≤ 0,
    /// e.g. `-0.5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_logprob: Option<f64>,
    /// `perplexity`: the highest perplexity that passes (≥ 1, e.g. `3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_perplexity: Option<f64>,
    /// `exec`: the program and its arguments, run in the spec's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// `tool_call`: the tool's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// `tool_call`: the arguments expected (JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<serde_json::Value>,
    /// `tool_call`: how `arguments` are compared: `exact` (the default) or
    /// `subset` (the call may pass more).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub arguments_match: Option<ArgumentsMatch>,
}

/// How `tool_call` compares a call's arguments with `arguments`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArgumentsMatch {
    /// The same JSON.
    Exact,
    /// Every key and list item expected is there; more may be.
    Subset,
}

impl MetricConfig {
    pub(super) fn name(&self) -> String {
        match (&self.name, self.negated()) {
            (Some(n), _) => n.clone(),
            (None, true) => format!("not_{}", self.kind.name()),
            (None, false) => self.kind.name().to_string(),
        }
    }

    pub(super) fn field(&self) -> &str {
        self.field.as_deref().unwrap_or(self.kind.default_field())
    }

    pub(super) fn negated(&self) -> bool {
        self.negate.unwrap_or(false)
    }

    pub(super) fn weight(&self) -> f64 {
        self.weight.unwrap_or(1.0)
    }

    pub(super) fn threshold(&self) -> f64 {
        self.threshold.unwrap_or(self.kind.default_threshold())
    }

    /// The arguments that are set, by name.
    pub(super) fn set_arguments(&self) -> Vec<&'static str> {
        let set = [
            ("expected", self.expected.is_some()),
            ("value", self.value.is_some()),
            ("values", self.values.is_some()),
            ("labels", self.labels.is_some()),
            ("pattern", self.pattern.is_some()),
            ("case_sensitive", self.case_sensitive.is_some()),
            ("trim", self.trim.is_some()),
            ("schema", self.schema.is_some()),
            ("schema_file", self.schema_file.is_some()),
            ("min", self.min.is_some()),
            ("max", self.max.is_some()),
            ("max_distance", self.max_distance.is_some()),
            ("threshold", self.threshold.is_some()),
            ("backend", self.backend.is_some()),
            ("rubric", self.rubric.is_some()),
            ("max_ms", self.max_ms.is_some()),
            ("max_usd", self.max_usd.is_some()),
            ("min_logprob", self.min_logprob.is_some()),
            ("max_perplexity", self.max_perplexity.is_some()),
            ("command", self.command.is_some()),
            ("tool", self.tool.is_some()),
            ("arguments", self.arguments.is_some()),
            ("match", self.arguments_match.is_some()),
        ];
        set.into_iter().filter(|(_, s)| *s).map(|(n, _)| n).collect()
    }

    /// The templated arguments of the type: (argument, index in a list,
    /// text).
    pub(super) fn templates(&self) -> Vec<(&'static str, Option<usize>, &str)> {
        fn one<'a>(arg: &'static str, v: &'a Option<String>) -> Vec<(&'static str, Option<usize>, &'a str)> {
            v.as_deref().map(|t| (arg, None, t)).into_iter().collect()
        }
        match self.kind {
            MetricType::ExactMatch
            | MetricType::EqualsJson
            | MetricType::Similarity
            | MetricType::Levenshtein
            | MetricType::RougeL
            | MetricType::Bleu
            | MetricType::EmbeddingSimilarity => one("expected", &self.expected),
            MetricType::Contains | MetricType::Icontains | MetricType::StartsWith | MetricType::EndsWith => {
                one("value", &self.value)
            }
            MetricType::ContainsAny | MetricType::ContainsAll => {
                self.values.iter().flatten().enumerate().map(|(i, t)| ("values", Some(i), t.as_str())).collect()
            }
            MetricType::Regex => one("pattern", &self.pattern),
            MetricType::Judge => one("rubric", &self.rubric),
            MetricType::LabelIn
            | MetricType::WordCount
            | MetricType::Length
            | MetricType::JsonValid
            | MetricType::JsonSchema
            | MetricType::ContainsJson
            | MetricType::Latency
            | MetricType::Cost
            | MetricType::Exec
            | MetricType::ToolCall
            | MetricType::Logprob
            | MetricType::Perplexity => Vec::new(),
        }
    }
}

/// One `fail_if` rule, on one metric (`metric:`) or on every metric (none
/// named), with exactly one of `pass_rate_below`, `mean_below`,
/// `errors_above` and `score_below`. Rates and means count the records
/// scored without error.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// A metric of this node, by name; without it the rule checks each one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Trips when the metric's pass rate is below this (0..=1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_rate_below: Option<f64>,
    /// Trips when the metric's mean score is below this (0..=1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_below: Option<f64>,
    /// Trips when more of the metric's verdicts than this errored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors_above: Option<u64>,
    /// Trips when the mean weighted `score` of the records is below this
    /// (0..=1); takes no `metric`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_below: Option<f64>,
}

/// What a gate compares, and with what.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GateTest {
    PassRateBelow(f64),
    MeanBelow(f64),
    ErrorsAbove(u64),
    ScoreBelow(f64),
}

impl GateConfig {
    /// The tests set, with their field names.
    pub(super) fn tests(&self) -> Vec<(&'static str, GateTest)> {
        let mut v = Vec::new();
        if let Some(x) = self.pass_rate_below {
            v.push(("pass_rate_below", GateTest::PassRateBelow(x)));
        }
        if let Some(x) = self.mean_below {
            v.push(("mean_below", GateTest::MeanBelow(x)));
        }
        if let Some(x) = self.errors_above {
            v.push(("errors_above", GateTest::ErrorsAbove(x)));
        }
        if let Some(x) = self.score_below {
            v.push(("score_below", GateTest::ScoreBelow(x)));
        }
        v
    }
}
