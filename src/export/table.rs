//! The tabular exports: CSV and JSON Lines hold the same rows (one per
//! record × metric, the shape a spreadsheet or `jq` filters best), JSON the
//! whole picture (the run, each node's summary, gates and records).

use serde_json::{json, Value};

use super::{cases, Case, Results, Verdict};

/// The columns of a row, in order.
const COLUMNS: [&str; 11] =
    ["node", "id", "variant", "sample", "metric", "pass", "score", "value", "reason", "error", "output"];

fn row(c: &Case<'_>) -> Value {
    let (pass, error) = match &c.verdict {
        Verdict::Pass => (json!(true), Value::Null),
        Verdict::Fail => (json!(false), Value::Null),
        Verdict::Error(e) => (json!(false), json!(e)),
    };
    json!({
        "node": c.node,
        "id": c.id,
        "variant": c.variant,
        "sample": c.sample,
        "metric": c.metric,
        "pass": pass,
        "score": c.score,
        "value": c.value,
        "reason": c.reason,
        "error": error,
        "output": c.record.get("output"),
    })
}

fn rows<'a>(results: &'a Results<'a>) -> impl Iterator<Item = Value> + 'a {
    results.nodes.iter().flat_map(|n| cases(n).iter().map(row).collect::<Vec<_>>())
}

pub(super) fn csv(results: &Results<'_>) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(COLUMNS)?;
    for r in rows(results) {
        let cells: Vec<String> = COLUMNS
            .iter()
            .map(|c| match &r[*c] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                v => v.to_string(),
            })
            .collect();
        w.write_record(&cells)?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

pub(super) fn jsonl(results: &Results<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows(results) {
        serde_json::to_writer(&mut out, &r).expect("json");
        out.push(b'\n');
    }
    out
}

pub(super) fn json(results: &Results<'_>) -> Vec<u8> {
    let m = results.manifest;
    let nodes: Vec<Value> = results
        .nodes
        .iter()
        .map(|n| {
            let (mut total, mut passed) = (0u64, 0u64);
            for c in cases(n) {
                total += 1;
                passed += matches!(c.verdict, Verdict::Pass) as u64;
            }
            json!({
                "name": n.name,
                "kind": n.kind,
                "status": n.status,
                "error": n.error,
                "gate_failed": n.gate_failed,
                "fail_if": n.rules,
                "summary": n.summary,
                "cases": {"total": total, "passed": passed, "failed": total - passed},
                "records": if n.scored { json!(n.records) } else { Value::Null },
            })
        })
        .collect();
    let doc = json!({
        "run": {
            "id": m.run_id,
            "spec": m.spec,
            "status": m.status,
            "error": m.error,
            "started": m.started,
            "finished": m.finished,
            "calls": m.calls,
        },
        "nodes": nodes,
    });
    let mut out = serde_json::to_vec_pretty(&doc).expect("json");
    out.push(b'\n');
    out
}
