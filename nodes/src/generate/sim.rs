//! How `provider: sim` answers a `generate` prompt, offline.

use serde_json::{json, Value};

use super::GENERATE_FIELDS_MARKER;
use crate::backend::{sim, Answer};

/// Cases with the prompt's fields.
pub const SIM_ANSWER: Answer = Answer { marker: GENERATE_FIELDS_MARKER, answer: sim_cases };

/// Cases for a `generate` prompt: the field list is the JSON object on the
/// line after the marker, the number of cases follows "Write ". Question-like
/// string fields (`question`, `prompt`, `input`, `query`) get an arithmetic
/// question, answer-like ones (`answer`, `expected`, `output`, `target`) its
/// result, other fields values drawn from the seed.
fn sim_cases(_: &str, rest: &str, seed: f64) -> Value {
    let mut lines = rest.lines().map(str::trim).filter(|l| !l.is_empty());
    let fields: serde_json::Map<String, Value> =
        lines.next().and_then(|l| serde_json::from_str(l).ok()).unwrap_or_default();
    let n = rest
        .split("Write ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|w| w.parse::<usize>().ok())
        .unwrap_or(1)
        .min(100);
    let cases: Vec<Value> = (0..n)
        .map(|i| {
            let r = |k: &str| sim::unit(&format!("{seed}\u{0}{i}\u{0}{k}"));
            let (a, b) = ((r("a") * 98.0) as i64 + 2, (r("b") * 98.0) as i64 + 2);
            let (op, value) = match (r("op") * 3.0) as u32 {
                0 => ("+", a + b),
                1 => ("-", a - b),
                _ => ("*", a * b),
            };
            let mut case = serde_json::Map::new();
            for (name, desc) in &fields {
                let ty = desc.as_str().unwrap_or("string").split([',', ':']).next().unwrap_or("string").trim();
                let v = match ty {
                    "integer" => json!((r(name) * 100.0) as i64),
                    "number" => json!((r(name) * 1000.0).round() / 1000.0),
                    "boolean" => json!(r(name) < 0.5),
                    _ => match name.as_str() {
                        "question" | "prompt" | "input" | "query" => {
                            json!(format!("What is {a} {op} {b}? Answer with the number only."))
                        }
                        "answer" | "expected" | "output" | "target" => json!(value.to_string()),
                        _ => json!(format!("{name} {:x}", (r(name) * 1e9) as u64)),
                    },
                };
                case.insert(name.clone(), v);
            }
            Value::Object(case)
        })
        .collect();
    json!({ "cases": cases })
}
