//! What a stage kind is, to the engine: the [`Node`] trait, its type-erased
//! twin [`Kind`], and the [`Registry`] that lists the kinds a build knows.
//!
//! A kind is compiled in two steps. At compile time (`flow validate`, `flow
//! plan`) it deserializes its config, checks it against its inputs' port
//! types and declares the files it reads; nothing runs. At run time it
//! builds a [`Stage`] of one of two shapes: streaming (a source, or a map
//! applied to each record as it arrives) or barrier (all input first).

use std::any::Any;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use crate::calls::{PlannedCall, Tokens};
pub use crate::check::{CheckCx, FileInput, InputInfo};
use crate::meter::Meter;
use crate::record::{PortType, Record};
use crate::spec::BackendSpec;
pub use crate::spill::Spool;

/// How many upstream inputs a kind takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// A source: no `input`.
    None,
    /// Exactly one `input`.
    One,
    /// No input, or one (`generate`: seed records are optional).
    Optional,
    /// One or more `inputs`.
    Many,
}

/// The two shapes of execution, plus sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Produces records from outside the graph (a file, an API).
    Source,
    /// Emits per record as input arrives.
    Streaming,
    /// Consumes all input, then emits.
    Barrier,
}

/// A stage kind. `Config` is what the user writes under the node (besides
/// `kind` and `input(s)`), deserialized with unknown fields denied.
pub trait Node: Send + Sync + 'static {
    /// Its JSON Schema (`flow schema`, the docs) is derived from the type and
    /// its doc comments.
    type Config: DeserializeOwned + Serialize + schemars::JsonSchema + Clone + Send + Sync + 'static;
    /// The name users write in `kind:`.
    const KIND: &'static str;
    /// Bumped when the kind's output for the same input and config changes;
    /// part of every node key.
    const VERSION: u32;
    /// One line for `--help` and plans.
    const ABOUT: &'static str;
    const INPUTS: Arity;
    const SHAPE: Shape;
    /// Config fields whose value names another node of the spec (`run`'s
    /// `rules: <synthesize node>`): the engine makes each an extra input,
    /// read whole before the node starts and handed over in
    /// [`BuildCx::side_inputs`].
    const SIDE_INPUTS: &'static [&'static str] = &[];

    /// Checks the config against the inputs' types, registers the files the
    /// node reads, and returns the output port type. Problems go to `cx`.
    fn check(config: &Self::Config, cx: &mut CheckCx<'_>) -> PortType;

    /// Builds the runnable stage.
    fn build(config: &Self::Config, cx: &BuildCx) -> Result<Stage, NodeError>;

    /// The backend calls the node would make for one input record (none
    /// for a record it would not send, e.g. one missing a prompt field):
    /// each call's memo key, backend and tokens; `backends` are the
    /// spec's. `flow plan` looks the keys up to say how many calls a run
    /// will make and prices the rest. `None` (the default) when the kind
    /// cannot tell: the plan then says "up to records × calls per record".
    fn plan_calls(
        config: &Self::Config,
        record: &Record,
        backends: &BTreeMap<String, BackendSpec>,
    ) -> Option<Vec<PlannedCall>> {
        let _ = (config, record, backends);
        None
    }

    /// The records the node would output for its input `records`, when
    /// they can be worked out before it runs, at no cost and exactly (a
    /// `run` on the offline `sim`, whose answers are pure functions of the
    /// request): `flow plan` then counts and prices the calls of the nodes
    /// after it too. `None` (the default) when they cannot. Fields a run
    /// measures (`latency_ms`, `cost_usd`) are not in them.
    fn plan_outputs(
        config: &Self::Config,
        records: &[Record],
        backends: &BTreeMap<String, BackendSpec>,
    ) -> Option<Vec<Record>> {
        let _ = (config, records, backends);
        None
    }

    /// The calls the node would make for all of its input `records` (empty
    /// for a node without input). By default each record's
    /// [`Node::plan_calls`]; a kind whose calls depend on the whole input
    /// (`generate` shows every seed in every call) says so here.
    fn plan_batch_calls(
        config: &Self::Config,
        records: &[Record],
        backends: &BTreeMap<String, BackendSpec>,
    ) -> Option<Vec<PlannedCall>> {
        let mut calls = Vec::new();
        for r in records {
            calls.extend(Self::plan_calls(config, r, backends)?);
        }
        Some(calls)
    }
}

/// A node's config after its kind accepted it.
pub struct Compiled {
    /// Canonical form of the config (defaults filled), part of the node key.
    pub config: serde_json::Value,
    pub output: PortType,
    pub files: Vec<FileInput>,
    /// Identities of the backends the node calls, by name: part of its key.
    pub backends: BTreeMap<String, serde_json::Value>,
    /// Calls per input record (`repeat`, judge metrics); 0 for kinds that
    /// call no backend. `flow plan` multiplies it by the records expected.
    pub calls_per_record: u64,
    /// How many records the node is expected to output, as its kind
    /// declares (see [`CheckCx::output_records`]): progress shows done/total.
    pub records: OutputRecords,
    build: Arc<BuildFn>,
    plan_calls: Arc<PlanCallsFn>,
    plan_outputs: Arc<PlanOutputsFn>,
}

type BuildFn = dyn Fn(&BuildCx) -> Result<Stage, NodeError> + Send + Sync;
type PlanCallsFn = dyn Fn(&[Record], &BTreeMap<String, BackendSpec>) -> Option<Vec<PlannedCall>> + Send + Sync;
type PlanOutputsFn = dyn Fn(&[Record], &BTreeMap<String, BackendSpec>) -> Option<Vec<Record>> + Send + Sync;

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled").field("config", &self.config).field("output", &self.output).finish()
    }
}

impl Compiled {
    pub fn build(&self, cx: &BuildCx) -> Result<Stage, NodeError> {
        (self.build)(cx)
    }

    /// The calls the node would make for its input `records` (see
    /// [`Node::plan_batch_calls`]); `backends` are the spec's.
    pub fn plan_calls(&self, records: &[Record], backends: &BTreeMap<String, BackendSpec>) -> Option<Vec<PlannedCall>> {
        (self.plan_calls)(records, backends)
    }

    /// The records the node would output for `records`, when known before
    /// it runs (see [`Node::plan_outputs`]).
    pub fn plan_outputs(&self, records: &[Record], backends: &BTreeMap<String, BackendSpec>) -> Option<Vec<Record>> {
        (self.plan_outputs)(records, backends)
    }
}

/// The records a node will output, as far as its kind can tell before it
/// runs: a source that counted its file, a stage that emits so many records
/// per input record. Only progress uses it; nothing relies on it being right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputRecords {
    /// Not known before the node runs (a barrier, a generator).
    #[default]
    Unknown,
    /// Exactly this many (a `load` that counted its file).
    Exactly(u64),
    /// This many per record of its one main input (`run`: `repeat`).
    PerInput(u64),
}

/// A kind with its types erased, as the registry holds it.
pub trait Kind: Send + Sync {
    fn name(&self) -> &'static str;
    fn version(&self) -> u32;
    fn about(&self) -> &'static str;
    fn inputs(&self) -> Arity;
    fn shape(&self) -> Shape;
    fn side_inputs(&self) -> &'static [&'static str];
    /// The JSON Schema of the config (`flow schema`).
    fn config_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema;
    /// Deserializes and checks a config; `None` when it has problems (they
    /// are in `cx`).
    fn compile(&self, config: &serde_yaml::Value, cx: &mut CheckCx<'_>) -> Option<Compiled>;
}

struct Erased<N>(std::marker::PhantomData<N>);

impl<N: Node> Kind for Erased<N> {
    fn name(&self) -> &'static str {
        N::KIND
    }
    fn version(&self) -> u32 {
        N::VERSION
    }
    fn about(&self) -> &'static str {
        N::ABOUT
    }
    fn inputs(&self) -> Arity {
        N::INPUTS
    }
    fn shape(&self) -> Shape {
        N::SHAPE
    }
    fn side_inputs(&self) -> &'static [&'static str] {
        N::SIDE_INPUTS
    }
    fn config_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<N::Config>()
    }

    fn compile(&self, config: &serde_yaml::Value, cx: &mut CheckCx<'_>) -> Option<Compiled> {
        let typed: N::Config = match serde_path_to_error::deserialize(config.clone()) {
            Ok(c) => c,
            Err(e) => {
                cx.config_error(e.path(), e.inner().to_string());
                return None;
            }
        };
        let errors_before = cx.diags.len();
        let output = N::check(&typed, cx);
        if cx.diags.len() > errors_before {
            return None;
        }
        let canonical = serde_json::to_value(&typed).expect("a config serializes");
        let typed = Arc::new(typed);
        let for_plan = typed.clone();
        let for_outputs = typed.clone();
        Some(Compiled {
            config: canonical,
            output,
            files: std::mem::take(&mut cx.files),
            backends: std::mem::take(&mut cx.backends_used),
            calls_per_record: cx.calls_per_record,
            records: cx.records,
            build: Arc::new(move |bcx| N::build(&typed, bcx)),
            plan_calls: Arc::new(move |records, backends| N::plan_batch_calls(&for_plan, records, backends)),
            plan_outputs: Arc::new(move |records, backends| N::plan_outputs(&for_outputs, records, backends)),
        })
    }
}

/// The kind `N`, erased for a registry.
pub fn kind<N: Node>() -> Box<dyn Kind> {
    Box::new(Erased::<N>(std::marker::PhantomData))
}

/// The kinds a build of flow knows.
#[derive(Default)]
pub struct Registry {
    kinds: Vec<Box<dyn Kind>>,
}

impl Registry {
    pub fn new(kinds: Vec<Box<dyn Kind>>) -> Self {
        Self { kinds }
    }

    pub fn get(&self, name: &str) -> Option<&dyn Kind> {
        self.kinds.iter().find(|k| k.name() == name).map(|k| k.as_ref())
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + Clone + '_ {
        self.kinds.iter().map(|k| k.name())
    }

    pub fn kinds(&self) -> impl Iterator<Item = &dyn Kind> {
        self.kinds.iter().map(|k| k.as_ref())
    }
}

/// Run-wide state that stages share, made by the caller of the run (the
/// CLI): for flow-nodes, the backends with their shared limits and the call
/// memo. The engine only passes it along.
pub type RunContext = Arc<dyn Any + Send + Sync>;

/// What a stage may know when it is built for a run.
#[derive(Clone)]
pub struct BuildCx {
    pub node: String,
    /// The folder of the file the node is written in (a template's own
    /// folder for a template's nodes), for resolving relative paths.
    pub spec_dir: PathBuf,
    /// The files the node registered at compile time, with the content hash
    /// its key was computed from.
    pub files: Vec<FileInput>,
    /// Counts the node's backend calls for the run manifest.
    pub meter: Arc<Meter>,
    /// Whether memoized calls may be reused (`--no-cache` and `cache: false`
    /// turn this off; fresh answers are still recorded).
    pub memo_reads: bool,
    /// The run's shared context, if the caller gave one.
    pub context: Option<RunContext>,
    /// How many upstream inputs the node has in this spec.
    pub inputs: usize,
    /// The names of those inputs, in the order written (a barrier's outer
    /// vec follows it), for reports that name their inputs.
    pub input_names: Vec<String>,
    /// Every record of each side input, by config field ([`Node::SIDE_INPUTS`]).
    pub side_inputs: BTreeMap<String, Vec<Record>>,
}

impl std::fmt::Debug for BuildCx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildCx").field("node", &self.node).field("spec_dir", &self.spec_dir).finish()
    }
}

impl BuildCx {
    /// A context for a node built outside a run (tests, tools).
    pub fn new(node: &str, spec_dir: PathBuf) -> Self {
        Self {
            node: node.to_string(),
            spec_dir,
            files: Vec::new(),
            meter: Arc::default(),
            memo_reads: true,
            context: None,
            inputs: 0,
            input_names: Vec::new(),
            side_inputs: BTreeMap::new(),
        }
    }

    /// The run context as `T`, when the run has one of that type.
    pub fn context<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.context.as_deref().and_then(|c| c.downcast_ref::<T>())
    }

    /// The compile-time record of a file the node reads, by the path written.
    pub fn file(&self, written: &str) -> Option<&FileInput> {
        self.files.iter().find(|f| f.written == written)
    }

    pub fn resolve(&self, p: &str) -> PathBuf {
        crate::spec::resolve_in(&self.spec_dir, p)
    }
}

/// A file a node writes beside its output: a summary, a report. Stored as an
/// object and copied into the run folder under `<node>/<name>`. A
/// [`SUMMARY_MD`] artifact is printed at the end of the run.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Name of the artifact printed after a run.
pub const SUMMARY_MD: &str = "summary.md";

/// Name of the artifact most kinds summarize their output in (counts,
/// rates, latencies), as JSON.
pub const SUMMARY_JSON: &str = "summary.json";

/// Name of the artifact a node writes when one of its gates tripped (a
/// `compare` node's `fail_if`): its text says which gate, with the figures.
/// The node's output is complete and cached, but the run fails (exit 1),
/// also when the node is replayed from the cache.
pub const GATE_FAILED: &str = "gate_failed.txt";

/// Name of the artifact whose JSON object the run manifest shows as the
/// node's `meta` (a generated dataset's counts and provenance).
pub const META_JSON: &str = "meta.json";

/// Name of the artifact a node writes when something in its input looks
/// wrong without failing it (ids that repeat): one warning per line, shown
/// at the end of the run, also when the node is replayed from the cache.
pub const WARNINGS_TXT: &str = "warnings.txt";

/// A node failed as a whole (not a single record), or stopped because the
/// run is being cancelled.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Failed(String),
    /// A downstream node went away: the run is stopping for another reason,
    /// so this node is cancelled rather than failed.
    #[error("cancelled")]
    Cancelled,
}

impl NodeError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self::Failed(msg.into())
    }
}

/// A runnable stage.
pub enum Stage {
    Source(Box<dyn SourceStage>),
    Map(Box<dyn MapStage>),
    /// A streaming stage that works asynchronously (backend calls, child
    /// processes), many records at a time.
    Stream(Arc<dyn StreamStage>),
    Barrier(Box<dyn BarrierStage>),
}

/// The records of a node's one input, as they arrive.
pub type RecordStream = futures::stream::BoxStream<'static, Record>;

/// Output batches of a [`StreamStage`].
pub type BatchStream = futures::stream::BoxStream<'static, Result<Vec<Record>, NodeError>>;

/// Asynchronous streaming map: turns the input stream into a stream of
/// output batches, with as much work in flight as it wants (its own
/// concurrency is its business; backends cap it across the run). `finish`
/// runs after the output stream ended.
pub trait StreamStage: Send + Sync {
    fn run(self: Arc<Self>, input: RecordStream) -> BatchStream;
    fn finish(&self) -> Result<Vec<Artifact>, NodeError> {
        Ok(Vec::new())
    }
}

/// Streaming source: produces batches until it returns `None`.
pub trait SourceStage: Send {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<Record>>, NodeError>>;
    /// Runs after the last batch; returns the node's artifacts.
    fn finish(&mut self) -> Result<Vec<Artifact>, NodeError> {
        Ok(Vec::new())
    }
}

/// Streaming map: called for each input record in order, pushes zero or
/// more output records. `finish` runs after the last record.
pub trait MapStage: Send + Sync {
    fn map(&self, record: &Record, out: &mut Vec<Record>) -> Result<(), NodeError>;
    fn finish(&self) -> Result<Vec<Artifact>, NodeError> {
        Ok(Vec::new())
    }
}

/// What a barrier stage returns: its output records and artifacts.
pub type BarrierOutput = Result<(Vec<Record>, Vec<Artifact>), NodeError>;

/// Barrier: receives every record of each input (outer vec: inputs in the
/// order written), then returns its output and artifacts.
///
/// The engine calls [`BarrierStage::run_spooled`], with each input in a
/// [`Spool`] (in memory up to a bound, on disk past it). A stage that can
/// read its input as it goes implements it, and holds only what its work
/// needs; the default reads every record into memory and calls
/// [`BarrierStage::run`].
pub trait BarrierStage: Send + 'static {
    fn run(self: Box<Self>, inputs: Vec<Vec<Record>>) -> BoxFuture<'static, BarrierOutput>;

    /// Runs on the collected inputs, in the order written.
    fn run_spooled(self: Box<Self>, inputs: Vec<Spool>) -> BoxFuture<'static, BarrierOutput> {
        Box::pin(async move {
            let read = tokio::task::spawn_blocking(move || {
                inputs.into_iter().map(Spool::into_records).collect::<Result<Vec<_>, _>>()
            });
            let inputs = read
                .await
                .map_err(|e| NodeError::new(format!("reading the input back failed: {e}")))?
                .map_err(|e| NodeError::new(e.to_string()))?;
            self.run(inputs).await
        })
    }
}
