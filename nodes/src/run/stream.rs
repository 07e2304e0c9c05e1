//! How `run` streams: every sample of every record is a call; calls
//! complete in any order and the records go out in input order through a
//! reorder buffer bounded by bytes ([`crate::backend::ordered`]), so one
//! record waiting out a long `Retry-After` holds back only itself while the
//! calls behind it go on. The buffer's bound is `reorder_buffer:`
//! ([`ByteSize`], default [`DEFAULT_REORDER_BUFFER`]).

use std::fmt;
use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Deserializer, Serialize};

use flow_engine::{BatchStream, RecordStream, BATCH_SIZE};

use super::Caller;
use crate::backend::ordered::{json_bytes, ordered, Window};

/// Bytes a `run` node may hold while records wait for an earlier one (and
/// as the inputs of the calls under way) by default: at a few KB a record,
/// thousands of records.
pub const DEFAULT_REORDER_BUFFER: ByteSize = ByteSize(32 << 20);

/// A size in bytes: a count (`33554432`) or a number with a unit
/// (`32MB`, `64 MiB`, `512kB`; decimal units are powers of 1000, binary
/// ones of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ByteSize(pub u64);

/// Text that is not a [`ByteSize`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a size; write bytes (`33554432`) or a number with a unit (`32MB`, `64MiB`)")]
pub struct ByteSizeError(pub String);

impl std::str::FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(text: &str) -> Result<Self, ByteSizeError> {
        let t = text.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (number, unit) = (t[..split].trim(), t[split..].trim());
        let scale: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" | "k" => 1_000,
            "mb" | "m" => 1_000_000,
            "gb" | "g" => 1_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            _ => return Err(ByteSizeError(text.to_string())),
        };
        let n: f64 = number.parse().map_err(|_| ByteSizeError(text.to_string()))?;
        let bytes = n * scale as f64;
        if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
            return Err(ByteSizeError(text.to_string()));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(0) => Err(serde::de::Error::custom(ByteSizeError("0".into()))),
            Raw::Count(n) => Ok(ByteSize(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl schemars::JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "bytes, or a number with a unit: `32MB`, `64MiB`",
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": "^\\s*[0-9.]+\\s*([kKmMgG]i?[bB]?|[bB])?\\s*$"}
            ]
        })
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

impl Caller {
    /// The node's records, answered, in input order (see the module doc).
    pub(super) fn stream(self: Arc<Self>, input: RecordStream) -> BatchStream {
        let per_record = self.per_record();
        // A batch backend hears when the input is exhausted, so what it
        // holds goes as one batch at once rather than after an idle gap.
        let backend = self.backend.clone();
        let end = futures::stream::once(async move {
            backend.flush_batch();
            None
        });
        let jobs = input
            .flat_map(move |r| futures::stream::iter((0..per_record).map(move |s| (r.clone(), s))))
            .map(Some)
            .chain(end)
            .filter_map(futures::future::ready)
            .boxed();
        // With a batch backend every call may wait at once for its batch
        // (the bound by bytes still holds).
        let calls = self.backend.batch_window().unwrap_or(self.concurrency * 2);
        let window = Window { calls, bytes: usize::try_from(self.reorder.0).unwrap_or(usize::MAX) };
        let (this, meter) = (self.clone(), self.meter.clone());
        ordered(
            jobs,
            window,
            move || meter.waiting() as usize,
            move |(r, s)| this.clone().one(r, s),
            // A sample shares its record with the others: counted for each,
            // which errs on the safe side.
            |(r, _)| record_bytes(r),
            record_bytes,
        )
        .ready_chunks(BATCH_SIZE)
        .map(|chunk| chunk.into_iter().collect::<Result<Vec<_>, _>>())
        .boxed()
    }
}

fn record_bytes(r: &flow_engine::Record) -> usize {
    r.iter().map(|(k, v)| k.len() + 24 + json_bytes(v)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_bytes() {
        let size = |t: &str| t.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(size("32MB"), Ok(32_000_000));
        assert_eq!(size("64 MiB"), Ok(64 << 20));
        assert_eq!(size("512kB"), Ok(512_000));
        assert_eq!(size("1.5GiB"), Ok(3 << 29));
        assert_eq!(size("4096"), Ok(4096));
        for bad in ["", "MB", "-1MB", "32 XB", "0", "1e400", "inf"] {
            assert!(size(bad).is_err(), "{bad:?} read as a size");
        }
        let e: Result<ByteSize, _> = serde_yaml::from_str("0");
        assert!(e.unwrap_err().to_string().contains("`0` is not a size"));
        assert_eq!(serde_yaml::from_str::<ByteSize>("1048576").unwrap(), ByteSize(1 << 20));
        assert_eq!(serde_yaml::from_str::<ByteSize>("8MiB").unwrap(), ByteSize(8 << 20));
    }
}
