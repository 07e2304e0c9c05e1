//! The comparison case by case, for the report: one row per joined key with
//! the case's input fields, its `expected`, and each side's output and
//! scores, so that "what changed" is read next to "by how much". The
//! figures stay [`super::analysis`]'s; this only lines the records up, the
//! same way (the key's fields, and `variant` and `sample` when a record has
//! them and the key does not name them).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::view::{cut_strings, MAX_RECORDS, MAX_RECORD_BYTES};

/// The fields a case's input leaves out: what the system under test and the
/// scoring added, and what joins it.
const NOT_INPUT: &[&str] = &[
    "id",
    "expected",
    "output",
    "usage",
    "latency_ms",
    "cost_usd",
    "model",
    "error",
    "raw_output",
    "rules_applied",
    "tool_calls",
    "finish_reason",
    "truncated",
    "scores",
    "score",
    "pass",
    "variant",
    "sample",
    "provenance",
];

type Rec = Map<String, Value>;

/// What a side says of one case.
const SIDE_FIELDS: &[&str] = &["output", "error", "pass", "score", "scores", "latency_ms"];

/// One side's records, named as the comparison names it.
pub struct CaseSide {
    pub name: String,
    pub records: Vec<Map<String, Value>>,
    /// Its records are split from one input by `variant`: the variant is
    /// the side, not part of the key.
    pub by_variant: bool,
}

/// The rows of a comparison of `sides` (the baseline first) joined by `key`:
/// each a JSON object as text, `{key, id, input, expected, sides: [..]}`
/// with `null` for a side that lacks the case; in the baseline's order, the
/// cases only a candidate has after. At most [`MAX_RECORDS`] rows and
/// `budget` bytes (less what they take); returns `{total, shown,
/// truncated}` and the rows.
pub fn rows(key: &[String], sides: &[CaseSide], budget: &mut usize) -> (Value, Vec<String>) {
    let mut order: Vec<String> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    // Per case: its first record (for the input), and each side's.
    let mut cases: Vec<(Option<&Rec>, Vec<Option<&Rec>>)> = Vec::new();
    for (s, side) in sides.iter().enumerate() {
        for r in &side.records {
            let Some(k) = case_key(r, key, side.by_variant) else { continue };
            let i = *at.entry(k.clone()).or_insert_with(|| {
                order.push(k);
                cases.push((None, vec![None; sides.len()]));
                cases.len() - 1
            });
            let case = &mut cases[i];
            case.0.get_or_insert(r);
            case.1[s].get_or_insert(r);
        }
    }
    let total = cases.len();
    let limit = MAX_RECORD_BYTES.min(*budget);
    let (mut out, mut bytes, mut truncated) = (Vec::new(), 0, Value::Null);
    for (k, (first, per_side)) in order.into_iter().zip(cases) {
        if out.len() == MAX_RECORDS {
            truncated = json!("records");
            break;
        }
        let first = first.expect("a case has a record");
        let input: Map<String, Value> = first
            .iter()
            .filter(|(f, _)| !NOT_INPUT.contains(&f.as_str()))
            .map(|(f, v)| (f.clone(), v.clone()))
            .collect();
        let sides: Vec<Value> = per_side
            .into_iter()
            .map(|r| match r {
                None => Value::Null,
                Some(r) => {
                    let picked: Map<String, Value> = SIDE_FIELDS
                        .iter()
                        .filter_map(|f| r.get(*f).filter(|v| !v.is_null()).map(|v| (f.to_string(), v.clone())))
                        .collect();
                    Value::Object(picked)
                }
            })
            .collect();
        let mut row = json!({
            "key": k,
            "id": first.get("id").cloned().unwrap_or(Value::Null),
            "input": input,
            "expected": first.get("expected").cloned().unwrap_or(Value::Null),
            "sides": sides,
        });
        cut_strings(&mut row);
        let text = row.to_string();
        if bytes + text.len() > limit {
            truncated = json!("bytes");
            break;
        }
        bytes += text.len();
        out.push(text);
    }
    *budget -= bytes;
    (json!({"total": total, "shown": out.len(), "truncated": truncated}), out)
}

/// A record's key as the comparison joins it (`q7/detailed/2`); `None` for
/// a record that lacks a key field (the comparison itself says so).
fn case_key(r: &Map<String, Value>, key: &[String], by_variant: bool) -> Option<String> {
    let also: &[&str] = if by_variant { &["sample"] } else { &["variant", "sample"] };
    let also = also.iter().filter(|f| !key.iter().any(|k| k == *f) && r.get(**f).is_some_and(|v| !v.is_null()));
    let mut parts = Vec::new();
    for f in key.iter().map(String::as_str).chain(also.copied()) {
        parts.push(match r.get(f)? {
            Value::String(s) => s.clone(),
            Value::Null => return None,
            v => v.to_string(),
        });
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(name: &str, records: Value, by_variant: bool) -> CaseSide {
        let records = records.as_array().unwrap().iter().map(|r| r.as_object().unwrap().clone()).collect();
        CaseSide { name: name.into(), records, by_variant }
    }

    #[test]
    fn cases_line_up_by_key_with_each_sides_output() {
        let base = side(
            "a",
            json!([
                {"id": "q1", "question": "1+1?", "expected": "2", "output": "2", "pass": true, "scores": {"em": {"pass": true, "score": 1.0}}, "usage": {}},
                {"id": "q2", "question": "2+2?", "expected": "4", "output": "5", "pass": false, "scores": {"em": {"pass": false, "score": 0.0}}}
            ]),
            false,
        );
        let cand = side(
            "b",
            json!([
                {"id": "q2", "question": "2+2?", "expected": "4", "output": "4", "pass": true, "scores": {"em": {"pass": true, "score": 1.0}}},
                {"id": "q3", "question": "3+3?", "output": null, "error": "HTTP 500"}
            ]),
            false,
        );
        let mut budget = usize::MAX;
        let (meta, rows) = rows(&["id".to_string()], &[base, cand], &mut budget);
        assert_eq!(meta, json!({"total": 3, "shown": 3, "truncated": null}));
        let rows: Vec<Value> = rows.iter().map(|r| serde_json::from_str(r).unwrap()).collect();
        assert_eq!(rows[0]["input"], json!({"question": "1+1?"}));
        assert_eq!(rows[0]["sides"][1], Value::Null);
        assert_eq!(rows[1]["sides"][0]["output"], "5");
        assert_eq!(rows[1]["sides"][1]["scores"]["em"]["pass"], true);
        assert_eq!((&rows[2]["key"], &rows[2]["sides"][1]["error"]), (&json!("q3"), &json!("HTTP 500")));
        assert!(budget < usize::MAX);
    }

    #[test]
    fn variants_are_sides_and_samples_part_of_the_key() {
        let recs = json!([
            {"id": "q1", "variant": "short", "sample": 0, "output": "a"},
            {"id": "q1", "variant": "short", "sample": 1, "output": "b"}
        ]);
        let (meta, rows) = rows(&["id".to_string()], &[side("short", recs, true)], &mut usize::MAX.clone());
        assert_eq!(meta["total"], 2);
        assert!(rows[1].contains("\"key\":\"q1/1\""), "{}", rows[1]);
    }
}
