//! The end of a run: the table of nodes, each node's summary, the calls,
//! and how the run ended; a tripped gate is said once, with its figures and
//! a few ids (see [`crate::export::shorten_ids`]). With `--json`, one
//! `run_finished` line carries the same figures and the report's path.

use crate::out::{errln, outln};
use std::path::{Path, PathBuf};

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde_json::json;

use flow_engine::cache::{CallStats, NodeStatus, RunManifest, RunStatus, Store};
use flow_engine::SUMMARY_MD;

use super::{Display, Mode};
use crate::export::{gate_lines, shorten_ids};

impl Display {
    /// The end-of-run table and each node's summary, the calls, and how
    /// the run ended; `report` is the HTML report's path, `outputs` the
    /// `-o` files written.
    pub fn finish(&mut self, store: &Store, m: &RunManifest, report: Option<&Path>, outputs: &[PathBuf]) {
        let folder = store.run_dir(&m.run_id);
        let end = finished_json(m, report, outputs);
        // Last in the log: the report and the index it points at are written.
        if let Some(log) = &mut self.log {
            log.tick();
            log.event(None, false, &end);
        }
        if self.mode == Mode::Json {
            outln!("{end}");
            return;
        }
        if self.mode != Mode::Quiet {
            self.tables(store, m);
        }
        let ran = m.nodes.iter().filter(|n| n.status == NodeStatus::Ran).count();
        let cached = m.nodes.iter().filter(|n| n.status == NodeStatus::Cached).count();
        let gated = m.nodes.iter().any(|n| n.gate_failed.is_some()) && m.nodes.iter().all(|n| n.error.is_none());
        match m.status {
            RunStatus::Succeeded if self.mode == Mode::Quiet => {}
            RunStatus::Succeeded => {
                outln!("\nrun {} succeeded: {ran} ran, {cached} cached; {}", m.run_id, folder.display())
            }
            RunStatus::Interrupted => {
                errln!("\nrun {} interrupted; finished nodes are kept and will be reused", m.run_id)
            }
            _ if gated => {
                errln!("\nerror: run {} failed: a gate tripped", m.run_id);
                for n in m.nodes.iter().filter(|n| n.gate_failed.is_some()) {
                    // One line per tripped rule, indented under the node.
                    let lines = gate_lines(n.gate_failed.as_deref().unwrap_or_default(), &n.name);
                    errln!("  node `{}`: {}", n.name, lines.join("\n    "));
                }
                errln!("  hint: every node finished and is cached; the report is in {}", folder.display());
            }
            _ => errln!(
                "\nerror: run {} failed: {}\n  hint: finished nodes are cached; fix the problem and run again",
                m.run_id,
                m.error.as_deref().unwrap_or("unknown error")
            ),
        }
        if self.mode != Mode::Quiet {
            if let Some(path) = report {
                outln!("report: {}", path.display());
            }
            for o in outputs {
                outln!("wrote {}", o.display());
            }
        }
    }

    /// The table of nodes, each node's summary and the calls.
    fn tables(&self, store: &Store, m: &RunManifest) {
        let mut table = Table::new();
        let with_calls = m.calls.is_some();
        let mut header = vec!["node", "kind", "status", "in", "out", "time"];
        if with_calls {
            header.extend(["calls", "tokens", "cost"]);
        }
        table.load_preset(UTF8_BORDERS_ONLY).set_header(header);
        for n in &m.nodes {
            let status = match &n.gate_failed {
                Some(_) => format!("{} (GATE)", status_word(n.status)),
                None => status_word(n.status).to_string(),
            };
            let mut row = vec![
                n.name.clone(),
                n.kind.clone(),
                status,
                n.records_in.to_string(),
                n.records_out.to_string(),
                format_ms(n.wall_ms),
            ];
            if with_calls {
                row.extend(match &n.calls {
                    Some(c) => [calls_cell(c), tokens_cell(c), cost_cell(c.cost_usd)],
                    None => ["-".into(), "-".into(), "-".into()],
                });
            }
            table.add_row(row);
        }
        outln!("{table}");
        for n in &m.nodes {
            if n.artifacts.contains_key(SUMMARY_MD) {
                if let Ok(text) = std::fs::read_to_string(store.run_dir(&m.run_id).join(&n.name).join(SUMMARY_MD)) {
                    outln!("\n{} ({})\n{}", n.name, n.kind, node_summary(&text, &n.name, n.gate_failed.is_some()));
                }
            }
        }
        for n in &m.nodes {
            for w in &n.warnings {
                errln!("warning: node `{}`: {w}", n.name);
            }
        }
        if let Some(c) = m.calls.as_ref().filter(|c| c.implausible_usage > 0) {
            errln!(
                "warning: {} answers reported more than {} tokens, which no model does; their tokens and cost are not counted",
                c.implausible_usage,
                flow_nodes::backend::MAX_CALL_TOKENS
            );
        }
        if let Some(c) = &m.calls {
            outln!(
                "\ncalls: {} sent, {} from the memo, {} retries, {} failed; tokens: {} in, {} out; cost: {}",
                c.requests,
                c.memo_hits,
                c.retries,
                c.errors,
                c.prompt_tokens,
                c.completion_tokens,
                cost_cell(c.cost_usd)
            );
        }
    }
}

/// A node's summary as printed: its id lists shortened, and its own copy
/// of a tripped gate left out when the run's end says it anyway.
fn node_summary(text: &str, node: &str, gate_said_below: bool) -> String {
    let lines: Vec<&str> = text
        .trim_end()
        .lines()
        .filter(|l| !(gate_said_below && l.trim_start().to_ascii_uppercase().starts_with("GATE TRIPPED")))
        .collect();
    shorten_ids(lines.join("\n").trim_end(), node)
}

/// `run_finished`: the status, the figures, the gates and where the
/// report and the `-o` files are.
fn finished_json(m: &RunManifest, report: Option<&Path>, outputs: &[PathBuf]) -> serde_json::Value {
    let count = |s: NodeStatus| m.nodes.iter().filter(|n| n.status == s).count();
    let gates: Vec<serde_json::Value> =
        m.nodes.iter().filter_map(|n| n.gate_failed.as_ref().map(|g| json!({"node": n.name, "text": g}))).collect();
    json!({
        "event": "run_finished",
        "run_id": m.run_id,
        "status": m.status,
        "error": m.error,
        "nodes": {
            "ran": count(NodeStatus::Ran),
            "cached": count(NodeStatus::Cached),
            "failed": count(NodeStatus::Failed),
            "cancelled": count(NodeStatus::Cancelled),
        },
        "records": m.nodes.iter().map(|n| (n.name.clone(), json!(n.records_out))).collect::<serde_json::Map<_, _>>(),
        "calls": m.calls,
        "gates": gates,
        "report": report.map(|p| p.display().to_string()),
        "outputs": outputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    })
}

fn status_word(s: NodeStatus) -> &'static str {
    match s {
        NodeStatus::Ran => "ran",
        NodeStatus::Cached => "cached",
        NodeStatus::Failed => "FAILED",
        NodeStatus::Cancelled => "cancelled",
    }
}

/// How a node ended, in one line: `ran: 24 records in 12.00 s (2.0/s), 1
/// error, $0.0012`.
pub fn finished_line(r: &flow_engine::cache::NodeOutcome, rate: Option<f64>) -> String {
    match r.status {
        NodeStatus::Failed => format!("failed: {}", r.error.as_deref().unwrap_or("")),
        NodeStatus::Cancelled => "cancelled".into(),
        s => {
            let mut line = format!("{}: {} records in {}", status_word(s), r.records_out, format_ms(r.wall_ms));
            if let Some(rate) = rate.filter(|_| r.wall_ms >= 1000) {
                line.push_str(&format!(" ({rate:.1}/s)"));
            }
            if let Some(c) = &r.calls {
                if c.errors > 0 {
                    line.push_str(&format!(", {} failed call{}", c.errors, if c.errors == 1 { "" } else { "s" }));
                }
                if c.cost_usd.is_some_and(|v| v > 0.0) {
                    line.push_str(&format!(", {}", cost_cell(c.cost_usd)));
                }
            }
            line
        }
    }
}

/// `24`, or `24 (+3 memo, 2 retries, 1 failed)`.
fn calls_cell(c: &CallStats) -> String {
    let mut extra = Vec::new();
    if c.memo_hits > 0 {
        extra.push(format!("+{} memo", c.memo_hits));
    }
    if c.retries > 0 {
        extra.push(format!("{} retries", c.retries));
    }
    if c.errors > 0 {
        extra.push(format!("{} failed", c.errors));
    }
    if extra.is_empty() {
        c.requests.to_string()
    } else {
        format!("{} ({})", c.requests, extra.join(", "))
    }
}

fn tokens_cell(c: &CallStats) -> String {
    (c.prompt_tokens + c.completion_tokens).to_string()
}

pub fn cost_cell(usd: Option<f64>) -> String {
    match usd {
        None => "unknown".into(),
        Some(0.0) => "$0".into(),
        Some(v) if v < 0.01 => format!("${v:.6}"),
        Some(v) => format!("${v:.4}"),
    }
}

fn format_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.2} s", ms as f64 / 1000.0)
    }
}
