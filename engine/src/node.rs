//! What a stage kind is, to the engine: the [`Node`] trait, its type-erased
//! twin [`Kind`], and the [`Registry`] that lists the kinds a build knows.
//!
//! A kind is compiled in two steps. At compile time (`flow validate`, `flow
//! plan`) it deserializes its config, checks it against its inputs' port
//! types and declares the files it reads; nothing runs. At run time it
//! builds a [`Stage`] of one of two shapes: streaming (a source, or a map
//! applied to each record as it arrives) or barrier (all input first).

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::diag::{suggest, Diagnostic};
use crate::meter::Meter;
use crate::record::{FieldSet, PortType, Record};
use crate::spec::{BackendSpec, SpecFile, YamlPath};
use flow_cache::{ContentHash, Store};

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
    type Config: DeserializeOwned + Serialize + Clone + Send + Sync + 'static;
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

    /// The call-memo keys of the backend calls the node would make for one
    /// input record (none for a record it would not send, e.g. one missing
    /// a prompt field); `backends` are the spec's. `flow plan` looks them
    /// up to say how many calls a run will make. `None` (the default) when
    /// the kind cannot tell: the plan then says "up to records × calls per
    /// record".
    fn call_keys(
        config: &Self::Config,
        record: &Record,
        backends: &BTreeMap<String, BackendSpec>,
    ) -> Option<Vec<ContentHash>> {
        let _ = (config, record, backends);
        None
    }

    /// The JSON Schema of the config (`flow schema`), for kinds that derive
    /// `schemars::JsonSchema`: `Some(generator.subschema_for::<Self::Config>())`.
    fn config_schema(generator: &mut schemars::SchemaGenerator) -> Option<schemars::Schema> {
        let _ = generator;
        None
    }

    /// The call-memo keys of the calls the node would make for all of its
    /// input `records` (empty for a node without input). By default each
    /// record's [`Node::call_keys`]; a kind whose calls depend on the whole
    /// input (`generate` shows every seed in every call) says so here.
    fn batch_call_keys(
        config: &Self::Config,
        records: &[Record],
        backends: &BTreeMap<String, BackendSpec>,
    ) -> Option<Vec<ContentHash>> {
        let mut keys = Vec::new();
        for r in records {
            keys.extend(Self::call_keys(config, r, backends)?);
        }
        Some(keys)
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
    build: Arc<BuildFn>,
    call_keys: Arc<CallKeysFn>,
}

type BuildFn = dyn Fn(&BuildCx) -> Result<Stage, NodeError> + Send + Sync;
type CallKeysFn = dyn Fn(&[Record], &BTreeMap<String, BackendSpec>) -> Option<Vec<ContentHash>> + Send + Sync;

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled").field("config", &self.config).field("output", &self.output).finish()
    }
}

impl Compiled {
    pub fn build(&self, cx: &BuildCx) -> Result<Stage, NodeError> {
        (self.build)(cx)
    }

    /// The memo keys of the calls the node would make for its input
    /// `records` (see [`Node::batch_call_keys`]); `backends` are the spec's.
    pub fn call_keys(&self, records: &[Record], backends: &BTreeMap<String, BackendSpec>) -> Option<Vec<ContentHash>> {
        (self.call_keys)(records, backends)
    }
}

/// A kind with its types erased, as the registry holds it.
pub trait Kind: Send + Sync {
    fn name(&self) -> &'static str;
    fn version(&self) -> u32;
    fn about(&self) -> &'static str;
    fn inputs(&self) -> Arity;
    fn shape(&self) -> Shape;
    fn side_inputs(&self) -> &'static [&'static str];
    fn config_schema(&self, generator: &mut schemars::SchemaGenerator) -> Option<schemars::Schema>;
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
    fn config_schema(&self, generator: &mut schemars::SchemaGenerator) -> Option<schemars::Schema> {
        N::config_schema(generator)
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
        let for_keys = typed.clone();
        Some(Compiled {
            config: canonical,
            output,
            files: std::mem::take(&mut cx.files),
            backends: std::mem::take(&mut cx.backends_used),
            calls_per_record: cx.calls_per_record,
            build: Arc::new(move |bcx| N::build(&typed, bcx)),
            call_keys: Arc::new(move |records, backends| N::batch_call_keys(&for_keys, records, backends)),
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

/// A file a node reads; its content hash is part of the node key. A past
/// run's stored output is one too (see [`CheckCx::stored_output`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInput {
    /// As written in the spec; `runs/<run-id>/<node>` for a stored output.
    pub written: String,
    /// Resolved against the spec's folder; the stored object for an output.
    pub path: PathBuf,
    pub hash: ContentHash,
}

/// An upstream input as a kind sees it at compile time.
#[derive(Debug, Clone)]
pub struct InputInfo {
    pub name: String,
    pub kind: &'static str,
    pub ty: PortType,
}

/// What a kind's `check` can see and where it reports problems.
pub struct CheckCx<'a> {
    file: &'a SpecFile,
    node: String,
    path: YamlPath,
    inputs: Vec<InputInfo>,
    /// Side inputs by config field (see [`Node::SIDE_INPUTS`]).
    pub(crate) side_inputs: Vec<(String, InputInfo)>,
    diags: &'a mut Vec<Diagnostic>,
    files: Vec<FileInput>,
    backends: &'a BTreeMap<String, BackendSpec>,
    /// Every name under `backends:`, valid or not.
    declared_backends: &'a [String],
    backends_used: BTreeMap<String, serde_json::Value>,
    calls_per_record: u64,
    /// Where past runs are stored, when the caller knows (the CLI does: the
    /// workspace next to the spec, or `--workspace`).
    pub(crate) workspace: Option<&'a Store>,
}

impl<'a> CheckCx<'a> {
    pub(crate) fn new(
        file: &'a SpecFile,
        node: &str,
        path: YamlPath,
        inputs: Vec<InputInfo>,
        diags: &'a mut Vec<Diagnostic>,
        backends: &'a BTreeMap<String, BackendSpec>,
        declared_backends: &'a [String],
    ) -> Self {
        Self {
            file,
            node: node.to_string(),
            path,
            inputs,
            side_inputs: Vec::new(),
            diags,
            files: Vec::new(),
            backends,
            declared_backends,
            backends_used: BTreeMap::new(),
            calls_per_record: 0,
            workspace: None,
        }
    }

    /// The backend named at `at` (`backend: bot`), recorded as one this node
    /// calls (its identity joins the node key); an unknown name is reported
    /// with a did-you-mean.
    pub fn backend(&mut self, at: &YamlPath, name: &str) -> Option<BackendSpec> {
        match self.backends.get(name) {
            Some(b) => {
                self.backends_used.insert(name.to_string(), b.identity());
                Some(b.clone())
            }
            // Declared but rejected: its own error is already reported.
            None if self.declared_backends.iter().any(|d| d == name) => None,
            None => {
                let hint = if self.backends.is_empty() {
                    "declare it under `backends:` at the top of the spec, e.g. `backends: {bot: {provider: sim}}`"
                        .to_string()
                } else {
                    suggest(name, self.backends.keys().map(String::as_str), "a backend")
                };
                self.error(at, format!("node `{}` uses unknown backend `{name}`", self.node), Some(hint));
                None
            }
        }
    }

    /// Declares how many backend calls the node makes per input record.
    pub fn calls_per_record(&mut self, n: u64) {
        self.calls_per_record = n;
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node's upstream inputs, in the order written.
    pub fn inputs(&self) -> &[InputInfo] {
        &self.inputs
    }

    /// The node named by config field `field`, when it is a side input
    /// ([`Node::SIDE_INPUTS`]) the spec sets.
    pub fn side_input(&self, field: &str) -> Option<&InputInfo> {
        self.side_inputs.iter().find(|(f, _)| f == field).map(|(_, i)| i)
    }

    /// A path written in the node, resolved against the folder of the file
    /// it is written in (the spec, or its template).
    pub fn resolve(&self, written: &str) -> PathBuf {
        self.file.resolve(written)
    }

    /// Path of a field of this node's config, for [`CheckCx::error`].
    pub fn field(&self, name: &str) -> YamlPath {
        self.path.key(name)
    }

    /// Reports a problem at the value at `path`.
    pub fn error(&mut self, path: &YamlPath, message: impl Into<String>, hint: Option<String>) {
        let d = self.file.at_value(path, message).maybe_hint(hint);
        self.diags.push(d);
    }

    /// Reports a problem at the key of the map entry at `path` (a field that
    /// should not be there).
    pub fn error_at_key(&mut self, path: &YamlPath, message: impl Into<String>, hint: Option<String>) {
        let d = self.file.at_key(path, message).maybe_hint(hint);
        self.diags.push(d);
    }

    fn config_error(&mut self, at: &serde_path_to_error::Path, message: String) {
        let path = self.path.join_serde(at);
        // serde's unknown-field message lists what is allowed; turn it into a
        // located error with a did-you-mean.
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let allowed: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            let mut candidates = allowed.clone();
            if path.parent() == self.path || path == self.path {
                candidates.extend(crate::spec::NODE_FIELDS);
            }
            let key_path = if path.0.last() == Some(&crate::spec::Seg::Key(field.to_string())) {
                path.clone()
            } else {
                path.key(field)
            };
            let d = self
                .file
                .at_key(&key_path, format!("unknown field `{field}` in node `{}`", self.node))
                .hint(suggest(field, candidates.iter().copied(), "a field"));
            self.diags.push(d);
            return;
        }
        if let Some(rest) = message.strip_prefix("unknown variant `") {
            let (value, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let allowed: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            let field = YamlPath(path.0[self.path.0.len().min(path.0.len())..].to_vec());
            let d = self
                .file
                .at_value(&path, format!("unknown value `{value}` for `{field}` in node `{}`", self.node))
                .hint(suggest(value, allowed.iter().copied(), "the value"));
            self.diags.push(d);
            return;
        }
        let shown = path.0.len() > self.path.0.len();
        let message = if shown {
            format!("invalid `{}` in node `{}`: {message}", YamlPath(path.0[self.path.0.len()..].to_vec()), self.node)
        } else {
            format!("invalid node `{}`: {message}", self.node)
        };
        let d = if message.contains("missing field") {
            self.file.at_key(&path, message)
        } else {
            self.file.at_value(&path, message)
        };
        self.diags.push(d);
    }

    /// Registers a file the node reads: resolved against the spec's folder,
    /// checked to exist, content-hashed for the key. `at` is the config field
    /// that names it.
    pub fn input_file(&mut self, at: &YamlPath, written: &str) -> Option<PathBuf> {
        let path = self.file.resolve(written);
        match flow_cache::hash_file(&path) {
            Ok(hash) => {
                self.files.push(FileInput { written: written.to_string(), path: path.clone(), hash });
                Some(path)
            }
            Err(e) => {
                let what =
                    if e.kind() == std::io::ErrorKind::NotFound { "not found".to_string() } else { e.to_string() };
                let whose = if self.file.template { "the template's" } else { "the spec's" };
                let hint =
                    format!("paths resolve against {whose} folder ({}); check the name", display_dir(&self.file.dir));
                self.error(
                    at,
                    format!("input file `{written}` of node `{}`: {what} ({})", self.node, path.display()),
                    Some(hint),
                );
                None
            }
        }
    }

    /// Registers the output of node `node` as a past run of this workspace
    /// stored it, for a node that reads it (`compare`'s stored baseline):
    /// `run` is a run id, or `latest` for the newest run that has an output
    /// for `node`. It counts as an input file (the stored object): its
    /// content hash joins the node key, so a new baseline re-runs the node,
    /// while a newer run with the same output does not. `at` is the config
    /// field holding the reference; a run or node that is not there is
    /// reported at `at.run` or `at.node`.
    pub fn stored_output(&mut self, at: &YamlPath, run: &str, node: &str) -> Option<FileInput> {
        let hint_runs = "run the spec once, or name a run with `run: <id>`; `flow runs` lists them";
        let Some(store) = self.workspace else {
            let msg = format!("node `{}` reads a stored run, but no workspace is known here", self.node);
            self.error(at, msg, Some("run it with the flow CLI, which uses the .flow folder next to the spec".into()));
            return None;
        };
        let id = (run != "latest").then_some(run);
        let found = match store.node_output(node, id) {
            Ok(found) => found,
            Err(flow_cache::StoreError::NoSuchRun(_)) => {
                let ids = store.run_ids().unwrap_or_default();
                let hint = match crate::diag::did_you_mean(run, ids.iter().map(String::as_str)) {
                    Some(c) => format!("did you mean `{c}`? `flow runs` lists the runs"),
                    None => hint_runs.to_string(),
                };
                let msg = format!("node `{}`: no run `{run}` in {}", self.node, store.root().display());
                self.error(&at.key("run"), msg, Some(hint));
                return None;
            }
            Err(e) => {
                self.error(at, format!("node `{}`: cannot read past runs: {e}", self.node), None);
                return None;
            }
        };
        let Some(found) = found else {
            let known = store.nodes_with_output(id).unwrap_or_default();
            let which = match id {
                Some(id) => format!("run `{id}` has"),
                None if store.run_ids().unwrap_or_default().is_empty() => {
                    format!("no run is stored in {} yet, so none has", store.root().display())
                }
                None => format!("no run in {} has", store.root().display()),
            };
            let hint = match crate::diag::did_you_mean(node, known.iter().map(String::as_str)) {
                Some(c) => format!("did you mean `{c}`? {hint_runs}"),
                None => hint_runs.to_string(),
            };
            self.error(
                &at.key("node"),
                format!("node `{}`: {which} an output for node `{node}`", self.node),
                Some(hint),
            );
            return None;
        };
        let path = store.object_path(&found.output);
        if !path.is_file() {
            let msg = format!(
                "node `{}`: the output of node `{node}` in run `{}` is no longer stored ({})",
                self.node,
                found.run_id,
                path.display()
            );
            self.error(at, msg, Some(hint_runs.into()));
            return None;
        }
        let input = FileInput { written: format!("runs/{}/{node}", found.run_id), path, hash: found.output };
        self.files.push(input.clone());
        Some(input)
    }

    /// Checks that every input has the fields the node reads; `fields` pairs
    /// each field with the config path that names it.
    pub fn require_fields(&mut self, fields: &[(String, YamlPath)]) {
        let inputs = self.inputs.clone();
        for input in &inputs {
            let FieldSet::Known(have) = &input.ty.fields else {
                continue;
            };
            let mut reported = BTreeSet::new();
            for (field, at) in fields {
                if have.contains(field) || !reported.insert(field.clone()) {
                    continue;
                }
                let hint = match crate::diag::did_you_mean(field, have.iter().map(String::as_str)) {
                    Some(c) => format!("did you mean `{c}`? `{}` has fields: {}", input.name, join(have)),
                    None => format!("`{}` has fields: {}", input.name, join(have)),
                };
                self.error(
                    at,
                    format!(
                        "type mismatch: node `{}` reads field `{field}`, which records from `{}` ({} → {}) do not have",
                        self.node, input.name, input.kind, input.ty.name
                    ),
                    Some(hint),
                );
            }
        }
    }
}

fn display_dir(p: &Path) -> String {
    let s = p.display().to_string();
    if s.is_empty() {
        ".".into()
    } else {
        s
    }
}

fn join(fields: &BTreeSet<String>) -> String {
    fields.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
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

/// Name of the artifact a node writes when one of its gates tripped (a
/// `compare` node's `fail_if`): its text says which gate, with the figures.
/// The node's output is complete and cached, but the run fails (exit 1),
/// also when the node is replayed from the cache.
pub const GATE_FAILED: &str = "gate_failed.txt";

/// Name of the artifact whose JSON object the run manifest shows as the
/// node's `meta` (a generated dataset's counts and provenance).
pub const META_JSON: &str = "meta.json";

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

/// Barrier: receives every record of each input (outer vec: inputs in the
/// order written), then returns its output and artifacts.
pub trait BarrierStage: Send {
    #[allow(clippy::type_complexity)]
    fn run(
        self: Box<Self>,
        inputs: Vec<Vec<Record>>,
    ) -> BoxFuture<'static, Result<(Vec<Record>, Vec<Artifact>), NodeError>>;
}
