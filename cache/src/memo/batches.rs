//! The batches a backend submitted to a provider's batch API and has not
//! collected yet, beside the answers in the call memo.
//!
//! A batch is recorded, with the memo keys of every request it holds, in
//! one transaction right after the provider created it and before anything
//! else happens, so a run killed while it waits (SIGKILL, Ctrl-C, a closed
//! laptop) leaves the batch findable: the next run polls the same batch for
//! those keys instead of paying for them a second time. A batch that ended
//! (completed, expired, failed, cancelled) is marked done once its answers
//! are in the memo; the keys it left unanswered are then no longer held, so
//! the next run submits them again.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{lock, CallMemo, MemoError};
use crate::ContentHash;

pub(super) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY NOT NULL,
    provider TEXT NOT NULL,
    backend TEXT NOT NULL,
    created_at TEXT NOT NULL,
    state TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    info TEXT NOT NULL DEFAULT '{}',
    keys BLOB NOT NULL
)";

/// A batch submitted to a provider.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
    /// The provider's id (`batch_...`, `msgbatch_...`).
    pub id: String,
    /// `openai`, `anthropic`, `sim`.
    pub provider: String,
    /// The submitting backend's identity hash (hex): whose batch it is.
    pub backend: String,
    /// RFC 3339.
    pub created_at: String,
    /// The provider's last state seen (`validating`, `in_progress`, ...).
    pub state: String,
    /// Ended and collected: its keys are no longer held.
    pub done: bool,
    /// What else the provider said (the input file's id), as JSON.
    pub info: String,
    /// The memo keys of its requests.
    pub keys: Vec<ContentHash>,
}

fn pack(keys: &[ContentHash]) -> Vec<u8> {
    keys.iter().flat_map(|k| k.0).collect()
}

fn unpack(bytes: &[u8]) -> Vec<ContentHash> {
    bytes
        .chunks_exact(32)
        .map(|c| {
            let mut k = [0u8; 32];
            k.copy_from_slice(c);
            ContentHash(k)
        })
        .collect()
}

impl CallMemo {
    /// Records a batch just created, with its keys, durably, in one
    /// transaction.
    pub fn record_batch(&self, b: &BatchRecord) -> Result<(), MemoError> {
        let Some(write) = &self.write else {
            return Err(MemoError::ReadOnly { path: self.path.clone() });
        };
        let mut conn = lock(write);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT OR REPLACE INTO batches (id, provider, backend, created_at, state, done, info, keys)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![b.id, b.provider, b.backend, b.created_at, b.state, b.done as i64, b.info, pack(&b.keys)],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Notes a batch's state as last seen; `done` once it ended and its
    /// answers are recorded.
    pub fn update_batch(&self, id: &str, state: &str, done: bool) -> Result<(), MemoError> {
        let Some(write) = &self.write else {
            return Err(MemoError::ReadOnly { path: self.path.clone() });
        };
        let conn = lock(write);
        conn.execute("UPDATE batches SET state = ?2, done = ?3 WHERE id = ?1", params![id, state, done as i64])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The batches of backend `backend` (its identity hash) not yet done,
    /// oldest first; all of them with `backend` `None`. A memo without the
    /// table (an older flow's, or one opened read-only before any run made
    /// it) has none.
    pub fn pending_batches(&self, backend: Option<&str>) -> Result<Vec<BatchRecord>, MemoError> {
        self.batches(backend, false)
    }

    /// Every batch recorded for `backend` (all backends with `None`),
    /// done or not, oldest first.
    pub fn all_batches(&self, backend: Option<&str>) -> Result<Vec<BatchRecord>, MemoError> {
        self.batches(backend, true)
    }

    fn batches(&self, backend: Option<&str>, done_too: bool) -> Result<Vec<BatchRecord>, MemoError> {
        let conn = lock(&self.read);
        let exists: Option<String> = conn
            .query_row("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'batches'", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        if exists.is_none() {
            return Ok(Vec::new());
        }
        let mut st = conn
            .prepare_cached(
                "SELECT id, provider, backend, created_at, state, done, info, keys FROM batches
                 WHERE (?1 IS NULL OR backend = ?1) AND (?2 OR done = 0) ORDER BY created_at, rowid",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![backend, done_too], |r| {
                Ok(BatchRecord {
                    id: r.get(0)?,
                    provider: r.get(1)?,
                    backend: r.get(2)?,
                    created_at: r.get(3)?,
                    state: r.get(4)?,
                    done: r.get::<_, i64>(5)? != 0,
                    info: r.get(6)?,
                    keys: unpack(&r.get::<_, Vec<u8>>(7)?),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> ContentHash {
        CallMemo::key(&"b", &i)
    }

    #[test]
    fn a_batch_is_pending_until_done_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo.sqlite");
        let b = BatchRecord {
            id: "batch_1".into(),
            provider: "openai".into(),
            backend: "abc".into(),
            created_at: "2025-01-01T00:00:00Z".into(),
            state: "validating".into(),
            done: false,
            info: "{}".into(),
            keys: (0..500).map(key).collect(),
        };
        {
            let memo = CallMemo::open(&path).unwrap();
            assert!(memo.pending_batches(Some("abc")).unwrap().is_empty());
            memo.record_batch(&b).unwrap();
        }
        let memo = CallMemo::open(&path).unwrap();
        assert_eq!(memo.pending_batches(Some("abc")).unwrap(), vec![b.clone()]);
        assert!(memo.pending_batches(Some("other")).unwrap().is_empty());
        memo.update_batch("batch_1", "in_progress", false).unwrap();
        assert_eq!(memo.pending_batches(None).unwrap()[0].state, "in_progress");
        memo.update_batch("batch_1", "expired", true).unwrap();
        assert!(memo.pending_batches(Some("abc")).unwrap().is_empty());
        assert_eq!(memo.all_batches(None).unwrap().len(), 1);
        // Read-only (a plan) sees them too.
        let ro = CallMemo::open_read_only(&path).unwrap();
        assert_eq!(ro.all_batches(None).unwrap()[0].keys.len(), 500);
    }
}
