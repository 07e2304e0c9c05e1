//! What a run shows while it goes and when it ends: a progress line per node
//! on a terminal (indicatif), plain lines otherwise, `--json` event lines
//! for machines; then a summary table and each node's summary.

use crate::out::{errln, outln};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

use flow_engine::cache::{CallStats, NodeStatus, RunManifest, RunStatus, Store};
use flow_engine::{Plan, RunEvent, SUMMARY_MD};

enum Mode {
    Bars { multi: MultiProgress, bars: HashMap<String, ProgressBar> },
    Plain,
    Json,
}

pub struct Display {
    mode: Mode,
}

impl Display {
    pub fn new(plan: &Plan, json: bool) -> Self {
        let mode = if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let width = plan.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4);
            let style = ProgressStyle::with_template(&format!("{{spinner}} {{prefix:{width}}}  {{msg}}"))
                .expect("valid template");
            let bars = plan
                .nodes
                .iter()
                .map(|n| {
                    let bar = multi.add(ProgressBar::new_spinner().with_style(style.clone()));
                    bar.set_prefix(n.name.clone());
                    bar.set_message("waiting");
                    (n.name.clone(), bar)
                })
                .collect();
            Mode::Bars { multi, bars }
        } else {
            Mode::Plain
        };
        Self { mode }
    }

    /// Renders events until the run closes the channel.
    pub async fn consume(self, mut rx: UnboundedReceiver<RunEvent>) -> Self {
        while let Some(ev) = rx.recv().await {
            match (&self.mode, ev) {
                (Mode::Json, ev) => outln!("{}", event_json(&ev)),
                (Mode::Bars { bars, .. }, RunEvent::NodeStarted { node, cached, .. }) => {
                    if let Some(b) = bars.get(&node) {
                        b.enable_steady_tick(Duration::from_millis(120));
                        b.set_message(if cached { "replaying cached output" } else { "running" });
                    }
                }
                (Mode::Bars { bars, .. }, RunEvent::Progress { node, records }) => {
                    if let Some(b) = bars.get(&node) {
                        b.set_message(format!("{records} records"));
                    }
                }
                (Mode::Bars { bars, .. }, RunEvent::NodeFinished(r)) => {
                    if let Some(b) = bars.get(&r.name) {
                        b.finish_with_message(finished_line(&r));
                    }
                }
                (Mode::Plain, RunEvent::NodeStarted { node, kind, cached }) => {
                    errln!("[{node}] {kind}: {}", if cached { "cached" } else { "started" });
                }
                (Mode::Plain, RunEvent::Progress { .. }) => {}
                (Mode::Plain, RunEvent::NodeFinished(r)) => {
                    errln!("[{}] {}", r.name, finished_line(&r))
                }
            }
        }
        if let Mode::Bars { multi, .. } = &self.mode {
            let _ = multi.clear();
        }
        self
    }

    /// The end-of-run table and each node's summary.
    pub fn finish(&self, store: &Store, m: &RunManifest) {
        if matches!(self.mode, Mode::Json) {
            outln!("{}", json!({"event": "run_finished", "run_id": m.run_id, "status": m.status, "error": m.error}));
            return;
        }
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
                    outln!("\n{} ({})\n{}", n.name, n.kind, text.trim_end());
                }
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
        let ran = m.nodes.iter().filter(|n| n.status == NodeStatus::Ran).count();
        let cached = m.nodes.iter().filter(|n| n.status == NodeStatus::Cached).count();
        let folder = store.run_dir(&m.run_id);
        match m.status {
            RunStatus::Succeeded => {
                outln!("\nrun {} succeeded: {ran} ran, {cached} cached; {}", m.run_id, folder.display())
            }
            RunStatus::Interrupted => {
                errln!("\nrun {} interrupted; finished nodes are kept and will be reused", m.run_id)
            }
            _ if m.nodes.iter().any(|n| n.gate_failed.is_some()) && m.nodes.iter().all(|n| n.error.is_none()) => {
                errln!("\nerror: run {} failed: a gate tripped", m.run_id);
                for n in m.nodes.iter().filter(|n| n.gate_failed.is_some()) {
                    // One line per tripped rule, indented under the node.
                    let text = n.gate_failed.as_deref().unwrap_or_default().replace('\n', "\n    ");
                    errln!("  node `{}`: {text}", n.name);
                }
                errln!("  hint: every node finished and is cached; the report is in {}", folder.display());
            }
            _ => errln!(
                "\nerror: run {} failed: {}\n  hint: finished nodes are cached; fix the problem and run again",
                m.run_id,
                m.error.as_deref().unwrap_or("unknown error")
            ),
        }
    }
}

fn status_word(s: NodeStatus) -> &'static str {
    match s {
        NodeStatus::Ran => "ran",
        NodeStatus::Cached => "cached",
        NodeStatus::Failed => "FAILED",
        NodeStatus::Cancelled => "cancelled",
    }
}

fn finished_line(r: &flow_engine::cache::NodeOutcome) -> String {
    match r.status {
        NodeStatus::Failed => format!("failed: {}", r.error.as_deref().unwrap_or("")),
        NodeStatus::Cancelled => "cancelled".into(),
        s => format!("{}: {} records in {}", status_word(s), r.records_out, format_ms(r.wall_ms)),
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

fn cost_cell(usd: Option<f64>) -> String {
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

fn event_json(ev: &RunEvent) -> serde_json::Value {
    match ev {
        RunEvent::NodeStarted { node, kind, cached } => {
            json!({"event": "node_started", "node": node, "kind": kind, "cached": cached})
        }
        RunEvent::Progress { node, records } => {
            json!({"event": "progress", "node": node, "records": records})
        }
        RunEvent::NodeFinished(r) => json!({"event": "node_finished", "node": r}),
    }
}
