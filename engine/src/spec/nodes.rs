//! One plain node (`kind:`) as written: its kind, its upstream references,
//! its `cache` flag, and the rest as the kind's config, `${...}` resolved.

use serde_yaml::{Mapping, Value};

use super::interp::{Interp, Vars};
use super::{backticked, yaml_brief, InputRef, SpecFile, YamlPath, NODE_FIELDS};
use crate::diag::Diagnostic;

/// A node's common fields and config, not yet named or placed in a scope.
pub(super) struct NodeBody {
    pub kind: Option<String>,
    pub inputs: Vec<InputRef>,
    pub config: Value,
    pub unresolved: bool,
    pub cache: bool,
}

/// Reads the node `name` written at `path` of `file`. `vars` are what its
/// `${...}` may name (with one copy's matrix values).
pub(super) fn node_body(
    file: &SpecFile,
    diags: &mut Vec<Diagnostic>,
    kinds: &[&str],
    name: &str,
    body: &Mapping,
    path: &YamlPath,
    vars: &Vars,
) -> NodeBody {
    let kind = match body.get("kind") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            diags.push(file.at_value(&path.key("kind"), "`kind` must be a string"));
            None
        }
        None => {
            diags.push(
                file.at_key(path, format!("node `{name}` has no `kind`"))
                    .hint(format!("add `kind:`, one of {}", backticked(kinds))),
            );
            None
        }
    };
    let inputs = inputs(file, diags, body, path, name, vars);
    let mut interp = Interp::new(file, diags);
    let mut config = Mapping::new();
    for (ck, cv) in body {
        let key = yaml_brief(ck);
        if NODE_FIELDS.contains(&key.as_str()) {
            continue;
        }
        let resolved = interp.value(cv, &path.key(key), vars);
        config.insert(ck.clone(), resolved);
    }
    let unresolved = interp.unresolved;
    let cache = match body.get("cache") {
        None | Some(Value::Bool(true)) => true,
        Some(Value::Bool(false)) => false,
        Some(_) => {
            diags.push(
                file.at_value(&path.key("cache"), "`cache` must be true or false")
                    .hint("`cache: false` makes the node run every time and skip memoized calls"),
            );
            true
        }
    };
    NodeBody { kind, inputs, config: Value::Mapping(config), unresolved, cache }
}

/// `input: a` or `inputs: [a, b]`, each name with its `${...}` resolved
/// (`input: answers[model=${matrix.model}]`, `input: ${inputs.cases}`).
fn inputs(
    file: &SpecFile,
    diags: &mut Vec<Diagnostic>,
    body: &Mapping,
    path: &YamlPath,
    name: &str,
    vars: &Vars,
) -> Vec<InputRef> {
    let one = body.get("input");
    let many = body.get("inputs");
    if one.is_some() && many.is_some() {
        diags.push(
            file.at_key(&path.key("inputs"), format!("node `{name}` has both `input` and `inputs`"))
                .hint("use `input: a` for one upstream node or `inputs: [a, b]` for several"),
        );
    }
    let mut refs = Vec::new();
    let mut push = |diags: &mut Vec<Diagnostic>, s: &str, at: YamlPath, many: bool| {
        let mut interp = Interp::new(file, diags);
        let resolved = interp.value(&Value::String(s.to_string()), &at, vars);
        let reported = interp.unresolved;
        match resolved {
            Value::String(name) => refs.push(InputRef { name, path: at, many, reported }),
            other => {
                diags.push(file.at_value(&at, format!("`{s}` resolves to `{}`, not a node name", yaml_brief(&other))));
                refs.push(InputRef { name: s.to_string(), path: at, many, reported: true });
            }
        }
    };
    if let Some(v) = one {
        match v {
            Value::String(s) => push(diags, s, path.key("input"), false),
            _ => diags.push(
                file.at_value(&path.key("input"), "`input` must be the name of one upstream node")
                    .hint("for several inputs write `inputs: [a, b]`"),
            ),
        }
    }
    if let Some(v) = many {
        match v {
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => push(diags, s, path.key("inputs").index(i), true),
                        _ => diags.push(file.at_value(&path.key("inputs").index(i), "each input must be a node name")),
                    }
                }
            }
            Value::String(s) => push(diags, s, path.key("inputs"), true),
            _ => diags.push(file.at_value(&path.key("inputs"), "`inputs` must be a list of node names")),
        }
    }
    refs
}
