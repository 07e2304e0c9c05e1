//! One side of a comparison, indexed: what [`super::analysis`] needs of
//! its records and nothing more, so that the `compare` node reads a side of
//! a million records as it comes, into some tens of bytes a record.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use flow_engine::diag::did_you_mean;
use flow_engine::Record;

use super::analysis::{outcome, CompareError, Outcome};

/// One side of a comparison, as little as the figures need: each record's
/// key and, per metric, its outcome. Built record by record, so a side of a
/// million records costs some tens of bytes each, not its parsed records.
pub struct Index {
    pub(super) name: String,
    /// Every key, one after the other; `ends[i]` is where key `i` ends.
    keys: String,
    ends: Vec<usize>,
    /// Record numbers sorted by key (then by number), for look-ups.
    sorted: Vec<u32>,
    /// Every metric some record scored, with each record's outcome.
    columns: BTreeMap<String, Column>,
}

/// One metric's outcomes, by record: a score (NaN where the record has
/// none: JSON has no NaN) and whether it passed.
#[derive(Default)]
pub(super) struct Column {
    score: Vec<f64>,
    /// 0 failed, 1 passed, 2 no `pass`.
    pass: Vec<u8>,
}

impl Column {
    pub(super) fn get(&self, i: usize) -> Option<Outcome> {
        let score = self.score[i];
        let pass = match self.pass[i] {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        };
        (!score.is_nan()).then_some(Outcome { score, pass })
    }

    fn push(&mut self, o: Option<Outcome>) {
        self.score.push(o.map_or(f64::NAN, |o| o.score));
        self.pass.push(o.and_then(|o| o.pass).map_or(2, u8::from));
    }
}

/// Why a side could not be indexed: what is wrong with a record, or its
/// input could not be read (`E`).
#[derive(Debug)]
pub enum Indexing<E> {
    Compare(CompareError),
    Read(E),
}

impl Indexing<std::convert::Infallible> {
    pub(super) fn into_compare(self) -> CompareError {
        match self {
            Indexing::Compare(e) => e,
            Indexing::Read(never) => match never {},
        }
    }
}

impl Index {
    /// Indexes the records of side `name` by field `key`, reading them one
    /// at a time.
    pub fn new<E>(
        name: &str,
        key: &str,
        records: impl IntoIterator<Item = Result<Record, E>>,
    ) -> Result<Index, Indexing<E>> {
        let records = records.into_iter();
        // The input knows its length (a spool does): no vector grows twice.
        let hint = records.size_hint().0;
        let mut index = Index {
            name: name.to_string(),
            keys: String::new(),
            ends: Vec::with_capacity(hint),
            sorted: Vec::new(),
            columns: BTreeMap::new(),
        };
        for (n, r) in records.enumerate() {
            let r = r.map_err(Indexing::Read)?;
            let k = match r.get(key) {
                Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => Cow::Owned(v.to_string()),
                Some(Value::Null) | None => {
                    return Err(Indexing::Compare(CompareError::NoKey {
                        record: n + 1,
                        side: name.to_string(),
                        key: key.to_string(),
                    }))
                }
                Some(v) => Cow::Owned(v.to_string()),
            };
            let Some(s) = r.get("scores").and_then(Value::as_object) else {
                return Err(Indexing::Compare(CompareError::NoScores { value: k.into_owned(), side: name.to_string() }));
            };
            index.keys.push_str(&k);
            index.ends.push(index.keys.len());
            for (metric, entry) in s {
                if !index.columns.contains_key(metric) {
                    // A metric first seen here: no outcome for the records before.
                    let mut c = Column { score: Vec::with_capacity(hint), pass: Vec::with_capacity(hint) };
                    (0..n).for_each(|_| c.push(None));
                    index.columns.insert(metric.clone(), c);
                }
                index.columns.get_mut(metric).expect("inserted").push(outcome(entry));
            }
            for c in index.columns.values_mut().filter(|c| c.score.len() == n) {
                c.push(None);
            }
        }
        index.keys.shrink_to_fit();
        let n = u32::try_from(index.ends.len()).expect("fewer than 4 billion records on a side");
        let mut sorted: Vec<u32> = (0..n).collect();
        sorted.sort_by(|&a, &b| index.key(a as usize).cmp(index.key(b as usize)).then(a.cmp(&b)));
        // A key twice: named at its second record, the first such in order.
        let second = sorted
            .windows(2)
            .filter(|w| index.key(w[0] as usize) == index.key(w[1] as usize))
            .min_by_key(|w| w[1]);
        if let Some(w) = second {
            // The window's first is the run's first: sorted by number within a key.
            let k = index.key(w[1] as usize);
            let first = sorted[sorted.partition_point(|&i| index.key(i as usize) < k)];
            return Err(Indexing::Compare(CompareError::DuplicateKey {
                key: key.to_string(),
                value: k.to_string(),
                side: name.to_string(),
                first: first as usize + 1,
                second: w[1] as usize + 1,
            }));
        }
        index.sorted = sorted;
        Ok(index)
    }

    /// Records on this side.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub(super) fn key(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.keys[start..self.ends[i]]
    }

    pub(super) fn first_key(&self) -> Option<&str> {
        (!self.is_empty()).then(|| self.key(0))
    }

    /// The record with key `k`.
    pub(super) fn find(&self, k: &str) -> Option<usize> {
        let at = self.sorted.partition_point(|&i| self.key(i as usize) < k);
        let &i = self.sorted.get(at)?;
        (self.key(i as usize) == k).then_some(i as usize)
    }

    pub(super) fn column(&self, metric: &str) -> Option<&Column> {
        self.columns.get(metric)
    }

    /// Every metric some record scored.
    pub(super) fn metrics(&self) -> BTreeSet<String> {
        self.columns.keys().cloned().collect()
    }

    pub(super) fn require_metric(&self, metric: &str) -> Result<(), CompareError> {
        if self.columns.contains_key(metric) {
            return Ok(());
        }
        Err(CompareError::UnknownMetric {
            metric: metric.to_string(),
            side: self.name.clone(),
            suggestion: did_you_mean(metric, self.columns.keys().map(String::as_str)).map(str::to_string),
            scored: self.metrics(),
        })
    }
}

