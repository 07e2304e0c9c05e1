//! From input records to the logs the graph is made of: each record's id,
//! group, status and the length of its embedding, exact duplicates
//! collapsed (with their count), and the texts to embed for logs that came
//! without a vector.
//!
//! The input is read once, record by record, from its [`Spool`] (it may be
//! on disk), and no record is kept: a log holds what the densities, the map
//! and the picks need, and where its record is (`at`), so that a pick, or a
//! vector, can be read again. The same collection runs at plan time (to name
//! the embedding calls a run will make) and at run time, so both batch the
//! same texts the same way and the plan's memo keys are the run's.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use flow_engine::cache::SpillError;
use flow_engine::template::RenderError;
use flow_engine::{Record, Spool, Template};

use super::ExtractConfig;

/// One distinct log.
#[derive(Debug)]
pub struct Log {
    pub id: String,
    /// The group key's value (`function`), `None` when the record has none.
    pub group: Option<String>,
    pub success: bool,
    /// Whether its `output` is more than blanks (a success without an
    /// answer teaches nothing).
    pub answered: bool,
    /// Its `status`, as text.
    pub status: String,
    /// The position of its record in the input (the first by id among its
    /// copies), to read it again.
    pub at: usize,
    /// The length of its `embedding`, when the record has one.
    pub dims: Option<usize>,
    /// The text to embed, for a log without an `embedding` (taken when it
    /// is embedded).
    pub text: Option<Result<String, RenderError>>,
    /// The vector a backend gave it, for a log without an `embedding`.
    pub embedded: Option<Vec<f32>>,
    /// How many other records were exact copies of it.
    pub duplicates: u32,
}

impl Log {
    /// Whether the record has an `embedding` at all.
    pub fn has_embedding(&self) -> bool {
        self.dims.is_some()
    }
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
    /// The input could not be read back from disk.
    #[error(transparent)]
    Spill(#[from] SpillError),
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

/// Collects the input records into logs. Embeddings are checked when
/// `check_embeddings` (at run time), else only noted as present (at plan
/// time); `embed` is the `embed_text` template, rendered for the logs
/// without one. A record without `input` or with a malformed embedding is
/// an error naming it: of several, the first by id, as if the logs were
/// read in that order.
pub fn collect(
    config: &ExtractConfig,
    embed: Option<&Template>,
    input: &Spool,
    check_embeddings: bool,
) -> Result<Logs, LogError> {
    let group_of = |r: &Record| -> Option<String> {
        let field = config.group_by.as_deref()?;
        match r.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => Some(v.to_string()),
        }
    };
    // One pass over the input, keeping what each record gives a log.
    let mut read: Vec<Read> = Vec::with_capacity(input.len());
    for r in input.records()? {
        let r = r?;
        let group = group_of(&r);
        let key = content_key(group.as_deref(), &r);
        let embedding = match r.get("embedding") {
            None | Some(Value::Null) => Ok(None),
            Some(v) if check_embeddings => embedding_len(v).map(Some),
            Some(_) => Ok(Some(0)),
        };
        let to_embed = match embedding {
            Ok(None) => Some(embed_text(embed, &r)),
            _ => None,
        };
        read.push(Read {
            id: id_of(&r, &key),
            key,
            group,
            has_input: !matches!(r.get("input"), None | Some(Value::Null)),
            embedding,
            success: match r.get("status") {
                Some(Value::String(s)) => config.success.iter().any(|ok| ok == s),
                _ => false,
            },
            answered: !text_of(&r, "output").trim().is_empty(),
            status: text(&r, "status"),
            text: to_embed,
        });
    }
    // By id first, so which copy stands for the others, and every order
    // after, does not depend on the order of the input.
    let mut order: Vec<usize> = (0..read.len()).collect();
    order.sort_by(|&a, &b| (&read[a].id, a).cmp(&(&read[b].id, b)));
    let mut seen: HashMap<blake3::Hash, (Option<String>, usize)> = HashMap::with_capacity(read.len());
    let mut logs = Logs { records: read.len(), ..Logs::default() };
    for at in order {
        let r = &mut read[at];
        if let Some((group, i)) = seen.get(&r.key) {
            logs.groups.get_mut(group).expect("a seen group")[*i].duplicates += 1;
            continue;
        }
        let id = std::mem::take(&mut r.id);
        if !r.has_input {
            return Err(LogError::NoInput { id });
        }
        let dims = match std::mem::replace(&mut r.embedding, Ok(None)) {
            Ok(dims) => dims,
            Err(source) => return Err(LogError::Embedding { id, source }),
        };
        let group = r.group.take();
        let list = logs.groups.entry(group.clone()).or_default();
        seen.insert(r.key, (group.clone(), list.len()));
        list.push(Log {
            id,
            group,
            success: r.success,
            answered: r.answered,
            status: std::mem::take(&mut r.status),
            at,
            dims,
            text: r.text.take(),
            embedded: None,
            duplicates: 0,
        });
    }
    Ok(logs)
}

/// What one record gives its log, kept until the copies are collapsed.
struct Read {
    id: String,
    key: blake3::Hash,
    group: Option<String>,
    has_input: bool,
    /// The length of its `embedding` (0 at plan time, when it is not read).
    embedding: Result<Option<usize>, EmbeddingError>,
    success: bool,
    answered: bool,
    status: String,
    text: Option<Result<String, RenderError>>,
}

/// A field as text, borrowed where it is a string.
fn text_of<'a>(record: &'a Record, field: &str) -> std::borrow::Cow<'a, str> {
    match record.get(field) {
        Some(Value::String(s)) => std::borrow::Cow::Borrowed(s),
        _ => std::borrow::Cow::Owned(text(record, field)),
    }
}

/// The length of an `embedding`, once every component is checked.
fn embedding_len(v: &Value) -> Result<usize, EmbeddingError> {
    let list = v.as_array().ok_or(EmbeddingError::NotAList)?;
    if list.is_empty() {
        return Err(EmbeddingError::Empty);
    }
    match list.iter().find(|x| !x.as_f64().is_some_and(f64::is_finite)) {
        Some(x) => Err(EmbeddingError::NotANumber(x.clone())),
        None => Ok(list.len()),
    }
}

/// Writes a record's `embedding`, already checked by [`collect`], into
/// `out` (as long as it).
pub fn read_embedding(record: &Record, out: &mut [f32]) {
    let list = record.get("embedding").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for (o, x) in out.iter_mut().zip(list) {
        *o = x.as_f64().unwrap_or(0.0) as f32;
    }
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
pub fn texts_to_embed(logs: &Logs) -> Result<Vec<String>, LogError> {
    let mut texts = Vec::new();
    for log in logs.groups.values().flatten().filter(|l| !l.has_embedding()) {
        match &log.text {
            Some(Ok(t)) => texts.push(t.clone()),
            Some(Err(source)) => return Err(LogError::EmbedText { id: log.id.clone(), source: source.clone() }),
            None => {}
        }
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
        let logs = collect(&config(), None, &Spool::in_memory(records), true).unwrap();
        let keys: Vec<_> = logs.groups.keys().cloned().collect();
        assert_eq!(keys, vec![None, Some("f".into()), Some("g".into())]);
        let f = &logs.groups[&Some("f".to_string())];
        assert_eq!(
            f.iter().map(|l| (l.id.as_str(), l.duplicates, l.success)).collect::<Vec<_>>(),
            [("a", 1, true), ("c", 0, false)]
        );
        assert_eq!(logs.groups[&None][0].dims, Some(2));
        let texts = texts_to_embed(&logs).unwrap();
        assert_eq!(texts, vec!["q\na"; 3]);
    }

    #[test]
    fn bad_records_are_named() {
        let no_input = vec![rec(json!({"id": 7, "output": "a"}))];
        assert_eq!(
            collect(&config(), None, &Spool::in_memory(no_input), true).unwrap_err().to_string(),
            "log `7` has no `input`"
        );
        let bad = vec![rec(json!({"id": "x", "input": "q", "embedding": [1, "two"]}))];
        assert!(collect(&config(), None, &Spool::in_memory(bad.clone()), true)
            .unwrap_err()
            .to_string()
            .contains("log `x`: its `embedding` holds `\"two\"`"));
        // At plan time the vector is not read.
        assert!(collect(&config(), None, &Spool::in_memory(bad), false).is_ok());
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
