//! Spec v1: the YAML a user writes, read into a [`ParsedSpec`].
//!
//! This is the one place that knows the YAML layout. It checks the top level
//! and each node's common fields (`kind`, `input`, `inputs`), resolves
//! `params` (with `--set` overrides) and `${...}` references, expands
//! templates (`uses:`) and `matrix:` nodes into plain nodes with full names
//! (`baseline.scores`, `answers[model=gpt-4o]`), and leaves each node's own
//! config as a YAML value for its kind to deserialize. Every problem is
//! collected with its file:line:col, in the spec or in the template file
//! where it is written; nothing stops at the first.

pub mod app;
pub mod backend;
mod backend_check;
pub mod batch;
mod depth;
mod duration;
mod expand;
mod interp;
pub mod local_model;
mod locate;
mod matrix;
mod nodes;
mod scope;
mod template;
mod text;
pub mod url;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_yaml::{Mapping, Value};

use crate::diag::{suggest, Diagnostic, Loc, Source};
pub use backend::{BackendSpec, Price, Provider};
pub use interp::{InterpError, Vars};
pub use locate::{LocationIndex, Seg, YamlPath};
pub use scope::{Resolved, Scope, Scopes, Unresolved};

/// The only spec version this build reads.
pub const SPEC_VERSION: u64 = 1;

const TOP_FIELDS: &[&str] = &["flow", "name", "description", "params", "backends", "prices", "nodes"];
/// Fields every node has, whatever its kind.
pub const NODE_FIELDS: &[&str] = &["kind", "input", "inputs", "description", "cache", "matrix"];
const PARAM_FIELDS: &[&str] = &["type", "default", "description"];
const PARAM_TYPES: &[&str] = &["string", "int", "float", "bool"];

/// A spec or template file with what is needed to point into it.
#[derive(Debug)]
pub struct SpecFile {
    pub source: Source,
    /// Folder relative paths in the file resolve against.
    pub dir: PathBuf,
    pub index: LocationIndex,
    /// A template (`uses:`), not the spec itself.
    pub template: bool,
}

impl SpecFile {
    /// A diagnostic pointing at the value at `path`.
    pub fn at_value(&self, path: &YamlPath, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(message).at(&self.source, self.index.value(path))
    }

    /// A diagnostic pointing at the key of the entry at `path`.
    pub fn at_key(&self, path: &YamlPath, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(message).at(&self.source, self.index.key(path))
    }

    /// Resolves a path written in the file against the file's folder.
    pub fn resolve(&self, p: &str) -> PathBuf {
        resolve_in(&self.dir, p)
    }

    /// `path:line` of the value at `path`, for hints that point elsewhere.
    pub fn position(&self, path: &YamlPath) -> String {
        let shown = self.source.path.display().to_string().replace('\\', "/");
        match self.index.key(path) {
            Some(l) => format!("{shown}:{}", l.line),
            None => shown,
        }
    }
}

/// A path written in a spec, resolved against the spec's folder `dir`.
pub fn resolve_in(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// A node as written: its name, kind, upstream inputs and its kind's config.
/// A template's nodes and a `matrix:` node's copies are nodes like any other,
/// with full names.
#[derive(Debug)]
pub struct RawNode {
    /// The full name: `scores`, `baseline.scores`, `answers[model=gpt-4o]`.
    pub name: String,
    /// The name as written in its file, before namespace and matrix suffix.
    pub written: String,
    /// The name in its own scope: `written` plus the matrix suffix.
    pub local: String,
    /// Path of the node's mapping (`nodes.<name>`) in `file`.
    pub path: YamlPath,
    /// The file the node is written in: the spec, or a template.
    pub file: Arc<SpecFile>,
    /// The scope its names resolve in ([`ParsedSpec::scopes`]).
    pub scope: usize,
    /// The kind as written; `None` when it was missing or not a string.
    pub kind: Option<String>,
    pub inputs: Vec<InputRef>,
    /// Everything but the common fields, with `${...}` resolved.
    pub config: Value,
    /// A `${...}` reference in the config could not be resolved (already
    /// reported), so the config is not worth checking further.
    pub unresolved: bool,
    /// `cache: false`: always run, and look up no memoized call.
    pub cache: bool,
}

/// A reference to an upstream node, as written (references resolved).
#[derive(Debug, Clone)]
pub struct InputRef {
    pub name: String,
    pub path: YamlPath,
    /// Written in `inputs: [...]`: a `matrix:` node's name reads every copy.
    pub many: bool,
    /// Could not be read (already reported): counts as an input, names none.
    pub reported: bool,
}

/// A spec read from disk, parameters and references resolved, templates
/// and matrices expanded.
#[derive(Debug)]
pub struct ParsedSpec {
    pub file: Arc<SpecFile>,
    pub name: String,
    pub description: Option<String>,
    pub params: BTreeMap<String, serde_json::Value>,
    pub backends: BTreeMap<String, BackendSpec>,
    /// Every name under `backends:`, also those rejected (so a node naming
    /// one is not told it does not exist).
    pub declared_backends: Vec<String>,
    /// `prices:` overrides, USD per million tokens by model.
    pub prices: BTreeMap<String, Price>,
    pub nodes: Vec<RawNode>,
    /// Where the names written in each file instance point.
    pub scopes: Scopes,
}

/// Reads and checks a spec. Returns what could be read plus every problem
/// found; the caller fails if there is any problem.
pub fn parse(
    path: &Path,
    sets: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    kinds: &[&str],
) -> (Option<ParsedSpec>, Vec<Diagnostic>) {
    let text = match std::fs::read(path) {
        Ok(bytes) => match text::decode(path, bytes) {
            Ok(t) => t,
            Err(d) => return (None, vec![d]),
        },
        Err(e) => {
            let d = Diagnostic::new(format!("cannot read spec {}: {e}", path.display()))
                .hint("check the path; specs are YAML files such as specs/eval.yaml");
            return (None, vec![d]);
        }
    };
    let (file, value) = match read_yaml(path, text) {
        Ok(x) => x,
        Err(d) => return (None, vec![d]),
    };
    let mut p = Parser { file: &file, diags: Vec::new(), secrets: Vec::new() };
    let spec = p.spec(&value, sets, env);
    let (mut diags, secrets) = (p.diags, p.secrets);
    // No line shown for any problem may carry a key written in the spec.
    let mut file = file;
    if !secrets.is_empty() {
        let mut text = file.source.text.to_string();
        for secret in &secrets {
            text = text.replace(secret.as_str(), "***");
        }
        file.source.text = text.into();
        for d in &mut diags {
            if let Some(src) = &mut d.source {
                src.text = file.source.text.clone();
            }
        }
    }
    let file = Arc::new(file);
    let Some(s) = spec else {
        return (None, diags);
    };
    let mut ex = expand::Expander::new(env, kinds, diags, file.clone(), s.params.clone());
    ex.expand_nodes(0, value.get("nodes"));
    let (scopes, nodes, diags) = ex.finish();
    let spec = ParsedSpec {
        file,
        name: s.name,
        description: s.description,
        params: s.params,
        backends: s.backends,
        declared_backends: s.declared_backends,
        prices: s.prices,
        nodes,
        scopes,
    };
    (Some(spec), diags)
}

/// A YAML file as a [`SpecFile`] and its value; a syntax error is located.
fn read_yaml(path: &Path, text: String) -> Result<(SpecFile, Value), Diagnostic> {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    let file = SpecFile {
        source: Source { path: path.to_path_buf(), text: text.into() },
        dir,
        index: LocationIndex::default(),
        template: false,
    };
    if let Some((line, col)) = depth::too_deep(&file.source.text) {
        return Err(Diagnostic::new(format!("the spec nests deeper than {} levels", depth::MAX_DEPTH))
            .at(&file.source, Some(Loc { line, col, width: 1 }))
            .hint("no spec needs this: check for a runaway `[` or `{`, or a generated file"));
    }
    if let Some((line, col, c)) = text::control_char(&file.source.text) {
        return Err(Diagnostic::new(format!("control character U+{:04X} in the spec", c as u32))
            .at(&file.source, Some(Loc { line, col, width: 1 }))
            .hint("YAML allows none: remove it, or write it as an escape in a double-quoted string (`\\u0000`)"));
    }
    let value: Value = match serde_yaml::from_str(&file.source.text) {
        Ok(v) => v,
        Err(e) => {
            let loc = e.location().map(|l| Loc { line: l.line(), col: l.column(), width: 1 });
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            return Err(Diagnostic::new(format!("invalid YAML: {msg}"))
                .at(&file.source, loc)
                .hint("check indentation and quoting near this position; a value with `: ` or `#` needs quotes"));
        }
    };
    let index = LocationIndex::build(&file.source.text);
    Ok((SpecFile { index, ..file }, value))
}

/// A spec's top level without its nodes, as the parser builds it.
struct SpecParts {
    name: String,
    description: Option<String>,
    params: BTreeMap<String, serde_json::Value>,
    backends: BTreeMap<String, BackendSpec>,
    declared_backends: Vec<String>,
    prices: BTreeMap<String, Price>,
}

struct Parser<'a> {
    file: &'a SpecFile,
    diags: Vec<Diagnostic>,
    /// Keys found written in the spec: masked in every line shown.
    secrets: Vec<String>,
}

/// Reports each key of `map` (at `at`) that is not in `allowed`.
fn unknown_fields(
    file: &SpecFile,
    diags: &mut Vec<Diagnostic>,
    map: &Mapping,
    at: &YamlPath,
    allowed: &[&str],
    context: &str,
) {
    for key in map.keys() {
        let k = yaml_brief(key);
        if !allowed.contains(&k.as_str()) {
            let d = file.at_key(&at.key(k.clone()), format!("unknown field `{k}` {context}")).hint(suggest(
                &k,
                allowed.iter().copied(),
                "a field",
            ));
            diags.push(d);
        }
    }
}

/// Checks the `flow:` version at the top of a spec or template.
fn check_version(file: &SpecFile, diags: &mut Vec<Diagnostic>, top: &Mapping) {
    let root = YamlPath::root();
    match top.get("flow") {
        None => diags.push(
            Diagnostic::new("missing `flow:` version")
                .at(&file.source, Some(Loc { line: 1, col: 1, width: 1 }))
                .hint("add `flow: 1` as the first line"),
        ),
        Some(v) if v.as_u64() == Some(SPEC_VERSION) => {}
        Some(Value::String(s)) => diags.push(
            file.at_value(&root.key("flow"), format!("`flow` must be a number, not the string \"{s}\""))
                .hint(format!("write `flow: {SPEC_VERSION}` without quotes")),
        ),
        Some(v) => diags.push(
            file.at_value(&root.key("flow"), format!("unsupported spec version {}", yaml_brief(v)))
                .hint(format!("this flow reads `flow: {SPEC_VERSION}`")),
        ),
    }
}

impl Parser<'_> {
    fn spec(&mut self, value: &Value, sets: &[String], env: &dyn Fn(&str) -> Option<String>) -> Option<SpecParts> {
        let root = YamlPath::root();
        let Some(top) = value.as_mapping() else {
            let d = self.file.at_value(&root, "a spec must be a YAML mapping").hint("start the file with `flow: 1`");
            self.diags.push(d);
            return None;
        };
        self.unknown_fields(top, &root, TOP_FIELDS, "at the top of the spec");
        check_version(self.file, &mut self.diags, top);
        let name = match top.get("name") {
            None => self.file.source.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(_) => {
                self.diags.push(self.file.at_value(&root.key("name"), "`name` must be a non-empty string"));
                String::new()
            }
        };
        let description = top.get("description").and_then(Value::as_str).map(str::to_string);
        let params = self.params(top.get("params"), sets);
        let backends = self.backends(top.get("backends"), &params, env);
        let declared_backends = match top.get("backends") {
            Some(Value::Mapping(m)) => m.keys().map(yaml_brief).collect(),
            _ => Vec::new(),
        };
        let prices = self.prices(top.get("prices"));
        Some(SpecParts { name, description, params, backends, declared_backends, prices })
    }

    fn unknown_fields(&mut self, map: &Mapping, at: &YamlPath, allowed: &[&str], context: &str) {
        unknown_fields(self.file, &mut self.diags, map, at, allowed, context);
    }

    /// Resolves `${...}` in a value of the spec's top level (`backends:`).
    fn interpolate(
        &mut self,
        v: &Value,
        path: &YamlPath,
        params: &BTreeMap<String, serde_json::Value>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Value {
        let vars = Vars { params: Some(params), inputs: None, matrix: None, env };
        interp::Interp::new(self.file, &mut self.diags).value(v, path, &vars)
    }

    fn params(&mut self, value: Option<&Value>, sets: &[String]) -> BTreeMap<String, serde_json::Value> {
        let at = YamlPath::root().key("params");
        let mut types: BTreeMap<String, &'static str> = BTreeMap::new();
        let mut out: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        let mut required: Vec<String> = Vec::new();
        match value {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    let name = yaml_brief(k);
                    let p = at.key(name.clone());
                    let (ty, default) = match v {
                        Value::Mapping(decl) => {
                            self.unknown_fields(decl, &p, PARAM_FIELDS, &format!("in param `{name}`"));
                            let default = decl.get("default").cloned();
                            let ty = match decl.get("type").map(yaml_brief) {
                                Some(t) => match PARAM_TYPES.iter().find(|x| **x == t) {
                                    Some(t) => *t,
                                    None => {
                                        let d = self
                                            .file
                                            .at_value(&p.key("type"), format!("unknown param type `{t}`"))
                                            .hint(suggest(&t, PARAM_TYPES.iter().copied(), "a param type"));
                                        self.diags.push(d);
                                        continue;
                                    }
                                },
                                None => match &default {
                                    Some(d) => infer_type(d),
                                    None => "string",
                                },
                            };
                            (ty, default)
                        }
                        scalar => (infer_type(scalar), Some(scalar.clone())),
                    };
                    types.insert(name.clone(), ty);
                    match default {
                        Some(d) => match coerce(&d, ty) {
                            Some(v) => {
                                out.insert(name, v);
                            }
                            None => {
                                let d = self
                                    .file
                                    .at_value(&p.key("default"), format!("default of param `{name}` is not a {ty}"));
                                self.diags.push(d);
                            }
                        },
                        None => required.push(name),
                    }
                }
            }
            Some(_) => self.diags.push(
                self.file
                    .at_value(&at, "`params` must be a mapping")
                    .hint("write `params: {threshold: {type: float, default: 0.8}}`"),
            ),
        }
        for set in sets {
            let Some((k, v)) = set.split_once('=') else {
                self.diags
                    .push(Diagnostic::new(format!("--set `{set}` is not key=value")).hint("write --set threshold=0.9"));
                continue;
            };
            let Some(ty) = types.get(k) else {
                let d = Diagnostic::new(format!("--set names unknown param `{k}`")).hint(suggest(
                    k,
                    types.keys().map(String::as_str),
                    "a param",
                ));
                self.diags.push(d);
                continue;
            };
            match coerce(&Value::String(v.to_string()), ty) {
                Some(val) => {
                    out.insert(k.to_string(), val);
                }
                None => self.diags.push(
                    Diagnostic::new(format!("--set {k}={v}: `{v}` is not a {ty}"))
                        .hint(format!("param `{k}` is a {ty}")),
                ),
            }
        }
        for name in required {
            if !out.contains_key(&name) {
                let d = self
                    .file
                    .at_key(&at.key(name.clone()), format!("param `{name}` has no default and no value"))
                    .hint(format!("pass --set {name}=VALUE, or give it a `default:`"));
                self.diags.push(d);
            }
        }
        out
    }
}

fn backticked(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// Node names become namespaces and file names: keep them plain.
fn valid_node_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A short text form of a YAML scalar (keys, versions) for messages.
pub fn yaml_brief(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

fn infer_type(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "float",
        _ => "string",
    }
}

/// A YAML value (or `--set` text) as a value of the param's type.
fn coerce(v: &Value, ty: &str) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    let text = match v {
        Value::String(s) => Some(s.trim()),
        _ => None,
    };
    match ty {
        "string" => Some(J::String(match v {
            Value::String(s) => s.clone(),
            other => yaml_brief(other),
        })),
        "int" => match v {
            Value::Number(n) => n.as_i64().map(J::from),
            _ => text?.parse::<i64>().ok().map(J::from),
        },
        "float" => match v {
            Value::Number(n) => n.as_f64().map(J::from),
            _ => text?.parse::<f64>().ok().filter(|f| f.is_finite()).map(J::from),
        },
        "bool" => match v {
            Value::Bool(b) => Some(J::Bool(*b)),
            _ => match text? {
                "true" => Some(J::Bool(true)),
                "false" => Some(J::Bool(false)),
                _ => None,
            },
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Diagnostics;

    fn parse_text(text: &str, sets: &[&str]) -> (Option<ParsedSpec>, Vec<Diagnostic>) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.yaml");
        std::fs::write(&p, text).unwrap();
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        parse(&p, &sets, &|n| (n == "USER_NAME").then(|| "ada".into()), &["load"])
    }

    #[test]
    fn params_defaults_sets_and_references() {
        let text = "flow: 1\nname: t\nparams:\n  threshold: {type: float, default: 0.5}\n  n: 3\nnodes:\n  a:\n    kind: load\n    path: ${params.threshold}\n    who: \"${env.USER_NAME} ${params.n}\"\n";
        let (spec, diags) = parse_text(text, &["threshold=0.9"]);
        assert!(diags.is_empty(), "{diags:?}");
        let spec = spec.unwrap();
        assert_eq!(spec.params["threshold"], serde_json::json!(0.9));
        let cfg = spec.nodes[0].config.as_mapping().unwrap();
        assert_eq!(cfg.get("path"), Some(&Value::from(0.9)));
        assert_eq!(cfg.get("who"), Some(&Value::from("ada 3")));
    }

    #[test]
    fn collects_every_problem() {
        let text = "flow: 2\nnme: x\nparams:\n  k: {type: flaot}\nnodes:\n  a:\n    kind: load\n    input: b\n    inputs: [c]\n    path: ${env.NOPE}\n";
        let (_, diags) = parse_text(text, &["zz=1"]);
        let msgs: Vec<String> = diags.iter().map(|d| d.message.clone()).collect();
        assert!(msgs.iter().any(|m| m.contains("unsupported spec version 2")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("unknown field `nme`")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("unknown param type `flaot`")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("both `input` and `inputs`")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("`NOPE` is not set")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("--set names unknown param `zz`")), "{msgs:?}");
    }

    #[test]
    fn keys_in_a_spec_are_rejected_and_never_shown() {
        let text = "flow: 1\nbackends:\n  a: {provider: openia, model: m, api_key: sk-LEAKED-999}\n  b: {provider: openai, model: m, api_key_env: \"${env.MYKEY}\"}\n  c: {provider: openai, model: m, headers: {X-Auth-Token: tok-12345}}\nnodes:\n  n: {kind: load}\n";
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.yaml");
        std::fs::write(&p, text).unwrap();
        let (_, diags) = parse(&p, &[], &|n| (n == "MYKEY").then(|| "sk-SECRET-123".into()), &["load"]);
        let shown = Diagnostics(diags.clone()).to_string();
        for secret in ["sk-LEAKED-999", "sk-SECRET-123", "tok-12345"] {
            assert!(!shown.contains(secret), "{secret} shown in:\n{shown}");
        }
        let msgs: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
        assert!(msgs.iter().any(|m| m.contains("literal `api_key`")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("unknown value `openia`")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("`api_key_env` of backend `b` resolves to")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("header `X-Auth-Token`")), "{msgs:?}");
    }

    #[test]
    fn bad_yaml_points_at_the_line() {
        let (spec, diags) = parse_text("flow: 1\nnodes:\n  a: [\n", &[]);
        assert!(spec.is_none());
        assert_eq!(diags.len(), 1);
        assert!(diags[0].message.starts_with("invalid YAML"), "{}", diags[0].message);
        assert!(diags[0].loc.is_some());
    }
}
