//! `run`: sends each record to a backend as a chat request and adds the
//! answer.
//!
//! The request is `prompt:` (a `{{field}}` template) or `messages:` (a
//! templated chat list), after an optional `system:`. Each output record is
//! the input record plus `output`, `usage`, `latency_ms`, `cost_usd`,
//! `model` and `error` (plus `sample` with `repeat:`). Records go out in
//! input order, each as soon as it and every record before it are answered,
//! so outputs diff cleanly between runs; calls complete in any order
//! meanwhile ([`stream`]). A call that fails for good (a 4xx,
//! or retries spent) leaves its `error` on the record; the node fails only
//! past `max_errors`.
//!
//! With `rules: <synthesize node>`, the active rules that node induced join
//! the system prompt (after `system:`, as a bullet list), and the rules it
//! enforces post-process each answer ([`RuleSet::apply`]); the record keeps
//! the answer as received in `raw_output` and lists the rules that changed
//! it in `rules_applied`.

mod prompt;
mod stream;
pub mod view;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use flow_engine::node::SUMMARY_JSON;
use flow_engine::template::RenderError;
use flow_engine::{
    Arity, Artifact, BackendSpec, BatchStream, BuildCx, CheckCx, FieldSet, Meter, Node, NodeError, PlannedCall,
    PortType, Record, RecordStream, Shape, Stage, StreamStage, Template, SUMMARY_MD,
};

use crate::backend::{self, Backend, Backends, CallError, CallOpts, Endpoint};
use crate::synthesize::rules::RuleSet;
use prompt::Prompt;
pub use prompt::{MessageConfig, PromptFiles, Role, Variants};
pub use stream::{ByteSize, ByteSizeError, DEFAULT_REORDER_BUFFER};

pub struct Run;

/// `max_errors:` a count (`5`) or a share of the records (`"10%"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum MaxErrors {
    Count(u64),
    /// `0.1`: a fraction of the records.
    Fraction(f64),
    /// `"10%"`.
    Share(String),
}

/// A `max_errors:` that is no limit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MaxErrorsError {
    /// A number that is not a count and outside 0..=1.
    #[error("`{0}` is neither a count nor a fraction in 0..=1")]
    Fraction(f64),
    /// Text that is not a percentage in 0..=100.
    #[error("`{0}` is neither a count nor a percentage")]
    Share(String),
}

/// The limit on failed calls, as checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ErrorLimit {
    Count(u64),
    /// A fraction in 0..=1 of the records.
    Share(f64),
}

impl MaxErrors {
    pub fn limit(&self) -> Result<ErrorLimit, MaxErrorsError> {
        match self {
            MaxErrors::Count(n) => Ok(ErrorLimit::Count(*n)),
            MaxErrors::Fraction(f) if (0.0..=1.0).contains(f) => Ok(ErrorLimit::Share(*f)),
            MaxErrors::Fraction(f) => Err(MaxErrorsError::Fraction(*f)),
            MaxErrors::Share(s) => s
                .trim()
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<f64>().ok())
                .filter(|p| (0.0..=100.0).contains(p))
                .map(|p| ErrorLimit::Share(p / 100.0))
                .ok_or_else(|| MaxErrorsError::Share(s.clone())),
        }
    }
}

/// After this many calls, all failed, a node with a share limit stops.
const EARLY_FAILURE_CALLS: u64 = 20;

/// After this many calls in a row failed for good on connections or server
/// errors, the node stops: the endpoint is down.
const DOWN_IN_A_ROW: u64 = 20;

/// By default a node tolerates a tenth of its calls failing (a content
/// filter here and there); an endpoint that is down fails it.
pub const DEFAULT_MAX_ERRORS: ErrorLimit = ErrorLimit::Share(0.1);

/// `kind: run`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// A name under the spec's `backends:`.
    pub backend: String,
    /// The user message, a `{{field}}` template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The user message from a file (a template), relative to the spec's
    /// folder; its content is part of the node's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_file: Option<String>,
    /// Named variants of the user message, each a template or
    /// `file:PATH`: every record is sent once per variant, and each answer
    /// carries its `variant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<Variants>,
    /// A system message before the others (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The whole chat, each `content` a template (instead of `prompt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<MessageConfig>>,
    /// Samples per record, each a distinct call; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// Failed calls tolerated: a count or a percentage; default `10%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_errors: Option<MaxErrors>,
    /// Ask for a JSON object (`response_format: json_object`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<bool>,
    /// Functions the model may call (`name`, `description`, `parameters`:
    /// a JSON Schema), sent in the provider's shape; an answer's calls are
    /// kept as the record's `tool_calls` (name, parsed arguments), its
    /// text as `output` (maybe empty). The tools are not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<backend::Tool>>,
    /// A `synthesize` node whose rules to apply: in the system prompt, and
    /// on the outputs where a rule is mechanical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<String>,
    /// The prompt files' text, read by `check`.
    #[serde(skip)]
    #[schemars(skip)]
    pub files: PromptFiles,
    /// Memory for records answered before an earlier one (`32MB`, `64MiB`;
    /// default 32 MiB): calls finish in any order, records go out in input
    /// order. Past it, no new call starts until the oldest is answered.
    /// Not part of the node's key: it changes no output.
    #[serde(default, skip_serializing)]
    pub reorder_buffer: Option<ByteSize>,
}

/// The fields `run` adds to each record.
pub const OUTPUT_FIELDS: &[&str] = &["output", "usage", "latency_ms", "cost_usd", "model", "error"];

/// The fields `run` adds besides, with `rules:`.
pub const RULES_FIELDS: &[&str] = &["raw_output", "rules_applied"];

impl Node for Run {
    type Config = RunConfig;
    const KIND: &'static str = "run";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "sends each record to a backend (prompt or messages) and adds the answer";
    const INPUTS: Arity = Arity::One;
    const SHAPE: Shape = Shape::Streaming;
    const SIDE_INPUTS: &'static [&'static str] = &["rules"];

    fn check(c: &RunConfig, cx: &mut CheckCx<'_>) -> PortType {
        let backend = cx.chat_backend(&cx.field("backend"), &c.backend);
        let logprobs = backend.is_some_and(|b| b.params.get("logprobs") == Some(&serde_json::Value::Bool(true)));
        let mut needs = Vec::new();
        for (at, text) in prompt::check(c, cx) {
            match Template::parse(&text) {
                Ok(t) => needs.extend(t.fields().map(|f| (f.to_string(), at.clone()))),
                Err(e) => cx.error(&at, e.to_string(), Some("field references look like `{{question}}`".into())),
            }
        }
        cx.require_fields(&needs);
        if c.repeat == Some(0) {
            cx.error(&cx.field("repeat"), "`repeat` must be at least 1", None);
        }
        if let Some(m) = &c.max_errors {
            if let Err(e) = m.limit() {
                let hint = "write a count (`5`) or a percentage (`\"10%\"`)";
                cx.error(&cx.field("max_errors"), e.to_string(), Some(hint.into()));
            }
        }
        if c.rules.is_some() {
            // An unknown node is the engine's error; a broken one (`?`) its own.
            if let Some(side) = cx.side_input("rules").filter(|s| s.kind != "synthesize" && s.kind != "?") {
                let msg = format!(
                    "`rules` of node `{}` names `{}`, a `{}` node; it must name a `synthesize` node",
                    cx.node(),
                    side.name,
                    side.kind
                );
                let hint = "`rules:` applies the rules a `kind: synthesize` node induced from feedback pairs";
                cx.error(&cx.field("rules"), msg, Some(hint.into()));
            }
        }
        let repeat = c.repeat.unwrap_or(1);
        let variants = c.prompts.as_ref().map_or(1, |v| v.0.len().max(1));
        cx.calls_per_record(repeat as u64 * variants as u64);
        cx.output_records(flow_engine::OutputRecords::PerInput(repeat as u64 * variants as u64));
        let input = cx.inputs().first().map(|i| i.ty.clone()).unwrap_or_else(|| PortType::records(FieldSet::Open));
        let out = input.extend("Response", OUTPUT_FIELDS);
        let out = if c.rules.is_some() { out.extend("Response", RULES_FIELDS) } else { out };
        let out = if c.prompts.is_some() { out.extend("Response", &["variant"]) } else { out };
        // Answered records carry them; failed ones do not, but a metric on
        // one of those says the call failed.
        let out = if c.tools.is_some() { out.extend("Response", &["tool_calls"]) } else { out };
        let out = if logprobs { out.extend("Response", &["logprobs"]) } else { out };
        if repeat > 1 {
            out.extend("Response", &["sample"])
        } else {
            out
        }
    }

    fn build(c: &RunConfig, cx: &BuildCx) -> Result<Stage, NodeError> {
        let backend = Backends::of(cx, &c.backend)?;
        let mut prompts = prompt::prompts(c).map_err(|e| NodeError::new(e.to_string()))?;
        let rules = match &c.rules {
            Some(from) => {
                let records = cx.side_inputs.get("rules").map(Vec::as_slice).unwrap_or_default();
                let set = RuleSet::from_records(records)
                    .map_err(|e| NodeError::new(format!("the rules of `{from}`: {e}")))?;
                for (_, p) in &mut prompts {
                    p.rules = (!set.is_empty()).then(|| set.block());
                }
                Some((from.clone(), set))
            }
            None => None,
        };
        let limit = match &c.max_errors {
            Some(m) => m.limit().map_err(|e| NodeError::new(e.to_string()))?,
            None => DEFAULT_MAX_ERRORS,
        };
        Ok(Stage::Stream(Arc::new(Caller {
            concurrency: backend.spec.max_concurrency(),
            reorder: c.reorder_buffer.unwrap_or(DEFAULT_REORDER_BUFFER),
            backend,
            prompts,
            repeat: c.repeat.unwrap_or(1),
            json: c.json.unwrap_or(false),
            tools: c.tools.clone().unwrap_or_default(),
            truncated: AtomicU64::new(0),
            rules,
            changed: AtomicU64::new(0),
            limit,
            meter: cx.meter.clone(),
            memo_reads: cx.memo_reads,
            calls: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            down_in_a_row: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_error: Mutex::default(),
            latencies: Mutex::new(Vec::new()),
        })))
    }

    /// On the offline `sim`, the records the node will output, worked out
    /// as [`Caller::one`] makes them (its answers are pure functions of
    /// the request); none on another backend, or with `rules:`.
    fn plan_outputs(
        c: &RunConfig,
        records: &[Record],
        backends: &BTreeMap<String, BackendSpec>,
    ) -> Option<Vec<Record>> {
        let spec =
            backends.get(&c.backend).filter(|s| s.provider == flow_engine::Provider::Sim && c.rules.is_none())?;
        let (repeat, json) = (c.repeat.unwrap_or(1), c.json.unwrap_or(false));
        let tools = c.tools.as_deref().unwrap_or_default();
        let prompts = prompt::prompts(c).ok()?;
        let mut out = Vec::with_capacity(records.len() * prompts.len() * repeat as usize);
        for record in records {
            for (variant, prompt) in &prompts {
                for sample in 0..repeat {
                    let mut fields = (**record).clone();
                    match prompt.render(record) {
                        Ok(messages) => {
                            let body = backend::chat_body_for(spec, record, &messages, json, sample, tools).ok()?;
                            let answer = backend::sim::planned_answer(spec, Endpoint::Chat, &body, sample)?;
                            let usage = &answer["usage"];
                            fields.insert("output".into(), answer["choices"][0]["message"]["content"].clone());
                            fields.insert(
                                "usage".into(),
                                json!({"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"]}),
                            );
                            fields.insert("model".into(), answer["model"].clone());
                            fields.insert("error".into(), Value::Null);
                        }
                        Err(e) => {
                            fields.insert("output".into(), Value::Null);
                            fields.insert("error".into(), Value::String(e.to_string()));
                        }
                    }
                    if repeat > 1 {
                        fields.insert("sample".into(), json!(sample));
                    }
                    if let Some(name) = variant {
                        fields.insert("variant".into(), json!(name));
                    }
                    out.push(Arc::new(fields));
                }
            }
        }
        Some(out)
    }

    /// One key per sample, as [`Caller::one`] asks; none for a record the
    /// prompt cannot be rendered from (it gets an `error`, not a call).
    /// Unknown with `rules:`: the prompt holds the rules, which the plan
    /// does not read.
    fn plan_calls(
        c: &RunConfig,
        record: &Record,
        backends: &BTreeMap<String, BackendSpec>,
    ) -> Option<Vec<PlannedCall>> {
        if c.rules.is_some() {
            return None;
        }
        let spec = backends.get(&c.backend)?;
        let json = c.json.unwrap_or(false);
        let mut keys = Vec::new();
        for (_, prompt) in prompt::prompts(c).ok()? {
            let Ok(messages) = prompt.render(record) else { continue };
            keys.extend((0..c.repeat.unwrap_or(1)).filter_map(|sample| {
                let tools = c.tools.as_deref().unwrap_or_default();
                let body = backend::chat_body_for(spec, record, &messages, json, sample, tools).ok()?;
                Some(backend::planned(&c.backend, spec, Endpoint::Chat, &body, sample))
            }));
        }
        Some(keys)
    }
}

/// Why a record got no answer: its `error` field (the node goes on, up to
/// `max_errors`).
#[derive(Debug, thiserror::Error)]
enum RecordError {
    /// The prompt reads a field the record lacks.
    #[error(transparent)]
    Prompt(#[from] RenderError),
    #[error(transparent)]
    Call(#[from] CallError),
}

struct Caller {
    backend: Arc<Backend>,
    /// One per variant (one unnamed without `prompts:`).
    prompts: Vec<(Option<String>, Prompt)>,
    repeat: u32,
    json: bool,
    tools: Vec<backend::Tool>,
    /// Answers cut at `max_tokens` (`finish_reason: length`).
    truncated: AtomicU64,
    /// The rules node and its rules, with `rules:`.
    rules: Option<(String, RuleSet)>,
    /// Answers the rules changed.
    changed: AtomicU64,
    concurrency: usize,
    /// The reorder buffer's bound.
    reorder: ByteSize,
    limit: ErrorLimit,
    meter: Arc<Meter>,
    memo_reads: bool,
    calls: AtomicU64,
    /// Calls answered (not failed).
    answered: AtomicU64,
    /// Calls failed for good on the transport or a 5xx since the last answer.
    down_in_a_row: AtomicU64,
    errors: AtomicU64,
    /// The error of the last call that failed, for the node's own error.
    last_error: Mutex<Option<String>>,
    latencies: Mutex<Vec<u64>>,
}

impl Caller {
    /// Calls per input record: each variant's samples.
    fn per_record(&self) -> u32 {
        self.repeat * self.prompts.len() as u32
    }

    /// The `job`-th call for `record`: variant `job / repeat`, sample
    /// `job % repeat`.
    async fn one(self: Arc<Self>, record: Record, job: u32) -> Result<Record, NodeError> {
        let (variant, prompt) = &self.prompts[(job / self.repeat) as usize];
        let sample = job % self.repeat;
        let mut fields = (*record).clone();
        let opts = CallOpts { meter: &self.meter, memo_reads: self.memo_reads, sample };
        let answer = match prompt.render(&record) {
            Ok(messages) => {
                let call = self.backend.chat_for(&record, &messages, self.json, &self.tools, opts);
                call.await.map_err(RecordError::from)
            }
            Err(e) => Err(RecordError::from(e)),
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        match answer {
            Ok(a) => {
                self.answered.fetch_add(1, Ordering::Relaxed);
                self.down_in_a_row.store(0, Ordering::Relaxed);
                self.latencies.lock().expect("latencies lock").push(a.latency_ms);
                if let Some((_, set)) = &self.rules {
                    let (text, applied) = set.apply(&a.text);
                    if !applied.is_empty() {
                        self.changed.fetch_add(1, Ordering::Relaxed);
                    }
                    fields.insert("output".into(), Value::String(text));
                    fields.insert("raw_output".into(), Value::String(a.text));
                    fields.insert("rules_applied".into(), json!(applied));
                } else {
                    fields.insert("output".into(), Value::String(a.text));
                }
                fields.insert(
                    "usage".into(),
                    json!({"prompt_tokens": a.usage.prompt_tokens, "completion_tokens": a.usage.completion_tokens}),
                );
                fields.insert("latency_ms".into(), json!(a.latency_ms));
                fields.insert("cost_usd".into(), json!(a.cost_usd));
                fields.insert("model".into(), json!(a.model));
                if !self.tools.is_empty() || !a.tool_calls.is_empty() {
                    fields.insert("tool_calls".into(), json!(a.tool_calls));
                }
                // A plain `stop` is every answer's: said only when it is not.
                if let Some(reason) = a.finish_reason.as_ref().filter(|r| *r != "stop") {
                    fields.insert("finish_reason".into(), json!(reason));
                }
                if let Some(lp) = a.logprobs {
                    fields.insert("logprobs".into(), lp.to_json());
                }
                if a.finish_reason.as_deref() == Some("length") {
                    self.truncated.fetch_add(1, Ordering::Relaxed);
                    fields.insert("truncated".into(), json!(true));
                }
                fields.insert("error".into(), Value::Null);
            }
            Err(e) => {
                // The memo can keep no more answers: the node stops, not this record.
                if let Some(halted) = self.backend.halted() {
                    return Err(NodeError::new(halted.to_string()));
                }
                let n = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
                // Retries spent on a connection that fails or a server that
                // errs: after enough in a row the endpoint is down (a server
                // that died mid-run), and each further record would only
                // spend its retries too.
                // Not on a batch backend: its failures come a batch at
                // once (an expired batch), not from a dead endpoint.
                let batch = self.backend.batch_window().is_some();
                if !batch && matches!(&e, RecordError::Call(c) if c.retryable && c.status.is_none_or(|s| s >= 500)) {
                    let row = self.down_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                    if row == DOWN_IN_A_ROW {
                        return Err(NodeError::new(format!(
                            "the last {row} calls failed in a row after their retries: the endpoint looks down; the last: {e}"
                        )));
                    }
                }
                match self.limit {
                    ErrorLimit::Count(max) if n > max => {
                        // The cause is in the message: a failed node stores
                        // no records to look it up in.
                        return Err(NodeError::new(format!(
                            "{n} calls failed, more than `max_errors: {max}`; the last: {e}"
                        )));
                    }
                    // A backend that fails every call is down or misconfigured:
                    // stop now rather than after every record's retries.
                    // Counted by answers, not by calls finished: with calls in
                    // flight the two never meet, and the stop came late.
                    ErrorLimit::Share(max)
                        if max < 1.0 && n == EARLY_FAILURE_CALLS && self.answered.load(Ordering::Relaxed) == 0 =>
                    {
                        return Err(NodeError::new(format!("the first {n} calls all failed; the last: {e}")));
                    }
                    _ => {}
                }
                for f in ["output", "usage", "latency_ms", "cost_usd"] {
                    fields.insert(f.into(), Value::Null);
                }
                fields.insert("model".into(), json!(self.backend.spec.model()));
                fields.insert("error".into(), Value::String(e.to_string()));
                *self.last_error.lock().expect("last error lock") = Some(e.to_string());
                if self.rules.is_some() {
                    fields.insert("raw_output".into(), Value::Null);
                    fields.insert("rules_applied".into(), json!([]));
                }
            }
        }
        if self.repeat > 1 {
            fields.insert("sample".into(), json!(sample));
        }
        if let Some(name) = variant {
            fields.insert("variant".into(), json!(name));
        }
        Ok(Arc::new(fields))
    }
}

impl StreamStage for Caller {
    fn run(self: Arc<Self>, input: RecordStream) -> BatchStream {
        self.stream(input)
    }

    fn finish(&self) -> Result<Vec<Artifact>, NodeError> {
        let calls = self.calls.load(Ordering::Relaxed);
        let errors = self.errors.load(Ordering::Relaxed);
        if let ErrorLimit::Share(max) = self.limit {
            if calls > 0 && errors as f64 / calls as f64 > max {
                let last = self.last_error.lock().expect("last error lock").clone().unwrap_or_default();
                return Err(NodeError::new(format!(
                    "{errors} of {calls} calls failed, more than `max_errors: {}%`; the last: {last}",
                    max * 100.0,
                )));
            }
        }
        let mut lat = self.latencies.lock().expect("latencies lock").clone();
        lat.sort_unstable();
        let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p).round() as usize).copied();
        let mut md = String::new();
        let _ = writeln!(
            md,
            "calls: {calls}, errors: {errors}, backend: {} ({})",
            self.backend.name,
            self.backend.spec.model()
        );
        if let (Some(p50), Some(p95)) = (pct(0.5), pct(0.95)) {
            let _ = writeln!(md, "latency: p50 {p50} ms, p95 {p95} ms");
        }
        let truncated = self.truncated.load(Ordering::Relaxed);
        if truncated > 0 {
            let _ = writeln!(md, "truncated: {truncated} answers stopped at `max_tokens` (`finish_reason: length`)");
        }
        let changed = self.changed.load(Ordering::Relaxed);
        if let Some((from, set)) = &self.rules {
            let _ = writeln!(
                md,
                "rules: {} from `{from}` in the system prompt, {} enforced on outputs; {changed} answers changed by them",
                set.lines.len(),
                set.enforced()
            );
        }
        let batches = self.backend.batches_seen();
        for b in &batches {
            let waited = b.waited_s.map(|s| format!(", results after {s:.1} s")).unwrap_or_default();
            let resumed = if b.resumed { ", created by an earlier run" } else { "" };
            let _ = writeln!(md, "batch {}: {} requests, {}{waited}{resumed}", b.id, b.requests, b.state);
        }
        let mut summary = json!({
            "calls": calls, "errors": errors, "backend": self.backend.name, "model": self.backend.spec.model(),
            "latency_ms": {"p50": pct(0.5), "p95": pct(0.95)},
        });
        if truncated > 0 {
            summary["truncated"] = json!(truncated);
        }
        if !batches.is_empty() {
            summary["batches"] = json!(batches);
        }
        if let Some((from, set)) = &self.rules {
            summary["rules"] = json!({"from": from, "prompt": set.lines.len(), "enforced": set.enforced(), "outputs_changed": changed});
        }
        let mut bytes = serde_json::to_vec_pretty(&summary).expect("json");
        bytes.push(b'\n');
        Ok(vec![
            Artifact { name: SUMMARY_JSON.into(), bytes },
            Artifact { name: SUMMARY_MD.into(), bytes: md.into_bytes() },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_errors_counts_and_shares() {
        assert_eq!(MaxErrors::Count(5).limit(), Ok(ErrorLimit::Count(5)));
        assert_eq!(MaxErrors::Share("10%".into()).limit(), Ok(ErrorLimit::Share(0.1)));
        assert!(MaxErrors::Share("ten".into()).limit().is_err());
        assert!(MaxErrors::Share("150%".into()).limit().is_err());
        assert_eq!(MaxErrors::Fraction(0.25).limit(), Ok(ErrorLimit::Share(0.25)));
        assert!(MaxErrors::Fraction(1.5).limit().is_err());
    }
}
