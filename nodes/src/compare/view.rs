//! `compare` in the run report: its `report.json` (long id lists
//! shortened) and the comparison case by case ([`super::cases`]), from the
//! sides' records in this run: each input node's output, or one input's
//! records split by prompt `variant`. A stored baseline from another run is
//! not in this run: its column says so. `flow compare A B` draws the same
//! view for two stored runs ([`of_sides`]).

use serde_json::{json, Map, Value};

use super::cases::{self, CaseSide};
use super::REPORT_JSON;
use super::{Comparison, Side};
use crate::view::{shorten_ids, View, ViewCx, ViewData, ViewError};

pub const VIEW: View =
    View { name: "compare", data, script: concat!(include_str!("view.js"), include_str!("cases.js")) };

fn data(cx: &mut ViewCx<'_>) -> Result<ViewData, ViewError> {
    let report = cx.artifact(REPORT_JSON)?;
    let names: Vec<String> = std::iter::once(&report["baseline"]["name"])
        .chain(report["candidates"].as_array().into_iter().flatten().map(|c| &c["name"]))
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    let key: Vec<String> = match cx.config.map(|c| &c["key"]) {
        Some(Value::String(k)) => vec![k.clone()],
        Some(Value::Array(ks)) => ks.iter().filter_map(|k| k.as_str().map(str::to_string)).collect(),
        _ => vec!["id".to_string()],
    };
    let mut found = sides(cx, &names);
    let missing: Vec<String> = names.iter().filter(|n| !found.iter().any(|s| &s.name == *n)).cloned().collect();
    // Every named side, in the comparison's order; an absent one is empty.
    let ordered: Vec<CaseSide> = names
        .iter()
        .map(|n| match found.iter().position(|s| &s.name == n) {
            Some(i) => found.swap_remove(i),
            None => CaseSide { name: n.clone(), records: Vec::new(), by_variant: false },
        })
        .collect();
    Ok(view_data(report, names, missing, &key, &ordered, cx.budget))
}

/// The view of a comparison made outside a run (`flow compare A B`): the
/// same data a `compare` node's view has, from the sides' records
/// (`sides[0]` the baseline) joined by `key`. `budget` as a view's.
pub fn of_sides(comparison: &Comparison, sides: &[Side], key: &[String], budget: &mut usize) -> ViewData {
    let report = super::report::json_report(comparison, &[]);
    let names = sides.iter().map(|s| s.name.clone()).collect();
    let sides: Vec<CaseSide> = sides
        .iter()
        .map(|s| CaseSide {
            name: s.name.clone(),
            records: s.records.iter().map(|r| (**r).clone()).collect(),
            by_variant: false,
        })
        .collect();
    view_data(report, names, Vec::new(), key, &sides, budget)
}

/// The view's data: the report (its long id lists shortened), the sides,
/// and the cases.
fn view_data(
    mut report: Value,
    names: Vec<String>,
    missing: Vec<String>,
    key: &[String],
    sides: &[CaseSide],
    budget: &mut usize,
) -> ViewData {
    let (case_meta, rows) = cases::rows(key, sides, budget);
    for c in report["candidates"].as_array_mut().into_iter().flatten() {
        shorten_ids(c, &["only_in_baseline", "only_in_candidate"]);
        for m in c["metrics"].as_array_mut().into_iter().flatten() {
            shorten_ids(m, &["pass_to_fail", "fail_to_pass"]);
        }
    }
    ViewData {
        data: json!({"report": report, "sides": names, "missing_sides": missing, "cases": case_meta}),
        rows,
        raw: Vec::new(),
    }
}

/// The sides' records found in this run: a node of each side's name, else
/// the records of the one input split by `variant`.
fn sides(cx: &ViewCx<'_>, names: &[String]) -> Vec<CaseSide> {
    let mut out = Vec::new();
    for name in names {
        if let Some(records) = cx.run_node(name).and_then(|n| read(cx, n)) {
            out.push(CaseSide { name: name.clone(), records, by_variant: false });
        }
    }
    if out.len() == names.len() {
        return out;
    }
    // One input, split into its variants (a record without one is a side
    // named after the input).
    let Some(inputs) = cx.input_names() else { return out };
    let [input] = inputs.as_slice() else { return out };
    let Some(records) = cx.run_node(input).and_then(|n| read(cx, n)) else { return out };
    for name in names {
        let mine: Vec<Map<String, Value>> = records
            .iter()
            .filter(|r| match r.get("variant") {
                Some(Value::String(v)) => v == name,
                None | Some(Value::Null) => name == input,
                Some(v) => &v.to_string() == name,
            })
            .cloned()
            .collect();
        if !mine.is_empty() && !out.iter().any(|s: &CaseSide| &s.name == name) {
            out.push(CaseSide { name: name.clone(), records: mine, by_variant: true });
        }
    }
    out
}

/// A node's output records, parsed; `None` when it has none readable.
fn read(cx: &ViewCx<'_>, n: &flow_engine::cache::NodeOutcome) -> Option<Vec<Map<String, Value>>> {
    let bytes = cx.store.read_object(n.output.as_ref()?).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(Value::Object(r)) => out.push(r),
            _ => return None,
        }
    }
    Some(out)
}

impl crate::Face for super::Compare {
    const VIEW: Option<&'static View> = Some(&VIEW);
}
