//! `flow show` and `flow runs`: reading what past runs stored.

use crate::out::{errln, outln};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use anyhow::Context;
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};

use flow_engine::cache::{NodeStatus, Store, StoreError, StoredOutput};
use flow_engine::diag::{suggest, Diagnostic};

/// The `.flow` folder to read: the one given, else `.flow` in the current
/// folder or an ancestor, else the only `*/.flow` just below (where
/// `flow run specs/x.yaml` puts it).
pub fn find_workspace(given: Option<PathBuf>) -> Result<PathBuf, Diagnostic> {
    if let Some(p) = given {
        return Ok(p);
    }
    let cwd = std::env::current_dir().map_err(|e| Diagnostic::new(format!("cannot read the current folder: {e}")))?;
    for dir in cwd.ancestors() {
        if dir.join(".flow").is_dir() {
            return Ok(dir.join(".flow"));
        }
    }
    let below: Vec<PathBuf> = std::fs::read_dir(&cwd)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path().join(".flow")).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    match below.as_slice() {
        [one] => Ok(one.strip_prefix(&cwd).map(PathBuf::from).unwrap_or_else(|_| one.clone())),
        [] => Err(Diagnostic::new("no .flow workspace found here")
            .hint("run a spec first (flow run specs/demo.yaml), or pass --workspace DIR")),
        many => Err(Diagnostic::new(format!("several .flow workspaces below this folder ({})", many.len()))
            .hint("pick one with --workspace, e.g. --workspace specs/.flow")),
    }
}

/// Prints a node's stored output as JSONL: from run `run` (an id, a unique
/// prefix or `latest`), else from the newest run of spec `spec` that has
/// it, else from the newest run that has it when only one spec's runs do.
pub fn show(
    store: &Store,
    node: &str,
    limit: Option<usize>,
    run: Option<&str>,
    spec: Option<&str>,
) -> Result<(), super::Failure> {
    let run = run.map(|r| resolve_run(store, r, spec)).transpose()?;
    let found = match (&run, spec) {
        (Some(id), _) => stored_output(store, node, Some(id))?,
        (None, spec) => newest_output(store, node, spec)?,
    };
    if let Ok(m) = store.run_manifest(&found.run_id) {
        if let Some(n) = m.node(node).filter(|n| n.status == NodeStatus::Failed) {
            errln!(
                "note: node `{node}` failed in run {}: these are the {} records it wrote before it failed ({})",
                found.run_id,
                found.records,
                n.error.as_deref().unwrap_or("no error recorded")
            );
        }
    }
    let file = store.open_object(&found.output).map_err(anyhow::Error::from)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in BufReader::new(file).lines().take(limit.unwrap_or(usize::MAX)) {
        let line = line.context("reading stored output")?;
        if writeln!(out, "{line}").is_err() {
            break; // closed pipe (`| head`)
        }
    }
    Ok(())
}

/// The newest output of `node` among the runs of `spec` (any spec when
/// `None`, as long as the runs that have it are all of one spec: two specs
/// with a node of that name are told apart with `--spec`).
fn newest_output(store: &Store, node: &str, spec: Option<&str>) -> Result<StoredOutput, super::Failure> {
    let ids = store.run_ids().map_err(anyhow::Error::from)?;
    let mut found: Option<StoredOutput> = None;
    let mut specs: Vec<String> = Vec::new();
    for id in ids.iter().rev() {
        let m = store.run_manifest(id).map_err(anyhow::Error::from)?;
        if spec.is_some_and(|s| s != m.spec) {
            continue;
        }
        let Some(n) = m.node(node) else { continue };
        // A failed node's records (what it wrote before it failed) say why.
        let kept = matches!(n.status, NodeStatus::Ran | NodeStatus::Cached | NodeStatus::Failed);
        let (Some(output), true) = (n.output, kept) else {
            continue;
        };
        if !specs.contains(&m.spec) {
            specs.push(m.spec.clone());
        }
        if found.is_none() {
            found = Some(StoredOutput { run_id: id.clone(), node: node.to_string(), output, records: n.records_out });
        }
    }
    if specs.len() > 1 {
        return Err(Diagnostic::new(format!(
            "node `{node}` has output in the runs of {} specs: {}",
            specs.len(),
            specs.join(", ")
        ))
        .hint("name the spec: flow show NODE --spec specs/<spec>.yaml (or run it from the spec's folder)")
        .into());
    }
    match found {
        Some(f) => Ok(f),
        None => {
            let known = store.nodes_with_output(None).map_err(anyhow::Error::from)?;
            let what = match spec {
                Some(s) => format!("no run of spec `{s}` has output for node `{node}`"),
                None => format!("no run has output for node `{node}`"),
            };
            Err(Diagnostic::new(what).hint(suggest(node, known.iter().map(String::as_str), "a node")).into())
        }
    }
}

/// Where node `node`'s output is, in run `run` or the newest run that has
/// one; a usage error with a did-you-mean when there is none.
pub fn stored_output(store: &Store, node: &str, run: Option<&str>) -> Result<StoredOutput, super::Failure> {
    match store.node_output(node, run) {
        Ok(Some(found)) => Ok(found),
        Err(StoreError::NoSuchRun(id)) => Err(unknown_run(store, &id).into()),
        Err(e) => Err(anyhow::Error::from(e).into()),
        Ok(None) => {
            let known = store.nodes_with_output(run).map_err(anyhow::Error::from)?;
            let what = match run {
                Some(id) => format!("run `{id}` has no output for node `{node}`"),
                None => format!("no run has output for node `{node}`"),
            };
            Err(Diagnostic::new(what).hint(suggest(node, known.iter().map(String::as_str), "a node")).into())
        }
    }
}

/// Run ids shown when a prefix matches several.
const CANDIDATES_SHOWN: usize = 10;

/// The run id that `given` names: `latest` (of `spec`'s runs, when given),
/// an id, or a unique prefix of one (`20261203-0757`). An ambiguous prefix
/// is a usage error listing the candidates.
pub fn resolve_run(store: &Store, given: &str, spec: Option<&str>) -> Result<String, Diagnostic> {
    let ids = store.run_ids().map_err(|e| Diagnostic::new(e.to_string()))?;
    if given == "latest" {
        let newest = match spec {
            None => ids.last().cloned(),
            Some(s) => ids.iter().rev().find(|id| store.run_manifest(id).is_ok_and(|m| m.spec == s)).cloned(),
        };
        return newest.ok_or_else(|| {
            let of = spec.map(|s| format!(" of spec `{s}`")).unwrap_or_default();
            Diagnostic::new(format!("no runs{of} yet in {}", store.root().display()))
                .hint("run a spec first: flow run specs/demo.yaml")
        });
    }
    if ids.iter().any(|id| id == given) {
        return Ok(given.to_string());
    }
    let matching: Vec<&String> =
        if given.is_empty() { Vec::new() } else { ids.iter().filter(|id| id.starts_with(given)).collect() };
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(unknown_run(store, given)),
        many => {
            let shown: Vec<&str> = many.iter().rev().take(CANDIDATES_SHOWN).map(|s| s.as_str()).collect();
            let more = many.len().saturating_sub(CANDIDATES_SHOWN);
            let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
            Err(Diagnostic::new(format!("run id `{given}` is ambiguous: {} runs start with it", many.len()))
                .hint(format!("give more of the id: {}{tail}", shown.join(", "))))
        }
    }
}

/// The spec `flow show` reads when none is named: the one flow spec in
/// the current folder, if there is exactly one (a `.yaml`/`.yml` file with
/// a top-level `flow:` key).
pub fn spec_here() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    let mut specs = std::fs::read_dir(&cwd).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| {
        let yaml = p.extension().is_some_and(|e| e == "yaml" || e == "yml");
        yaml && p.is_file() && std::fs::read_to_string(p).is_ok_and(|t| t.lines().any(|l| l.starts_with("flow:")))
    });
    let first = specs.next()?;
    specs.next().is_none().then(|| first.strip_prefix(&cwd).map(PathBuf::from).unwrap_or(first))
}

/// `no run `x``, with a did-you-mean over the stored run ids.
pub fn unknown_run(store: &Store, id: &str) -> Diagnostic {
    let ids = store.run_ids().unwrap_or_default();
    Diagnostic::new(format!("no run `{id}` in {}", store.root().display())).hint(suggest(
        id,
        ids.iter().map(String::as_str),
        "a run id",
    ))
}

/// Prints recent runs, newest first.
pub fn runs(store: &Store, limit: usize) -> anyhow::Result<()> {
    let ids = store.run_ids()?;
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header(["run", "spec", "status", "started", "ran", "cached", "failed"]);
    for id in ids.iter().rev().take(limit) {
        let m = store.run_manifest(id)?;
        let count = |s: NodeStatus| m.nodes.iter().filter(|n| n.status == s).count().to_string();
        table.add_row([
            m.run_id.clone(),
            match &m.shard {
                Some(s) => format!("{} (shard {s})", m.spec),
                None => m.spec.clone(),
            },
            serde_json::to_value(m.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
            m.started.clone(),
            count(NodeStatus::Ran),
            count(NodeStatus::Cached),
            count(NodeStatus::Failed),
        ]);
    }
    if ids.is_empty() {
        outln!("no runs yet in {}", store.root().display());
    } else {
        outln!("{table}");
    }
    Ok(())
}
