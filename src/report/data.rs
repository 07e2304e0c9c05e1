//! What a report shows, as JSON: the run, its nodes (the graph), and a view
//! for each finished node whose kind has one. The views are the kinds' own
//! (`flow_nodes::view`): this file asks the registry for each node's and
//! keeps the report within its bounds over all nodes.

use serde_json::{json, Value};

use flow_engine::cache::{NodeOutcome, NodeStatus, RunManifest, Store};
use flow_engine::Plan;
use flow_nodes::view::{
    self, cut, ViewCx, MAX_ARTIFACT_CHARS, MAX_IDS, MAX_RECORDS, MAX_RECORD_BYTES, MAX_REPORT_RECORD_BYTES,
    MAX_STRING_CHARS,
};

/// What a report shows. Records stay JSON text rather than `Value`s: parsed,
/// 10,000 of them weigh tens of MiB, which `flow run` would add to its peak
/// memory just before it exits.
pub struct ReportData {
    /// The run, its nodes and the limits: everything but the views.
    head: Value,
    views: Vec<View>,
}

/// One node's view: `{node, kind, view, data}`, its records, each a JSON
/// object as text, and more fields of the view already JSON text (see
/// `flow_nodes::view::ViewData`).
struct View {
    view: Value,
    rows: Vec<String>,
    raw: Vec<(&'static str, String)>,
}

impl ReportData {
    /// A page of one view: `head` (as [`collect`] makes it) and the view
    /// `{node, kind, view, data}` with its records.
    pub fn single(head: Value, view: Value, rows: Vec<String>) -> Self {
        Self { head, views: vec![View { view, rows, raw: Vec::new() }] }
    }

    /// All of it as one JSON object: the head's fields, and `views`, each
    /// with its `rows`.
    pub fn to_json(&self) -> String {
        let rows: usize = self.views.iter().flat_map(|v| &v.rows).map(|r| r.len() + 1).sum();
        let raw: usize = self.views.iter().flat_map(|v| &v.raw).map(|(_, r)| r.len() + 32).sum();
        let mut out = String::with_capacity(rows + raw + 64 * 1024);
        with_array(&mut out, &self.head, &[], "views", |out| {
            for (i, v) in self.views.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                with_array(out, &v.view, &v.raw, "rows", |out| out.push_str(&v.rows.join(",")));
            }
        });
        out
    }
}

/// Writes the JSON object `obj` with more fields: `raw` (names and JSON
/// text), and `name`, an array whose items `items` writes.
fn with_array(out: &mut String, obj: &Value, raw: &[(&str, String)], name: &str, items: impl FnOnce(&mut String)) {
    let text = serde_json::to_string(obj).expect("report data serializes");
    let fields = text.strip_suffix('}').expect("an object");
    out.push_str(fields);
    if fields != "{" {
        out.push(',');
    }
    for (field, json) in raw {
        out.push_str(&serde_json::to_string(field).expect("a name"));
        out.push(':');
        out.push_str(json);
        out.push(',');
    }
    out.push_str(&serde_json::to_string(name).expect("a name"));
    out.push_str(":[");
    items(out);
    out.push_str("]}");
}

/// The report's data for a run.
pub fn collect(store: &Store, plan: Option<&Plan>, m: &RunManifest) -> ReportData {
    let nodes: Vec<Value> = m.nodes.iter().map(|n| node(plan, n)).collect();
    let mut budget = MAX_REPORT_RECORD_BYTES;
    let views: Vec<View> = m.nodes.iter().filter_map(|n| view_of(store, plan, &m.nodes, n, &mut budget)).collect();
    let head = json!({
        "format": 1,
        "flow_version": env!("CARGO_PKG_VERSION"),
        "run": {
            "run_id": m.run_id,
            "spec": m.spec,
            "spec_path": m.spec_path,
            "started": m.started,
            "finished": m.finished,
            "status": m.status,
            "error": m.error.as_deref().map(cut),
            "params": m.params,
            "calls": m.calls,
        },
        "graph": plan.is_some(),
        "limits": limits(),
        "nodes": nodes,
    });
    ReportData { head, views }
}

/// The bounds a report keeps its data within, for the page to say when
/// something was cut.
pub fn limits() -> Value {
    json!({
        "records": MAX_RECORDS,
        "record_bytes": MAX_RECORD_BYTES,
        "report_record_bytes": MAX_REPORT_RECORD_BYTES,
        "string_chars": MAX_STRING_CHARS,
        "ids": MAX_IDS,
        "artifact_chars": MAX_ARTIFACT_CHARS,
    })
}

/// A node of the pipeline view: its stats, and its inputs when the plan is
/// known (side inputs listed apart: drawn dashed).
fn node(plan: Option<&Plan>, n: &NodeOutcome) -> Value {
    let planned = plan.and_then(|p| p.index_of(&n.name).map(|i| (p, &p.nodes[i])));
    let (inputs, side) = match planned {
        Some((p, pn)) => {
            let name = |&i: &usize| p.nodes[i].name.clone();
            let side: Vec<String> = pn.inputs[pn.main_inputs().len()..].iter().map(name).collect();
            (Some(pn.inputs.iter().map(name).collect::<Vec<_>>()), side)
        }
        None => (None, Vec::new()),
    };
    json!({
        "name": n.name,
        "kind": n.kind,
        "status": n.status,
        "inputs": inputs,
        "side_inputs": side,
        "records_in": n.records_in,
        "records_out": n.records_out,
        "wall_ms": n.wall_ms,
        "calls": n.calls,
        "error": n.error.as_deref().map(cut),
        "gate_failed": n.gate_failed.as_deref().map(cut),
        "artifacts": n.artifacts.keys().collect::<Vec<_>>(),
    })
}

/// The view of a finished node, from its kind (`flow_nodes::view_for`):
/// none for a kind without one, the
/// generic one for a kind this build does not know. `budget` is what is
/// left of [`MAX_REPORT_RECORD_BYTES`].
fn view_of(
    store: &Store,
    plan: Option<&Plan>,
    run: &[NodeOutcome],
    n: &NodeOutcome,
    budget: &mut usize,
) -> Option<View> {
    if !matches!(n.status, NodeStatus::Ran | NodeStatus::Cached) {
        return None;
    }
    let kind_view = flow_nodes::view_for(&n.kind)?;
    let config = plan.and_then(|p| p.index_of(&n.name).map(|i| &p.nodes[i].compiled.config));
    let (view, rows, raw) = view::show(kind_view, &mut ViewCx { store, node: n, config, plan, run, budget });
    Some(View { view, rows, raw })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_engine::cache::{RunStatus, Store};

    #[test]
    fn each_finished_node_gets_its_kinds_view_or_the_generic_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join(".flow"));
        store.create().unwrap();
        let output = store.put_bytes(b"{\"id\":\"e1\",\"messages\":[]}\n\n{\"id\":\"e2\",\"messages\":[]}\n").unwrap();
        let node = |name: &str, kind: &str, status| NodeOutcome {
            output: Some(output),
            records_out: 2,
            ..NodeOutcome::new(name.into(), kind.into(), status, None)
        };
        let mut train = node("tuned", "train", NodeStatus::Ran);
        train.meta = Some(json!({"examples": 2, "status": "succeeded"}));
        for (name, bytes) in [("train.jsonl", &b"{}"[..]), ("train_sft.py", b"print('hi')"), ("meta.json", b"{}")] {
            train.artifacts.insert(name.into(), store.put_bytes(bytes).unwrap());
        }
        let m = RunManifest {
            run_id: "r1".into(),
            spec: "s".into(),
            spec_path: "s.yaml".into(),
            started: "2026-01-01T00:00:00Z".into(),
            finished: None,
            status: RunStatus::Failed,
            process: None,
            params: Default::default(),
            shard: None,
            error: Some("node `scores` failed".into()),
            calls: None,
            nodes: vec![
                node("examples", "load", NodeStatus::Ran),
                train,
                node("scores", "evaluate", NodeStatus::Failed),
                node("ab", "compare", NodeStatus::Cancelled),
                node("later", "a_future_kind", NodeStatus::Ran),
            ],
        };
        let data: Value = serde_json::from_str(&collect(&store, None, &m).to_json()).unwrap();
        assert_eq!(data["graph"], false);
        assert_eq!(data["nodes"].as_array().unwrap().len(), 5);
        let views = data["views"].as_array().unwrap();
        assert_eq!(views.len(), 3, "{views:?}");
        assert_eq!((&views[0]["node"], &views[0]["view"]), (&json!("examples"), &json!("load")));
        assert_eq!((&views[2]["node"], &views[2]["view"]), (&json!("later"), &json!("generic")));
        let v = &views[1];
        assert_eq!((&v["node"], &v["view"]), (&json!("tuned"), &json!("train")));
        assert_eq!(v["data"]["meta"]["examples"], 2);
        assert_eq!(v["data"]["artifacts"], json!([{"name": "train_sft.py", "text": "print('hi')"}]));
        assert_eq!(v["rows"], json!([{"id": "e1", "messages": []}, {"id": "e2", "messages": []}]));
        assert_eq!(v["data"]["records"], json!({"total": 2, "shown": 2, "truncated": null}));
    }

    #[test]
    fn rows_are_spliced_into_their_view() {
        let data = ReportData {
            head: json!({}),
            views: vec![
                View {
                    view: json!({"node": "a"}),
                    rows: vec![r#"{"id":1}"#.into(), r#"{"id":2}"#.into()],
                    raw: vec![("map", r#"{"points": [1]}"#.into())],
                },
                View { view: json!({"node": "b"}), rows: vec![], raw: vec![] },
            ],
        };
        let parsed: Value = serde_json::from_str(&data.to_json()).unwrap();
        assert_eq!(
            parsed,
            json!({"views": [{"node": "a", "map": {"points": [1]}, "rows": [{"id": 1}, {"id": 2}]}, {"node": "b", "rows": []}]})
        );
    }
}
