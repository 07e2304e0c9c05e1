//! What a report shows, as JSON: the run, its nodes (the graph), and a view
//! for each finished node whose kind has one.
//!
//! Everything here is bounded, so a report stays small enough to open
//! whatever the run's size: a node's records are capped by count and bytes,
//! long strings are cut, and long id lists (flips) are shortened; the page
//! says so where it happens. A view that cannot be read (a missing object)
//! carries a `problem` instead of failing the whole report.
//!
//! To add a view for a kind: a function here returning its data, a line in
//! [`view_of`] naming its renderer, and that renderer in `page.js` (or
//! `stages.js`, for the barrier stages) and in its `VIEWS`. Until then a
//! kind gets the generic view (its `meta`, text artifacts and records).

use std::io::{BufRead, BufReader};

use serde_json::{json, Map, Value};

use flow_engine::cache::{NodeRecord, NodeStatus, RunManifest, Store};
use flow_engine::node::{META_JSON, SUMMARY_MD};
use flow_engine::Plan;
use flow_nodes::extract::map::PROJECTION_JSON;
use flow_nodes::synthesize::hook::HOOK_FILE;

/// Records of one node kept in a report, at most.
pub const MAX_RECORDS: usize = 10_000;
/// Bytes of one node's records kept in a report, at most (JSON).
pub const MAX_RECORD_BYTES: usize = 8 << 20;
/// Bytes of records kept in a report over all its nodes, at most.
pub const MAX_REPORT_RECORD_BYTES: usize = 48 << 20;
/// Characters of one string kept in a report; the rest is cut.
pub const MAX_STRING_CHARS: usize = 2_000;
/// Ids kept in one list (flips, records on one side only).
pub const MAX_IDS: usize = 1_000;
/// Characters of one text artifact (a generated script) kept in a report.
pub const MAX_ARTIFACT_CHARS: usize = 64 * 1024;

/// The artifact most kinds summarize themselves in.
const SUMMARY_JSON: &str = "summary.json";
/// `compare`'s full report.
const REPORT_JSON: &str = "report.json";
/// `synthesize`'s rules, contradictions and measurements.
const RULES_JSON: &str = "rules.json";

/// What a report shows. Records stay JSON text rather than `Value`s: parsed,
/// 10,000 of them weigh tens of MiB, which `flow run` would add to its peak
/// memory just before it exits.
pub struct ReportData {
    /// The run, its nodes and the limits: everything but the views.
    head: Value,
    views: Vec<View>,
}

/// One node's view: `{node, kind, view, data}`, its records, each a JSON
/// object as text, and more fields of the view already JSON text (the
/// extract map: 20,000 points parsed into `Value`s would cost more time
/// and memory than the rest of the report).
struct View {
    view: Value,
    rows: Vec<String>,
    raw: Vec<(&'static str, String)>,
}

impl ReportData {
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
    let views: Vec<View> = m.nodes.iter().filter_map(|n| view_of(store, plan, n, &mut budget)).collect();
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
        "limits": {
            "records": MAX_RECORDS,
            "record_bytes": MAX_RECORD_BYTES,
            "report_record_bytes": MAX_REPORT_RECORD_BYTES,
            "string_chars": MAX_STRING_CHARS,
            "ids": MAX_IDS,
            "artifact_chars": MAX_ARTIFACT_CHARS,
        },
        "nodes": nodes,
    });
    ReportData { head, views }
}

/// A node of the pipeline view: its stats, and its inputs when the plan is
/// known (side inputs listed apart: drawn dashed).
fn node(plan: Option<&Plan>, n: &NodeRecord) -> Value {
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

/// The view of a finished node: `{node, kind, view, data}` and its rows,
/// where `view` names the renderer in `page.js`. `load` has none (its
/// records are the input); a kind without a view of its own gets the
/// generic one.
/// `budget` is what is left of [`MAX_REPORT_RECORD_BYTES`].
fn view_of(store: &Store, plan: Option<&Plan>, n: &NodeRecord, budget: &mut usize) -> Option<View> {
    if !matches!(n.status, NodeStatus::Ran | NodeStatus::Cached) {
        return None;
    }
    let mut raw = Vec::new();
    let (view, result) = match n.kind.as_str() {
        "load" => return None,
        "evaluate" => ("evaluate", evaluate(store, plan, n, budget)),
        "compare" => ("compare", compare(store, n).map(|d| (d, Vec::new()))),
        "generate" => ("generate", Ok((generate(store, n), Vec::new()))),
        "run" => ("run", artifact(store, n, SUMMARY_JSON).map(|s| (json!({"summary": s}), Vec::new()))),
        "extract" => ("extract", extract(store, n, budget, &mut raw)),
        "synthesize" => ("synthesize", synthesize(store, n)),
        // The job's record (status, events), its meta, and an export's
        // config: what the generic view gathers, drawn its own way.
        "train" => ("train", generic(store, n, budget)),
        _ => ("generic", generic(store, n, budget)),
    };
    let (data, rows) = result.unwrap_or_else(|problem| (json!({"problem": problem}), Vec::new()));
    Some(View { view: json!({"node": n.name, "kind": n.kind, "view": view, "data": data}), rows, raw })
}

/// A view's data and its records.
type ViewResult = Result<(Value, Vec<String>), String>;

/// `evaluate`: the summary, the metric names in the spec's order, and the
/// scored records (capped).
fn evaluate(store: &Store, plan: Option<&Plan>, n: &NodeRecord, budget: &mut usize) -> ViewResult {
    let summary = artifact(store, n, SUMMARY_JSON).unwrap_or(Value::Null);
    let (records, rows) = records(store, n, budget)?;
    let mut metrics: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        if !metrics.iter().any(|m| m == name) {
            metrics.push(name.to_string());
        }
    };
    let config = plan.and_then(|p| p.index_of(&n.name).map(|i| &p.nodes[i].compiled.config));
    for m in config.and_then(|c| c["metrics"].as_array()).into_iter().flatten() {
        if let Some(name) = m["name"].as_str().or_else(|| m["type"].as_str()) {
            add(name);
        }
    }
    for name in summary["metrics"].as_object().into_iter().flat_map(Map::keys) {
        add(name);
    }
    // Every record has a score for every metric: the first says them all.
    if let Some(first) = rows.first().and_then(|r| serde_json::from_str::<Value>(r).ok()) {
        for name in first["scores"].as_object().into_iter().flat_map(Map::keys) {
            add(name);
        }
    }
    Ok((json!({"summary": summary, "metrics": metrics, "records": records}), rows))
}

/// `compare`: its `report.json`, with long id lists shortened.
fn compare(store: &Store, n: &NodeRecord) -> Result<Value, String> {
    let mut report = artifact(store, n, REPORT_JSON)?;
    for c in report["candidates"].as_array_mut().into_iter().flatten() {
        shorten_ids(c, &["only_in_baseline", "only_in_candidate"]);
        for m in c["metrics"].as_array_mut().into_iter().flatten() {
            shorten_ids(m, &["pass_to_fail", "fail_to_pass"]);
        }
    }
    Ok(json!({"report": report}))
}

/// `generate`: what it made and dropped (its `meta`), and its summary.
fn generate(store: &Store, n: &NodeRecord) -> Value {
    let meta = n.meta.clone().or_else(|| artifact(store, n, META_JSON).ok()).unwrap_or(Value::Null);
    let summary = n.artifacts.get(SUMMARY_MD).and_then(|h| store.read_object(h).ok());
    json!({
        "meta": meta,
        "summary_md": summary.map(|b| cut(&String::from_utf8_lossy(&b))),
    })
}

/// `extract`: its counts (`meta`) and the examples, and in `raw` the map
/// of the logs (`projection.json`: a point per log, at most 20,000, and
/// the density histogram; `null` for an output from before it was written)
/// as the view's `projection`.
fn extract(store: &Store, n: &NodeRecord, budget: &mut usize, raw: &mut Vec<(&'static str, String)>) -> ViewResult {
    let meta = n.meta.clone().or_else(|| artifact(store, n, META_JSON).ok()).unwrap_or(Value::Null);
    let projection = match n.artifacts.get(PROJECTION_JSON) {
        Some(hash) => {
            let bytes = store.read_object(hash).map_err(|e| e.to_string())?;
            let unreadable =
                |e: serde_json::Error| format!("{PROJECTION_JSON} of node `{}` is unreadable: {e}", n.name);
            flow_nodes::extract::map::check(&bytes).map_err(unreadable)?;
            match String::from_utf8(bytes) {
                // As it is, unless a string needs cutting.
                Ok(text) if longest_string(text.as_bytes()) <= MAX_STRING_CHARS => text,
                other => {
                    let bytes = other.map_or_else(|e| e.into_bytes(), String::into_bytes);
                    let mut map: Value = serde_json::from_slice(&bytes).map_err(unreadable)?;
                    cut_strings(&mut map);
                    map.to_string()
                }
            }
        }
        None => "null".to_string(),
    };
    raw.push(("projection", projection));
    let (records, rows) = records(store, n, budget)?;
    Ok((json!({"meta": meta, "records": records}), rows))
}

/// The most characters in one string of the JSON text `json` (an escape
/// counts as its characters: an overestimate, never under).
fn longest_string(json: &[u8]) -> usize {
    let (mut inside, mut escaped, mut len, mut most) = (false, false, 0, 0);
    for &b in json {
        if !inside {
            if b == b'"' {
                (inside, len) = (true, 0);
            }
        } else if escaped {
            escaped = false;
            len += 1;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            inside = false;
            most = most.max(len);
        } else if b & 0xC0 != 0x80 {
            len += 1;
        }
    }
    most
}

/// `synthesize`: its `rules.json` without the per-pair measurements (the
/// rules with their support, the contradictions, the prompt block, the
/// post-processing), long pair lists shortened, and the hook script.
fn synthesize(store: &Store, n: &NodeRecord) -> ViewResult {
    let mut report = artifact(store, n, RULES_JSON)?;
    if let Some(fields) = report.as_object_mut() {
        fields.remove("analysis");
    }
    for rule in report["rules"].as_array_mut().into_iter().flatten() {
        shorten_ids(rule, &["pairs", "against"]);
    }
    cut_strings(&mut report);
    let hook = n.artifacts.get(HOOK_FILE).and_then(|h| store.read_object(h).ok());
    let hook = hook.map(|b| cut_artifact(String::from_utf8_lossy(&b).into_owned()));
    Ok((json!({"report": report, "hook": {"name": HOOK_FILE, "text": hook}}), Vec::new()))
}

/// Any other kind: what it says about its output (`meta`), its text
/// artifacts (a summary, a generated script, a config), and its records.
fn generic(store: &Store, n: &NodeRecord, budget: &mut usize) -> ViewResult {
    let meta = n.meta.clone().or_else(|| artifact(store, n, META_JSON).ok()).unwrap_or(Value::Null);
    let mut texts = Vec::new();
    for (name, hash) in &n.artifacts {
        // Data files are records, not reading; meta.json is shown as `meta`.
        if name.ends_with(".jsonl") || name == META_JSON {
            continue;
        }
        let Ok(bytes) = store.read_object(hash) else { continue };
        let Ok(text) = String::from_utf8(bytes) else { continue };
        texts.push(json!({"name": name, "text": cut_artifact(text)}));
    }
    let (records, rows) = records(store, n, budget)?;
    Ok((json!({"meta": meta, "artifacts": texts, "records": records}), rows))
}

/// A text artifact, cut at [`MAX_ARTIFACT_CHARS`].
fn cut_artifact(text: String) -> String {
    match text.char_indices().nth(MAX_ARTIFACT_CHARS) {
        Some((at, _)) => format!("{}… [cut: the whole file is in the run folder]", &text[..at]),
        None => text,
    }
}

/// Replaces each list named in `fields` longer than [`MAX_IDS`] by its
/// first ids, and records the full length in `<field>_total`.
fn shorten_ids(v: &mut Value, fields: &[&str]) {
    for f in fields {
        if let Some(list) = v[*f].as_array_mut() {
            if list.len() > MAX_IDS {
                let total = list.len();
                list.truncate(MAX_IDS);
                v[format!("{f}_total")] = json!(total);
            }
        }
    }
}

/// A JSON artifact of the node, read from the store.
fn artifact(store: &Store, n: &NodeRecord, name: &str) -> Result<Value, String> {
    let hash = n.artifacts.get(name).ok_or_else(|| format!("node `{}` has no {name}", n.name))?;
    let bytes = store.read_object(hash).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{name} of node `{}` is unreadable: {e}", n.name))
}

/// The node's first records, within [`MAX_RECORDS`] and
/// [`MAX_RECORD_BYTES`] and what is left of the report's `budget`, strings
/// cut at [`MAX_STRING_CHARS`]: `{total, shown, truncated}`, where
/// `truncated` says which bound stopped it, and the records as JSON text.
fn records(store: &Store, n: &NodeRecord, budget: &mut usize) -> ViewResult {
    let hash = n.output.ok_or_else(|| format!("node `{}` has no stored output", n.name))?;
    let file = store.open_object(&hash).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mut bytes = 0;
    let mut truncated = Value::Null;
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| format!("reading the output of `{}`: {e}", n.name))?;
        if line.trim().is_empty() {
            continue;
        }
        if rows.len() == MAX_RECORDS {
            truncated = json!("records");
            break;
        }
        // Parsed to check it (the page parses them all at once) and to cut
        // long strings; kept as the stored text when nothing was cut.
        let mut row: Value =
            serde_json::from_str(&line).map_err(|e| format!("the output of `{}` is unreadable: {e}", n.name))?;
        if !row.is_object() {
            return Err(format!("the output of `{}` holds a line that is not a record", n.name));
        }
        let text = if cut_strings(&mut row) { row.to_string() } else { line };
        if bytes + text.len() > MAX_RECORD_BYTES.min(*budget) {
            truncated = json!("bytes");
            break;
        }
        bytes += text.len();
        rows.push(text);
    }
    *budget -= bytes;
    Ok((json!({"total": n.records_out, "shown": rows.len(), "truncated": truncated}), rows))
}

/// Cuts every string in `v` to [`MAX_STRING_CHARS`]; whether any was cut.
fn cut_strings(v: &mut Value) -> bool {
    match v {
        Value::String(s) if s.len() > MAX_STRING_CHARS && s.chars().nth(MAX_STRING_CHARS).is_some() => {
            *s = cut(s);
            true
        }
        Value::Array(a) => a.iter_mut().fold(false, |any, x| cut_strings(x) | any),
        Value::Object(o) => o.values_mut().fold(false, |any, x| cut_strings(x) | any),
        _ => false,
    }
}

/// `s`, or its first [`MAX_STRING_CHARS`] characters and how many more
/// there were.
fn cut(s: &str) -> String {
    match s.char_indices().nth(MAX_STRING_CHARS) {
        None => s.to_string(),
        Some((at, _)) => {
            let more = s[at..].chars().count();
            format!("{}… [{more} more characters not in the report]", &s[..at])
        }
    }
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
        let node = |name: &str, kind: &str, status| NodeRecord {
            output: Some(output),
            records_out: 2,
            ..NodeRecord::new(name.into(), kind.into(), status, None)
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
            params: Default::default(),
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
        assert_eq!(views.len(), 2, "{views:?}");
        assert_eq!((&views[1]["node"], &views[1]["view"]), (&json!("later"), &json!("generic")));
        let v = &views[0];
        assert_eq!((&v["node"], &v["view"]), (&json!("tuned"), &json!("train")));
        assert_eq!(v["data"]["meta"]["examples"], 2);
        assert_eq!(v["data"]["artifacts"], json!([{"name": "train_sft.py", "text": "print('hi')"}]));
        assert_eq!(v["rows"], json!([{"id": "e1", "messages": []}, {"id": "e2", "messages": []}]));
        assert_eq!(v["data"]["records"], json!({"total": 2, "shown": 2, "truncated": null}));
    }

    #[test]
    fn extract_and_synthesize_views_carry_their_artifacts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join(".flow"));
        store.create().unwrap();
        let mut n = NodeRecord::new("golden".into(), "extract".into(), NodeStatus::Ran, None);
        n.output = Some(store.put_bytes(b"{\"id\":\"l1\",\"rank\":1}\n").unwrap());
        n.records_out = 1;
        let long = "x".repeat(MAX_STRING_CHARS + 1);
        let map = json!({"logs": 2, "points": [{"id": "l1", "x": 0.5, "y": 0, "picked": {"rank": 1}}, {"id": long, "x": 0, "y": 1, "picked": null}]});
        n.artifacts.insert(PROJECTION_JSON.into(), store.put_bytes(map.to_string().as_bytes()).unwrap());
        let v = view_of(&store, None, &n, &mut MAX_REPORT_RECORD_BYTES.clone()).unwrap();
        assert_eq!(v.view["view"], "extract");
        assert_eq!(v.raw[0].0, "projection");
        let cut: Value = serde_json::from_str(&v.raw[0].1).unwrap();
        assert_eq!(cut["points"][0], map["points"][0]);
        assert!(cut["points"][1]["id"].as_str().unwrap().ends_with("[1 more characters not in the report]"));
        assert_eq!(v.rows, [r#"{"id":"l1","rank":1}"#]);
        // Without a long string, the file goes in as it is.
        let text = "{\"points\": [{\"id\": \"l\\u00e9\", \"x\": 0.5}]}";
        n.artifacts.insert(PROJECTION_JSON.into(), store.put_bytes(text.as_bytes()).unwrap());
        let v = view_of(&store, None, &n, &mut MAX_REPORT_RECORD_BYTES.clone()).unwrap();
        assert_eq!(v.raw, [("projection", text.to_string())]);
        // A broken one is the view's problem; an output from before the map
        // has none, and the view says so.
        n.artifacts.insert(PROJECTION_JSON.into(), store.put_bytes(b"{\"points\": [").unwrap());
        let v = view_of(&store, None, &n, &mut MAX_REPORT_RECORD_BYTES.clone()).unwrap();
        assert!(v.view["data"]["problem"].as_str().unwrap().contains("projection.json of node `golden` is unreadable"));
        n.artifacts.clear();
        let v = view_of(&store, None, &n, &mut MAX_REPORT_RECORD_BYTES.clone()).unwrap();
        assert_eq!((&v.raw[0].1[..], v.view["data"].get("problem")), ("null", None));
        assert_eq!(longest_string(r#"{"ab": "\"xé", "c": 1}"#.as_bytes()), 3);

        let mut n = NodeRecord::new("rules".into(), "synthesize".into(), NodeStatus::Cached, None);
        let pairs: Vec<String> = (0..MAX_IDS + 2).map(|i| format!("fb-{i}")).collect();
        let rules = json!({"pairs": 9, "rules": [{"id": "max_words", "support": MAX_IDS + 2, "pairs": pairs, "against": []}],
                           "contradictions": [], "analysis": [{"id": "fb-0"}]});
        n.artifacts.insert(RULES_JSON.into(), store.put_bytes(rules.to_string().as_bytes()).unwrap());
        n.artifacts
            .insert(HOOK_FILE.into(), store.put_bytes(b"def intercept_prompt(p, c):\n    return '<b>' + p\n").unwrap());
        let v = view_of(&store, None, &n, &mut 0).unwrap().view;
        assert_eq!(v["view"], "synthesize");
        let report = &v["data"]["report"];
        assert!(report.get("analysis").is_none(), "the per-pair measurements stay in rules.json");
        assert_eq!(report["rules"][0]["pairs"].as_array().unwrap().len(), MAX_IDS);
        assert_eq!(report["rules"][0]["pairs_total"], MAX_IDS + 2);
        assert_eq!(v["data"]["hook"]["name"], HOOK_FILE);
        assert!(v["data"]["hook"]["text"].as_str().unwrap().contains("return '<b>' + p"));
    }

    #[test]
    fn records_stop_at_the_count_and_at_the_byte_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join(".flow"));
        store.create().unwrap();
        let lines: String = (0..MAX_RECORDS + 5).map(|i| format!("{{\"id\":\"r{i}\"}}\n")).collect();
        let mut n = NodeRecord::new("scores".into(), "evaluate".into(), NodeStatus::Ran, None);
        n.output = Some(store.put_bytes(lines.as_bytes()).unwrap());
        n.records_out = (MAX_RECORDS + 5) as u64;
        let mut budget = MAX_REPORT_RECORD_BYTES;
        let (all, rows) = records(&store, &n, &mut budget).unwrap();
        assert_eq!((rows.len(), &all["truncated"]), (MAX_RECORDS, &json!("records")));
        assert_eq!((&all["total"], &all["shown"]), (&json!(MAX_RECORDS + 5), &json!(MAX_RECORDS)));
        assert_eq!(rows[7], r#"{"id":"r7"}"#);
        let used = MAX_REPORT_RECORD_BYTES - budget;
        assert!(used > 0);
        let mut small = 100;
        let (some, rows) = records(&store, &n, &mut small).unwrap();
        assert_eq!(&some["truncated"], &json!("bytes"));
        assert_eq!(rows.len(), 100 / r#"{"id":"r0"}"#.len());
    }

    #[test]
    fn a_missing_artifact_is_a_problem_of_its_view_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join(".flow"));
        let mut n = NodeRecord::new("ab".into(), "compare".into(), NodeStatus::Ran, None);
        n.artifacts.insert(REPORT_JSON.into(), flow_engine::cache::ContentHash::of(b"gone"));
        let v = view_of(&store, None, &n, &mut 0).unwrap().view;
        assert!(v["data"]["problem"].as_str().unwrap().starts_with("read object"), "{v}");
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

    #[test]
    fn long_strings_are_cut_on_a_character() {
        let long = "é".repeat(MAX_STRING_CHARS + 5);
        let mut v = json!({"a": [long.clone()], "b": "short"});
        cut_strings(&mut v);
        let a = v["a"][0].as_str().unwrap();
        assert!(a.starts_with(&"é".repeat(MAX_STRING_CHARS)));
        assert!(a.ends_with("… [5 more characters not in the report]"), "{a}");
        assert_eq!(v["b"], "short");
    }

    #[test]
    fn long_id_lists_are_shortened_with_their_total() {
        let ids: Vec<String> = (0..MAX_IDS + 3).map(|i| format!("r{i}")).collect();
        let mut v = json!({"pass_to_fail": ids, "fail_to_pass": ["a"]});
        shorten_ids(&mut v, &["pass_to_fail", "fail_to_pass"]);
        assert_eq!(v["pass_to_fail"].as_array().unwrap().len(), MAX_IDS);
        assert_eq!(v["pass_to_fail_total"], MAX_IDS + 3);
        assert_eq!(v["fail_to_pass"], json!(["a"]));
        assert!(v.get("fail_to_pass_total").is_none());
    }
}
