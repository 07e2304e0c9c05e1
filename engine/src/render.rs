//! `flow plan` output: text for people, DOT and Mermaid for diagrams, JSON
//! for machines. All four show the same plan and assessment.

use std::fmt::Write as _;

use serde_json::json;

use crate::assess::{Assessment, State};
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

/// The plan as aligned text, nodes in topological order.
pub fn text(plan: &Plan, assessed: &[Assessment]) -> String {
    let count = |s: State| assessed.iter().filter(|a| a.state == s).count();
    let mut out = format!(
        "plan `{}` ({}): {} nodes: {} cached, {} will run, {} unknown\n\n",
        plan.spec_name,
        plan.file.source.path.display(),
        plan.nodes.len(),
        count(State::Cached),
        count(State::WillRun),
        count(State::Unknown),
    );
    let rows: Vec<[String; 4]> = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let inputs = input_labels(plan, i);
            [
                n.name.clone(),
                n.kind.to_string(),
                if inputs.is_empty() { "-".into() } else { inputs.join(", ") },
                status_line(&assessed[i]),
            ]
        })
        .collect();
    let header = ["NODE", "KIND", "INPUTS", "STATUS"];
    let widths: Vec<usize> =
        (0..3).map(|c| rows.iter().map(|r| r[c].chars().count()).chain([header[c].len()]).max().unwrap_or(0)).collect();
    let mut line = |cells: [&str; 4]| {
        for c in 0..3 {
            let _ = write!(out, "{}{}  ", cells[c], " ".repeat(widths[c] - cells[c].chars().count()));
        }
        let _ = writeln!(out, "{}", cells[3]);
    };
    line(header);
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3]]);
    }
    out
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
pub fn dot(plan: &Plan, assessed: &[Assessment]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", dot_escape(&plan.spec_name));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(out, "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];");
    for (i, n) in plan.nodes.iter().enumerate() {
        let a = &assessed[i];
        let _ = writeln!(
            out,
            "  \"n{i}\" [label=\"{}\\n{}\\n{}\", fillcolor=\"{}\"];",
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
pub fn mermaid(plan: &Plan, assessed: &[Assessment]) -> String {
    let mut out = String::from("flowchart LR\n");
    for (i, n) in plan.nodes.iter().enumerate() {
        let a = &assessed[i];
        let class = match a.state {
            State::Cached => "cached",
            State::WillRun => "willrun",
            State::Unknown => "unknown",
        };
        let _ = writeln!(
            out,
            "  n{i}[\"{}<br/>{}<br/>{}\"]:::{class}",
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
pub fn json(plan: &Plan, assessed: &[Assessment]) -> serde_json::Value {
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
