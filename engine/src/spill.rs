//! A barrier's input, collected whole before the stage runs: in memory up to
//! a bound, on disk past it.
//!
//! The design promises that memory stays flat whatever the dataset size, and
//! a barrier (`compare`, `extract`, `synthesize`, `train`) must see all of
//! its input first. So the engine keeps the first records of each input in
//! memory, up to its share of the node's bound ([`DEFAULT_BOUND`], or
//! [`BOUND_VAR`]), and appends the rest to a spill file in `.flow/tmp/`
//! ([`flow_cache::SpillFile`]). The stage gets one [`Spool`] per input and
//! reads it back in order, or record by record by position, holding only
//! what its own computation needs. The spill file goes when the spool is
//! dropped: when the stage ends, fails, or the run is cancelled; a killed
//! run's is swept by the next run.

use std::sync::Arc;

use flow_cache::{SpillError, SpillFile, SpillWriter, Store};
use serde_json::Value;

use crate::record::{Batch, Record};

/// The memory a barrier node's inputs may take before they spill: 64 MiB.
/// Enough for the small inputs of most runs to stay in memory (no disk
/// round trip), and a small part of a machine's memory.
pub const DEFAULT_BOUND: u64 = 64 << 20;

/// The environment variable that sets the bound: bytes, or a size such as
/// `512KiB`, `64MiB`, `2GiB` (`K`, `M`, `G` read the same); `0` spills
/// every record.
pub const BOUND_VAR: &str = "FLOW_BARRIER_MEMORY";

/// A [`BOUND_VAR`] that is not a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{BOUND_VAR}=`{value}` is not a size; hint: write bytes or a size such as `64MiB` (the default) or `1GiB`")]
pub struct BoundError {
    pub value: String,
}

/// The bound [`BOUND_VAR`] sets, else [`DEFAULT_BOUND`].
pub fn bound_from_env() -> Result<u64, BoundError> {
    match std::env::var(BOUND_VAR) {
        Ok(v) => parse_size(&v).ok_or(BoundError { value: v }),
        Err(_) => Ok(DEFAULT_BOUND),
    }
}

/// `123`, `64MiB`, `64M`, `1.5GiB`, `512k`: bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    let n: f64 = number.parse().ok()?;
    let bytes = n * scale as f64;
    (n.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Every record of one input of a barrier, in the order it arrived.
#[derive(Debug, Default)]
pub struct Spool {
    /// The first records, kept in memory.
    memory: Vec<Record>,
    /// The records after them, when the input went past its bound.
    spilled: Option<SpillFile>,
}

impl Spool {
    /// A spool of records already in memory (tests, plan-time callers).
    pub fn in_memory(records: Vec<Record>) -> Spool {
        Spool { memory: records, spilled: None }
    }

    /// Records in the input.
    pub fn len(&self) -> usize {
        self.memory.len() + self.spilled.as_ref().map_or(0, SpillFile::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many records are on disk (0: all in memory).
    pub fn spilled(&self) -> usize {
        self.spilled.as_ref().map_or(0, SpillFile::len)
    }

    /// The spill file's size in bytes (0: all in memory).
    pub fn spilled_bytes(&self) -> u64 {
        self.spilled.as_ref().map_or(0, SpillFile::bytes)
    }

    /// The records, in order: those in memory, then those read back.
    pub fn records(&self) -> Result<Records<'_>, SpillError> {
        let disk = self.spilled.as_ref().map(SpillFile::reader).transpose()?;
        Ok(Records { memory: self.memory.iter(), disk })
    }

    /// Record `i` (from 0): cheap in memory, one read on disk.
    ///
    /// # Panics
    ///
    /// If `i` is not below [`Spool::len`].
    pub fn get(&self, i: usize) -> Result<Record, SpillError> {
        if let Some(r) = self.memory.get(i) {
            return Ok(r.clone());
        }
        let file = self.spilled.as_ref().expect("a record past the spool's end");
        file.get(i - self.memory.len()).map(Arc::new)
    }

    /// Every record in memory (what a stage that needs them all at once
    /// gets).
    pub fn into_records(self) -> Result<Vec<Record>, SpillError> {
        let Some(file) = &self.spilled else { return Ok(self.memory) };
        let mut all = Vec::with_capacity(self.len());
        all.extend(self.memory.iter().cloned());
        for r in file.reader()? {
            all.push(Arc::new(r?));
        }
        Ok(all)
    }
}

/// The records of a [`Spool`], in order.
pub struct Records<'a> {
    memory: std::slice::Iter<'a, Record>,
    disk: Option<flow_cache::SpillReader<'a>>,
}

impl Iterator for Records<'_> {
    type Item = Result<Record, SpillError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(r) = self.memory.next() {
            return Some(Ok(r.clone()));
        }
        Some(self.disk.as_mut()?.next()?.map(Arc::new))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.memory.len() + self.disk.as_ref().map_or(0, |d| d.size_hint().0);
        (n, Some(n))
    }
}

/// Collects one input into a [`Spool`], spilling past `bound` bytes.
pub(crate) struct Collector {
    store: Store,
    bound: u64,
    /// The estimated size of the records in memory.
    held: u64,
    memory: Vec<Record>,
    disk: Option<SpillWriter>,
}

impl Collector {
    pub fn new(store: Store, bound: u64) -> Self {
        Collector { store, bound, held: 0, memory: Vec::new(), disk: None }
    }

    /// Takes one batch. Records are encoded on the caller's thread: a batch
    /// (256 records) takes about a millisecond, less than a hop to a
    /// blocking thread and back would save, and the writes land in the page
    /// cache.
    pub fn push(&mut self, batch: &Batch) -> Result<(), SpillError> {
        for r in batch.iter() {
            if self.disk.is_none() {
                let size = record_size(r);
                if self.held + size <= self.bound {
                    self.held += size;
                    self.memory.push(r.clone());
                    continue;
                }
                self.disk = Some(self.store.spill_writer()?);
            }
            self.disk.as_mut().expect("spilling").push(r)?;
        }
        Ok(())
    }

    pub fn finish(self) -> Result<Spool, SpillError> {
        let spilled = self.disk.map(SpillWriter::finish).transpose()?;
        Ok(Spool { memory: self.memory, spilled })
    }
}

/// About how many bytes a record takes in memory, made without allocating:
/// a map is a B-tree whose nodes hold 11 entries inline (~640 bytes each,
/// however few are used: a small object weighs more than its text), an
/// array holds its values inline (32 bytes each), and strings and keys are
/// allocations of their own.
pub fn record_size(r: &Record) -> u64 {
    fn heap(v: &Value) -> u64 {
        match v {
            Value::String(s) => s.len() as u64 + 16,
            Value::Array(items) => items.iter().map(|v| 32 + heap(v)).sum::<u64>(),
            Value::Object(map) => object(map),
            _ => 0,
        }
    }
    fn object(map: &serde_json::Map<String, Value>) -> u64 {
        let nodes = map.len().div_ceil(8).max(1) as u64;
        640 * nodes + map.iter().map(|(k, v)| k.len() as u64 + 16 + heap(v)).sum::<u64>()
    }
    // The record's `Arc` and map header.
    40 + object(r)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rec(v: Value) -> Record {
        Arc::new(v.as_object().unwrap().clone())
    }

    fn batch(range: std::ops::Range<u64>) -> Batch {
        Arc::new(range.map(|i| rec(json!({"id": i, "text": format!("record {i}"), "x": [i as f64 / 7.0]}))).collect())
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join(".flow"));
        store.create().unwrap();
        (dir, store)
    }

    fn tmp_files(store: &Store) -> usize {
        std::fs::read_dir(store.root().join("tmp")).unwrap().count()
    }

    #[test]
    fn past_the_bound_records_spill_and_read_back_the_same_in_order() {
        let (_dir, store) = store();
        let expected: Vec<Record> = batch(0..1000).iter().cloned().collect();
        let one = record_size(&expected[0]);
        for (bound, in_memory) in [(u64::MAX, 1000), (0, 0), (one * 10 + one / 2, 10)] {
            let mut c = Collector::new(store.clone(), bound);
            for b in [batch(0..300), batch(300..1000)] {
                c.push(&b).unwrap();
            }
            let spool = c.finish().unwrap();
            assert_eq!((spool.len(), spool.spilled()), (1000, 1000 - in_memory), "bound {bound}");
            assert_eq!(tmp_files(&store), (in_memory < 1000) as usize);
            let back: Vec<Record> = spool.records().unwrap().map(Result::unwrap).collect();
            assert_eq!(back, expected);
            assert_eq!(spool.get(0).unwrap(), expected[0]);
            assert_eq!(spool.get(999).unwrap(), expected[999]);
            assert_eq!(spool.get(10).unwrap(), expected[10]);
            assert_eq!(spool.into_records().unwrap(), expected);
            assert_eq!(tmp_files(&store), 0, "the spill file goes with the spool");
        }
    }

    #[test]
    fn an_abandoned_collection_leaves_no_file() {
        let (_dir, store) = store();
        let mut c = Collector::new(store.clone(), 0);
        c.push(&batch(0..10)).unwrap();
        assert_eq!(tmp_files(&store), 1);
        drop(c);
        assert_eq!(tmp_files(&store), 0);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size(" 2 g "), Some(2 << 30));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("0"), Some(0));
        for bad in ["", "MiB", "12 parsecs", "-1", "1e999"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        let e = BoundError { value: "lots".into() }.to_string();
        assert!(e.starts_with("FLOW_BARRIER_MEMORY=`lots` is not a size; hint:"), "{e}");
    }

    #[test]
    fn the_size_estimate_grows_with_the_record() {
        let small = record_size(&rec(json!({"a": 1})));
        let big = record_size(&rec(json!({"a": 1, "v": vec![0.5; 384]})));
        let nested = record_size(&rec(json!({"a": 1, "scores": {"m": {"score": 1, "pass": true}}})));
        assert!((600..800).contains(&small), "{small}: a map's node, however small");
        assert!(big > 384 * 32, "{big}: a vector's values weigh 32 bytes each");
        assert!(nested > 3 * 640, "{nested}: three maps");
    }
}
