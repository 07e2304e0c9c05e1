//! The call memo: every backend request's response, keyed by blake3 of
//! (backend identity, request body), in an embedded transactional store
//! (redb) at `.flow/memo.redb`.
//!
//! Each call is committed on its own as it completes, so a run killed with
//! SIGKILL and started again repeats no call that had finished, and adding
//! ten cases to a thousand costs ten calls. The backend identity never
//! includes the API key: it is the provider, base URL, model and sampling
//! parameters. Failed calls are not stored, so they are retried next time.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTableMetadata, TableDefinition};
use serde::Serialize;

use crate::{hash_json, ContentHash};

/// redb's page cache for the memo (its default is 1 GiB).
const MEMO_CACHE_BYTES: usize = 4 << 20;

const CALLS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("calls");

/// Errors of the call memo.
#[derive(Debug, thiserror::Error)]
pub enum MemoError {
    /// Another `flow` process has the memo open.
    #[error("the call memo {0} is in use by another flow process; wait for it to finish")]
    InUse(PathBuf),
    /// The store failed.
    #[error("call memo {path}: {source}")]
    Store { path: PathBuf, source: Box<redb::Error> },
}

/// Memoized backend responses.
pub struct CallMemo {
    path: PathBuf,
    db: Database,
}

impl CallMemo {
    /// Opens (creating if needed) the memo at `path`.
    pub fn open(path: &Path) -> Result<Self, MemoError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| MemoError::Store { path: path.to_path_buf(), source: Box::new(redb::Error::Io(e)) })?;
        }
        // Calls are written once and read rarely, each at most once a run:
        // a small page cache keeps a big memo from growing the process.
        let db = Database::builder().set_cache_size(MEMO_CACHE_BYTES).create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => MemoError::InUse(path.to_path_buf()),
            e => MemoError::Store { path: path.to_path_buf(), source: Box::new(e.into()) },
        })?;
        Ok(Self { path: path.to_path_buf(), db })
    }

    /// The memo key of a request to a backend. `identity` must not hold
    /// secrets: it is hashed, and the hash is stored.
    pub fn key<I: Serialize, R: Serialize>(identity: &I, request: &R) -> ContentHash {
        hash_json(&(identity, request))
    }

    fn err(&self, e: impl Into<redb::Error>) -> MemoError {
        MemoError::Store { path: self.path.clone(), source: Box::new(e.into()) }
    }

    /// The stored response for `key`, if that call completed before.
    pub fn get(&self, key: &ContentHash) -> Result<Option<Vec<u8>>, MemoError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match tx.open_table(CALLS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        let value = table.get(&key.0).map_err(|e| self.err(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Stores a completed call, durably, in its own transaction.
    pub fn put(&self, key: &ContentHash, response: &[u8]) -> Result<(), MemoError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = tx.open_table(CALLS).map_err(|e| self.err(e))?;
            table.insert(&key.0, response).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Stores several completed calls in one durable transaction: one disk
    /// sync for all of them, which is what keeps thousands of fast calls a
    /// second from waiting on the disk.
    pub fn put_many(&self, calls: &[(ContentHash, Vec<u8>)]) -> Result<(), MemoError> {
        if calls.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = tx.open_table(CALLS).map_err(|e| self.err(e))?;
            for (key, response) in calls {
                table.insert(&key.0, response.as_slice()).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Number of memoized calls.
    pub fn len(&self) -> Result<u64, MemoError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        match tx.open_table(CALLS) {
            Ok(t) => t.len().map_err(|e| self.err(e)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Whether no call is memoized.
    pub fn is_empty(&self) -> Result<bool, MemoError> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    use super::*;

    fn key(i: u32) -> ContentHash {
        CallMemo::key(&("sim", "http://127.0.0.1:1/v1", "m"), &serde_json::json!({"n": i}))
    }

    #[test]
    fn round_trips_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".flow/memo.redb");
        {
            let memo = CallMemo::open(&path).unwrap();
            assert!(memo.is_empty().unwrap());
            assert_eq!(memo.get(&key(1)).unwrap(), None);
            memo.put(&key(1), b"{\"output\":\"a\"}").unwrap();
            assert_eq!(memo.get(&key(1)).unwrap().as_deref(), Some(&b"{\"output\":\"a\"}"[..]));
        }
        let memo = CallMemo::open(&path).unwrap();
        assert_eq!(memo.len().unwrap(), 1);
        memo.put_many(&[(key(2), b"b".to_vec()), (key(3), b"c".to_vec())]).unwrap();
        assert_eq!(memo.get(&key(3)).unwrap().as_deref(), Some(&b"c"[..]));
        assert_eq!(memo.len().unwrap(), 3);
        assert_eq!(memo.get(&key(1)).unwrap().as_deref(), Some(&b"{\"output\":\"a\"}"[..]));
        assert_eq!(memo.get(&key(4)).unwrap(), None);
    }

    #[test]
    fn keys_depend_on_identity_and_request() {
        let a = CallMemo::key(&("openai", "u", "m1"), &serde_json::json!({"x": 1}));
        assert_ne!(a, CallMemo::key(&("openai", "u", "m2"), &serde_json::json!({"x": 1})));
        assert_ne!(a, CallMemo::key(&("openai", "u", "m1"), &serde_json::json!({"x": 2})));
        assert_eq!(a, CallMemo::key(&("openai", "u", "m1"), &serde_json::json!({"x": 1})));
    }

    /// Not a test on its own: the child process of the SIGKILL test. It
    /// commits calls one by one and says so on stdout until it is killed.
    #[test]
    #[ignore = "child process of calls_committed_before_sigkill_are_kept"]
    fn memo_child_writer() {
        let Ok(path) = std::env::var("FLOW_MEMO_CHILD") else { return };
        let memo = CallMemo::open(Path::new(&path)).unwrap();
        for i in 0.. {
            memo.put(&key(i), format!("{{\"n\":{i}}}").as_bytes()).unwrap();
            println!("committed {i}");
        }
    }

    #[test]
    fn calls_committed_before_sigkill_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo.redb");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "memo::tests::memo_child_writer",
                "--include-ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("FLOW_MEMO_CHILD", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut last = None;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("committed ") {
                let n: u32 = n.parse().unwrap();
                last = Some(n);
                if n >= 40 {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let last = last.expect("the child committed calls");
        let memo = CallMemo::open(&path).unwrap();
        for i in 0..=last {
            assert_eq!(memo.get(&key(i)).unwrap(), Some(format!("{{\"n\":{i}}}").into_bytes()), "call {i} lost");
        }
    }
}
