//! Compiling a parsed spec into a [`Plan`]: names resolved, a petgraph DAG
//! in topological order, each node's config checked by its kind against its
//! inputs' port types, input files hashed. Only a `Plan` runs. Every problem
//! is collected before failing (vector's compiler does the same).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};

use flow_cache::{StatCache, Store};

use crate::diag::{suggest, Diagnostic, Diagnostics};
use crate::node::{Arity, CheckCx, Compiled, InputInfo, Registry, Shape};
use crate::record::{FieldSet, PortType};
use crate::spec::{self, InputRef, ParsedSpec, RawNode, Resolved, Scopes, SpecFile, Unresolved};

/// One node of a plan.
#[derive(Debug)]
pub struct PlanNode {
    pub name: String,
    pub kind: &'static str,
    pub version: u32,
    pub shape: Shape,
    /// Upstream nodes, as indices into [`Plan::nodes`] (always earlier).
    pub inputs: Vec<usize>,
    pub compiled: Compiled,
    /// `cache: false` in the spec: always run, reuse no memoized call.
    pub cache: bool,
    /// Config fields naming side inputs; they are the last entries of
    /// `inputs`, in this order.
    pub side_inputs: Vec<String>,
    /// The file the node is written in: the spec, or the template it came
    /// from. Its relative paths resolve against that file's folder.
    pub file: Arc<SpecFile>,
    /// `flow run --limit N` on a source: its first `N` records only.
    pub limit: Option<u64>,
    /// `flow run --shard i/n`: the node processes that slice of the
    /// records (see [`crate::shard`]).
    pub shard: Option<crate::shard::Shard>,
}

impl PlanNode {
    /// The inputs the node streams from (`input`/`inputs`), without its
    /// side inputs.
    pub fn main_inputs(&self) -> &[usize] {
        &self.inputs[..self.inputs.len() - self.side_inputs.len()]
    }
}

/// A validated spec, ready to be assessed against the cache and run.
#[derive(Debug)]
pub struct Plan {
    pub spec_name: String,
    /// The spec file (each node has the file it is written in).
    pub file: Arc<SpecFile>,
    pub params: BTreeMap<String, serde_json::Value>,
    pub backends: BTreeMap<String, crate::spec::BackendSpec>,
    /// `prices:` overrides, USD per million tokens by model.
    pub prices: BTreeMap<String, crate::spec::Price>,
    /// Nodes in topological order (ties in the order written).
    pub nodes: Vec<PlanNode>,
    /// `--shard i/n`: this run is one shard (see [`Plan::shard`]).
    pub shard: Option<crate::shard::Shard>,
}

impl Plan {
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// `--limit N`: every source (a node reading no other node: `load`)
    /// emits its first `n` records only. The limit is part of the sources'
    /// keys, so a subset never passes for the whole; the calls it made are
    /// memoized, so the full run after it sends only the others.
    pub fn limit_sources(&mut self, n: u64) {
        for node in self.nodes.iter_mut().filter(|n| n.shape == Shape::Source) {
            node.limit = Some(n);
        }
    }
}

/// The stat cache's file in a workspace (see [`StatCache`]).
pub const STAT_CACHE: &str = "stat-cache.json";

/// Reads, checks and compiles a spec. `sets` are `--set key=value` overrides.
pub fn compile(path: &Path, sets: &[String], registry: &Registry) -> Result<Plan, Diagnostics> {
    compile_with_env(path, sets, registry, &|n| std::env::var(n).ok())
}

/// [`compile`] for a spec whose nodes may read past runs (`compare`'s
/// stored baseline) from `workspace`, the `.flow` folder its runs go to.
pub fn compile_in(path: &Path, sets: &[String], registry: &Registry, workspace: &Path) -> Result<Plan, Diagnostics> {
    let store = Store::open(workspace);
    compile_full(path, sets, registry, &|n| std::env::var(n).ok(), Some(&store))
}

/// [`compile`] with the environment given explicitly (tests).
pub fn compile_with_env(
    path: &Path,
    sets: &[String],
    registry: &Registry,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Plan, Diagnostics> {
    compile_full(path, sets, registry, env, None)
}

fn compile_full(
    path: &Path,
    sets: &[String],
    registry: &Registry,
    env: &dyn Fn(&str) -> Option<String>,
    workspace: Option<&Store>,
) -> Result<Plan, Diagnostics> {
    let kinds: Vec<&str> = registry.names().collect();
    let (parsed, mut diags) = spec::parse(path, sets, env, &kinds);
    let Some(parsed) = parsed else {
        return Err(Diagnostics(diags));
    };
    let copies: HashMap<String, String> =
        parsed.nodes.iter().filter(|n| n.name != n.written).map(|n| (n.name.clone(), n.written.clone())).collect();
    let root = parsed.file.source.path.clone();
    // Input files are hashed through the workspace's stat cache, which is
    // written only for a spec that compiles, into a workspace that exists.
    let stats = workspace.map(|w| StatCache::open(w.root().join(STAT_CACHE)));
    let plan = build(parsed, registry, workspace, stats.as_ref(), &mut diags);
    tidy(&mut diags, &root, &copies);
    if diags.is_empty() {
        if let (Some(stats), Some(w)) = (&stats, workspace.filter(|w| w.exists())) {
            if let Err(e) = stats.save() {
                tracing::debug!("could not write the stat cache in {}: {e}", w.root().display());
            }
        }
        Ok(plan.expect("a plan exists when there are no problems"))
    } else {
        Err(Diagnostics(diags))
    }
}

/// An input of a node once names are resolved: a node of the plan, or a
/// name that reads nothing (its problem already reported).
enum Slot {
    Node(usize),
    Missing(String),
}

/// The nodes `r`, written in `node`, names; a problem is reported in the
/// file the node is written in.
fn resolve_ref(
    scopes: &Scopes,
    names: &HashMap<&str, usize>,
    node: &RawNode,
    r: &InputRef,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Slot> {
    if r.reported {
        return vec![Slot::Missing(r.name.clone())];
    }
    match scopes.resolve(node.scope, &r.name, r.many, &node.local) {
        Ok(Resolved::Nodes(full)) => full
            .into_iter()
            .map(|q| match names.get(q.as_str()) {
                Some(&j) => Slot::Node(j),
                None => Slot::Missing(q),
            })
            .collect(),
        Ok(Resolved::Reported) => vec![Slot::Missing(r.name.clone())],
        Err(Unresolved::Unknown { hint }) => {
            let d = node
                .file
                .at_value(&r.path, format!("node `{}` reads unknown input `{}`", node.name, r.name))
                .hint(hint);
            diags.push(d);
            vec![Slot::Missing(r.name.clone())]
        }
        Err(Unresolved::Matrix { copies, hint, .. }) => {
            let d = node
                .file
                .at_value(&r.path, format!("node `{}` reads `{}`, a matrix of {copies} nodes", node.name, r.name))
                .hint(hint);
            diags.push(d);
            vec![Slot::Missing(r.name.clone())]
        }
    }
}

fn build(
    parsed: ParsedSpec,
    registry: &Registry,
    workspace: Option<&Store>,
    stats: Option<&StatCache>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Plan> {
    let ParsedSpec { file, name: spec_name, params, backends, declared_backends, prices, nodes: raw, scopes, .. } =
        parsed;
    let mut names: HashMap<&str, usize> = HashMap::with_capacity(raw.len());
    for (i, n) in raw.iter().enumerate() {
        if names.insert(n.name.as_str(), i).is_some() {
            diags.push(n.file.at_key(&n.path, format!("two nodes are named `{}`", n.name)));
        }
    }

    // Kinds and names first: everything else needs them.
    let mut kinds = Vec::with_capacity(raw.len());
    for node in &raw {
        let kind = node.kind.as_deref().and_then(|k| {
            let found = registry.get(k);
            if found.is_none() {
                let d = node
                    .file
                    .at_value(&node.path.key("kind"), format!("unknown kind `{k}` in node `{}`", node.name))
                    .hint(suggest(k, registry.names(), "a kind"));
                diags.push(d);
            }
            found
        });
        kinds.push(kind);
    }
    // What each node reads: its inputs, then the config fields that name
    // nodes (`rules: improve`), which are inputs too.
    let mut main: Vec<Vec<Slot>> = Vec::with_capacity(raw.len());
    let mut sides: Vec<Vec<(String, Slot)>> = Vec::with_capacity(raw.len());
    for (i, node) in raw.iter().enumerate() {
        let mut slots = Vec::new();
        for r in &node.inputs {
            slots.extend(resolve_ref(&scopes, &names, node, r, diags));
        }
        main.push(slots);
        let mut side = Vec::new();
        for field in kinds[i].map(|k| k.side_inputs()).unwrap_or_default() {
            match node.config.get(*field) {
                None => {}
                Some(serde_yaml::Value::String(name)) => {
                    let r = InputRef { name: name.clone(), path: node.path.key(*field), many: false, reported: false };
                    for slot in resolve_ref(&scopes, &names, node, &r, diags) {
                        side.push((field.to_string(), slot));
                    }
                }
                Some(_) => diags.push(
                    node.file
                        .at_value(&node.path.key(*field), format!("`{field}` must name a node of the spec"))
                        .hint(format!("write `{field}: <node name>`")),
                ),
            }
        }
        sides.push(side);
    }
    let mut graph: DiGraph<usize, ()> = DiGraph::new();
    let idx: Vec<NodeIndex> = (0..raw.len()).map(|i| graph.add_node(i)).collect();
    let mut inputs: Vec<Vec<usize>> = vec![Vec::new(); raw.len()];
    for (i, node) in raw.iter().enumerate() {
        for slot in main[i].iter().chain(sides[i].iter().map(|(_, s)| s)) {
            if let Slot::Node(j) = *slot {
                inputs[i].push(j);
                graph.add_edge(idx[j], idx[i], ());
            }
        }
        if let Some(kind) = kinds[i] {
            let n = main[i].len();
            let bad = match kind.inputs() {
                Arity::None if n > 0 => Some(format!("`{}` is a source and takes no input", kind.name())),
                Arity::One if n != 1 => Some(format!("`{}` takes exactly one input (`input: <node>`)", kind.name())),
                Arity::Optional if n > 1 => {
                    Some(format!("`{}` takes at most one input (`input: <node>`)", kind.name()))
                }
                Arity::Many if n == 0 => Some(format!("`{}` needs `inputs: [a, b, ...]`", kind.name())),
                _ => None,
            };
            if let Some(msg) = bad {
                let at = if n > 0 { node.inputs[0].path.clone() } else { node.path.key("kind") };
                diags.push(node.file.at_value(&at, format!("node `{}`: {msg}", node.name)));
            }
        }
    }

    let order = match topo_order(&graph, &idx) {
        Ok(order) => order,
        Err(cycle) => {
            let path: Vec<&str> = cycle.iter().map(|&i| raw[i].name.as_str()).collect();
            let first = &raw[cycle[0]];
            let d = first
                .file
                .at_key(&first.path, format!("the nodes form a cycle: {}", path.join(" → ")))
                .hint("a node cannot depend on its own output; remove one of these inputs");
            diags.push(d);
            return None;
        }
    };

    // Compile in topological order so each kind sees its inputs' types.
    let mut compiled: Vec<Option<Compiled>> = (0..raw.len()).map(|_| None).collect();
    for &i in &order {
        let node = &raw[i];
        let Some(kind) = kinds[i].filter(|_| !node.unresolved) else { continue };
        // An input that is itself broken (or unknown) is checked against as
        // "records with unknown fields", so this node's own config problems
        // are still reported in the same pass.
        let info = |slot: &Slot| match slot {
            Slot::Node(j) => match (&compiled[*j], kinds[*j]) {
                (Some(c), Some(k)) => InputInfo { name: raw[*j].name.clone(), kind: k.name(), ty: c.output.clone() },
                _ => InputInfo { name: raw[*j].name.clone(), kind: "?", ty: PortType::records(FieldSet::Open) },
            },
            Slot::Missing(name) => InputInfo { name: name.clone(), kind: "?", ty: PortType::records(FieldSet::Open) },
        };
        let infos = main[i].iter().map(info).collect();
        let side_infos = sides[i].iter().map(|(field, slot)| (field.clone(), info(slot))).collect();
        let mut cx =
            CheckCx::new(&node.file, &node.name, node.path.clone(), infos, diags, &backends, &declared_backends);
        cx.workspace = workspace;
        cx.stats = stats;
        cx.side_inputs = side_infos;
        compiled[i] = kind.compile(&node.config, &mut cx);
    }
    if !diags.is_empty() {
        return None;
    }

    let position: HashMap<usize, usize> = order.iter().enumerate().map(|(pos, &i)| (i, pos)).collect();
    let mut nodes = Vec::with_capacity(order.len());
    let mut compiled = compiled;
    for &i in &order {
        let kind = kinds[i].expect("checked above");
        nodes.push(PlanNode {
            name: raw[i].name.clone(),
            kind: kind.name(),
            version: kind.version(),
            shape: kind.shape(),
            inputs: inputs[i].iter().map(|j| position[j]).collect(),
            compiled: compiled[i].take().expect("checked above"),
            cache: raw[i].cache,
            side_inputs: sides[i].iter().map(|(f, _)| f.clone()).collect(),
            file: raw[i].file.clone(),
            limit: None,
            shard: None,
        });
    }
    Some(Plan { spec_name, file, params, backends, prices, nodes, shard: None })
}

/// Reports each problem once, in the order of the files and lines: a
/// problem in a template used twice (or in a `matrix:` node) is found once
/// per copy, naming the copy; the first copy's report stands for all.
fn tidy(diags: &mut Vec<Diagnostic>, root: &Path, copies: &HashMap<String, String>) {
    let normalized = |msg: &str| {
        let mut out = String::with_capacity(msg.len());
        for (i, part) in msg.split('`').enumerate() {
            if i > 0 {
                out.push('`');
            }
            match copies.get(part) {
                Some(written) if i % 2 == 1 => out.push_str(written),
                _ => out.push_str(part),
            }
        }
        out
    };
    let mut seen = HashSet::new();
    diags.retain(|d| {
        let at = d.source.as_ref().map(|s| s.path.clone());
        seen.insert((at, d.loc.map(|l| (l.line, l.col)), normalized(&d.message), d.hint.clone()))
    });
    let mut files: Vec<PathBuf> = vec![root.to_path_buf()];
    for d in diags.iter() {
        if let Some(s) = &d.source {
            if !files.contains(&s.path) {
                files.push(s.path.clone());
            }
        }
    }
    // Problems without a position (the command line) first.
    diags.sort_by_key(|d| {
        let file = d.source.as_ref().and_then(|s| files.iter().position(|f| *f == s.path)).unwrap_or(0);
        (d.loc.is_some(), file, d.loc.map(|l| (l.line, l.col)))
    });
}

/// Kahn's algorithm with ties broken by the order written, so plans read in
/// spec order. On a cycle, returns one cycle's node path (first node repeated
/// at the end).
fn topo_order(graph: &DiGraph<usize, ()>, idx: &[NodeIndex]) -> Result<Vec<usize>, Vec<usize>> {
    if petgraph::algo::is_cyclic_directed(graph) {
        return Err(find_cycle(graph, idx));
    }
    let mut indegree: Vec<usize> =
        idx.iter().map(|&n| graph.neighbors_directed(n, petgraph::Direction::Incoming).count()).collect();
    let mut ready: BinaryHeap<Reverse<usize>> = (0..idx.len()).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(idx.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for next in graph.neighbors_directed(idx[i], petgraph::Direction::Outgoing) {
            let j = graph[next];
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.push(Reverse(j));
            }
        }
    }
    Ok(order)
}

fn find_cycle(graph: &DiGraph<usize, ()>, idx: &[NodeIndex]) -> Vec<usize> {
    // The strongly connected component holding a cycle, walked from its
    // first-written node along edges that stay inside it.
    let scc = petgraph::algo::tarjan_scc(graph)
        .into_iter()
        .filter(|c| c.len() > 1 || graph.contains_edge(c[0], c[0]))
        .min_by_key(|c| c.iter().map(|n| graph[*n]).min())
        .expect("a cyclic graph has a cyclic component");
    let members: Vec<usize> = scc.iter().map(|n| graph[*n]).collect();
    let start = *members.iter().min().expect("non-empty");
    let mut path = vec![start];
    let mut seen = vec![start];
    dfs_back(graph, idx, &members, start, start, &mut path, &mut seen);
    path
}

/// Depth-first search inside one component for a path back to `start`.
fn dfs_back(
    graph: &DiGraph<usize, ()>,
    idx: &[NodeIndex],
    members: &[usize],
    start: usize,
    at: usize,
    path: &mut Vec<usize>,
    seen: &mut Vec<usize>,
) -> bool {
    let mut next: Vec<usize> = graph
        .neighbors_directed(idx[at], petgraph::Direction::Outgoing)
        .map(|n| graph[n])
        .filter(|j| members.contains(j))
        .collect();
    next.sort();
    for j in next {
        if j == start {
            path.push(start);
            return true;
        }
        if !seen.contains(&j) {
            seen.push(j);
            path.push(j);
            if dfs_back(graph, idx, members, start, j, path, seen) {
                return true;
            }
            path.pop();
        }
    }
    false
}
