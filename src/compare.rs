//! `flow compare RUN_A RUN_B`: the comparison a `compare` node makes, between
//! one node's outputs in two stored runs, without writing a node for it.
//! Same code, same default settings, same table; no gates, so it exits 0.
//! Its page is the `compare` node's report view of the two runs
//! ([`crate::report::comparison`]), which `flow view --serve` also serves.

use crate::out::{errln, out};
use std::io::{BufRead, BufReader};

use flow_engine::cache::Store;
use flow_engine::diag::Diagnostic;
use flow_nodes::compare::{self, report, Settings, Side};

use super::inspect;
use super::Failure;

/// Two stored runs' outputs of one node, compared.
pub struct Compared {
    /// The baseline run's id.
    pub a: String,
    /// The candidate run's id.
    pub b: String,
    pub node: String,
    /// The candidate run's spec.
    pub spec: String,
    pub comparison: compare::Comparison,
    /// The baseline's records, then the candidate's.
    pub sides: [Side; 2],
}

/// Prints the comparison of node `node` (by default the one node whose
/// records have `scores` in both runs) between run `a` (the baseline) and
/// run `b`, and writes its page (the comparison case by case, as a
/// `compare` node's report view shows it) into run `b`'s folder.
/// Either run may be named by a unique prefix of its id, or `latest`.
pub fn compare(store: &Store, a: &str, b: &str, node: Option<&str>) -> Result<(), Failure> {
    let compared = load(store, a, b, node)?;
    out!("{}", report::markdown(&compared.comparison, &[]));
    // The markdown is what was asked: a page that cannot be written only warns.
    match crate::report::comparison::write(store, &compared) {
        Ok(path) => errln!("comparison page: {}", path.display()),
        Err(e) => errln!("warning: no comparison page: {}", crate::out::chain(&e)),
    }
    Ok(())
}

/// Compares node `node` between runs `a` and `b` as [`compare`] says.
pub fn load(store: &Store, a: &str, b: &str, node: Option<&str>) -> Result<Compared, Failure> {
    let (a, b) = (inspect::resolve_run(store, a, None)?, inspect::resolve_run(store, b, None)?);
    let node = match node {
        Some(n) => n.to_string(),
        None => scored_node(store, &a, &b)?,
    };
    let side = |run: &str| -> Result<Side, Failure> {
        let found = inspect::stored_output(store, &node, Some(run))?;
        // A failed node's records are a part: comparing them would mislead.
        let manifest = store.run_manifest(run).map_err(anyhow::Error::from)?;
        if manifest.node(&node).is_some_and(|n| n.status == flow_engine::cache::NodeStatus::Failed) {
            return Err(anyhow::anyhow!(
                "node `{node}` failed in run `{run}`; its records are only those it wrote before it failed; hint: compare runs in which it finished"
            )
            .into());
        }
        let bytes = store.read_object(&found.output).map_err(anyhow::Error::from)?;
        let records = compare::read_jsonl(&bytes)
            .map_err(|e| anyhow::anyhow!("the output of `{node}` in run `{run}` is unreadable: {e}"))?;
        Ok(Side { name: format!("runs/{run}/{node}"), records })
    };
    let (baseline, candidate) = (side(&a)?, side(&b)?);
    let comparison = compare::compare(&baseline, std::slice::from_ref(&candidate), &Settings::default())
        .map_err(|e| anyhow::anyhow!("cannot compare `{node}` between runs `{a}` and `{b}`: {e}"))?;
    let spec = store.run_manifest(&b).map(|m| m.spec).unwrap_or_default();
    Ok(Compared { a, b, node, spec, comparison, sides: [baseline, candidate] })
}

/// The one node with an output in both runs whose records have `scores`.
fn scored_node(store: &Store, a: &str, b: &str) -> Result<String, Failure> {
    let in_b = store.nodes_with_output(Some(b)).map_err(anyhow::Error::from)?;
    let both: Vec<String> = store
        .nodes_with_output(Some(a))
        .map_err(anyhow::Error::from)?
        .into_iter()
        .filter(|n| in_b.contains(n))
        .collect();
    let mut scored = Vec::new();
    for node in &both {
        if has_scores(store, a, node)? {
            scored.push(node.clone());
        }
    }
    match scored.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Diagnostic::new(format!("runs `{a}` and `{b}` have no node whose records have `scores` in both"))
            .hint(if both.is_empty() {
                "the two runs share no node with an output".to_string()
            } else {
                format!("name one with --node; both runs have: {}", both.join(", "))
            })
            .into()),
        many => Err(Diagnostic::new(format!("several nodes have scored records in both runs: {}", many.join(", ")))
            .hint(format!("pick one with --node, e.g. --node {}", many[0]))
            .into()),
    }
}

/// Whether the first record of the node's output in `run` has `scores`.
fn has_scores(store: &Store, run: &str, node: &str) -> Result<bool, Failure> {
    let found = inspect::stored_output(store, node, Some(run))?;
    let file = store.open_object(&found.output).map_err(anyhow::Error::from)?;
    let first = BufReader::new(file).lines().next().transpose().map_err(anyhow::Error::from)?;
    Ok(first
        .and_then(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .is_some_and(|r| r.get("scores").is_some_and(serde_json::Value::is_object)))
}
