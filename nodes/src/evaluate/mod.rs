//! `evaluate`: scores each record.
//!
//! Metrics (docs/metrics.md has each with an example): text checks
//! (`exact_match`, `contains`, `icontains`, `contains_any`, `contains_all`,
//! `starts_with`, `ends_with`, `regex`, `label_in`, `word_count`, `length`),
//! JSON checks (`json_valid`, `equals_json`, `json_schema`,
//! `contains_json`), overlap with a
//! reference (`similarity`, `levenshtein`, `rouge_l`, `bleu`), thresholds on
//! what `run` measured (`latency`, `cost`), calls to a backend (`judge`, in
//! [`judge`]; `embedding_similarity`, in [`embedding`]) and custom metrics
//! as a command (`exec`, in [`exec`]). Any metric reads a `field:` path
//! ([`field`]), may be negated, and weighs into the record's `score`.
//! Metric arguments are `{{field}}` templates filled per record.
//!
//! Each record comes out with `scores` (per metric: `score`, `pass`, a
//! `reason` or `value` where the metric gives one, and `error` when it
//! could not be computed), an overall `pass` and the weighted `score`. The
//! node writes a summary ([`summary`]), fails past `max_errors` errored
//! verdicts, and trips its `fail_if` gates ([`gate`]) as `compare` does.
//! The config is in [`config`], the metrics in [`metric`], the stage in
//! [`scorer`].

pub mod config;
mod embedding;
mod exec;
pub mod field;
pub mod gate;
mod judge;
pub mod metric;
mod scorer;
pub mod summary;
pub mod view;

pub use config::{EvaluateConfig, GateConfig, MetricConfig, MetricType};
pub use embedding::cosine as embedding_cosine;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use flow_engine::diag::did_you_mean;
use flow_engine::spec::YamlPath;
use flow_engine::{
    Arity, BackendSpec, BuildCx, CheckCx, FieldSet, Node, NodeError, PlannedCall, PortType, Record, Shape, Stage,
    Template,
};

use crate::backend::{self, Endpoint};
use crate::run::ErrorLimit;
use field::FieldPath;
use metric::Metric;
use scorer::Scorer;

pub struct Evaluate;

/// By default a node fails when a metric errored on more than half of the
/// records. Lower than that, and a run whose own `max_errors` (10%) let
/// some calls fail would fail again here for the same records; higher, and
/// a judge that answers one call in three would still pass for an
/// evaluation. Past half, a metric's figures describe its errors, not the
/// answers. Per metric, so a judge that is down fails the node whatever
/// other metrics score beside it.
pub const DEFAULT_MAX_ERRORS: ErrorLimit = ErrorLimit::Share(0.5);

/// The shape of a `fail_if` rule, for hints.
const GATE_SHAPE: &str = "a rule is `{metric: m, pass_rate_below: 0.9}`, `{metric: m, mean_below: 0.7}`, \
                          `{errors_above: 0}` or `{score_below: 0.8}`; without `metric` it checks every metric";

impl Node for Evaluate {
    type Config = EvaluateConfig;
    const KIND: &'static str = "evaluate";
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "scores records: exact_match, contains, icontains, contains_any, contains_all, \
        starts_with, ends_with, regex, label_in, word_count, length, json_valid, equals_json, json_schema, \
        contains_json, similarity, levenshtein, rouge_l, bleu, embedding_similarity, judge, latency, cost, logprob, perplexity, tool_call, exec; \
        `negate`, `weight`, `field` paths; `fail_if` gates";
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
        let mut calls = 0;
        for (i, m) in config.metrics.iter().enumerate() {
            let mp = at.index(i);
            let name = m.name();
            if let Some(prev) = seen.insert(name.clone(), i) {
                let at = if m.name.is_some() { mp.key("name") } else { mp.key("type") };
                cx.error_at_key(
                    &at,
                    format!("metric name `{name}` is used twice (metrics[{prev}] and metrics[{i}])"),
                    Some("give one of them `name: <unique name>`".into()),
                );
            }
            check_metric(m, &mp, cx, &mut needs);
            if matches!(m.kind, MetricType::Logprob | MetricType::Perplexity) && m.field() == "logprobs" {
                let lacking =
                    cx.inputs().iter().find(|i| matches!(&i.ty.fields, FieldSet::Known(f) if !f.contains("logprobs")));
                if let Some(input) = lacking.map(|i| i.name.clone()) {
                    cx.error(
                        &mp.key("type"),
                        format!("`{}` scores the answers' token log probabilities, which `{input}` does not ask for", m.kind.name()),
                        Some(format!(
                            "set `params: {{logprobs: true}}` on the backend of `{input}` (OpenAI, vLLM and llama.cpp's \
                             server send them; Anthropic has none)"
                        )),
                    );
                    needs.retain(|(f, _)| f != "logprobs");
                }
            }
            if m.kind.calls_backend() {
                if let Some(b) = &m.backend {
                    // The judge chats; `embedding_similarity` embeds.
                    match m.kind {
                        MetricType::Judge => cx.chat_backend(&mp.key("backend"), b),
                        _ => cx.backend(&mp.key("backend"), b),
                    };
                    calls += 1;
                }
            }
        }
        check_gates(config, cx, &seen);
        if let Some(m) = &config.max_errors {
            if let Err(e) = m.limit() {
                let hint = "write a count (`5`) or a percentage of the records (`\"50%\"`)";
                cx.error(&cx.field("max_errors"), e.to_string(), Some(hint.into()));
            }
        }
        cx.require_fields(&needs);
        cx.calls_per_record(calls);
        cx.output_records(flow_engine::OutputRecords::PerInput(1));
        let input = cx.inputs().first().map(|i| i.ty.clone()).unwrap_or_else(|| PortType::records(FieldSet::Open));
        input.extend("Scored", &["scores", "pass", "score"])
    }

    /// One key per record for each `judge` and `embedding_similarity`
    /// metric, as their calls file them; none for a record a metric cannot
    /// score (no call is made for it).
    fn plan_calls(
        config: &EvaluateConfig,
        record: &Record,
        backends: &BTreeMap<String, BackendSpec>,
    ) -> Option<Vec<PlannedCall>> {
        let mut keys = Vec::new();
        for m in config.metrics.iter().filter(|m| m.kind.calls_backend()) {
            let name = m.backend.as_deref()?;
            let spec = backends.get(name)?;
            let field = FieldPath::parse(m.field()).ok()?;
            let Ok(value) = metric::value_at(&field, record, false) else { continue };
            let text = metric::as_text(&value);
            match m.kind {
                MetricType::Judge => {
                    let rubric = Template::parse(m.rubric.as_deref()?).ok()?;
                    if let Ok(messages) = judge::messages(&rubric, &text, record) {
                        let body = backend::chat_body_schema(spec, &messages, "verdict", &judge::verdict_schema(), 0);
                        keys.push(backend::planned(name, spec, Endpoint::Chat, &body, 0));
                    }
                }
                _ => {
                    let expected = Template::parse(m.expected.as_deref()?).ok()?;
                    if let Ok(texts) = embedding::texts(&expected, &text, record) {
                        keys.push(embedding::request(name, spec, &texts));
                    }
                }
            }
        }
        Some(keys)
    }

    fn build(config: &EvaluateConfig, cx: &BuildCx) -> Result<Stage, NodeError> {
        let metrics = config.metrics.iter().map(|m| Metric::new(m, cx)).collect::<Result<Vec<_>, _>>()?;
        let limit = match &config.max_errors {
            Some(m) => m.limit().map_err(|e| NodeError::new(format!("`max_errors`: {e}")))?,
            None => DEFAULT_MAX_ERRORS,
        };
        let scorer =
            Scorer::new(metrics, config.fail_if.clone(), limit, cx.node.clone(), cx.meter.clone(), cx.memo_reads);
        Ok(if scorer.by_chunk() { Stage::Stream(Arc::new(scorer)) } else { Stage::Map(Box::new(scorer)) })
    }
}

/// Checks one metric at `mp`: which arguments apply, their values, its
/// field, and the record fields it reads (into `needs`).
fn check_metric(m: &MetricConfig, mp: &YamlPath, cx: &mut CheckCx<'_>, needs: &mut Vec<(String, YamlPath)>) {
    let ty = m.kind.name();
    let (required, optional) = m.kind.arguments();
    let takes = || {
        let all: Vec<&str> = required.iter().chain(optional).copied().collect();
        if all.is_empty() {
            format!("{ty} takes no arguments besides `name`, `field`, `weight` and `negate`")
        } else {
            format!("{ty} takes: {}", all.join(", "))
        }
    };
    let set = m.set_arguments();
    for arg in &set {
        if !required.contains(arg) && !optional.contains(arg) {
            cx.error_at_key(&mp.key(*arg), format!("`{arg}` does not apply to `{ty}`"), Some(takes()));
        }
    }
    for arg in required {
        if !set.contains(arg) {
            cx.error_at_key(&mp.key("type"), format!("`{ty}` needs `{arg}`"), Some(takes()));
        }
    }
    // `exec` reads whole records; the others read their field.
    let field_at = mp.key(if m.field.is_some() { "field" } else { "type" });
    match FieldPath::parse(m.field()) {
        Ok(_) if m.kind == MetricType::Exec => {}
        Ok(path) => {
            // A field named with a dot (`a.b`) is read as it is.
            let whole = cx.inputs().iter().any(|i| matches!(&i.ty.fields, FieldSet::Known(f) if f.contains(m.field())));
            let need = if whole { m.field() } else { path.head() };
            needs.push((need.to_string(), field_at));
        }
        Err(e) => cx.error(&mp.key("field"), e.to_string(), None),
    }
    for (arg, index, text) in m.templates() {
        let at = match index {
            Some(i) => mp.key(arg).index(i),
            None => mp.key(arg),
        };
        match Template::parse(text) {
            Ok(t) => needs.extend(t.fields().map(|f| (f.to_string(), at.clone()))),
            Err(e) => cx.error(&at, e.to_string(), Some("field references look like `{{expected}}`".into())),
        }
    }
    match (m.kind, &m.pattern) {
        (MetricType::Regex, Some(pattern)) if !pattern.contains("{{") => {
            if let Err(e) = regex::Regex::new(pattern) {
                cx.error(&mp.key("pattern"), format!("invalid regex: {}", metric::regex_error(&e)), None);
            }
        }
        _ => {}
    }
    if let (MetricType::EqualsJson, Some(e)) = (m.kind, &m.expected) {
        if !e.contains("{{") {
            if let Err(err) = serde_json::from_str::<serde_json::Value>(e) {
                let hint =
                    "write the JSON in quotes, e.g. `expected: '{\"answer\": 4}'`, or `{{field}}` for a record's";
                cx.error(&mp.key("expected"), format!("`expected` is not JSON: {err}"), Some(hint.into()));
            }
        }
    }
    for (arg, list) in [("values", &m.values), ("labels", &m.labels)] {
        if list.as_ref().is_some_and(Vec::is_empty) {
            cx.error(
                &mp.key(arg),
                format!("`{arg}` is empty"),
                Some(format!("list at least one, e.g. `{arg}: [yes, no]`")),
            );
        }
    }
    match m.kind {
        MetricType::JsonSchema => check_schema(m, mp, cx, true),
        MetricType::ContainsJson => check_schema(m, mp, cx, false),
        _ => {}
    }
    if matches!(m.kind, MetricType::WordCount | MetricType::Length) {
        match (m.min, m.max) {
            (None, None) => cx.error_at_key(
                &mp.key("type"),
                format!("`{ty}` needs `min`, `max` or both"),
                Some(format!("e.g. `{{type: {ty}, max: 50}}`")),
            ),
            (Some(lo), Some(hi)) if lo > hi => {
                cx.error(&mp.key("min"), format!("`min` ({lo}) is more than `max` ({hi})"), None)
            }
            _ => {}
        }
    }
    if let Some(t) = m.threshold.filter(|t| !(0.0..=1.0).contains(t)) {
        let hint = if m.kind == MetricType::Bleu {
            Some("BLEU is scored over 100: `threshold: 0.3` is BLEU 30".into())
        } else {
            None
        };
        cx.error(&mp.key("threshold"), format!("threshold {t} is outside 0..=1"), hint);
    }
    if let Some(w) = m.weight.filter(|w| !w.is_finite() || *w < 0.0) {
        cx.error(&mp.key("weight"), format!("`weight` must be a number ≥ 0, not {w}"), None);
    }
    for (arg, v) in [("max_ms", m.max_ms), ("max_usd", m.max_usd)] {
        if let Some(v) = v.filter(|v| !v.is_finite() || *v < 0.0) {
            cx.error(&mp.key(arg), format!("`{arg}` must be a number ≥ 0, not {v}"), None);
        }
    }
    if let Some(v) = m.min_logprob.filter(|v| !v.is_finite() || *v > 0.0) {
        let hint = Some(
            "a log probability is at most 0: `min_logprob: -0.5` passes answers whose tokens average at least −0.5"
                .into(),
        );
        cx.error(&mp.key("min_logprob"), format!("`min_logprob` must be a number ≤ 0, not {v}"), hint);
    }
    if let Some(v) = m.max_perplexity.filter(|v| !v.is_finite() || *v < 1.0) {
        let hint = Some("a perplexity is at least 1 (a sure model): `max_perplexity: 3`".into());
        cx.error(&mp.key("max_perplexity"), format!("`max_perplexity` must be a number ≥ 1, not {v}"), hint);
    }
    if let (MetricType::Exec, Some(command)) = (m.kind, &m.command) {
        exec::check(command, &mp.key("command"), cx);
    }
}

/// `json_schema` (and `contains_json`, where it is optional): exactly one
/// of `schema` and `schema_file`, and a schema that compiles. The file is
/// registered, so editing it re-runs the node.
fn check_schema(m: &MetricConfig, mp: &YamlPath, cx: &mut CheckCx<'_>, required: bool) {
    let hint = "give the schema inline (`schema: {type: object, required: [answer]}`) or as `schema_file: schema.json`";
    let ty = m.kind.name();
    let (at, schema) = match (&m.schema, &m.schema_file) {
        (Some(_), Some(_)) => {
            cx.error_at_key(
                &mp.key("schema_file"),
                format!("`{ty}` takes `schema` or `schema_file`, not both"),
                Some(hint.into()),
            );
            return;
        }
        (None, None) if !required => return,
        (None, None) => {
            cx.error_at_key(&mp.key("type"), format!("`{ty}` needs `schema` or `schema_file`"), Some(hint.into()));
            return;
        }
        (Some(s), None) => (mp.key("schema"), s.clone()),
        (None, Some(written)) => {
            let at = mp.key("schema_file");
            let Some(path) = cx.input_file(&at, written) else { return };
            match metric::json::read_schema(&path) {
                Ok(s) => (at, s),
                Err(e) => {
                    cx.error(&at, format!("`schema_file` `{written}`: {e}"), None);
                    return;
                }
            }
        }
    };
    if let Err(e) = metric::json::validator(&schema) {
        cx.error(&at, e, Some("see https://json-schema.org/understanding-json-schema".into()));
    }
}

/// `fail_if`: each rule has exactly one test, in range, on a metric of the
/// node (`metrics` maps the names to their index).
fn check_gates(config: &EvaluateConfig, cx: &mut CheckCx<'_>, metrics: &BTreeMap<String, usize>) {
    let rules_at = cx.field("fail_if");
    let names: BTreeSet<&str> = metrics.keys().map(String::as_str).collect();
    for (i, rule) in config.fail_if.iter().enumerate() {
        let at = rules_at.index(i);
        let tests = rule.tests();
        match tests.as_slice() {
            [] => {
                cx.error(&at, format!("`fail_if[{i}]` has no test"), Some(GATE_SHAPE.into()));
                continue;
            }
            [_] => {}
            [_, (second, _), ..] => {
                let msg = format!("`fail_if[{i}]` has more than one test; write one rule per test");
                cx.error_at_key(&at.key(*second), msg, Some(GATE_SHAPE.into()));
            }
        }
        for (field, test) in &tests {
            let share = match test {
                config::GateTest::PassRateBelow(x)
                | config::GateTest::MeanBelow(x)
                | config::GateTest::ScoreBelow(x) => *x,
                config::GateTest::ErrorsAbove(_) => continue,
            };
            if !(0.0..=1.0).contains(&share) {
                let msg = format!("`{field}` must be in 0..=1, not {share}");
                cx.error(&at.key(*field), msg, Some("e.g. `0.9` for 90%".into()));
            }
        }
        match (&rule.metric, rule.score_below.is_some()) {
            (Some(_), true) => {
                let msg = "`score_below` checks the records' weighted `score`, not one metric";
                cx.error_at_key(
                    &at.key("metric"),
                    msg,
                    Some("remove `metric`, or use `mean_below` for one metric".into()),
                );
            }
            (Some(m), false) if !names.contains(m.as_str()) => {
                let hint = match did_you_mean(m, names.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!("this node's metrics: {}", names.iter().copied().collect::<Vec<_>>().join(", ")),
                };
                cx.error(
                    &at.key("metric"),
                    format!("`fail_if[{i}]` checks metric `{m}`, which node `{}` does not score", cx.node()),
                    Some(hint),
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
