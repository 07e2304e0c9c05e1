//! From input records to the logs the graph is made of: each record's id,
//! group, status and embedding, exact duplicates collapsed (with their
//! count), and the texts to embed for logs that came without a vector.
//!
//! The same collection runs at plan time (to name the embedding calls a
//! run will make) and at run time, so both batch the same texts the same
//! way and the plan's memo keys are the run's.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use flow_engine::template::RenderError;
use flow_engine::{Record, Template};

use super::ExtractConfig;

/// One distinct log.
#[derive(Debug)]
pub struct Log {
    pub id: String,
    /// The group key's value (`function`), `None` when the record has none.
    pub group: Option<String>,
    pub success: bool,
    /// The record it came from (the first by id among its copies).
    pub record: Record,
    /// Its `embedding`, when the record has one (parsed at run time only).
    pub embedding: Option<Vec<f32>>,
    /// Whether the record has an `embedding` at all.
    pub has_embedding: bool,
    /// How many other records were exact copies of it.
    pub duplicates: u32,
}

/// The logs, collapsed, grouped and ordered: groups by key (no key first),
/// logs within a group by id.
#[derive(Debug, Default)]
pub struct Logs {
    pub groups: BTreeMap<Option<String>, Vec<Log>>,
    /// Records read.
    pub records: usize,
}

/// A field as text: strings as they are, other values as JSON, a missing
/// field or null as nothing.
pub fn text(record: &Record, field: &str) -> String {
    match record.get(field) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// A record's id: its `id` field, else a hash of its content.
fn id_of(record: &Record, key: &blake3::Hash) -> String {
    match record.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(v) if !v.is_null() => v.to_string(),
        _ => format!("log-{}", &key.to_hex()[..12]),
    }
}

/// What makes two logs the same: group, input, output and status.
fn content_key(group: Option<&str>, record: &Record) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    let parts = [
        group.map(str::to_string),
        Some(text(record, "input")),
        Some(text(record, "output")),
        Some(text(record, "status")),
    ];
    for part in parts {
        match part {
            Some(p) => {
                h.update(&(p.len() as u64).to_le_bytes());
                h.update(p.as_bytes());
            }
            None => {
                h.update(&u64::MAX.to_le_bytes());
            }
        }
    }
    h.finalize()
}

/// An input record that is not a log `extract` can use, named by its id.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log `{id}` has no `input`")]
    NoInput { id: String },
    #[error("log `{id}`: {source}")]
    Embedding { id: String, source: EmbeddingError },
    /// `embed_text` reads a field the log lacks.
    #[error("log `{id}`: {source}")]
    EmbedText { id: String, source: RenderError },
}

/// A log's `embedding` that is not a vector.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmbeddingError {
    #[error("its `embedding` is not a list of numbers")]
    NotAList,
    #[error("its `embedding` is empty")]
    Empty,
    #[error("its `embedding` holds `{0}`, not a number")]
    NotANumber(Value),
}

/// Collects the input records into logs. Embeddings are parsed when
/// `parse_embeddings` (at run time), else only noted as present (at plan
/// time). A record without `input` or with a malformed embedding is an
/// error naming it.
pub fn collect(config: &ExtractConfig, records: &[Record], parse_embeddings: bool) -> Result<Logs, LogError> {
    let group_of = |r: &Record| -> Option<String> {
        let field = config.group_by.as_deref()?;
        match r.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => Some(v.to_string()),
        }
    };
    // By id first, so which copy stands for the others, and every order
    // after, does not depend on the order of the input.
    let mut keyed: Vec<(String, blake3::Hash, usize)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let key = content_key(group_of(r).as_deref(), r);
            (id_of(r, &key), key, i)
        })
        .collect();
    keyed.sort_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
    let mut seen: HashMap<blake3::Hash, (Option<String>, usize)> = HashMap::with_capacity(records.len());
    let mut logs = Logs { records: records.len(), ..Logs::default() };
    for (id, key, i) in keyed {
        let r = &records[i];
        if let Some((group, at)) = seen.get(&key) {
            logs.groups.get_mut(group).expect("a seen group")[*at].duplicates += 1;
            continue;
        }
        if matches!(r.get("input"), None | Some(Value::Null)) {
            return Err(LogError::NoInput { id });
        }
        let (has_embedding, embedding) = match r.get("embedding") {
            None | Some(Value::Null) => (false, None),
            Some(v) if parse_embeddings => {
                let embedding = parse_embedding(v).map_err(|source| LogError::Embedding { id: id.clone(), source })?;
                (true, Some(embedding))
            }
            Some(_) => (true, None),
        };
        let success = match r.get("status") {
            Some(Value::String(s)) => config.success.iter().any(|ok| ok == s),
            _ => false,
        };
        let group = group_of(r);
        let list = logs.groups.entry(group.clone()).or_default();
        seen.insert(key, (group.clone(), list.len()));
        list.push(Log { id, group, success, record: r.clone(), embedding, has_embedding, duplicates: 0 });
    }
    Ok(logs)
}

fn parse_embedding(v: &Value) -> Result<Vec<f32>, EmbeddingError> {
    let list = v.as_array().ok_or(EmbeddingError::NotAList)?;
    if list.is_empty() {
        return Err(EmbeddingError::Empty);
    }
    list.iter()
        .map(|x| match x.as_f64() {
            Some(f) if f.is_finite() => Ok(f as f32),
            _ => Err(EmbeddingError::NotANumber(x.clone())),
        })
        .collect()
}

/// The text embedded for a log without a vector.
pub fn embed_text(template: Option<&Template>, record: &Record) -> Result<String, RenderError> {
    match template {
        Some(t) => t.render(record).map(|s| s.into_owned()),
        None => Ok(format!("{}\n{}", text(record, "input"), text(record, "output"))),
    }
}

/// The distinct texts to embed, in batches: sorted by hash and cut after a
/// text whose hash ends a batch (one in [`BATCH`], on average) or at
/// [`MAX_BATCH`]. A batch depends only on the texts in it, so adding logs
/// changes the batches they fall into and leaves the others (and their
/// memoized answers) alone.
pub fn batches(texts: impl IntoIterator<Item = String>) -> Vec<Vec<String>> {
    let mut hashed: Vec<(blake3::Hash, String)> = texts.into_iter().map(|t| (blake3::hash(t.as_bytes()), t)).collect();
    hashed.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    hashed.dedup_by(|a, b| a.0 == b.0);
    let mut out = Vec::new();
    let mut batch = Vec::new();
    for (h, t) in hashed {
        let ends = u16::from_le_bytes([h.as_bytes()[30], h.as_bytes()[31]]) % BATCH as u16 == 0;
        batch.push(t);
        if ends || batch.len() == MAX_BATCH {
            out.push(std::mem::take(&mut batch));
        }
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// Texts per embeddings call, on average.
pub const BATCH: usize = 64;

/// Texts per embeddings call, at most.
pub const MAX_BATCH: usize = 256;

/// The texts of the logs that need an embedding, each once.
pub fn texts_to_embed(logs: &Logs, template: Option<&Template>) -> Result<Vec<String>, LogError> {
    let mut texts = Vec::new();
    for log in logs.groups.values().flatten().filter(|l| !l.has_embedding) {
        texts.push(
            embed_text(template, &log.record).map_err(|source| LogError::EmbedText { id: log.id.clone(), source })?,
        );
    }
    Ok(texts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn rec(v: Value) -> Record {
        Arc::new(v.as_object().unwrap().clone())
    }

    fn config() -> ExtractConfig {
        serde_yaml::from_str("{}").unwrap()
    }

    #[test]
    fn copies_collapse_onto_the_smallest_id_and_groups_sort() {
        let records = vec![
            rec(json!({"id": "b", "function": "f", "input": "q", "output": "a", "status": "SUCCESS"})),
            rec(json!({"id": "a", "function": "f", "input": "q", "output": "a", "status": "SUCCESS"})),
            rec(json!({"id": "c", "function": "f", "input": "q", "output": "a", "status": "FAIL"})),
            rec(json!({"id": "d", "function": "g", "input": "q", "output": "a", "status": "SUCCESS"})),
            rec(json!({"id": "e", "input": "q", "output": "a", "status": "SUCCESS", "embedding": [1, 0]})),
        ];
        let logs = collect(&config(), &records, true).unwrap();
        let keys: Vec<_> = logs.groups.keys().cloned().collect();
        assert_eq!(keys, vec![None, Some("f".into()), Some("g".into())]);
        let f = &logs.groups[&Some("f".to_string())];
        assert_eq!(
            f.iter().map(|l| (l.id.as_str(), l.duplicates, l.success)).collect::<Vec<_>>(),
            [("a", 1, true), ("c", 0, false)]
        );
        assert_eq!(logs.groups[&None][0].embedding, Some(vec![1.0, 0.0]));
        let texts = texts_to_embed(&logs, None).unwrap();
        assert_eq!(texts, vec!["q\na"; 3]);
    }

    #[test]
    fn bad_records_are_named() {
        let no_input = vec![rec(json!({"id": 7, "output": "a"}))];
        assert_eq!(collect(&config(), &no_input, true).unwrap_err().to_string(), "log `7` has no `input`");
        let bad = vec![rec(json!({"id": "x", "input": "q", "embedding": [1, "two"]}))];
        assert!(collect(&config(), &bad, true)
            .unwrap_err()
            .to_string()
            .contains("log `x`: its `embedding` holds `\"two\"`"));
        // At plan time the vector is not read.
        assert!(collect(&config(), &bad, false).is_ok());
    }

    #[test]
    fn batches_are_stable_when_texts_are_added() {
        let texts: Vec<String> = (0..1000).map(|i| format!("text {i}")).collect();
        let before = batches(texts.clone());
        assert!(before.iter().all(|b| b.len() <= MAX_BATCH));
        assert_eq!(before.iter().map(Vec::len).sum::<usize>(), 1000);
        assert!(before.len() > 5 && before.len() < 40, "{} batches", before.len());
        let mut more = texts;
        more.extend((0..10).map(|i| format!("new text {i}")));
        more.push("text 3".into()); // a repeat is embedded once
        let after = batches(more);
        let changed = after.iter().filter(|b| !before.contains(b)).count();
        assert!(changed <= 10, "{changed} batches changed for 10 new texts");
    }
}
