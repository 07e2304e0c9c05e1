//! `evaluate`: scores each record with deterministic metrics.
//!
//! Metric arguments are `{{field}}` templates filled per record. Each record
//! comes out with `scores` (per metric: `score`, `pass`, and `error` when the
//! metric could not be computed) and an overall `pass`. The node writes a
//! summary (per metric: mean, pass rate, count) as JSON and Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use flow_engine::{
    Arity, Artifact, BuildCx, CheckCx, FieldSet, MapStage, Node, NodeError, PortType, Record, Shape, Stage, Template,
    SUMMARY_MD,
};

pub struct Evaluate;

fn default_field() -> String {
    "output".into()
}

/// The metric types `evaluate` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl MetricType {
    fn name(self) -> &'static str {
        match self {
            MetricType::ExactMatch => "exact_match",
            MetricType::Contains => "contains",
            MetricType::Regex => "regex",
            MetricType::JsonValid => "json_valid",
            MetricType::Similarity => "similarity",
        }
    }

    /// (required arguments, optional arguments)
    fn arguments(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            MetricType::ExactMatch => (&["expected"], &["case_sensitive", "trim"]),
            MetricType::Contains => (&["value"], &["case_sensitive"]),
            MetricType::Regex => (&["pattern"], &[]),
            MetricType::JsonValid => (&[], &[]),
            MetricType::Similarity => (&["expected"], &["threshold"]),
        }
    }
}

/// One metric, as written under `metrics:`. A flat struct rather than a
/// tagged enum, so a bad value is reported at its own line and column; which
/// arguments apply to which `type` is checked at compile time.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    #[serde(rename = "type")]
    pub kind: MetricType,
    /// Name in scores and summaries; defaults to the type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The record field under test.
    #[serde(default = "default_field")]
    pub field: String,
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
    /// `similarity`: pass mark in 0..=1; default 0.8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

impl MetricConfig {
    fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.kind.name().to_string())
    }

    /// The arguments that are set, by name.
    fn set_arguments(&self) -> Vec<&'static str> {
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
        v
    }

    /// The templated argument, if the type has one.
    fn argument(&self) -> Option<(&'static str, &str)> {
        match self.kind {
            MetricType::ExactMatch | MetricType::Similarity => self.expected.as_deref().map(|t| ("expected", t)),
            MetricType::Contains => self.value.as_deref().map(|t| ("value", t)),
            MetricType::Regex => self.pattern.as_deref().map(|t| ("pattern", t)),
            MetricType::JsonValid => None,
        }
    }
}

/// `kind: evaluate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateConfig {
    pub metrics: Vec<MetricConfig>,
}

impl Node for Evaluate {
    type Config = EvaluateConfig;
    const KIND: &'static str = "evaluate";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "scores records with exact_match, contains, regex, json_valid and similarity";
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
            needs.push((m.field.clone(), mp.key("field")));
            if let Some((arg, text)) = m.argument() {
                match Template::parse(text) {
                    Ok(t) => needs.extend(t.fields().map(|f| (f.to_string(), mp.key(arg)))),
                    Err(e) => cx.error(&mp.key(arg), e, Some("field references look like `{{expected}}`".into())),
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
        }
        cx.require_fields(&needs);
        let input = cx.inputs().first().map(|i| i.ty.clone()).unwrap_or_else(|| PortType::records(FieldSet::Open));
        input.extend("Scored", &["scores", "pass"])
    }

    fn build(config: &EvaluateConfig, _cx: &BuildCx) -> Result<Stage, NodeError> {
        let metrics = config.metrics.iter().map(Metric::new).collect::<Result<Vec<_>, _>>()?;
        let totals = Totals { metrics: vec![Stats::default(); metrics.len()], ..Totals::default() };
        Ok(Stage::Map(Box::new(Scorer { metrics, totals: Mutex::new(totals) })))
    }
}

enum Check {
    Exact { expected: Template, case_sensitive: bool, trim: bool },
    Contains { value: Template, case_sensitive: bool },
    Regex(Pattern),
    JsonValid,
    Similarity { expected: Template, threshold: f64 },
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

fn template(s: &str) -> Result<Template, NodeError> {
    Template::parse(s).map_err(NodeError::new)
}

impl Metric {
    fn new(m: &MetricConfig) -> Result<Self, NodeError> {
        fn arg<'a>(m: &MetricConfig, v: &'a Option<String>, name: &str) -> Result<&'a str, NodeError> {
            v.as_deref().ok_or_else(|| NodeError::new(format!("`{}` needs `{name}`", m.kind.name())))
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
        };
        Ok(Self { name: m.name(), field: m.field.clone(), check })
    }

    /// `(score, pass)`, or why the metric could not be computed.
    fn score(&self, record: &Record) -> Result<(f64, bool), String> {
        let value = match record.get(&self.field) {
            Some(Value::String(s)) => std::borrow::Cow::Borrowed(s.as_str()),
            Some(Value::Null) | None => return Err(format!("record has no field `{}`", self.field)),
            Some(other) => std::borrow::Cow::Owned(other.to_string()),
        };
        let flag = |b: bool| (if b { 1.0 } else { 0.0 }, b);
        Ok(match &self.check {
            Check::Exact { expected, case_sensitive, trim } => {
                let want = expected.render(record)?;
                let (a, b) = if *trim { (value.trim(), want.trim()) } else { (&*value, &*want) };
                flag(if *case_sensitive { a == b } else { a.to_lowercase() == b.to_lowercase() })
            }
            Check::Contains { value: needle, case_sensitive } => {
                let n = needle.render(record)?;
                flag(if *case_sensitive {
                    value.contains(&*n)
                } else {
                    value.to_lowercase().contains(&n.to_lowercase())
                })
            }
            Check::Regex(Pattern::Fixed(re)) => flag(re.is_match(&value)),
            Check::Regex(Pattern::Templated(t)) => {
                let re = regex::Regex::new(&t.render_with(record, regex::escape)?)
                    .map_err(|e| format!("invalid regex: {}", regex_error(&e)))?;
                flag(re.is_match(&value))
            }
            Check::JsonValid => flag(serde_json::from_str::<Value>(&value).is_ok()),
            Check::Similarity { expected, threshold } => {
                let s = strsim::normalized_levenshtein(&value, &expected.render(record)?);
                (s, s >= *threshold)
            }
        })
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
}

impl MapStage for Scorer {
    fn map(&self, record: &Record, out: &mut Vec<Record>) -> Result<(), NodeError> {
        let mut scores = serde_json::Map::new();
        let mut all = true;
        let mut totals = self.totals.lock().expect("totals lock");
        for (m, st) in self.metrics.iter().zip(totals.metrics.iter_mut()) {
            st.count += 1;
            let entry = match m.score(record) {
                Ok((score, pass)) => {
                    st.sum += score;
                    st.passed += pass as u64;
                    all &= pass;
                    json!({"score": score, "pass": pass})
                }
                Err(e) => {
                    st.errors += 1;
                    all = false;
                    json!({"score": null, "pass": false, "error": e})
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
        out.push(Arc::new(fields));
        Ok(())
    }

    fn finish(&self) -> Result<Vec<Artifact>, NodeError> {
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
            Artifact { name: "summary.json".into(), bytes: json_bytes },
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
        Metric::new(&serde_yaml::from_str::<MetricConfig>(yaml).unwrap()).unwrap()
    }

    #[test]
    fn metrics_score_records() {
        let r = rec(json!({"output": " Paris ", "expected": "paris", "json": "{\"a\": 1}", "city": "Par.s"}));
        assert_eq!(metric("{type: exact_match, expected: '{{expected}}'}").score(&r), Ok((0.0, false)));
        assert_eq!(
            metric("{type: exact_match, expected: '{{expected}}', case_sensitive: false}").score(&r),
            Ok((1.0, true))
        );
        assert_eq!(metric("{type: contains, value: ari}").score(&r), Ok((1.0, true)));
        assert_eq!(metric("{type: regex, pattern: '^\\s*P\\w+'}").score(&r), Ok((1.0, true)));
        // Inserted values are escaped: `Par.s` must match literally.
        assert_eq!(metric("{type: regex, pattern: '{{city}}'}").score(&r), Ok((0.0, false)));
        assert_eq!(metric("{type: json_valid, field: json}").score(&r), Ok((1.0, true)));
        assert_eq!(metric("{type: json_valid}").score(&r), Ok((0.0, false)));
        let (s, pass) = metric("{type: similarity, expected: 'Pariss', threshold: 0.5}").score(&r).unwrap();
        assert!((s - strsim::normalized_levenshtein(" Paris ", "Pariss")).abs() < 1e-12 && pass);
        assert_eq!(
            metric("{type: exact_match, expected: '{{nope}}'}").score(&r),
            Err("record has no field `nope`".into())
        );
    }
}
