//! The index of a workspace's runs: `.flow/index.html`, rewritten after
//! every `flow run` and by `flow view` with no run. Newest first, each run
//! with its spec, status, time, calls and cost, the headline figures of each
//! `evaluate` node (pass rate, mean score, each metric's mean), and a link
//! to its report; two runs of a spec picked there give the `flow compare`
//! that compares them. One self-contained file like a run's report: the
//! same template, CSP and text-only rendering.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{json, Value};

use flow_engine::cache::{write_replaceable, RunManifest, RunStatus, Store};
use flow_engine::node::SUMMARY_JSON;

use super::{page, REPORT_HTML};

/// The index's file name, in the workspace (`.flow/`).
pub const INDEX_HTML: &str = "index.html";

/// Runs an index lists, at most (newest first); `flow runs` lists them all.
pub const MAX_RUNS: usize = 500;

/// A finished run's line of the index, kept in its folder: every run
/// rewrites the index, and reading a few hundred small lines is cheaper
/// than their manifests and summaries.
const INDEX_LINE: &str = "index-line.json";

/// Writes the index of `store`'s runs and returns its path.
pub fn write(store: &Store) -> anyhow::Result<PathBuf> {
    let html = render(store, "")?;
    let path = store.root().join(INDEX_HTML);
    write_replaceable(&path, html.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The index page; `connect` as [`page::render_index`] has it (`'self'`
/// when `flow view --serve` serves it: the page then links comparisons to
/// the server).
pub fn render(store: &Store, connect: &str) -> anyhow::Result<String> {
    let data = collect(store, !connect.is_empty())?;
    let workspace = store.root().display().to_string();
    Ok(page::render_index(&workspace, &data.to_string(), &super::nonce("index"), connect))
}

/// The index's data: the workspace, and its runs newest first.
pub fn collect(store: &Store, served: bool) -> anyhow::Result<Value> {
    let ids = store.run_ids()?;
    let mut runs = Vec::new();
    for id in ids.iter().rev().take(MAX_RUNS) {
        let kept = store.run_dir(id).join(INDEX_LINE);
        if let Some(line) = std::fs::read(&kept).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
            if line["flow_version"] == env!("CARGO_PKG_VERSION") {
                runs.push(line);
                continue;
            }
        }
        // A run folder without a readable manifest (being written) is skipped.
        let Ok(m) = store.run_manifest(id) else { continue };
        let line = run(store, &m);
        // A finished run's line no longer changes (a running one's does,
        // and one recorded as running may turn out to have died).
        if m.finished.is_some() && m.status != RunStatus::Running {
            // Best effort: a workspace that cannot be written is read.
            let _ = write_replaceable(&kept, line.to_string().as_bytes());
        }
        runs.push(line);
    }
    Ok(json!({
        "format": 1,
        "flow_version": env!("CARGO_PKG_VERSION"),
        "workspace": store.root().display().to_string(),
        "served": served,
        "runs": runs,
        "total": ids.len(),
    }))
}

/// One run's line: what the index shows of it.
fn run(store: &Store, m: &RunManifest) -> Value {
    let has_report = store.run_dir(&m.run_id).join(REPORT_HTML).is_file();
    let evaluates: Vec<Value> = m
        .nodes
        .iter()
        .filter(|n| n.kind == "evaluate" && n.artifacts.contains_key(SUMMARY_JSON))
        .filter_map(|n| {
            // Only what is here: the index is rewritten by every run, and a
            // summary missing here (collected, or only in a shared store)
            // is not worth a request to the bucket each time.
            let bytes = std::fs::read(store.object_path(n.artifacts.get(SUMMARY_JSON)?)).ok()?;
            let s: Value = serde_json::from_slice(&bytes).ok()?;
            let metrics: serde_json::Map<String, Value> = s["metrics"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), json!({"mean": v["mean"], "pass_rate": v["pass_rate"]})))
                .collect();
            Some(json!({
                "node": n.name,
                "records": s["records"],
                "passed": s["passed"],
                "pass_rate": s["pass_rate"],
                "score": s["score"],
                "metrics": metrics,
            }))
        })
        .collect();
    json!({
        "flow_version": env!("CARGO_PKG_VERSION"),
        "run_id": m.run_id,
        "spec": m.spec,
        "spec_path": m.spec_path,
        "shard": m.shard,
        "status": m.status,
        "started": m.started,
        "finished": m.finished,
        "calls": m.calls,
        "error": m.error.as_deref().map(flow_nodes::view::cut),
        "nodes": m.nodes.len(),
        "gates_tripped": m.nodes.iter().filter(|n| n.gate_failed.is_some()).count(),
        "report": has_report.then(|| format!("runs/{}/{REPORT_HTML}", m.run_id)),
        "evaluates": evaluates,
    })
}
