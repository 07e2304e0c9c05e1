//! Records and the port types that describe them.
//!
//! A record is a JSON object behind an `Arc`: fan-out to several downstream
//! nodes shares it instead of copying. Records travel in batches so the
//! per-record cost of channels stays small on million-record streams.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// The fields of one record.
pub type Fields = serde_json::Map<String, serde_json::Value>;

/// One record, shared between consumers.
pub type Record = Arc<Fields>;

/// What flows on an edge: a batch of records, shared between consumers.
pub type Batch = Arc<Vec<Record>>;

/// How many records a source puts in one batch.
pub const BATCH_SIZE: usize = 256;

/// The fields a stream's records are known to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldSet {
    /// Exactly these fields are known to be present (others may be too).
    Known(BTreeSet<String>),
    /// Not known before the run (e.g. records from an arbitrary source).
    Open,
}

/// The type of a port: a record type name (`Records`, `Scored`, ...) and
/// the fields known to be present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortType {
    pub name: Cow<'static, str>,
    pub fields: FieldSet,
}

impl PortType {
    /// Plain records with the given fields.
    pub fn records(fields: FieldSet) -> Self {
        Self { name: Cow::Borrowed("Records"), fields }
    }

    /// This type renamed, with more fields known present.
    pub fn extend(&self, name: &'static str, added: &[&str]) -> Self {
        let fields = match &self.fields {
            FieldSet::Known(f) => {
                let mut f = f.clone();
                f.extend(added.iter().map(|s| s.to_string()));
                FieldSet::Known(f)
            }
            FieldSet::Open => FieldSet::Open,
        };
        Self { name: Cow::Borrowed(name), fields }
    }

    /// `Some(false)` when the field is known to be absent.
    pub fn has_field(&self, field: &str) -> Option<bool> {
        match &self.fields {
            FieldSet::Known(f) => Some(f.contains(field)),
            FieldSet::Open => None,
        }
    }
}

impl fmt::Display for PortType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fields {
            FieldSet::Known(fields) => {
                let list: Vec<&str> = fields.iter().map(String::as_str).collect();
                write!(f, "{}{{{}}}", self.name, list.join(", "))
            }
            FieldSet::Open => f.write_str(&self.name),
        }
    }
}
