//! What a kind's `check` sees at compile time ([`CheckCx`]): its config's
//! location for errors, its inputs' port types, the spec's backends, and the
//! files it registers for its key. The run-time side is in [`crate::node`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::diag::{suggest, Diagnostic};
use crate::record::{FieldSet, PortType};
use crate::spec::{BackendSpec, SpecFile, YamlPath};
use flow_cache::{ContentHash, StatCache, Store};

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
    pub(crate) file: &'a SpecFile,
    pub(crate) node: String,
    pub(crate) path: YamlPath,
    pub(crate) inputs: Vec<InputInfo>,
    /// Side inputs by config field (see [`Node::SIDE_INPUTS`]).
    pub(crate) side_inputs: Vec<(String, InputInfo)>,
    pub(crate) diags: &'a mut Vec<Diagnostic>,
    pub(crate) files: Vec<FileInput>,
    pub(crate) backends: &'a BTreeMap<String, BackendSpec>,
    /// Every name under `backends:`, valid or not.
    pub(crate) declared_backends: &'a [String],
    pub(crate) backends_used: BTreeMap<String, serde_json::Value>,
    pub(crate) calls_per_record: u64,
    pub(crate) records: crate::node::OutputRecords,
    /// Where past runs are stored, when the caller knows (the CLI does: the
    /// workspace next to the spec, or `--workspace`).
    pub(crate) workspace: Option<&'a Store>,
    /// Input files' hashes and what was read from them, by their stat.
    pub(crate) stats: Option<&'a StatCache>,
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
            records: crate::node::OutputRecords::Unknown,
            workspace: None,
            stats: None,
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

    /// [`CheckCx::backend`] for a node that sends chat completions (or
    /// fine-tuning jobs) to it: a backend that only embeds (`provider:
    /// local`) is reported at `at`.
    pub fn chat_backend(&mut self, at: &YamlPath, name: &str) -> Option<BackendSpec> {
        let spec = self.backend(at, name)?;
        if !spec.provider.chats() {
            let message = format!(
                "node `{}` needs a chat model, but backend `{name}` is `provider: {}`, which computes embeddings only",
                self.node,
                spec.provider.name()
            );
            let hint = "name an `openai` backend here (a local server works: llama.cpp, vLLM, Ollama); \
                        keep the local model for `extract`'s and `synthesize`'s `embeddings`";
            self.error(at, message, Some(hint.into()));
            return None;
        }
        Some(spec)
    }

    /// Declares how many backend calls the node makes per input record.
    pub fn calls_per_record(&mut self, n: u64) {
        self.calls_per_record = n;
    }

    /// Declares how many records the node will output, for progress
    /// (done/total); the default is unknown.
    pub fn output_records(&mut self, n: crate::node::OutputRecords) {
        self.records = n;
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

    pub(crate) fn config_error(&mut self, at: &serde_path_to_error::Path, message: String) {
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
        // Only a regular file: reading a device (`/dev/zero`) or a FIFO would
        // never end, and a folder is not data.
        if let Some(meta) = std::fs::metadata(&path).ok().filter(|m| !m.is_file()) {
            let what = if meta.is_dir() { "a folder" } else { "not a regular file (a device, a FIFO or a socket)" };
            let message = format!("input file `{written}` of node `{}` is {what} ({})", self.node, path.display());
            self.error(at, message, Some("point it at a data file (JSONL, JSON or CSV)".into()));
            return None;
        }
        let hashed = match self.stats {
            Some(stats) => stats.hash(&path),
            None => flow_cache::hash_file(&path),
        };
        match hashed {
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

    /// Registers what the node reads from outside the workspace (a
    /// database's rows) by a fingerprint of it: `hash` joins the node key as
    /// an input file's does, so a changed fingerprint re-runs the node, and
    /// `written` names it (`flow plan` says `input file changed: WRITTEN`).
    pub fn external_input(&mut self, written: &str, hash: ContentHash) {
        self.files.push(FileInput { written: written.to_string(), path: PathBuf::new(), hash });
    }

    /// What `read` finds in the input file at `path` (registered with
    /// [`CheckCx::input_file`]), remembered as `what` under the file's
    /// content: a second plan over the same bytes does not read them again
    /// (the stat cache, `.flow/stat-cache.json`). `what` names the reading,
    /// and must change when what it returns does.
    pub fn read_input<T, E>(&self, path: &Path, what: &str, read: impl FnOnce() -> Result<T, E>) -> Result<T, E>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let known = self.files.iter().rev().find(|f| f.path == path).map(|f| f.hash);
        let (Some(stats), Some(hash)) = (self.stats, known) else { return read() };
        if let Some(v) = stats.derived(path, &hash, what).and_then(|v| serde_json::from_value(v).ok()) {
            return Ok(v);
        }
        let value = read()?;
        if let Ok(v) = serde_json::to_value(&value) {
            stats.set_derived(path, &hash, what, v);
        }
        Ok(value)
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
        // A run id may be given whole or as a unique prefix, as everywhere.
        let ids = store.run_ids().unwrap_or_default();
        let resolved = match ids.iter().any(|i| i == run) {
            true => Some(run.to_string()),
            false if run == "latest" => None,
            false => {
                let matching: Vec<&String> = ids.iter().filter(|i| !run.is_empty() && i.starts_with(run)).collect();
                match matching.as_slice() {
                    [one] => Some((*one).clone()),
                    [] => Some(run.to_string()),
                    many => {
                        let shown: Vec<&str> = many.iter().rev().take(10).map(|s| s.as_str()).collect();
                        let msg = format!(
                            "node `{}`: run id `{run}` is ambiguous: {} runs start with it",
                            self.node,
                            many.len()
                        );
                        self.error(&at.key("run"), msg, Some(format!("give more of the id: {}", shown.join(", "))));
                        return None;
                    }
                }
            }
        };
        let id = resolved.as_deref();
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
