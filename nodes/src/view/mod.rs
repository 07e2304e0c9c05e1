//! What a kind shows in the run report: a [`View`] is a function that picks
//! the node's data (from its manifest entry and stored objects) and the
//! JavaScript that draws it. Each kind keeps its own beside it
//! (`<kind>/view.rs` and `view.js`); the CLI's report holds only the page
//! frame and asks the registry for a node's view ([`crate::view_for`]).
//!
//! Everything here is bounded, so a report stays small enough to open
//! whatever the run's size: a node's records are capped by count and bytes,
//! long strings are cut, and long id lists (flips) are shortened; the page
//! says so where it happens. A view that cannot be read (a missing object)
//! carries a `problem` instead of failing the whole report.

use std::io::{BufRead, BufReader};

use serde_json::{json, Value};

use flow_engine::cache::{NodeOutcome, Store, StoreError};
use flow_engine::node::META_JSON;
pub use flow_engine::node::SUMMARY_JSON;
use flow_engine::Plan;

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

/// A backend's settings a report shows: what shapes its answers and how
/// fast they come, nothing that could hold a secret.
const SAMPLING: &[&str] =
    &["temperature", "max_tokens", "top_p", "seed", "stop", "params", "timeout", "max_concurrency", "rpm", "tpm"];

/// A report view: what it shows and how.
pub struct View {
    /// The renderer's name in the page (the view's `view` field).
    pub name: &'static str,
    /// Picks the data the view shows.
    pub data: fn(&mut ViewCx<'_>) -> Result<ViewData, ViewError>,
    /// The renderer: JavaScript that defines `function render(panel, v)`,
    /// run in the page's scope (its DOM and formatting helpers) inside a
    /// function of its own, so its other names stay its own.
    pub script: &'static str,
}

/// The view of a kind without one of its own: its `meta`, its text
/// artifacts (a summary, a generated script, a config) and its records.
pub const GENERIC: View = View { name: "generic", data: generic, script: include_str!("generic.js") };

/// What a view reads from: the node's manifest entry and the store, the
/// node's config when the report knows the plan, the run's other nodes (a
/// comparison shows its sides' records), and what is left of the report's
/// byte budget for records.
pub struct ViewCx<'a> {
    pub store: &'a Store,
    pub node: &'a NodeOutcome,
    /// The node's config as compiled (defaults filled); `None` for a report
    /// written later from the manifest alone.
    pub config: Option<&'a Value>,
    /// The plan, when the report knows it: the node's inputs and the
    /// backends it calls.
    pub plan: Option<&'a Plan>,
    /// Every node of the run, as its manifest has them.
    pub run: &'a [NodeOutcome],
    /// What is left of [`MAX_REPORT_RECORD_BYTES`].
    pub budget: &'a mut usize,
}

/// A view's data: `data` (a JSON object), the records it shows, each a JSON
/// object as text, and more fields already JSON text (`raw`: the extract
/// map, 20,000 points that parsed into `Value`s would cost more time and
/// memory than the rest of the report). Records stay text for the same
/// reason: parsed, 10,000 of them weigh tens of MiB.
#[derive(Debug, Default)]
pub struct ViewData {
    pub data: Value,
    pub rows: Vec<String>,
    pub raw: Vec<(&'static str, String)>,
}

impl ViewData {
    /// Data without records.
    pub fn of(data: Value) -> Self {
        Self { data, ..Self::default() }
    }
}

/// Why a view's data could not be read: the view shows this as its problem.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("node `{node}` has no {name}")]
    Missing { node: String, name: String },
    #[error("node `{node}` has no stored output")]
    NoOutput { node: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{name} of node `{node}` is unreadable: {source}")]
    Unreadable { node: String, name: String, source: serde_json::Error },
    #[error("reading the output of `{node}`: {source}")]
    Read { node: String, source: std::io::Error },
    #[error("the output of `{node}` is unreadable: {source}")]
    BadRecord { node: String, source: serde_json::Error },
    #[error("the output of `{node}` holds a line that is not a record")]
    NotARecord { node: String },
}

impl ViewCx<'_> {
    /// A JSON artifact of the node, read from the store.
    pub fn artifact(&self, name: &str) -> Result<Value, ViewError> {
        let n = self.node;
        let hash =
            n.artifacts.get(name).ok_or_else(|| ViewError::Missing { node: n.name.clone(), name: name.into() })?;
        let bytes = self.store.read_object(hash)?;
        serde_json::from_slice(&bytes).map_err(|source| self.unreadable(name, source))
    }

    /// A text artifact of the node, cut at [`MAX_ARTIFACT_CHARS`]; `None`
    /// when it is missing, unreadable or not UTF-8.
    pub fn text_artifact(&self, name: &str) -> Option<String> {
        let bytes = self.store.read_object(self.node.artifacts.get(name)?).ok()?;
        Some(cut_artifact(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// What the node says about its output: its manifest `meta`, else its
    /// `meta.json`, else null.
    pub fn meta(&self) -> Value {
        self.node.meta.clone().or_else(|| self.artifact(META_JSON).ok()).unwrap_or(Value::Null)
    }

    /// The names of the node's inputs, in the order written, when the plan
    /// is known.
    pub fn input_names(&self) -> Option<Vec<String>> {
        let plan = self.plan?;
        let planned = &plan.nodes[plan.index_of(&self.node.name)?];
        Some(planned.inputs.iter().map(|&i| plan.nodes[i].name.clone()).collect())
    }

    /// Another node of this run, by name.
    pub fn run_node(&self, name: &str) -> Option<&NodeOutcome> {
        self.run.iter().find(|n| n.name == name)
    }

    /// What the report says of backend `name`: its provider, model, API root
    /// (credentials cut from it) and sampling settings. Never its headers
    /// or the name of its key's variable: a report is shared.
    pub fn backend(&self, name: &str) -> Value {
        let Some(spec) = self.plan.and_then(|p| p.backends.get(name)) else { return Value::Null };
        let mut out = json!({"name": name, "provider": spec.provider.name(), "model": spec.model()});
        if let Some(url) = &spec.base_url {
            out["base_url"] = json!(flow_engine::spec::url::redact(url));
        }
        let all = serde_json::to_value(spec).unwrap_or(Value::Null);
        for k in SAMPLING {
            if let Some(v) = all.get(*k).filter(|v| !v.is_null()) {
                out[*k] = v.clone();
            }
        }
        cut_strings(&mut out);
        out
    }

    pub fn unreadable(&self, name: &str, source: serde_json::Error) -> ViewError {
        ViewError::Unreadable { node: self.node.name.clone(), name: name.to_string(), source }
    }

    /// The node's first records, within [`MAX_RECORDS`] and
    /// [`MAX_RECORD_BYTES`] and what is left of the report's budget,
    /// strings cut at [`MAX_STRING_CHARS`]: `{total, shown, truncated}`,
    /// where `truncated` says which bound stopped it, and the records as
    /// JSON text.
    pub fn records(&mut self) -> Result<(Value, Vec<String>), ViewError> {
        self.records_upto(MAX_RECORDS)
    }

    /// Like [`ViewCx::records`], but at most `most` records (a source's
    /// first records are a sample of its fields, not a review).
    pub fn records_upto(&mut self, most: usize) -> Result<(Value, Vec<String>), ViewError> {
        let n = self.node;
        let most = most.min(MAX_RECORDS);
        let hash = n.output.ok_or_else(|| ViewError::NoOutput { node: n.name.clone() })?;
        let file = self.store.open_object(&hash)?;
        let mut rows = Vec::new();
        let mut bytes = 0;
        let mut truncated = Value::Null;
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|source| ViewError::Read { node: n.name.clone(), source })?;
            if line.trim().is_empty() {
                continue;
            }
            if rows.len() == most {
                truncated = json!("records");
                break;
            }
            // Parsed to check it (the page parses them all at once) and to
            // cut long strings; kept as the stored text when nothing was cut.
            let mut row: Value =
                serde_json::from_str(&line).map_err(|source| ViewError::BadRecord { node: n.name.clone(), source })?;
            if !row.is_object() {
                return Err(ViewError::NotARecord { node: n.name.clone() });
            }
            let text = if cut_strings(&mut row) { row.to_string() } else { line };
            if bytes + text.len() > MAX_RECORD_BYTES.min(*self.budget) {
                truncated = json!("bytes");
                break;
            }
            bytes += text.len();
            rows.push(text);
        }
        *self.budget -= bytes;
        Ok((json!({"total": n.records_out, "shown": rows.len(), "truncated": truncated}), rows))
    }
}

/// The data of `view` for the node of `cx`: its `{node, kind, view, data}`
/// object, with `data` a `problem` when it could not be read, its records
/// and its raw fields.
pub fn show(view: &View, cx: &mut ViewCx<'_>) -> (Value, Vec<String>, Vec<(&'static str, String)>) {
    let ViewData { data, rows, raw } =
        (view.data)(cx).unwrap_or_else(|problem| ViewData::of(json!({"problem": problem.to_string()})));
    let n = cx.node;
    (json!({"node": n.name, "kind": n.kind, "view": view.name, "data": data}), rows, raw)
}

/// Any kind: what it says about its output (`meta`), its text artifacts,
/// and its records.
pub fn generic(cx: &mut ViewCx<'_>) -> Result<ViewData, ViewError> {
    let mut texts = Vec::new();
    for (name, hash) in &cx.node.artifacts {
        // Data files are records, not reading; meta.json is shown as `meta`.
        if name.ends_with(".jsonl") || name == META_JSON {
            continue;
        }
        let Ok(bytes) = cx.store.read_object(hash) else { continue };
        let Ok(text) = String::from_utf8(bytes) else { continue };
        texts.push(json!({"name": name, "text": cut_artifact(text)}));
    }
    let (records, rows) = cx.records()?;
    Ok(ViewData { data: json!({"meta": cx.meta(), "artifacts": texts, "records": records}), rows, raw: Vec::new() })
}

/// A text artifact, cut at [`MAX_ARTIFACT_CHARS`].
pub fn cut_artifact(text: String) -> String {
    match text.char_indices().nth(MAX_ARTIFACT_CHARS) {
        Some((at, _)) => format!("{}… [cut: the whole file is in the run folder]", &text[..at]),
        None => text,
    }
}

/// Replaces each list named in `fields` longer than [`MAX_IDS`] by its
/// first ids, and records the full length in `<field>_total`.
pub fn shorten_ids(v: &mut Value, fields: &[&str]) {
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

/// Cuts every string in `v` to [`MAX_STRING_CHARS`]; whether any was cut.
pub fn cut_strings(v: &mut Value) -> bool {
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
pub fn cut(s: &str) -> String {
    match s.char_indices().nth(MAX_STRING_CHARS) {
        None => s.to_string(),
        Some((at, _)) => {
            let more = s[at..].chars().count();
            format!("{}… [{more} more characters not in the report]", &s[..at])
        }
    }
}

/// The most characters in one string of the JSON text `json` (an escape
/// counts as its characters: an overestimate, never under).
pub fn longest_string(json: &[u8]) -> usize {
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

/// A store in a temporary folder, and a node of `kind` in it, for the views'
/// tests.
#[cfg(test)]
pub(crate) fn test_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join(".flow"));
    store.create().unwrap();
    (dir, store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_engine::cache::NodeStatus;

    #[test]
    fn records_stop_at_the_count_and_at_the_byte_budget() {
        let (_dir, store) = test_store();
        let lines: String = (0..MAX_RECORDS + 5).map(|i| format!("{{\"id\":\"r{i}\"}}\n")).collect();
        let mut n = NodeOutcome::new("scores".into(), "evaluate".into(), NodeStatus::Ran, None);
        n.output = Some(store.put_bytes(lines.as_bytes()).unwrap());
        n.records_out = (MAX_RECORDS + 5) as u64;
        let mut budget = MAX_REPORT_RECORD_BYTES;
        let (all, rows) = ViewCx { store: &store, node: &n, config: None, plan: None, run: &[], budget: &mut budget }
            .records()
            .unwrap();
        assert_eq!((rows.len(), &all["truncated"]), (MAX_RECORDS, &json!("records")));
        assert_eq!((&all["total"], &all["shown"]), (&json!(MAX_RECORDS + 5), &json!(MAX_RECORDS)));
        assert_eq!(rows[7], r#"{"id":"r7"}"#);
        let used = MAX_REPORT_RECORD_BYTES - budget;
        assert!(used > 0);
        let mut small = 100;
        let (some, rows) = ViewCx { store: &store, node: &n, config: None, plan: None, run: &[], budget: &mut small }
            .records()
            .unwrap();
        assert_eq!(&some["truncated"], &json!("bytes"));
        assert_eq!(rows.len(), 100 / r#"{"id":"r0"}"#.len());
    }

    #[test]
    fn a_missing_artifact_is_a_problem_of_its_view_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join(".flow"));
        let mut n = NodeOutcome::new("ab".into(), "compare".into(), NodeStatus::Ran, None);
        n.artifacts.insert("report.json".into(), flow_engine::cache::ContentHash::of(b"gone"));
        let read = |cx: &mut ViewCx<'_>| cx.artifact("report.json").map(ViewData::of);
        let view = View { name: "compare", data: read, script: "" };
        let (v, _, _) =
            show(&view, &mut ViewCx { store: &store, node: &n, config: None, plan: None, run: &[], budget: &mut 0 });
        assert!(v["data"]["problem"].as_str().unwrap().starts_with("read object"), "{v}");
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
        assert_eq!(longest_string(r#"{"ab": "\"xé", "c": 1}"#.as_bytes()), 3);
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
