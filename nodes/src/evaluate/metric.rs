//! How a metric is written under `metrics:`: its type, arguments, and which
//! arguments apply to which type.

use serde::{Deserialize, Serialize};

/// The metric types `evaluate` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricType {
    /// The field equals `expected`.
    ExactMatch,
    /// The field contains `value`.
    Contains,
    /// The field matches `pattern`.
    Regex,
    /// The field parses as JSON.
    JsonValid,
    /// Normalized Levenshtein similarity to `expected`, passing at `threshold`.
    Similarity,
    /// An LLM grades the field against a `rubric` through `backend`.
    Judge,
    /// `latency_ms` (from `run`) at most `max_ms`.
    Latency,
    /// `cost_usd` (from `run`) at most `max_usd`.
    Cost,
    /// A command reads records as JSONL on stdin and prints one score per line.
    Exec,
}

impl MetricType {
    pub(super) fn name(self) -> &'static str {
        match self {
            MetricType::ExactMatch => "exact_match",
            MetricType::Contains => "contains",
            MetricType::Regex => "regex",
            MetricType::JsonValid => "json_valid",
            MetricType::Similarity => "similarity",
            MetricType::Judge => "judge",
            MetricType::Latency => "latency",
            MetricType::Cost => "cost",
            MetricType::Exec => "exec",
        }
    }

    /// The field a metric of this type reads unless `field:` says otherwise.
    pub(super) fn default_field(self) -> &'static str {
        match self {
            MetricType::Latency => "latency_ms",
            MetricType::Cost => "cost_usd",
            _ => "output",
        }
    }

    /// (required arguments, optional arguments)
    pub(super) fn arguments(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            MetricType::ExactMatch => (&["expected"], &["case_sensitive", "trim"]),
            MetricType::Contains => (&["value"], &["case_sensitive"]),
            MetricType::Regex => (&["pattern"], &[]),
            MetricType::JsonValid => (&[], &[]),
            MetricType::Similarity => (&["expected"], &["threshold"]),
            MetricType::Judge => (&["backend", "rubric"], &["threshold"]),
            MetricType::Latency => (&["max_ms"], &[]),
            MetricType::Cost => (&["max_usd"], &[]),
            MetricType::Exec => (&["command"], &["threshold"]),
        }
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
    /// Name in scores and summaries; defaults to the type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The record field under test; default `output` (`latency_ms` for
    /// `latency`, `cost_usd` for `cost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `exact_match`, `similarity`: the expected text (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// `contains`: the text to find (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `regex`: Rust regex syntax; `{{field}}` values are inserted escaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// `exact_match`, `contains`: default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_sensitive: Option<bool>,
    /// `exact_match`: ignore surrounding whitespace; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trim: Option<bool>,
    /// `similarity` (default 0.8), `judge`, `exec` (default 0.5): pass mark
    /// in 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// `judge`: a name under the spec's `backends:`.
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
    /// `exec`: the program and its arguments, run in the spec's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

impl MetricConfig {
    pub(super) fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.kind.name().to_string())
    }

    pub(super) fn field(&self) -> &str {
        self.field.as_deref().unwrap_or(self.kind.default_field())
    }

    /// The arguments that are set, by name.
    pub(super) fn set_arguments(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut add = |name, set: bool| {
            if set {
                v.push(name)
            }
        };
        add("expected", self.expected.is_some());
        add("value", self.value.is_some());
        add("pattern", self.pattern.is_some());
        add("case_sensitive", self.case_sensitive.is_some());
        add("trim", self.trim.is_some());
        add("threshold", self.threshold.is_some());
        add("backend", self.backend.is_some());
        add("rubric", self.rubric.is_some());
        add("max_ms", self.max_ms.is_some());
        add("max_usd", self.max_usd.is_some());
        add("command", self.command.is_some());
        v
    }

    /// The templated argument, if the type has one.
    pub(super) fn argument(&self) -> Option<(&'static str, &str)> {
        match self.kind {
            MetricType::ExactMatch | MetricType::Similarity => self.expected.as_deref().map(|t| ("expected", t)),
            MetricType::Contains => self.value.as_deref().map(|t| ("value", t)),
            MetricType::Regex => self.pattern.as_deref().map(|t| ("pattern", t)),
            MetricType::Judge => self.rubric.as_deref().map(|t| ("rubric", t)),
            MetricType::JsonValid | MetricType::Latency | MetricType::Cost | MetricType::Exec => None,
        }
    }
}
