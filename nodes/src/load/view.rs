//! `load` in the run report: the source's fields (how many records have
//! each, and as what type) and its first records, so the inputs that every
//! later view refers to can be read in the same page. Only the first
//! [`FIRST_RECORDS`]: a source is often the biggest node, and its records
//! reappear in every node downstream.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::view::{View, ViewCx, ViewData, ViewError};

pub const VIEW: View = View { name: "load", data, script: include_str!("view.js") };

/// Records of a source kept in a report.
pub const FIRST_RECORDS: usize = 200;

fn data(cx: &mut ViewCx<'_>) -> Result<ViewData, ViewError> {
    let (records, rows) = cx.records_upto(FIRST_RECORDS)?;
    // Field → (records that have it, the JSON types seen), over those shown.
    let mut fields: BTreeMap<String, (u64, Vec<&'static str>)> = BTreeMap::new();
    for row in &rows {
        let Ok(Value::Object(r)) = serde_json::from_str::<Value>(row) else { continue };
        for (k, v) in r {
            let ty = match v {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            let e = fields.entry(k).or_default();
            e.0 += 1;
            if !e.1.contains(&ty) {
                e.1.push(ty);
            }
        }
    }
    let fields: Vec<Value> = fields
        .into_iter()
        .map(|(name, (count, types))| json!({"name": name, "count": count, "types": types}))
        .collect();
    let path = cx.config.and_then(|c| c.get("path")).cloned().unwrap_or(Value::Null);
    Ok(ViewData { data: json!({"path": path, "fields": fields, "records": records}), rows, raw: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{show, test_store};
    use flow_engine::cache::{NodeOutcome, NodeStatus};

    #[test]
    fn the_view_lists_the_fields_and_the_first_records() {
        let (_dir, store) = test_store();
        let lines: String =
            (0..FIRST_RECORDS + 3).map(|i| format!("{{\"id\":\"r{i}\",\"q\":\"x\",\"n\":{}}}\n", i % 2)).collect();
        let mut n = NodeOutcome::new("cases".into(), "load".into(), NodeStatus::Ran, None);
        n.output = Some(store.put_bytes(lines.as_bytes()).unwrap());
        n.records_out = (FIRST_RECORDS + 3) as u64;
        let mut budget = usize::MAX;
        let (v, rows, _) = show(
            &VIEW,
            &mut ViewCx { store: &store, node: &n, config: None, plan: None, run: &[], budget: &mut budget },
        );
        assert_eq!(rows.len(), FIRST_RECORDS);
        assert_eq!(v["data"]["records"]["truncated"], "records");
        let names: Vec<&str> =
            v["data"]["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["id", "n", "q"]);
        assert_eq!(v["data"]["fields"][1], json!({"name": "n", "count": FIRST_RECORDS, "types": ["number"]}));
    }
}
