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
    Arity, Artifact, BuildCx, CheckCx, MapStage, Node, NodeError, PortType, Record, Shape, Stage, Template, SUMMARY_MD,
};

pub struct Evaluate;

fn default_field() -> String {
    "output".into()
}
fn yes() -> bool {
    true
}
fn default_threshold() -> f64 {
    0.8
}

/// One metric, as written under `metrics:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum MetricConfig {
    /// The field equals `expected`.
    ExactMatch {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default = "default_field")]
        field: String,
        expected: String,
        #[serde(default = "yes")]
        case_sensitive: bool,
        /// Ignore leading and trailing whitespace.
        #[serde(default = "yes")]
        trim: bool,
    },
    /// The field contains `value`.
    Contains {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default = "default_field")]
        field: String,
        value: String,
        #[serde(default = "yes")]
        case_sensitive: bool,
    },
    /// The field matches `pattern` (Rust regex syntax; `{{field}}` values are
    /// inserted escaped).
    Regex {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default = "default_field")]
        field: String,
        pattern: String,
    },
    /// The field parses as JSON.
    JsonValid {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default = "default_field")]
        field: String,
    },
    /// Normalized Levenshtein similarity to `expected`; passes at `threshold`.
    Similarity {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default = "default_field")]
        field: String,
        expected: String,
        #[serde(default = "default_threshold")]
        threshold: f64,
    },
}

impl MetricConfig {
    fn type_name(&self) -> &'static str {
        match self {
            MetricConfig::ExactMatch { .. } => "exact_match",
            MetricConfig::Contains { .. } => "contains",
            MetricConfig::Regex { .. } => "regex",
            MetricConfig::JsonValid { .. } => "json_valid",
            MetricConfig::Similarity { .. } => "similarity",
        }
    }

    fn name(&self) -> String {
        match self {
            MetricConfig::ExactMatch { name, .. }
            | MetricConfig::Contains { name, .. }
            | MetricConfig::Regex { name, .. }
            | MetricConfig::JsonValid { name, .. }
            | MetricConfig::Similarity { name, .. } => name.clone().unwrap_or_else(|| self.type_name().to_string()),
        }
    }

    fn field(&self) -> &str {
        match self {
            MetricConfig::ExactMatch { field, .. }
            | MetricConfig::Contains { field, .. }
            | MetricConfig::Regex { field, .. }
            | MetricConfig::JsonValid { field, .. }
            | MetricConfig::Similarity { field, .. } => field,
        }
    }

    /// The templated argument and its config field name.
    fn argument(&self) -> Option<(&'static str, &str)> {
        match self {
            MetricConfig::ExactMatch { expected, .. } | MetricConfig::Similarity { expected, .. } => {
                Some(("expected", expected))
            }
            MetricConfig::Contains { value, .. } => Some(("value", value)),
            MetricConfig::Regex { pattern, .. } => Some(("pattern", pattern)),
            MetricConfig::JsonValid { .. } => None,
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
            cx.error(
                &at,
                "`metrics` is empty",
                Some("add a metric, e.g. `- {type: exact_match, expected: \"{{expected}}\"}`".into()),
            );
        }
        let mut seen = BTreeMap::new();
        let mut needs = Vec::new();
        for (i, m) in config.metrics.iter().enumerate() {
            let mp = at.index(i);
            let name = m.name();
            if let Some(prev) = seen.insert(name.clone(), i) {
                cx.error(
                    &mp,
                    format!("metric name `{name}` is used twice (metrics[{prev}] and metrics[{i}])"),
                    Some("give one of them `name: <unique name>`".into()),
                );
            }
            needs.push((m.field().to_string(), mp.key("field")));
            if let Some((arg, text)) = m.argument() {
                match Template::parse(text) {
                    Ok(t) => needs.extend(t.fields().map(|f| (f.to_string(), mp.key(arg)))),
                    Err(e) => cx.error(&mp.key(arg), e, Some("field references look like `{{expected}}`".into())),
                }
            }
            match m {
                MetricConfig::Regex { pattern, .. } if !pattern.contains("{{") => {
                    if let Err(e) = regex::Regex::new(pattern) {
                        cx.error(&mp.key("pattern"), format!("invalid regex: {e}"), None);
                    }
                }
                MetricConfig::Similarity { threshold, .. } if !(0.0..=1.0).contains(threshold) => {
                    cx.error(&mp.key("threshold"), format!("threshold {threshold} is outside 0..=1"), None);
                }
                _ => {}
            }
        }
        cx.require_fields(&needs);
        let input =
            cx.inputs().first().map(|i| i.ty.clone()).unwrap_or_else(|| PortType::records(flow_engine::FieldSet::Open));
        input.extend("Scored", &["scores", "pass"])
    }

    fn build(config: &EvaluateConfig, _cx: &BuildCx) -> Result<Stage, NodeError> {
        let metrics = config.metrics.iter().map(Metric::new).collect::<Result<Vec<_>, _>>()?;
        let stats = Mutex::new(vec![Stats::default(); metrics.len()]);
        Ok(Stage::Map(Box::new(Scorer { metrics, stats, passed: Mutex::new((0, 0)) })))
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
        let check = match m {
            MetricConfig::ExactMatch { expected, case_sensitive, trim, .. } => {
                Check::Exact { expected: template(expected)?, case_sensitive: *case_sensitive, trim: *trim }
            }
            MetricConfig::Contains { value, case_sensitive, .. } => {
                Check::Contains { value: template(value)?, case_sensitive: *case_sensitive }
            }
            MetricConfig::Regex { pattern, .. } if pattern.contains("{{") => {
                Check::Regex(Pattern::Templated(template(pattern)?))
            }
            MetricConfig::Regex { pattern, .. } => {
                Check::Regex(Pattern::Fixed(regex::Regex::new(pattern).map_err(|e| NodeError::new(e.to_string()))?))
            }
            MetricConfig::JsonValid { .. } => Check::JsonValid,
            MetricConfig::Similarity { expected, threshold, .. } => {
                Check::Similarity { expected: template(expected)?, threshold: *threshold }
            }
        };
        Ok(Self { name: m.name(), field: m.field().to_string(), check })
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
                let escaped: flow_engine::Fields = record.iter().map(|(k, v)| (k.clone(), escape_value(v))).collect();
                let re = regex::Regex::new(&t.render(&escaped)?).map_err(|e| format!("invalid regex: {e}"))?;
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

fn escape_value(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(regex::escape(s)),
        other => Value::String(regex::escape(&other.to_string())),
    }
}

#[derive(Debug, Clone, Default)]
struct Stats {
    count: u64,
    sum: f64,
    passed: u64,
    errors: u64,
}

struct Scorer {
    metrics: Vec<Metric>,
    stats: Mutex<Vec<Stats>>,
    /// (records, records that passed every metric)
    passed: Mutex<(u64, u64)>,
}

impl MapStage for Scorer {
    fn map(&self, record: &Record, out: &mut Vec<Record>) -> Result<(), NodeError> {
        let mut scores = serde_json::Map::new();
        let mut all = true;
        let mut stats = self.stats.lock().expect("stats lock");
        for (m, st) in self.metrics.iter().zip(stats.iter_mut()) {
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
        drop(stats);
        let mut p = self.passed.lock().expect("pass lock");
        p.0 += 1;
        p.1 += all as u64;
        drop(p);
        let mut fields = (**record).clone();
        fields.insert("scores".into(), Value::Object(scores));
        fields.insert("pass".into(), Value::Bool(all));
        out.push(Arc::new(fields));
        Ok(())
    }

    fn finish(&self) -> Result<Vec<Artifact>, NodeError> {
        let stats = self.stats.lock().expect("stats lock");
        let (records, passed) = *self.passed.lock().expect("pass lock");
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
