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
    /// The fields joined by (`id+sample`); empty before a record.
    key_name: String,
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

/// Fields joined by besides the key, when a record has them and the key
/// does not name them: the prompt variant (two runs of the same variants
/// pair variant with variant) and the sample (`repeat:` pairs sample with
/// sample).
const ALSO_JOINED: [&str; 2] = ["variant", "sample"];

/// Where a key's fields are written one after the other in [`Index`]'s
/// keys, as `q7/detailed/2`.
const KEY_SEPARATOR: char = '/';

/// An [`Index`] being built, record by record.
struct Building {
    index: Index,
    /// Each record's position in its input, from 1, for messages.
    positions: Vec<u32>,
}

impl Building {
    fn new(name: &str, hint: usize) -> Self {
        let index = Index {
            name: name.to_string(),
            key_name: String::new(),
            keys: String::new(),
            ends: Vec::with_capacity(hint),
            sorted: Vec::new(),
            columns: BTreeMap::new(),
        };
        Self { index, positions: Vec::with_capacity(hint) }
    }

    /// Adds record `r` (at `position` in its input, from 1), joined by
    /// `key` and those of `also` it has.
    fn push(&mut self, r: &Record, position: usize, key: &[String], also: &[&str]) -> Result<(), CompareError> {
        let index = &mut self.index;
        let start = index.keys.len();
        let mut joined: Vec<&str> = Vec::with_capacity(key.len() + also.len());
        for field in key
            .iter()
            .map(String::as_str)
            .chain(also.iter().copied().filter(|f| r.get(*f).is_some_and(|v| !v.is_null())))
        {
            let text = match r.get(field) {
                Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
                Some(Value::Null) | None => {
                    index.keys.truncate(start);
                    return Err(CompareError::NoKey {
                        record: position,
                        side: index.name.clone(),
                        key: field.to_string(),
                    });
                }
                Some(v) => Cow::Owned(v.to_string()),
            };
            if index.keys.len() > start {
                index.keys.push(KEY_SEPARATOR);
            }
            index.keys.push_str(&text);
            joined.push(field);
        }
        if index.key_name.is_empty() {
            index.key_name = joined.join("+");
        }
        let n = index.ends.len();
        let Some(s) = r.get("scores").and_then(Value::as_object) else {
            let value = index.keys[start..].to_string();
            return Err(CompareError::NoScores { value, side: index.name.clone() });
        };
        index.ends.push(index.keys.len());
        self.positions.push(u32::try_from(position).unwrap_or(u32::MAX));
        for (metric, entry) in s {
            if !index.columns.contains_key(metric) {
                // A metric first seen here: no outcome for the records before.
                let hint = self.positions.capacity();
                let mut c = Column { score: Vec::with_capacity(hint), pass: Vec::with_capacity(hint) };
                (0..n).for_each(|_| c.push(None));
                index.columns.insert(metric.clone(), c);
            }
            index.columns.get_mut(metric).expect("inserted").push(outcome(entry));
        }
        for c in index.columns.values_mut().filter(|c| c.score.len() == n) {
            c.push(None);
        }
        Ok(())
    }

    /// Sorts the keys for look-ups; a key twice is an error, named at the
    /// second record that has it.
    fn finish(self) -> Result<Index, CompareError> {
        let Building { mut index, positions } = self;
        index.keys.shrink_to_fit();
        let n = u32::try_from(index.ends.len()).expect("fewer than 4 billion records on a side");
        let mut sorted: Vec<u32> = (0..n).collect();
        sorted.sort_by(|&a, &b| index.key(a as usize).cmp(index.key(b as usize)).then(a.cmp(&b)));
        let second =
            sorted.windows(2).filter(|w| index.key(w[0] as usize) == index.key(w[1] as usize)).min_by_key(|w| w[1]);
        if let Some(w) = second {
            // The window's first is the run's first: sorted by number within a key.
            let k = index.key(w[1] as usize);
            let first = sorted[sorted.partition_point(|&i| index.key(i as usize) < k)];
            return Err(CompareError::DuplicateKey {
                key: index.key_name.clone(),
                value: k.to_string(),
                side: index.name.clone(),
                first: positions[first as usize] as usize,
                second: positions[w[1] as usize] as usize,
            });
        }
        index.sorted = sorted;
        Ok(index)
    }
}

impl Index {
    /// Indexes the records of side `name` by the fields of `key` (and a
    /// record's `variant` and `sample`, when it has them and `key` does
    /// not name them), reading them one at a time.
    pub fn new<E>(
        name: &str,
        key: &[String],
        records: impl IntoIterator<Item = Result<Record, E>>,
    ) -> Result<Index, Indexing<E>> {
        let records = records.into_iter();
        // The input knows its length (a spool does): no vector grows twice.
        let mut building = Building::new(name, records.size_hint().0);
        let also = also_joined(key, &ALSO_JOINED);
        for (n, r) in records.enumerate() {
            let r = r.map_err(Indexing::Read)?;
            building.push(&r, n + 1, key, &also).map_err(Indexing::Compare)?;
        }
        building.finish().map_err(Indexing::Compare)
    }

    /// Like [`Index::new`], but one side per prompt `variant`, named after
    /// it, in the order the records first have them: how one input of
    /// several variants is compared variant against variant. Records with
    /// no variant make a side named `name`.
    pub fn by_variant<E>(
        name: &str,
        key: &[String],
        records: impl IntoIterator<Item = Result<Record, E>>,
    ) -> Result<Vec<Index>, Indexing<E>> {
        let also = also_joined(key, &ALSO_JOINED[1..]);
        let mut sides: Vec<(Option<String>, Building)> = Vec::new();
        for (n, r) in records.into_iter().enumerate() {
            let r = r.map_err(Indexing::Read)?;
            let variant = match r.get("variant") {
                Some(Value::String(v)) => Some(v.clone()),
                Some(Value::Null) | None => None,
                Some(v) => Some(v.to_string()),
            };
            let at = match sides.iter().position(|(v, _)| *v == variant) {
                Some(at) => at,
                None => {
                    sides.push((variant.clone(), Building::new(variant.as_deref().unwrap_or(name), 0)));
                    sides.len() - 1
                }
            };
            sides[at].1.push(&r, n + 1, key, &also).map_err(Indexing::Compare)?;
        }
        if sides.is_empty() {
            sides.push((None, Building::new(name, 0)));
        }
        sides.into_iter().map(|(_, b)| b.finish().map_err(Indexing::Compare)).collect()
    }

    /// The fields records were joined by, as `id+sample`.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// Records on this side.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Record `i`'s key: its key fields' values, `/` between them.
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

/// Those of `fields` that `key` does not name.
fn also_joined<'a>(key: &[String], fields: &[&'a str]) -> Vec<&'a str> {
    fields.iter().copied().filter(|f| !key.iter().any(|k| k == f)).collect()
}
