//! The on-disk store behind flow's cache: `.flow/` in a project.
//!
//! Everything a run produces lands here and nothing is ever overwritten in
//! place. Node outputs and artifacts are content-addressed objects; a node
//! manifest, named by the node's key, is written last and atomically, so its
//! presence is the proof that the node finished. Run manifests record what
//! each `flow run` did. The engine decides *what* to key and when; this crate
//! only knows how to store and find bytes safely.

mod atomic;
pub mod gc;
mod hash;
mod manifest;
mod memo;
mod process;
mod remote;
mod spill;
mod stat;
mod store;

pub use atomic::{write_atomic, write_replaceable};
pub use hash::{hash_file, hash_json, ContentHash, HashParseError, HashingReader, HashingWriter};
pub use manifest::{CallStats, Concurrency, NodeManifest, NodeOutcome, NodeStatus, RunManifest, RunStatus};
pub use memo::{BatchRecord, CallMemo, MemoError, MemoNotice, BUSY_TIMEOUT};
pub use process::{Liveness, RunProcess};
pub use remote::{Remote, RemoteError};
pub use spill::{SpillError, SpillFile, SpillReader, SpillWriter};
pub use stat::{FileStat, StatCache, RACY};
pub use store::{ObjectWriter, RunLock, Store, StoreError, StoredOutput};

/// Now, as RFC 3339 UTC with seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// A time as RFC 3339 UTC with milliseconds.
pub fn rfc3339_millis(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
