//! `flow show` and `flow runs`: reading what past runs stored.

use crate::out::outln;
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

/// Prints a node's stored output as JSONL.
pub fn show(store: &Store, node: &str, limit: Option<usize>, run: Option<&str>) -> Result<(), super::Failure> {
    let found = stored_output(store, node, run)?;
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
            m.spec.clone(),
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
