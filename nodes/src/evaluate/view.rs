//! `evaluate` in the run report: the summary, the metric names in the
//! spec's order, and the scored records (capped).

use serde_json::{json, Map, Value};

use crate::backend::Answer;
use crate::view::{View, ViewCx, ViewData, ViewError, SUMMARY_JSON};

pub const VIEW: View = View { name: "evaluate", data, script: include_str!("view.js") };

fn data(cx: &mut ViewCx<'_>) -> Result<ViewData, ViewError> {
    let summary = cx.artifact(SUMMARY_JSON).unwrap_or(Value::Null);
    let (records, rows) = cx.records()?;
    let mut metrics: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        if !metrics.iter().any(|m| m == name) {
            metrics.push(name.to_string());
        }
    };
    for m in cx.config.and_then(|c| c["metrics"].as_array()).into_iter().flatten() {
        // As `MetricConfig::name` has it: `not_<type>` with `negate`.
        let name = match (m["name"].as_str(), m["type"].as_str(), m["negate"].as_bool()) {
            (Some(n), _, _) => Some(n.to_string()),
            (None, Some(t), Some(true)) => Some(format!("not_{t}")),
            (None, t, _) => t.map(str::to_string),
        };
        if let Some(name) = name {
            add(&name);
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
    Ok(ViewData { data: json!({"summary": summary, "metrics": metrics, "records": records}), rows, raw: Vec::new() })
}

impl crate::Face for super::Evaluate {
    const VIEW: Option<&'static View> = Some(&VIEW);
    const SIM_ANSWERS: &'static [Answer] = &[super::judge::SIM_ANSWER];
}
