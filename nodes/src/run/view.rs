//! `run` in the run report: what was asked and of whom (the templates, the
//! backend, its sampling settings), its summary (calls, latency), and its
//! records, so that a failure is read with its error text beside the input
//! that caused it.

use serde_json::{json, Value};

use crate::view::{cut_strings, View, ViewCx, ViewData, ViewError, SUMMARY_JSON};

pub const VIEW: View = View { name: "run", data, script: include_str!("view.js") };

/// The fields of the config that say what is sent: the templates and how
/// they are sent.
const CONTEXT: &[&str] =
    &["prompt", "prompt_file", "prompts", "system", "messages", "repeat", "json", "tools", "rules", "max_errors"];

fn data(cx: &mut ViewCx<'_>) -> Result<ViewData, ViewError> {
    let summary = cx.artifact(SUMMARY_JSON).unwrap_or(Value::Null);
    let context = context(cx);
    let (records, rows) = cx.records()?;
    Ok(ViewData {
        data: json!({"summary": summary, "context": context, "records": records, "fields": super::OUTPUT_FIELDS}),
        rows,
        raw: Vec::new(),
    })
}

/// The templates and the backend, from the compiled config (null for a
/// report written later from the manifest alone).
fn context(cx: &ViewCx<'_>) -> Value {
    let Some(config) = cx.config else { return Value::Null };
    let mut out = json!({});
    for k in CONTEXT {
        if let Some(v) = config.get(*k).filter(|v| !v.is_null()) {
            out[*k] = v.clone();
        }
    }
    cut_strings(&mut out);
    if let Some(name) = config["backend"].as_str() {
        out["backend"] = cx.backend(name);
        if out["backend"].is_null() {
            out["backend"] = json!({"name": name});
        }
    }
    out
}

impl crate::Face for super::Run {
    const VIEW: Option<&'static View> = Some(&VIEW);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{show, test_store};
    use flow_engine::cache::{NodeOutcome, NodeStatus};

    #[test]
    fn the_view_lists_the_records_and_the_templates() {
        let (_dir, store) = test_store();
        let mut n = NodeOutcome::new("answers".into(), "run".into(), NodeStatus::Ran, None);
        let lines = "{\"id\":\"a\",\"q\":\"x\",\"output\":\"y\",\"error\":null}\n{\"id\":\"b\",\"q\":\"z\",\"output\":null,\"error\":\"HTTP 500\"}\n";
        n.output = Some(store.put_bytes(lines.as_bytes()).unwrap());
        n.records_out = 2;
        let config = json!({"backend": "bot", "prompt": "{{q}}", "system": "be brief", "reorder_buffer": null});
        let mut budget = usize::MAX;
        let cx =
            &mut ViewCx { store: &store, node: &n, config: Some(&config), plan: None, run: &[], budget: &mut budget };
        let (v, rows, _) = show(&VIEW, cx);
        assert_eq!(rows.len(), 2);
        assert!(rows[1].contains("HTTP 500"));
        assert_eq!(v["data"]["context"], json!({"prompt": "{{q}}", "system": "be brief", "backend": {"name": "bot"}}));
        assert_eq!(v["data"]["summary"], Value::Null, "no summary is no problem");
    }
}
