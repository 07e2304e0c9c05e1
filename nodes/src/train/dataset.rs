//! The training data: ChatExample records checked and written as the JSONL
//! that fine-tuning APIs and local trainers read (`{"messages": [...]}` per
//! line).
//!
//! Everything is checked before anything is sent, and every problem is
//! reported at once, naming the record by its `id` (or its position), so a
//! bad dataset costs no upload and no failed job an hour later.

use serde_json::{json, Map, Value};

use flow_engine::cache::ContentHash;
use flow_engine::Record;

/// The roles a training conversation may have.
pub const ROLES: &[&str] = &["system", "user", "assistant"];

/// Problems listed in the error; the others are counted.
const SHOWN: usize = 10;

/// A dataset that is not sent: every problem found (the first [`SHOWN`]
/// listed, the others counted), so one pass over the data fixes them all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", listed(.problems))]
pub struct DatasetError {
    pub problems: Vec<Problem>,
}

/// One problem of a dataset.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    /// A record that is no training example, named as in "record `id`".
    #[error("{record}: {source}")]
    Example { record: String, source: ExampleError },
    #[error("{examples} examples; fine-tuning needs at least {min} (`min_examples`)")]
    TooFew { examples: usize, min: u64 },
}

/// Why a record is no training example; `at` counts messages from 1.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExampleError {
    #[error("`messages` is not a list")]
    NotAList,
    #[error("no `messages` field")]
    NoMessages,
    #[error("`messages` is empty")]
    Empty,
    #[error("message {at} is not an object with `role` and `content`")]
    NotAnObject { at: usize },
    #[error("message {at} has role `{role}`; the roles are {}", ROLES.join(", "))]
    UnknownRole { at: usize, role: String },
    #[error("message {at} has no `role`")]
    NoRole { at: usize },
    #[error("message {at} ({role}) has no content")]
    NoContent { at: usize, role: String },
    #[error("message {at} ({role}): `content` is not a string")]
    ContentNotText { at: usize, role: String },
    #[error("message {at} ({role}): `weight` must be 0 or 1, on assistant messages only")]
    Weight { at: usize, role: String },
    #[error("the last message is from the {last}; a training example ends with the assistant's answer")]
    LastNotAssistant { last: String },
}

/// The text of a [`DatasetError`].
fn listed(problems: &[Problem]) -> String {
    let n = problems.len();
    let mut text = format!("the training data has {n} problem{} (nothing was sent):", if n == 1 { "" } else { "s" });
    for p in problems.iter().take(SHOWN) {
        text.push_str("\n  ");
        text.push_str(&p.to_string());
    }
    if n > SHOWN {
        text.push_str(&format!("\n  ... and {} more", n - SHOWN));
    }
    text
}

/// A checked dataset, as the bytes to upload or write.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// One `{"messages": [...]}` object per line.
    pub jsonl: Vec<u8>,
    pub examples: usize,
    /// The content hash of `jsonl`.
    pub hash: ContentHash,
}

impl Dataset {
    /// Checks every record and writes the JSONL; `Err` lists the problems.
    pub fn from_records(records: &[Record], min_examples: u64) -> Result<Dataset, DatasetError> {
        match Self::read(records.iter().cloned().map(Ok::<_, std::convert::Infallible>), min_examples) {
            Ok(checked) => checked,
            Err(never) => match never {},
        }
    }

    /// [`Dataset::from_records`] on records read one at a time (a barrier's
    /// input read back from disk): only the JSONL is kept. The outer `Err`
    /// is a record that could not be read.
    pub fn read<E>(
        records: impl IntoIterator<Item = Result<Record, E>>,
        min_examples: u64,
    ) -> Result<Result<Dataset, DatasetError>, E> {
        let mut problems = Vec::new();
        let mut jsonl = Vec::new();
        let mut n = 0;
        for (i, r) in records.into_iter().enumerate() {
            let r = r?;
            n += 1;
            match example(&r) {
                Ok(line) => {
                    serde_json::to_writer(&mut jsonl, &line).expect("json");
                    jsonl.push(b'\n');
                }
                Err(source) => problems.push(Problem::Example { record: name(&r, i), source }),
            }
        }
        if (n as u64) < min_examples {
            problems.push(Problem::TooFew { examples: n, min: min_examples });
        }
        if problems.is_empty() {
            let hash = ContentHash::of(&jsonl);
            return Ok(Ok(Dataset { jsonl, examples: n, hash }));
        }
        Ok(Err(DatasetError { problems }))
    }
}

/// The training data of a barrier's input, read back record by record.
pub fn from_spool(input: &flow_engine::Spool, min_examples: u64) -> Result<Dataset, flow_engine::NodeError> {
    let err = |e: &dyn std::fmt::Display| flow_engine::NodeError::new(e.to_string());
    let records = input.records().map_err(|e| err(&e))?;
    Dataset::read(records, min_examples).map_err(|e| err(&e))?.map_err(|e| err(&e))
}

/// A record as the error names it: `record `its-id`` or `record 3` (its
/// position in the input, from 1).
fn name(r: &Record, i: usize) -> String {
    match r.get("id") {
        Some(Value::String(id)) => format!("record `{id}`"),
        Some(Value::Number(id)) => format!("record `{id}`"),
        _ => format!("record {}", i + 1),
    }
}

/// One training line: the record's messages, with the fields a
/// fine-tuning API reads (`role`, `content`, and `name` or `weight` where
/// given); the record's other fields (ids, scores, provenance) stay out.
fn example(r: &Record) -> Result<Value, ExampleError> {
    let messages = match r.get("messages") {
        Some(Value::Array(m)) => m,
        Some(_) => return Err(ExampleError::NotAList),
        None => return Err(ExampleError::NoMessages),
    };
    if messages.is_empty() {
        return Err(ExampleError::Empty);
    }
    let mut out = Vec::with_capacity(messages.len());
    for (j, m) in messages.iter().enumerate() {
        let at = j + 1;
        let Some(m) = m.as_object() else {
            return Err(ExampleError::NotAnObject { at });
        };
        let role = match m.get("role") {
            Some(Value::String(role)) if ROLES.contains(&role.as_str()) => role.as_str(),
            Some(Value::String(role)) => {
                return Err(ExampleError::UnknownRole { at, role: role.clone() });
            }
            _ => return Err(ExampleError::NoRole { at }),
        };
        match m.get("content") {
            Some(Value::String(c)) if !c.trim().is_empty() => {}
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(ExampleError::NoContent { at, role: role.to_string() });
            }
            Some(_) => return Err(ExampleError::ContentNotText { at, role: role.to_string() }),
        }
        let mut kept = Map::new();
        for field in ["role", "content", "name", "weight"] {
            if let Some(v) = m.get(field) {
                kept.insert(field.to_string(), v.clone());
            }
        }
        if let Some(w) = m.get("weight") {
            if role != "assistant" || !(w == 0 || w == 1) {
                return Err(ExampleError::Weight { at, role: role.to_string() });
            }
        }
        out.push(Value::Object(kept));
    }
    let last = messages.last().and_then(|m| m["role"].as_str()).unwrap_or_default();
    if last != "assistant" {
        return Err(ExampleError::LastNotAssistant { last: last.to_string() });
    }
    Ok(json!({ "messages": out }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn rec(v: Value) -> Record {
        Arc::new(v.as_object().unwrap().clone())
    }

    fn good(i: usize) -> Record {
        rec(json!({"id": format!("ex{i}"), "density": 0.5, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": format!("what is {i} + 1?")},
            {"role": "assistant", "content": format!("{}", i + 1), "weight": 1, "extra": "dropped"},
        ]}))
    }

    #[test]
    fn writes_messages_only_one_example_a_line() {
        let records: Vec<Record> = (0..10).map(good).collect();
        let d = Dataset::from_records(&records, 10).unwrap();
        assert_eq!(d.examples, 10);
        let text = String::from_utf8(d.jsonl.clone()).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 10);
        assert_eq!(lines[3].as_object().unwrap().len(), 1, "only `messages`: {}", lines[3]);
        assert_eq!(lines[3]["messages"][2], json!({"role": "assistant", "content": "4", "weight": 1}));
        assert_eq!(d.hash, ContentHash::of(&d.jsonl));
    }

    #[test]
    fn names_every_bad_record_and_the_count() {
        let mut records: Vec<Record> = (0..5).map(good).collect();
        records.push(rec(json!({"messages": [{"role": "user", "content": "hi"}]})));
        records.push(rec(json!({"id": "b", "messages": [{"role": "bot", "content": "x"}]})));
        records.push(rec(
            json!({"id": "c", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]}),
        ));
        records.push(rec(json!({"id": 9, "prompt": "no messages"})));
        records.push(rec(json!({"id": "e", "messages": []})));
        let e = Dataset::from_records(&records, 10).unwrap_err().to_string();
        assert!(e.starts_with("the training data has 5 problems (nothing was sent):"), "{e}");
        assert!(e.contains("record 6: the last message is from the user;"), "{e}");
        assert!(e.contains("record `b`: message 1 has role `bot`; the roles are system, user, assistant"), "{e}");
        assert!(e.contains("record `c`: message 2 (assistant) has no content"), "{e}");
        assert!(e.contains("record `9`: no `messages` field"), "{e}");
        assert!(e.contains("record `e`: `messages` is empty"), "{e}");
        assert!(!e.contains("at least"), "10 records are enough: {e}");

        let e = Dataset::from_records(&records[..5], 10).unwrap_err().to_string();
        assert!(e.contains("5 examples; fine-tuning needs at least 10 (`min_examples`)"), "{e}");
    }

    #[test]
    fn long_lists_are_cut() {
        let records: Vec<Record> = (0..30).map(|i| rec(json!({"id": i, "messages": "x"}))).collect();
        let e = Dataset::from_records(&records, 1).unwrap_err().to_string();
        assert!(e.contains("30 problems") && e.contains("... and 20 more"), "{e}");
    }
}
