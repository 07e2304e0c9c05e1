//! `extract`: golden examples from execution logs, by embedding density.
//!
//! Production services pile up logs (`input`, `output`, `status`, an
//! optional `function` and `embedding`). Each log is a point of a graph
//! whose edges weigh cosine similarity; a log's neighbourhood is the logs at
//! similarity ≥ 1 − ε and its density the sum of those similarities, per
//! group (`function`). `steady` takes the centres of the dense clusters
//! (what the service does every day, done right), `anomaly` the sparsest
//! successes (rare patterns it still got right). Both only ever take
//! successful logs, and emit them as chat examples ready for fine-tuning.
//!
//! The module is split along the work: [`logs`] turns records into
//! distinct logs (copies collapsed, with their count), [`density`] computes
//! every density exactly with tiled matrix products (or [`ivf`], over the
//! neighbours an index of k-means cells finds, for large groups),
//! [`select`] picks, and
//! [`report`] writes the examples, `train.jsonl` and the summary, and
//! [`map`] the logs as points of a 2-D map ([`projection`]) for the
//! report. Logs
//! without a vector are embedded through a backend first, in batches whose
//! memo keys `flow plan` knows in advance.

pub mod density;
pub mod ivf;
pub mod logs;
pub mod map;
pub mod projection;
pub mod report;
pub mod select;
pub mod view;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use flow_engine::template::TemplateError;
use flow_engine::{
    Arity, BackendSpec, BarrierOutput, BarrierStage, BuildCx, CheckCx, FieldSet, Meter, Node, NodeError, PlannedCall,
    PortType, Record, Shape, Spool, Stage, Template,
};

use crate::backend::{self, Backend, Backends, CallOpts, Endpoint};
use logs::Logs;

pub struct Extract;

/// How the examples are chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The centres of distinct dense clusters (medoids: real logs).
    #[default]
    Steady,
    /// The sparsest successful logs: rare patterns done right.
    Anomaly,
}

/// How each log's neighbours are found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Neighbours {
    /// `exact` below 20,000 logs in a group, `approximate` from there.
    #[default]
    Auto,
    /// Every pair of logs compared: n² work.
    Exact,
    /// Only the pairs an IVF index (k-means cells) says can be neighbours:
    /// minutes for a million logs, with nearly every neighbour found.
    Approximate,
}

/// The group size from which `neighbours: auto` is approximate.
pub const APPROXIMATE_FROM: usize = 20_000;

impl Neighbours {
    /// Whether a group of `logs` logs gets approximate neighbours.
    pub fn approximate(self, logs: usize) -> bool {
        match self {
            Neighbours::Auto => logs >= APPROXIMATE_FROM,
            Neighbours::Exact => false,
            Neighbours::Approximate => true,
        }
    }
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Steady => "steady",
            Strategy::Anomaly => "anomaly",
        }
    }
}

/// `kind: extract`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtractConfig {
    /// `steady` (cluster centres, the default) or `anomaly` (rare successes).
    #[serde(default)]
    pub strategy: Strategy,
    /// Examples per group, at most; default 50.
    #[serde(default = "default_top_k")]
    pub top_k: u32,
    /// Neighbourhood radius: logs at cosine similarity ≥ 1 − ε are
    /// neighbours; default 0.3.
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    /// How neighbours are found: `exact` (every pair of logs compared),
    /// `approximate` (an IVF index of k-means cells: only the pairs of cells
    /// that can hold neighbours are compared, so 1M logs take minutes and
    /// nearly every neighbour is found), or `auto` (the default): exact
    /// below 20,000 logs in a group, approximate from there.
    #[serde(default)]
    pub neighbours: Neighbours,
    /// Fewest neighbours a `steady` pick has (a log with fewer is no
    /// cluster's centre); default 2.
    #[serde(default = "default_min_neighbours")]
    pub min_neighbours: u64,
    /// The field logs are grouped by (default `function`); `null` for one
    /// group. Logs without it form a group of their own.
    #[serde(default = "default_group_by")]
    pub group_by: Option<String>,
    /// The `status` values of a successful log; default `[SUCCESS]`.
    #[serde(default = "default_success")]
    pub success: Vec<String>,
    /// The backend that embeds logs without an `embedding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Dimension of the embeddings asked for (the request's `dimensions`);
    /// default: the model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// The text embedded for a log (a template); default its input and
    /// output on two lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed_text: Option<String>,
    /// The system message of every example (a template); default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

fn default_top_k() -> u32 {
    50
}

fn default_epsilon() -> f64 {
    0.3
}

fn default_min_neighbours() -> u64 {
    2
}

fn default_group_by() -> Option<String> {
    Some("function".into())
}

fn default_success() -> Vec<String> {
    vec!["SUCCESS".into()]
}

impl ExtractConfig {
    /// The similarity at which two logs are neighbours.
    fn threshold(&self) -> f32 {
        (1.0 - self.epsilon) as f32
    }

    fn templates(&self) -> Result<Templates, (&'static str, TemplateError)> {
        let parse = |field: &'static str, t: &Option<String>| {
            t.as_deref().map(Template::parse).transpose().map_err(|e| (field, e))
        };
        Ok(Templates { system: parse("system", &self.system)?, embed: parse("embed_text", &self.embed_text)? })
    }
}

/// The parsed templates of a config.
#[derive(Debug, Clone)]
pub struct Templates {
    pub system: Option<Template>,
    pub embed: Option<Template>,
}

/// Fields a log must have.
const LOG_FIELDS: &[&str] = &["input", "output", "status"];

/// Fields of the examples `extract` emits.
pub const OUTPUT_FIELDS: &[&str] =
    &["id", "function", "strategy", "rank", "density", "neighbours", "duplicates", "messages"];

/// The file of examples ready for fine-tuning, in the run folder.
pub const TRAIN_JSONL: &str = "train.jsonl";

/// Embeddings calls in flight at once (the backend's own limits apply too).
const CONCURRENT_CALLS: usize = 4;

impl Node for Extract {
    type Config = ExtractConfig;
    const KIND: &'static str = "extract";
    // 2: writes `projection.json`.
    const VERSION: u32 = 2;
    const ABOUT: &'static str =
        "picks golden chat examples from logs by embedding density: cluster centres or rare successes";
    const INPUTS: Arity = Arity::One;
    const SHAPE: Shape = Shape::Barrier;

    fn check(c: &ExtractConfig, cx: &mut CheckCx<'_>) -> PortType {
        let input_at = cx.field("input");
        let mut needs: Vec<(String, _)> = LOG_FIELDS.iter().map(|f| (f.to_string(), input_at.clone())).collect();
        match c.templates() {
            Ok(t) => {
                for (field, t) in [("system", &t.system), ("embed_text", &t.embed)] {
                    let at = cx.field(field);
                    needs.extend(t.iter().flat_map(|t| t.fields()).map(|f| (f.to_string(), at.clone())));
                }
            }
            Err((field, e)) => {
                cx.error(&cx.field(field), e.to_string(), Some("field references look like `{{input}}`".into()))
            }
        }
        cx.require_fields(&needs);
        match &c.backend {
            Some(name) => {
                cx.backend(&cx.field("backend"), name);
                // At most one call per log; `flow plan` counts the batches.
                cx.calls_per_record(1);
            }
            None => {
                let missing = cx.inputs().iter().find(|i| i.ty.has_field("embedding") == Some(false));
                if let Some(input) = missing {
                    let msg = format!(
                        "node `{}` has no `backend` to embed logs with, and records from `{}` have no `embedding`",
                        cx.node(),
                        input.name
                    );
                    let hint = "name a backend with an embeddings endpoint, e.g. `backend: embedder` with \
                                `backends: {embedder: {provider: sim}}`, or give each log an `embedding`";
                    cx.error_at_key(&input_at, msg, Some(hint.into()));
                }
                for (field, set) in [("dimensions", c.dimensions.is_some()), ("embed_text", c.embed_text.is_some())] {
                    if set {
                        let msg = format!("`{field}` is for embedding logs, but node `{}` has no `backend`", cx.node());
                        cx.error_at_key(&cx.field(field), msg, Some("add `backend: <name>`, or remove it".into()));
                    }
                }
            }
        }
        if c.top_k == 0 {
            cx.error(&cx.field("top_k"), "`top_k` must be at least 1", None);
        }
        if !(c.epsilon > 0.0 && c.epsilon <= 2.0) {
            let msg = format!("`epsilon` must be in (0, 2], not {}", c.epsilon);
            let hint = "logs at cosine similarity ≥ 1 − ε are neighbours; the default is 0.3";
            cx.error(&cx.field("epsilon"), msg, Some(hint.into()));
        }
        if c.dimensions == Some(0) {
            cx.error(&cx.field("dimensions"), "`dimensions` must be at least 1", None);
        }
        if c.success.is_empty() {
            cx.error(&cx.field("success"), "`success` is empty", Some("e.g. `success: [SUCCESS]`".into()));
        }
        if c.group_by.as_deref() == Some("") {
            cx.error(&cx.field("group_by"), "`group_by` is empty", Some("write `group_by: null` for one group".into()));
        }
        PortType {
            name: Cow::Borrowed("ChatExample"),
            fields: FieldSet::Known(OUTPUT_FIELDS.iter().map(|f| f.to_string()).collect()),
        }
    }

    /// The embeddings calls for the logs without a vector: the same
    /// batches, so the same memo keys, as a run sends.
    fn plan_batch_calls(
        c: &ExtractConfig,
        records: &[Record],
        backends: &BTreeMap<String, BackendSpec>,
    ) -> Option<Vec<PlannedCall>> {
        let Some(name) = &c.backend else { return Some(Vec::new()) };
        let spec = backends.get(name)?;
        let templates = c.templates().ok()?;
        // A log the run would reject makes no call.
        let input = Spool::in_memory(records.to_vec());
        let Ok(logs) = logs::collect(c, templates.embed.as_ref(), &input, false) else { return Some(Vec::new()) };
        let texts = logs::texts_to_embed(&logs).ok()?;
        let keys = logs::batches(texts)
            .iter()
            .map(|b| backend::planned(name, spec, Endpoint::Embeddings, &backend::embed_body(spec, b, c.dimensions), 0))
            .collect();
        Some(keys)
    }

    fn build(c: &ExtractConfig, cx: &BuildCx) -> Result<Stage, NodeError> {
        let backend = c.backend.as_deref().map(|name| Backends::of(cx, name)).transpose()?;
        let templates = c.templates().map_err(|(f, e)| NodeError::new(format!("`{f}`: {e}")))?;
        Ok(Stage::Barrier(Box::new(ExtractStage {
            config: c.clone(),
            templates,
            node: cx.node.clone(),
            backend,
            meter: cx.meter.clone(),
            memo_reads: cx.memo_reads,
        })))
    }
}

struct ExtractStage {
    config: ExtractConfig,
    templates: Templates,
    node: String,
    backend: Option<Arc<Backend>>,
    meter: Arc<Meter>,
    memo_reads: bool,
}

/// What embedding the logs without a vector took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Embedded {
    /// Distinct texts embedded.
    pub texts: usize,
    /// Calls made (or answered from the memo).
    pub calls: usize,
}

impl BarrierStage for ExtractStage {
    fn run(self: Box<Self>, inputs: Vec<Vec<Record>>) -> BoxFuture<'static, BarrierOutput> {
        self.run_spooled(inputs.into_iter().map(Spool::in_memory).collect())
    }

    /// Reads the input as it goes: only the logs' figures and vectors stay
    /// in memory, and a pick's record is read again by its position.
    fn run_spooled(self: Box<Self>, inputs: Vec<Spool>) -> BoxFuture<'static, BarrierOutput> {
        Box::pin(async move {
            let input = Arc::new(inputs.into_iter().next().unwrap_or_default());
            let config = Arc::new(self.config.clone());
            let (cfg, templates, read) = (config.clone(), self.templates.clone(), input.clone());
            let started = Instant::now();
            let mut logs = blocking(move || {
                logs::collect(&cfg, templates.embed.as_ref(), &read, true).map_err(|e| NodeError::new(e.to_string()))
            })
            .await?;
            tracing::debug!(node = %self.node, seconds = started.elapsed().as_secs_f64(), "extract: logs read");
            let embedded = self.embed_missing(&mut logs).await?;
            let templates = self.templates.clone();
            let node = self.node.clone();
            blocking(move || {
                let started = Instant::now();
                let out = report::extract(&config, &templates, logs, &input, embedded)
                    .map_err(|e| NodeError::new(e.to_string()));
                tracing::debug!(node = %node, seconds = started.elapsed().as_secs_f64(), "extract: densities and picks");
                out
            })
            .await
        })
    }
}

/// Runs CPU-bound work off the scheduler's threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| NodeError::new(format!("extract panicked: {e}")))?
}

impl ExtractStage {
    /// Embeds the logs that came without a vector, through the backend, in
    /// batches of distinct texts, a few calls at a time.
    async fn embed_missing(&self, logs: &mut Logs) -> Result<Embedded, NodeError> {
        let texts = logs::texts_to_embed(logs).map_err(|e| NodeError::new(e.to_string()))?;
        if texts.is_empty() {
            return Ok(Embedded::default());
        }
        let Some(backend) = &self.backend else {
            let first = logs.groups.values().flatten().find(|l| !l.has_embedding()).map(|l| l.id.as_str());
            return Err(NodeError::new(format!(
                "{} logs have no `embedding` (the first: `{}`) and node `{}` has no `backend` to embed them with; \
                 hint: add `backend: <name>` naming an embeddings endpoint (`provider: sim` works offline)",
                texts.len(),
                first.unwrap_or_default(),
                self.node
            )));
        };
        let batches = logs::batches(texts);
        let calls = batches.len();
        let opts = CallOpts { meter: &self.meter, memo_reads: self.memo_reads, sample: 0 };
        let dimensions = self.config.dimensions;
        // A batch backend takes every call at once, as one batch, sent
        // once the last is queued.
        let window = backend.batch_window().unwrap_or(CONCURRENT_CALLS);
        let mut answers = futures::stream::iter(batches.into_iter().enumerate())
            .map(|(i, batch)| async move {
                if i + 1 == calls {
                    backend.flush_batch();
                }
                let vectors = backend.embed_dims(&batch, dimensions, opts).await;
                (batch, vectors)
            })
            .buffered(window);
        let mut vectors: HashMap<String, Vec<f32>> = HashMap::new();
        while let Some((batch, answer)) = answers.next().await {
            let answer = answer.map_err(|e| {
                NodeError::new(format!(
                    "node `{}`: embedding {} logs through backend `{}` failed: {e}",
                    self.node,
                    batch.len(),
                    backend.name
                ))
            })?;
            vectors.extend(batch.into_iter().zip(answer));
        }
        let texts = vectors.len();
        for log in logs.groups.values_mut().flatten().filter(|l| !l.has_embedding()) {
            if let Some(Ok(text)) = log.text.take() {
                log.embedded = vectors.get(&text).cloned();
            }
        }
        Ok(Embedded { texts, calls })
    }
}
