//! `flow run SPEC -o FILE`: the run's verdicts in the files CI systems
//! read — JUnit XML for test dashboards, CSV for a spreadsheet, JSON Lines
//! and JSON for scripts. The format comes from the file's extension, as in
//! promptfoo, and is checked before anything runs.
//!
//! The verdicts are read back from what the run stored, not from the live
//! stream, so a run whose nodes all came from the cache exports the same
//! files as the run that computed them. A node counts as scored when its
//! output type is `Scored` (its records carry `scores`); its `fail_if`
//! rules, where its config has them, become test cases of their own. The
//! module names no node kind: the type and the `fail_if` convention are
//! what it reads.

mod gate;
mod junit;
mod table;

pub use gate::{gate_lines, shorten_ids};

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{Map, Value};

use flow_engine::cache::{write_atomic, NodeStatus, RunManifest, Store};
use flow_engine::diag::{did_you_mean, Diagnostic};
use flow_engine::node::SUMMARY_JSON;
use flow_engine::Plan;

/// A file format `-o` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Junit,
    Csv,
    Jsonl,
    Json,
}

/// The extensions `-o` knows, with the format each writes.
const EXTENSIONS: [(&str, Format, &str); 4] = [
    ("xml", Format::Junit, "JUnit XML, one test case per record and metric"),
    ("csv", Format::Csv, "one row per record and metric"),
    ("jsonl", Format::Jsonl, "the CSV's rows as JSON lines"),
    ("json", Format::Json, "the run, each scored node's summary and records"),
];

/// One `-o` file.
#[derive(Debug, Clone)]
pub struct Target {
    pub path: PathBuf,
    pub format: Format,
}

/// The formats of the `-o` files, from their extensions; a usage error
/// naming the file and listing the formats when one is not known, or when
/// a file is named twice.
pub fn targets(paths: &[PathBuf]) -> Result<Vec<Target>, Diagnostic> {
    let mut out: Vec<Target> = Vec::with_capacity(paths.len());
    for path in paths {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let known = ext.as_deref().and_then(|e| EXTENSIONS.iter().find(|(x, ..)| *x == e));
        let Some((_, format, _)) = known else {
            let what = match &ext {
                Some(e) => format!("-o {}: unknown output format `.{e}`", path.display()),
                None => format!("-o {}: the file has no extension to tell its format by", path.display()),
            };
            let list: Vec<String> = EXTENSIONS.iter().map(|(x, _, about)| format!(".{x} ({about})")).collect();
            let mut hint = format!("name the file with one of: {}", list.join(", "));
            if let Some(close) = ext.as_deref().and_then(|e| did_you_mean(e, EXTENSIONS.iter().map(|(x, ..)| *x))) {
                hint = format!("did you mean `.{close}`? {hint}");
            }
            return Err(Diagnostic::new(what).hint(hint));
        };
        if out.iter().any(|t| t.path == *path) {
            return Err(
                Diagnostic::new(format!("-o {} is given twice", path.display())).hint("name each output file once")
            );
        }
        out.push(Target { path: path.clone(), format: *format });
    }
    Ok(out)
}

/// A node whose verdicts are exported: a scored node, or one with gates.
pub(crate) struct Node {
    pub name: String,
    pub kind: String,
    pub status: NodeStatus,
    /// Why the node failed, when it did.
    pub error: Option<String>,
    /// What its tripped gates said, one line per rule.
    pub gate_failed: Option<String>,
    /// Its `fail_if` rules, as the spec wrote them.
    pub rules: Vec<Value>,
    /// Whether its records carry `scores`.
    pub scored: bool,
    /// Its stored records (scored nodes only).
    pub records: Vec<Map<String, Value>>,
    /// Its `summary.json`, when it wrote one.
    pub summary: Option<Value>,
    pub wall_ms: u64,
}

/// What the exports are made from.
pub(crate) struct Results<'a> {
    pub manifest: &'a RunManifest,
    pub nodes: Vec<Node>,
}

/// Writes every `-o` file of a finished run, each atomically (a temp file
/// beside it, then a rename), so CI never reads half a file.
pub fn write(targets: &[Target], store: &Store, plan: &Plan, manifest: &RunManifest) -> anyhow::Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let results = collect(store, plan, manifest)?;
    for t in targets {
        let bytes = match t.format {
            Format::Junit => junit::render(&results).into_bytes(),
            Format::Csv => table::csv(&results)?,
            Format::Jsonl => table::jsonl(&results),
            Format::Json => table::json(&results),
        };
        write_atomic(&t.path, &bytes).with_context(|| format!("writing {}", t.path.display()))?;
    }
    Ok(())
}

/// Reads the scored nodes' records and the gated nodes' rules from the store.
fn collect<'a>(store: &Store, plan: &Plan, manifest: &'a RunManifest) -> anyhow::Result<Results<'a>> {
    let mut nodes = Vec::new();
    for p in &plan.nodes {
        let scored = p.compiled.output.name == "Scored";
        let rules = p.compiled.config.get("fail_if").and_then(Value::as_array).cloned().unwrap_or_default();
        if !scored && rules.is_empty() {
            continue;
        }
        let Some(n) = manifest.node(&p.name) else { continue };
        let mut records = Vec::new();
        if let (true, Some(output)) = (scored, &n.output) {
            let bytes = store.read_object(output).with_context(|| format!("reading the output of `{}`", n.name))?;
            for (i, line) in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).enumerate() {
                let record: Map<String, Value> = serde_json::from_slice(line)
                    .with_context(|| format!("record {} of the output of `{}` is not a JSON object", i + 1, n.name))?;
                records.push(record);
            }
        }
        let summary = n
            .artifacts
            .get(SUMMARY_JSON)
            .and_then(|h| store.read_object(h).ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        nodes.push(Node {
            name: n.name.clone(),
            kind: n.kind.clone(),
            status: n.status,
            error: n.error.clone(),
            gate_failed: n.gate_failed.clone(),
            rules,
            scored,
            records,
            summary,
            wall_ms: n.wall_ms,
        });
    }
    Ok(Results { manifest, nodes })
}

/// How one metric judged one record.
pub(crate) enum Verdict {
    Pass,
    Fail,
    /// The metric could not be computed: why.
    Error(String),
}

/// One record × metric: a JUnit test case, a CSV row.
pub(crate) struct Case<'a> {
    pub node: &'a str,
    /// `id`, or the record's position (`#3`) when it has none.
    pub id: String,
    pub variant: Option<String>,
    pub sample: Option<u64>,
    pub metric: &'a str,
    pub verdict: Verdict,
    pub score: Option<f64>,
    pub value: Option<&'a Value>,
    pub reason: Option<&'a str>,
    pub record: &'a Map<String, Value>,
}

impl Case<'_> {
    /// `math-01`, `math-01 [short] #2`: the record, as a user finds it in
    /// `flow show`.
    pub fn label(&self) -> String {
        let mut s = self.id.clone();
        if let Some(v) = &self.variant {
            s.push_str(&format!(" [{v}]"));
        }
        if let Some(n) = self.sample {
            s.push_str(&format!(" #{n}"));
        }
        s
    }
}

/// Every record × metric of a scored node, in record order.
pub(crate) fn cases(node: &Node) -> Vec<Case<'_>> {
    let mut out = Vec::new();
    for (i, record) in node.records.iter().enumerate() {
        let id = match record.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(v @ Value::Number(_)) => v.to_string(),
            _ => format!("#{}", i + 1),
        };
        let variant = record.get("variant").and_then(Value::as_str).map(str::to_string);
        let sample = record.get("sample").and_then(Value::as_u64);
        let Some(scores) = record.get("scores").and_then(Value::as_object) else { continue };
        for (metric, s) in scores {
            let error = s.get("error").and_then(Value::as_str);
            let verdict = match (error, s.get("pass").and_then(Value::as_bool)) {
                (Some(e), _) => Verdict::Error(e.to_string()),
                (None, Some(true)) => Verdict::Pass,
                (None, Some(false)) => Verdict::Fail,
                (None, None) => Verdict::Error("the metric gave no verdict".into()),
            };
            out.push(Case {
                node: &node.name,
                id: id.clone(),
                variant: variant.clone(),
                sample,
                metric,
                verdict,
                score: s.get("score").and_then(Value::as_f64),
                value: s.get("value").filter(|v| !v.is_null()),
                reason: s.get("reason").and_then(Value::as_str),
                record,
            });
        }
    }
    out
}

/// `{metric: exact_match, drop_more_than: 0.02}`: a rule as the spec wrote it.
pub(crate) fn rule_text(rule: &Value) -> String {
    match rule {
        Value::Object(m) => {
            // `metric` first, as specs write it; the rest in key order.
            let mut fields: Vec<(&String, &Value)> = m.iter().collect();
            fields.sort_by_key(|(k, _)| *k != "metric");
            let parts: Vec<String> = fields
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}: {s}"),
                    v => format!("{k}: {v}"),
                })
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        v => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_the_extension_and_unknown_ones_list_the_known() {
        let t = targets(&["a.junit.xml".into(), "b.CSV".into(), "c.jsonl".into(), "d.json".into()]).unwrap();
        let f: Vec<Format> = t.iter().map(|t| t.format).collect();
        assert_eq!(f, [Format::Junit, Format::Csv, Format::Jsonl, Format::Json]);
        let e = targets(&["out.jsnol".into()]).unwrap_err().to_string();
        assert!(e.contains("-o out.jsnol: unknown output format `.jsnol`"), "{e}");
        assert!(e.contains("did you mean `.jsonl`?"), "{e}");
        assert!(e.contains(".xml (JUnit XML"), "{e}");
        let e = targets(&["out".into()]).unwrap_err().to_string();
        assert!(e.contains("no extension"), "{e}");
        let e = targets(&["a.csv".into(), "a.csv".into()]).unwrap_err().to_string();
        assert!(e.contains("given twice"), "{e}");
    }

    #[test]
    fn rules_read_as_written() {
        let r = serde_json::json!({"drop_more_than": 0.02, "metric": "exact_match", "x": null});
        assert_eq!(rule_text(&r), "{metric: exact_match, drop_more_than: 0.02}");
    }
}
