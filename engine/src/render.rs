//! `flow plan` output: text for people, DOT and Mermaid for diagrams, JSON
//! for machines. All four show the same plan, assessment and call
//! estimates; nodes that call no backend show no calls.

use std::fmt::Write as _;

use serde_json::json;

use crate::assess::{Assessment, State};
use crate::calls::CallEstimate;
use crate::compile::Plan;

/// Names of a node's inputs: upstream nodes, then files.
fn input_labels(plan: &Plan, i: usize) -> Vec<String> {
    let node = &plan.nodes[i];
    let mut v: Vec<String> = node.inputs.iter().map(|&u| plan.nodes[u].name.clone()).collect();
    v.extend(node.compiled.files.iter().map(|f| format!("file {}", f.written)));
    v
}

fn status_line(a: &Assessment) -> String {
    let mut s = a.state.to_string();
    if !a.reasons.is_empty() {
        let reasons: Vec<String> = a.reasons.iter().map(ToString::to_string).collect();
        let _ = write!(s, " ({})", reasons.join("; "));
    }
    s
}

/// The plan's calls in all, when every estimate has a number: `12 backend
/// calls (30 memoized)` or `up to 500 backend calls`.
fn total_calls(calls: &[Option<CallEstimate>]) -> Option<String> {
    let all: Vec<&CallEstimate> = calls.iter().flatten().collect();
    if all.is_empty() {
        return None;
    }
    let sum = |f: fn(&CallEstimate) -> Option<u64>| all.iter().map(|e| f(e)).sum::<Option<u64>>();
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    if let (Some(n), Some(hits)) = (sum(|e| e.expected), sum(|e| e.memo_hits)) {
        let memoized = if hits > 0 { format!(" ({hits} memoized)") } else { String::new() };
        return Some(format!("{n} backend call{}{memoized}", plural(n)));
    }
    sum(|e| e.at_most).map(|n| format!("up to {n} backend call{}", plural(n)))
}

/// The plan as aligned text, nodes in topological order. A CALLS column
/// appears when some node calls a backend. `calls` is in plan order, as
/// [`crate::calls::estimate`] gives it (empty: no estimates).
pub fn text(plan: &Plan, assessed: &[Assessment], calls: &[Option<CallEstimate>]) -> String {
    let count = |s: State| assessed.iter().filter(|a| a.state == s).count();
    let mut out = format!(
        "plan `{}` ({}): {} nodes: {} cached, {} will run, {} unknown",
        plan.spec_name,
        plan.file.source.path.display(),
        plan.nodes.len(),
        count(State::Cached),
        count(State::WillRun),
        count(State::Unknown),
    );
    if let Some(total) = total_calls(calls) {
        let _ = write!(out, "; {total}");
    }
    out.push_str("\n\n");
    let with_calls = calls.iter().any(Option::is_some);
    let mut header = vec!["NODE", "KIND", "INPUTS"];
    if with_calls {
        header.push("CALLS");
    }
    header.push("STATUS");
    let rows: Vec<Vec<String>> = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let inputs = input_labels(plan, i);
            let mut row = vec![
                n.name.clone(),
                n.kind.to_string(),
                if inputs.is_empty() { "-".into() } else { inputs.join(", ") },
            ];
            if with_calls {
                row.push(calls.get(i).and_then(Option::as_ref).map(|e| e.to_string()).unwrap_or_else(|| "-".into()));
            }
            row.push(status_line(&assessed[i]));
            row
        })
        .collect();
    let last = header.len() - 1;
    let widths: Vec<usize> = (0..last)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).chain([header[c].len()]).max().unwrap_or(0))
        .collect();
    let mut line = |cells: &[&str]| {
        for c in 0..last {
            let _ = write!(out, "{}{}  ", cells[c], " ".repeat(widths[c] - cells[c].chars().count()));
        }
        let _ = writeln!(out, "{}", cells[last]);
    };
    line(&header);
    for r in &rows {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

/// A diagram label's calls line, for nodes that will call a backend.
fn calls_label(state: State, calls: Option<&CallEstimate>) -> Option<String> {
    let e = calls.filter(|_| state != State::Cached)?;
    let calls = |n: u64| format!("{n} call{}", if n == 1 { "" } else { "s" });
    Some(match (e.expected, e.memo_hits, e.at_most) {
        (Some(n), Some(hits), _) if hits > 0 => format!("{} ({hits} memoized)", calls(n)),
        (Some(n), _, _) => calls(n),
        (None, _, Some(n)) => format!("up to {}", calls(n)),
        (None, _, None) => format!("{} per record", calls(e.per_record)),
    })
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn color(state: State) -> &'static str {
    match state {
        State::Cached => "#d9f2d9",
        State::WillRun => "#ffe7b3",
        State::Unknown => "#e6e6e6",
    }
}

/// The plan as a Graphviz DOT digraph.
pub fn dot(plan: &Plan, assessed: &[Assessment], calls: &[Option<CallEstimate>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", dot_escape(&plan.spec_name));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(out, "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];");
    for (i, n) in plan.nodes.iter().enumerate() {
        let a = &assessed[i];
        let extra = calls_label(a.state, calls.get(i).and_then(Option::as_ref))
            .map(|c| format!("\\n{}", dot_escape(&c)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  \"n{i}\" [label=\"{}\\n{}\\n{}{extra}\", fillcolor=\"{}\"];",
            dot_escape(&n.name),
            dot_escape(n.kind),
            a.state,
            color(a.state)
        );
        for (f, file) in n.compiled.files.iter().enumerate() {
            let _ = writeln!(out, "  \"n{i}f{f}\" [shape=note, style=\"\", label=\"{}\"];", dot_escape(&file.written));
            let _ = writeln!(out, "  \"n{i}f{f}\" -> \"n{i}\";");
        }
        for &u in &n.inputs {
            let _ = writeln!(out, "  \"n{u}\" -> \"n{i}\";");
        }
    }
    out.push_str("}\n");
    out
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;")
}

/// The plan as a Mermaid flowchart.
pub fn mermaid(plan: &Plan, assessed: &[Assessment], calls: &[Option<CallEstimate>]) -> String {
    let mut out = String::from("flowchart LR\n");
    for (i, n) in plan.nodes.iter().enumerate() {
        let a = &assessed[i];
        let class = match a.state {
            State::Cached => "cached",
            State::WillRun => "willrun",
            State::Unknown => "unknown",
        };
        let extra = calls_label(a.state, calls.get(i).and_then(Option::as_ref))
            .map(|c| format!("<br/>{}", mermaid_escape(&c)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  n{i}[\"{}<br/>{}<br/>{}{extra}\"]:::{class}",
            mermaid_escape(&n.name),
            mermaid_escape(n.kind),
            a.state
        );
        for (f, file) in n.compiled.files.iter().enumerate() {
            let _ = writeln!(out, "  n{i}f{f}[/\"{}\"/]", mermaid_escape(&file.written));
            let _ = writeln!(out, "  n{i}f{f} --> n{i}");
        }
        for &u in &n.inputs {
            let _ = writeln!(out, "  n{u} --> n{i}");
        }
    }
    for state in [State::Cached, State::WillRun, State::Unknown] {
        let class = match state {
            State::Cached => "cached",
            State::WillRun => "willrun",
            State::Unknown => "unknown",
        };
        let _ = writeln!(out, "  classDef {class} fill:{}", color(state));
    }
    out
}

/// The plan as JSON.
pub fn json(plan: &Plan, assessed: &[Assessment], calls: &[Option<CallEstimate>]) -> serde_json::Value {
    let nodes: Vec<serde_json::Value> = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let a = &assessed[i];
            json!({
                "name": n.name,
                "kind": n.kind,
                "shape": n.shape,
                "inputs": n.inputs.iter().map(|&u| plan.nodes[u].name.clone()).collect::<Vec<_>>(),
                "files": n.compiled.files.iter().map(|f| json!({"path": f.written, "hash": f.hash})).collect::<Vec<_>>(),
                "output_type": n.compiled.output.to_string(),
                "status": a.state,
                "reasons": a.reasons,
                "key": a.key,
                "key_fields": a.fields,
                "calls": calls.get(i).and_then(Option::as_ref),
            })
        })
        .collect();
    json!({
        "spec": plan.spec_name,
        "path": plan.file.source.path.display().to_string(),
        "params": plan.params,
        "nodes": nodes,
    })
}
