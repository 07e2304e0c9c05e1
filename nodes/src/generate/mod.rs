//! `generate`: a synthetic test set through a backend.
//!
//! Each call asks, in JSON mode, for `per_call` new cases following the
//! `instructions` and the `schema`, showing the seed records (the optional
//! input) as examples. Every returned case is checked against the schema;
//! a response that is not a JSON object with a `cases` list is asked again
//! (`retries` times) and then counted as unparsable; a case that violates
//! the schema is counted and dropped; exact and near duplicates (normalized
//! Levenshtein over the `dedup.fields`) are counted and dropped. Generation
//! goes on until `count` valid unique cases exist or `max_calls` calls are
//! spent, which fails the node saying how far it got.
//!
//! Calls are numbered, each has its own memo key, and their answers are
//! taken in call order whatever order they arrive in, so the output depends
//! only on the answers: a second run makes no call, and raising `count`
//! replays the memoized calls and makes only those the new cases need.
//! Cases stream downstream as they are accepted.

pub mod sim;
pub mod view;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use flow_engine::cache::ContentHash;
use flow_engine::{
    Arity, Artifact, BackendSpec, BatchStream, BuildCx, CheckCx, FieldSet, Meter, Node, NodeError, PlannedCall,
    PortType, Record, RecordStream, Shape, SourceStage, Stage, StreamStage, META_JSON, SUMMARY_MD,
};

use crate::backend::{self, Backend, Backends, CallError, CallOpts, Endpoint, Message};

pub struct Generate;

/// The type of a schema field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Integer,
    Number,
    Boolean,
}

impl FieldType {
    fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Integer => "integer",
            FieldType::Number => "number",
            FieldType::Boolean => "boolean",
        }
    }
}

/// One field of the cases to generate.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    #[serde(rename = "type")]
    pub ty: FieldType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The values allowed.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<Value>>,
}

/// Duplicate removal.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupSpec {
    /// Fields compared; default every string field of the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
    /// Normalized Levenshtein similarity at or above which two cases are
    /// near duplicates; default 0.9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

/// `kind: generate`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateConfig {
    pub backend: String,
    /// Valid unique cases to make.
    pub count: u64,
    /// What the cases are for, in words.
    pub instructions: String,
    /// Field name → type and description.
    pub schema: BTreeMap<String, FieldSpec>,
    /// Cases asked for per call; default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_call: Option<u32>,
    /// The most calls before giving up; default 3 × count / per_call + 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u64>,
    /// Times an unparsable response is asked again; default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<DedupSpec>,
}

impl GenerateConfig {
    fn per_call(&self) -> u64 {
        self.per_call.unwrap_or(5).max(1) as u64
    }

    /// The calls that would make `count` cases if every answer held
    /// `per_call` good ones: the first calls, sent together.
    fn needed_calls(&self) -> u64 {
        self.count.div_ceil(self.per_call())
    }

    fn max_calls(&self) -> u64 {
        self.max_calls.unwrap_or_else(|| 3 * self.needed_calls() + 2)
    }

    fn dedup_fields(&self) -> Vec<String> {
        match self.dedup.as_ref().and_then(|d| d.fields.clone()) {
            Some(f) => f,
            None => self.schema.iter().filter(|(_, f)| f.ty == FieldType::String).map(|(k, _)| k.clone()).collect(),
        }
    }
}

/// Fields every generated case carries besides the schema's.
pub const CASE_FIELDS: &[&str] = &["id", "provenance"];

/// The line before the JSON object of field descriptions in the prompt;
/// `provider: sim` writes cases with those fields ([`sim::SIM_ANSWER`]).
pub const GENERATE_FIELDS_MARKER: &str = "Each case is a JSON object with these fields:";

const SYSTEM: &str = "You write test cases for evaluating an AI system. \
Reply with only a JSON object of the form {\"cases\": [ ... ]}.";

impl Node for Generate {
    type Config = GenerateConfig;
    const KIND: &'static str = "generate";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "makes a synthetic test set through a backend: schema-checked, deduplicated";
    const INPUTS: Arity = Arity::Optional;
    const SHAPE: Shape = Shape::Streaming;

    fn check(c: &GenerateConfig, cx: &mut CheckCx<'_>) -> PortType {
        cx.chat_backend(&cx.field("backend"), &c.backend);
        if c.count == 0 {
            cx.error(&cx.field("count"), "`count` must be at least 1", None);
        }
        if c.schema.is_empty() {
            cx.error(
                &cx.field("schema"),
                "`schema` is empty",
                Some(
                    "name the fields of a case: `schema: {question: {type: string}, expected: {type: string}}`".into(),
                ),
            );
        }
        for name in c.schema.keys() {
            if CASE_FIELDS.contains(&name.as_str()) {
                cx.error_at_key(
                    &cx.field("schema").key(name),
                    format!("`{name}` is set by `generate` itself"),
                    Some("rename the field".into()),
                );
            }
        }
        if c.per_call == Some(0) {
            cx.error(&cx.field("per_call"), "`per_call` must be at least 1", None);
        }
        if let Some(d) = &c.dedup {
            if let Some(t) = d.threshold.filter(|t| !(0.0..=1.0).contains(t)) {
                cx.error(&cx.field("dedup").key("threshold"), format!("threshold {t} is outside 0..=1"), None);
            }
            for (i, f) in d.fields.iter().flatten().enumerate() {
                if !c.schema.contains_key(f) {
                    let hint = flow_engine::diag::suggest(f, c.schema.keys().map(String::as_str), "a schema field");
                    cx.error(
                        &cx.field("dedup").key("fields").index(i),
                        format!("`{f}` is not in the schema"),
                        Some(hint),
                    );
                }
            }
        }
        // Not per record: the calls the first pass needs, for `flow plan`
        // (dropped cases may need more).
        cx.calls_per_record(c.needed_calls().max(1));
        let mut fields: BTreeSet<String> = c.schema.keys().cloned().collect();
        fields.extend(CASE_FIELDS.iter().map(|s| s.to_string()));
        PortType { name: "Case".into(), fields: FieldSet::Known(fields) }
    }

    /// The first calls, the seeds being all the input.
    fn plan_batch_calls(
        c: &GenerateConfig,
        seeds: &[Record],
        backends: &BTreeMap<String, BackendSpec>,
    ) -> Option<Vec<PlannedCall>> {
        Some(first_calls(c, backends.get(&c.backend)?, seeds))
    }

    fn build(c: &GenerateConfig, cx: &BuildCx) -> Result<Stage, NodeError> {
        let backend = Backends::of(cx, &c.backend)?;
        let generator = Arc::new(Generator {
            config: c.clone(),
            backend,
            meter: cx.meter.clone(),
            memo_reads: cx.memo_reads,
            report: Mutex::new(None),
        });
        Ok(if cx.inputs > 0 {
            Stage::Stream(generator)
        } else {
            Stage::Source(Box::new(Source { stream: Some(generator.clone().cases(Vec::new())), generator }))
        })
    }
}

/// What generating made and dropped.
#[derive(Debug, Clone, Default, Serialize)]
struct Counts {
    cases: u64,
    calls: u64,
    invalid: u64,
    duplicates: u64,
    unparsable: u64,
    failed_calls: u64,
}

struct Generator {
    config: GenerateConfig,
    backend: Arc<Backend>,
    meter: Arc<Meter>,
    memo_reads: bool,
    /// The counts and seeds, once done, for the summary.
    report: Mutex<Option<(Counts, Vec<String>)>>,
}

/// The chat of call `n`: the same at plan time and at run time.
fn messages(c: &GenerateConfig, seeds: &[Record], n: u64) -> Vec<Message> {
    let fields: Map<String, Value> = c
        .schema
        .iter()
        .map(|(k, f)| {
            let mut d = f.ty.name().to_string();
            if let Some(v) = &f.values {
                let _ = write!(d, ", one of {}", Value::Array(v.clone()));
            }
            if let Some(desc) = &f.description {
                let _ = write!(d, ": {desc}");
            }
            (k.clone(), Value::String(d))
        })
        .collect();
    let mut user = format!("{}\n\n{GENERATE_FIELDS_MARKER}\n{}\n", c.instructions.trim(), Value::Object(fields));
    if !seeds.is_empty() {
        user.push_str("\nExamples (write new cases, not these):\n");
        for s in seeds.iter().take(20) {
            let shown: Map<String, Value> =
                c.schema.keys().filter_map(|k| s.get(k).map(|v| (k.clone(), v.clone()))).collect();
            let _ = writeln!(user, "{}", Value::Object(shown));
        }
    }
    let _ = write!(
        user,
        "\nWrite {} new, varied cases (batch {n}). Reply with only a JSON object: {{\"cases\": [...]}}.",
        c.per_call()
    );
    vec![Message { role: "system".into(), content: SYSTEM.into() }, Message { role: "user".into(), content: user }]
}

/// Memo sample of call `n`, attempt `a`: every attempt its own key.
fn sample(n: u64, attempt: u32) -> u32 {
    (n as u32).wrapping_add(attempt.wrapping_mul(1 << 20))
}

/// The JSON Schema of an answer (`{cases: [...]}`, each case the
/// `schema:`'s fields), sent with the backend's `json_schema: true`.
fn cases_schema(c: &GenerateConfig) -> Value {
    let properties: Map<String, Value> = c
        .schema
        .iter()
        .map(|(name, f)| {
            let mut p = serde_json::json!({"type": f.ty.name()});
            if let Some(values) = &f.values {
                p["enum"] = Value::Array(values.clone());
            }
            if let Some(d) = &f.description {
                p["description"] = Value::String(d.clone());
            }
            (name.clone(), p)
        })
        .collect();
    let required: Vec<&String> = c.schema.keys().collect();
    serde_json::json!({
        "type": "object",
        "properties": {"cases": {"type": "array", "items": {"type": "object", "properties": properties, "required": required}}},
        "required": ["cases"],
    })
}

/// The first calls, for `flow plan` (the calls after them depend on what
/// the answers hold).
pub fn first_calls(c: &GenerateConfig, spec: &BackendSpec, seeds: &[Record]) -> Vec<PlannedCall> {
    (0..c.needed_calls())
        .map(|n| {
            let body = backend::chat_body_schema(spec, &messages(c, seeds, n), "cases", &cases_schema(c), sample(n, 0));
            backend::planned(&c.backend, spec, Endpoint::Chat, &body, sample(n, 0))
        })
        .collect()
}

/// Why a generated case does not fit the schema (it is counted as invalid
/// and dropped).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum CaseError {
    #[error("not a JSON object")]
    NotAnObject,
    #[error("no `{0}`")]
    Missing(String),
    #[error("`{name}` is not a {ty}")]
    WrongType { name: String, ty: &'static str },
    /// A value outside the field's `values`.
    #[error("`{0}` is not one of the allowed values")]
    NotAllowed(String),
}

/// Why a response holds no cases (the call is asked again, up to `retries`).
#[derive(Debug, thiserror::Error)]
enum AnswerError {
    #[error("no JSON object")]
    NoJson,
    #[error("no complete JSON object")]
    Incomplete,
    #[error("invalid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    #[error("no `cases` list")]
    NoCases,
    /// The answer stopped at `max_tokens` before its JSON was complete.
    #[error(
        "the JSON answer was truncated at max_tokens ({0}); raise the backend's `max_tokens`, or lower `per_call`"
    )]
    Truncated(String),
}

/// A checked case, or why it is not one.
fn check_case(schema: &BTreeMap<String, FieldSpec>, v: &Value) -> Result<Map<String, Value>, CaseError> {
    let obj = v.as_object().ok_or(CaseError::NotAnObject)?;
    let mut out = Map::new();
    for (name, f) in schema {
        let x = obj.get(name).filter(|x| !x.is_null()).ok_or_else(|| CaseError::Missing(name.clone()))?;
        let ok = match f.ty {
            FieldType::String => x.as_str().is_some_and(|s| !s.trim().is_empty()),
            FieldType::Integer => x.is_i64() || x.is_u64(),
            FieldType::Number => x.is_number(),
            FieldType::Boolean => x.is_boolean(),
        };
        if !ok {
            return Err(CaseError::WrongType { name: name.clone(), ty: f.ty.name() });
        }
        if let Some(values) = &f.values {
            if !values.contains(x) {
                return Err(CaseError::NotAllowed(name.clone()));
            }
        }
        out.insert(name.clone(), x.clone());
    }
    Ok(out)
}

fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// The cases of a response, or why it has none.
fn parse_cases(text: &str) -> Result<Vec<Value>, AnswerError> {
    let start = text.find('{').ok_or(AnswerError::NoJson)?;
    let end = text.rfind('}').filter(|e| *e > start).ok_or(AnswerError::Incomplete)?;
    let v: Value = serde_json::from_str(&text[start..=end]).map_err(AnswerError::InvalidJson)?;
    match v.get("cases") {
        Some(Value::Array(a)) => Ok(a.clone()),
        _ => Err(AnswerError::NoCases),
    }
}

/// The answer to call `n`: its cases, or why there are none.
enum Outcome {
    Cases(Vec<Value>),
    Unparsable(AnswerError),
    Failed(CallError),
    /// Not made: enough cases were in before it started.
    Skipped,
}

impl Generator {
    /// One call, asked again while its answer is unparsable.
    async fn call(self: Arc<Self>, seeds: Arc<Vec<Record>>, n: u64, stop: Arc<AtomicBool>) -> Outcome {
        if stop.load(Ordering::Relaxed) {
            return Outcome::Skipped;
        }
        let retries = self.config.retries.unwrap_or(2);
        let msgs = messages(&self.config, &seeds, n);
        // The last of the first calls, and every call after them: a batch
        // backend sends what is queued (`needed` calls together) at once.
        if n + 1 >= self.config.needed_calls() {
            self.backend.flush_batch();
        }
        let mut last = None;
        for attempt in 0..=retries {
            let opts = CallOpts { meter: &self.meter, memo_reads: self.memo_reads, sample: sample(n, attempt) };
            match self.backend.chat_schema(&msgs, "cases", &cases_schema(&self.config), opts).await {
                Ok(reply) => match parse_cases(&reply.text) {
                    Ok(cases) => return Outcome::Cases(cases),
                    Err(_) if reply.finish_reason.as_deref() == Some("length") => {
                        let max = self.backend.spec.max_tokens.map_or("the server's limit".into(), |n| n.to_string());
                        last = Some(AnswerError::Truncated(max))
                    }
                    Err(e) => last = Some(e),
                },
                Err(e) => return Outcome::Failed(e),
            }
        }
        Outcome::Unparsable(last.expect("one attempt at least"))
    }

    /// Generates after the seeds are in: batches of accepted cases.
    fn cases(self: Arc<Self>, seeds: Vec<Record>) -> BoxStream<'static, Result<Vec<Record>, NodeError>> {
        let seed_ids: Vec<String> =
            seeds.iter().filter_map(|s| s.get("id").and_then(Value::as_str).map(str::to_string)).collect();
        let seeds = Arc::new(seeds);
        let c = self.config.clone();
        let needed = c.needed_calls();
        // A batch backend takes the first calls all at once, as one batch.
        let most = self.backend.batch_window().unwrap_or(self.backend.spec.max_concurrency());
        let window = most.min(needed as usize).max(1);
        let this = self.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopper = stop.clone();
        let calls = futures::stream::iter(0..c.max_calls())
            .map(move |n| this.clone().call(seeds.clone(), n, stop.clone()).map(move |o| (n, o)))
            .buffered(window)
            .boxed();
        let state = State {
            gen: self,
            calls,
            counts: Counts::default(),
            exact: HashSet::new(),
            kept: Vec::new(),
            dedup_fields: c.dedup_fields(),
            threshold: c.dedup.as_ref().and_then(|d| d.threshold).unwrap_or(0.9),
            last_error: None,
            done: false,
            seed_ids,
            stop: stopper,
        };
        futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            let item = st.next_batch().await;
            Some((item, st))
        })
        .filter_map(|r| async move {
            match r {
                Ok(b) if b.is_empty() => None,
                other => Some(other),
            }
        })
        .boxed()
    }

    fn summary(&self) -> Result<Vec<Artifact>, NodeError> {
        let Some((counts, seeds)) = self.report.lock().expect("report lock").clone() else {
            return Ok(Vec::new());
        };
        let meta = json!({
            "cases": counts.cases, "calls": counts.calls, "invalid": counts.invalid,
            "duplicates": counts.duplicates, "unparsable": counts.unparsable, "failed_calls": counts.failed_calls,
            "backend": self.backend.name, "model": self.backend.spec.model(), "seeds": seeds,
            "schema": self.config.schema,
        });
        let md = format!(
            "cases: {} from {} calls ({} invalid, {} duplicates, {} unparsable responses, {} failed calls); backend: {} ({})\n",
            counts.cases,
            counts.calls,
            counts.invalid,
            counts.duplicates,
            counts.unparsable,
            counts.failed_calls,
            self.backend.name,
            self.backend.spec.model()
        );
        let mut bytes = serde_json::to_vec_pretty(&meta).expect("json");
        bytes.push(b'\n');
        Ok(vec![
            Artifact { name: META_JSON.into(), bytes },
            Artifact { name: SUMMARY_MD.into(), bytes: md.into_bytes() },
        ])
    }
}

struct State {
    gen: Arc<Generator>,
    calls: BoxStream<'static, (u64, Outcome)>,
    counts: Counts,
    exact: HashSet<String>,
    /// Normalized dedup texts of the accepted cases.
    kept: Vec<String>,
    dedup_fields: Vec<String>,
    threshold: f64,
    last_error: Option<String>,
    done: bool,
    /// Ids of the seed records shown in every call.
    seed_ids: Vec<String>,
    /// Set once enough cases are in: no new call starts.
    stop: Arc<AtomicBool>,
}

impl State {
    /// The cases accepted from the next call's answer.
    async fn next_batch(&mut self) -> Result<Vec<Record>, NodeError> {
        let want = self.gen.config.count;
        let Some((n, outcome)) = self.calls.next().await else {
            self.done = true;
            let c = &self.counts;
            let last = self.last_error.as_deref().map(|e| format!("; the last problem: {e}")).unwrap_or_default();
            return Err(NodeError::new(format!(
                "generated {} of {want} valid unique cases in {} calls (`max_calls` {}): {} invalid, {} duplicates, {} unparsable responses, {} failed calls{last}; raise `max_calls`, or check the instructions and the schema",
                c.cases, c.calls, self.gen.config.max_calls(), c.invalid, c.duplicates, c.unparsable, c.failed_calls
            )));
        };
        self.counts.calls += 1;
        let cases = match outcome {
            Outcome::Cases(c) => c,
            Outcome::Unparsable(e) => {
                self.counts.unparsable += 1;
                self.last_error = Some(format!("call {n}: {e}"));
                return Ok(Vec::new());
            }
            Outcome::Failed(e) => {
                // The memo can keep no more answers: the node stops.
                if let Some(halted) = self.gen.backend.halted() {
                    return Err(NodeError::new(halted.to_string()));
                }
                self.counts.failed_calls += 1;
                self.last_error = Some(format!("call {n}: {e}"));
                return Ok(Vec::new());
            }
            Outcome::Skipped => return Ok(Vec::new()),
        };
        let gen = self.gen.clone();
        let mut out = Vec::new();
        for v in cases {
            if self.counts.cases >= want {
                break;
            }
            let case = match check_case(&gen.config.schema, &v) {
                Ok(c) => c,
                Err(e) => {
                    self.counts.invalid += 1;
                    self.last_error = Some(format!("call {n}: a case was invalid: {e}"));
                    continue;
                }
            };
            let text = normalize(
                &self
                    .dedup_fields
                    .iter()
                    .map(|f| case.get(f).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                    .map(Option::unwrap_or_default)
                    .collect::<Vec<_>>()
                    .join("\u{1f}"),
            );
            let near = self.threshold < 1.0
                && self.kept.iter().any(|k| strsim::normalized_levenshtein(k, &text) >= self.threshold);
            if !self.exact.insert(text.clone()) || near {
                self.counts.duplicates += 1;
                continue;
            }
            self.kept.push(text);
            self.counts.cases += 1;
            let mut fields = case.clone();
            let id = ContentHash::of(Value::Object(case).to_string().as_bytes());
            fields.insert("id".into(), json!(format!("gen-{}", &id.hex()[..12])));
            fields.insert(
                "provenance".into(),
                json!({"backend": gen.backend.name, "model": gen.backend.spec.model(), "call": n, "seeds": self.seed_ids}),
            );
            out.push(Arc::new(fields));
        }
        if self.counts.cases >= want {
            self.done = true;
            *gen.report.lock().expect("report lock") = Some((self.counts.clone(), self.seed_ids.clone()));
            // Calls already sent are paid for: let them finish, so they are
            // memoized for a later run with a larger `count`.
            self.stop.store(true, Ordering::Relaxed);
            while self.calls.next().await.is_some() {}
        }
        Ok(out)
    }
}

/// `generate` without seeds: a source.
struct Source {
    generator: Arc<Generator>,
    stream: Option<BoxStream<'static, Result<Vec<Record>, NodeError>>>,
}

impl SourceStage for Source {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<Record>>, NodeError>> {
        Box::pin(async move {
            let Some(s) = self.stream.as_mut() else { return Ok(None) };
            match s.next().await {
                Some(b) => b.map(Some),
                None => {
                    self.stream = None;
                    Ok(None)
                }
            }
        })
    }

    fn finish(&mut self) -> Result<Vec<Artifact>, NodeError> {
        self.generator.summary()
    }
}

impl StreamStage for Generator {
    fn run(self: Arc<Self>, input: RecordStream) -> BatchStream {
        // The seeds are all read first: every call shows them.
        input.collect::<Vec<Record>>().into_stream().flat_map(move |seeds| self.clone().cases(seeds)).boxed()
    }

    fn finish(&self) -> Result<Vec<Artifact>, NodeError> {
        self.summary()
    }
}
