//! Expanding a spec's `nodes:` into plain nodes: `matrix:` nodes into one
//! copy per combination of values, `uses:` nodes into the nodes of their
//! template under the using node's name (`baseline.scores`), recursively.
//!
//! Each file instance gets a [`Scope`] so that names written in it resolve
//! there. A template that uses itself, directly or through others, is a
//! cycle, reported with the chain of files. Problems are reported in the
//! file where they are written: a template's own lines in the template, a
//! `with:` value in the file that gives it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use serde_yaml::{Mapping, Value};

use super::interp::{Interp, Vars};
use super::matrix::{self, Combo};
use super::nodes::node_body;
use super::scope::{Resolved, Scope, Scopes, Unresolved};
use super::template::{self, TemplateFile};
use super::{suggest, valid_node_name, yaml_brief, RawNode, SpecFile, YamlPath};
use crate::diag::Diagnostic;

/// More nodes than this after expansion is almost surely a mistake (a
/// template that uses another several times, nested deep).
const MAX_NODES: usize = 10_000;

/// Fields of a node that uses a template.
const USE_FIELDS: &[&str] = &["uses", "with", "description", "matrix"];

/// What `${...}` may name in one scope.
struct ScopeVars {
    params: Option<BTreeMap<String, serde_json::Value>>,
    inputs: Option<BTreeMap<String, Option<serde_json::Value>>>,
}

impl ScopeVars {
    fn vars<'s>(&'s self, env: &'s dyn Fn(&str) -> Option<String>) -> Vars<'s> {
        Vars { params: self.params.as_ref(), inputs: self.inputs.as_ref(), matrix: None, env }
    }
}

/// A template's `node` input, bound once every scope is complete.
struct Binding {
    /// The template instance's scope.
    scope: usize,
    input: String,
    /// The node named in `with:`, in the using scope.
    written: String,
    using: usize,
    /// Where in the using file's `with:`.
    path: YamlPath,
    /// The using node, as written.
    node: String,
}

pub(super) struct Expander<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    kinds: &'a [&'a str],
    diags: Vec<Diagnostic>,
    scopes: Vec<Scope>,
    vars: Vec<Rc<ScopeVars>>,
    nodes: Vec<RawNode>,
    templates: HashMap<PathBuf, Option<Rc<TemplateFile>>>,
    /// The files being expanded, the spec first: (canonical path, as shown).
    stack: Vec<(PathBuf, String)>,
    bindings: Vec<Binding>,
    /// [`MAX_NODES`] was reached (and reported).
    full: bool,
}

impl<'a> Expander<'a> {
    pub fn new(
        env: &'a dyn Fn(&str) -> Option<String>,
        kinds: &'a [&'a str],
        diags: Vec<Diagnostic>,
        file: Arc<SpecFile>,
        params: BTreeMap<String, serde_json::Value>,
    ) -> Self {
        let path = &file.source.path;
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        let shown = path.display().to_string();
        Self {
            env,
            kinds,
            diags,
            scopes: vec![Scope::new(None, String::new(), file)],
            vars: vec![Rc::new(ScopeVars { params: Some(params), inputs: None })],
            nodes: Vec::new(),
            templates: HashMap::new(),
            stack: vec![(canonical, shown)],
            bindings: Vec::new(),
            full: false,
        }
    }

    /// Expands the `nodes:` of `scope`'s file.
    pub fn expand_nodes(&mut self, scope: usize, value: Option<&Value>) {
        let file = self.scopes[scope].file.clone();
        let at = YamlPath::root().key("nodes");
        let what = if scope == 0 { "spec" } else { "template" };
        let map = match value {
            Some(Value::Mapping(m)) if !m.is_empty() => m,
            Some(Value::Mapping(_)) | None | Some(Value::Null) => {
                self.diags.push(
                    Diagnostic::new(format!("the {what} has no nodes"))
                        .at(&file.source, file.index.key(&at))
                        .hint("add `nodes:` with at least one node, e.g. `cases: {kind: load, path: data.jsonl}`"),
                );
                return;
            }
            Some(_) => {
                self.diags.push(file.at_value(&at, "`nodes` must be a mapping from node name to node"));
                return;
            }
        };
        let scope_vars = self.vars[scope].clone();
        let env = self.env;
        for (k, v) in map {
            if self.full {
                return;
            }
            let name = yaml_brief(k);
            let path = at.key(name.clone());
            if !valid_node_name(&name) {
                self.diags.push(
                    file.at_key(&path, format!("invalid node name `{name}`"))
                        .hint("use letters, digits, `_` and `-`, starting with a letter"),
                );
                continue;
            }
            let Some(body) = v.as_mapping() else {
                self.diags.push(
                    file.at_value(&path, format!("node `{name}` must be a mapping"))
                        .hint("write `kind: <kind>` and the kind's fields under the node name"),
                );
                continue;
            };
            let vars = scope_vars.vars(env);
            let combos: Vec<Option<Combo>> = match body.get("matrix") {
                None => vec![None],
                Some(m) => {
                    let mpath = path.key("matrix");
                    let mut interp = Interp::new(&file, &mut self.diags);
                    let resolved = interp.value(m, &mpath, &vars);
                    let combos = if interp.unresolved {
                        None
                    } else {
                        matrix::combos(&file, &mut self.diags, &name, &resolved, &mpath)
                    };
                    match combos {
                        Some(c) => c.into_iter().map(Some).collect(),
                        None => {
                            self.scopes[scope].broken.insert(name);
                            continue;
                        }
                    }
                }
            };
            let uses = body.contains_key("uses");
            for combo in &combos {
                let local = match combo {
                    Some(c) => format!("{name}{}", c.suffix),
                    None => name.clone(),
                };
                let vars = vars.with_matrix(combo.as_ref().map(|c| &c.values));
                if uses {
                    self.instance(scope, &file, &name, &local, body, &path, &vars);
                } else {
                    self.plain(scope, &file, &name, &local, body, &path, &vars);
                    if combo.is_some() {
                        self.scopes[scope].groups.entry(name.clone()).or_default().push(local);
                    }
                }
            }
        }
    }

    /// A node with a `kind`.
    #[allow(clippy::too_many_arguments)]
    fn plain(
        &mut self,
        scope: usize,
        file: &Arc<SpecFile>,
        name: &str,
        local: &str,
        body: &Mapping,
        path: &YamlPath,
        vars: &Vars,
    ) {
        if self.nodes.len() >= MAX_NODES {
            self.diags.push(
                file.at_key(path, format!("the spec expands to more than {MAX_NODES} nodes"))
                    .hint("check the sizes of `matrix:` lists, and templates that use other templates several times"),
            );
            self.full = true;
            return;
        }
        let b = node_body(file, &mut self.diags, self.kinds, name, body, path, vars);
        let s = &mut self.scopes[scope];
        let full_name = format!("{}{local}", s.prefix);
        s.locals.insert(local.to_string(), full_name.clone());
        self.nodes.push(RawNode {
            name: full_name,
            written: name.to_string(),
            local: local.to_string(),
            path: path.clone(),
            file: file.clone(),
            scope,
            kind: b.kind,
            inputs: b.inputs,
            config: b.config,
            unresolved: b.unresolved,
            cache: b.cache,
        });
    }

    /// A node that uses a template: the template's nodes, under `local.`.
    #[allow(clippy::too_many_arguments)]
    fn instance(
        &mut self,
        scope: usize,
        file: &Arc<SpecFile>,
        name: &str,
        local: &str,
        body: &Mapping,
        path: &YamlPath,
        vars: &Vars,
    ) {
        for key in body.keys() {
            let k = yaml_brief(key);
            let (message, hint) = match k.as_str() {
                _ if USE_FIELDS.contains(&k.as_str()) => continue,
                "kind" => (
                    format!("node `{name}` has both `uses` and `kind`"),
                    "a node either runs a kind (`kind:`) or expands a template (`uses:`)".to_string(),
                ),
                // Said once the template is read, with its own inputs.
                "input" | "inputs" => continue,
                _ => (
                    format!("unknown field `{k}` in node `{name}`"),
                    suggest(&k, USE_FIELDS.iter().copied(), "a field"),
                ),
            };
            self.diags.push(file.at_key(&path.key(k), message).hint(hint));
        }
        let broken = |me: &mut Self| {
            me.scopes[scope].broken.insert(local.to_string());
        };
        let upath = path.key("uses");
        let mut interp = Interp::new(file, &mut self.diags);
        let uses = interp.value(body.get("uses").unwrap_or(&Value::Null), &upath, vars);
        if interp.unresolved {
            return broken(self);
        }
        let Value::String(written) = uses else {
            self.diags.push(
                file.at_value(&upath, format!("`uses` of node `{name}` must be the path of a template file"))
                    .hint("write `uses: templates/eval.yaml` (relative to this file's folder)"),
            );
            return broken(self);
        };
        let Some(tpl) = template::load(file, &written, &upath, &mut self.diags, &mut self.templates) else {
            return broken(self);
        };
        if let Some(pos) = self.stack.iter().position(|(c, _)| *c == tpl.canonical) {
            let mut chain: Vec<&str> = self.stack[pos..].iter().map(|(_, shown)| shown.as_str()).collect();
            chain.push(&self.stack[pos].1);
            self.diags.push(
                file.at_value(&upath, format!("template cycle: {}", chain.join(" → ")))
                    .hint("a template cannot use itself, directly or through the templates it uses"),
            );
            return broken(self);
        }
        for k in ["input", "inputs"] {
            if let Some(v) = body.get(k) {
                let nodes: Vec<&str> = tpl
                    .inputs
                    .iter()
                    .filter(|d| d.ty == template::InputType::Node && !d.broken)
                    .map(|d| d.name.as_str())
                    .collect();
                let upstream = match v {
                    Value::String(s) => s.clone(),
                    Value::Sequence(items) => items.first().map(yaml_brief).unwrap_or_default(),
                    _ => String::new(),
                };
                let hint = match nodes.first() {
                    Some(first) => format!(
                        "pass upstream nodes to the template's `node` inputs ({}) with `with:`, e.g. `with: {{{first}: {upstream}}}`",
                        nodes.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                    ),
                    None => format!("template `{written}` declares no `node` input to read upstream nodes with"),
                };
                self.diags.push(
                    file.at_key(&path.key(k), format!("node `{name}` uses a template and takes no `{k}`")).hint(hint),
                );
            }
        }
        let bound = template::bind(file, &mut self.diags, &tpl, &written, name, path, body.get("with"), vars);

        let prefix = format!("{}{local}.", self.scopes[scope].prefix);
        let child = self.scopes.len();
        let mut s = Scope::new(Some(scope), prefix, tpl.file.clone());
        for decl in &tpl.inputs {
            if decl.broken {
                s.broken.insert(decl.name.clone());
            } else if decl.ty == template::InputType::Node {
                s.bindings.insert(decl.name.clone(), None);
            } else {
                s.value_inputs.insert(decl.name.clone());
            }
        }
        self.scopes.push(s);
        for (input, node, at) in bound.nodes {
            self.bindings.push(Binding {
                scope: child,
                input,
                written: node,
                using: scope,
                path: at,
                node: name.into(),
            });
        }
        self.vars.push(Rc::new(ScopeVars { params: None, inputs: Some(bound.values) }));
        self.stack.push((tpl.canonical.clone(), tpl.file.source.path.display().to_string()));
        self.expand_nodes(child, tpl.nodes.as_ref());
        self.stack.pop();

        // The template's nodes are this scope's nodes too, under `local.`.
        let (locals, groups, broken_names) = {
            let c = &self.scopes[child];
            (c.locals.clone(), c.groups.clone(), c.broken.clone())
        };
        let s = &mut self.scopes[scope];
        for (l, q) in locals {
            s.locals.insert(format!("{local}.{l}"), q);
        }
        for (g, members) in groups {
            s.groups.insert(format!("{local}.{g}"), members.iter().map(|m| format!("{local}.{m}")).collect());
        }
        for b in broken_names {
            s.broken.insert(format!("{local}.{b}"));
        }
    }

    /// Binds every template's `node` inputs, now that every scope is
    /// complete, and hands over what was read.
    pub fn finish(mut self) -> (Scopes, Vec<RawNode>, Vec<Diagnostic>) {
        let mut scopes = Scopes(std::mem::take(&mut self.scopes));
        // Outer templates were bound first: an inner binding may go
        // through an outer one.
        for b in std::mem::take(&mut self.bindings) {
            let file = scopes.get(b.using).file.clone();
            let target = match scopes.resolve(b.using, &b.written, false, "") {
                Ok(Resolved::Nodes(mut v)) => v.pop(),
                Ok(Resolved::Reported) => None,
                Err(Unresolved::Unknown { hint }) => {
                    self.diags.push(
                        file.at_value(
                            &b.path,
                            format!("input `{}` of node `{}` names unknown node `{}`", b.input, b.node, b.written),
                        )
                        .hint(hint),
                    );
                    None
                }
                Err(Unresolved::Matrix { copies, first, .. }) => {
                    self.diags.push(
                        file.at_value(
                            &b.path,
                            format!(
                                "input `{}` of node `{}` names `{}`, a matrix of {copies} nodes",
                                b.input, b.node, b.written
                            ),
                        )
                        .hint(format!("a `node` input reads one node: name one copy, e.g. `{first}`")),
                    );
                    None
                }
            };
            scopes.0[b.scope].bindings.insert(b.input, target);
        }
        (scopes, self.nodes, self.diags)
    }
}
