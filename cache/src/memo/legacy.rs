//! The memo of flow before SQLite: a redb file, `.flow/memo.redb`, with the
//! same keys and values in one table. A run imports it once, then renames
//! it `memo.redb.migrated`, so the answers paid for are kept. redb stays a
//! dependency for this alone: it is pure Rust and small, and dropping it
//! would make every upgraded workspace pay for its calls again.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use redb::{ReadableTable, TableDefinition};
use rusqlite::TransactionBehavior;

use super::{free_name, lock, set_aside_as, suffixed, CallMemo, MemoError, MemoNotice};

const CALLS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("calls");

/// redb's page cache while importing (its default is 1 GiB).
const CACHE_BYTES: usize = 4 << 20;

/// Why the old memo could not be imported now.
enum Unread {
    /// Another process has it open (an older flow still running): left for
    /// a later run.
    InUse,
    /// It cannot be read: set aside.
    Damaged(String),
    /// Writing the answers into this memo failed.
    Memo(MemoError),
}

impl CallMemo {
    /// Imports every answer of the redb memo at `from` that this memo lacks,
    /// in one transaction, then renames `from` to `<from>.migrated` (a
    /// notice says so). A damaged file is set aside instead; one that
    /// another process holds is left for a later run.
    pub fn import_redb(&mut self, from: &Path) -> Result<(), MemoError> {
        match self.read_redb(from) {
            Ok(calls) => {
                let to = free_name(suffixed(from, ".migrated"));
                std::fs::rename(from, &to).map_err(|source| MemoError::Io {
                    action: "rename",
                    path: from.to_path_buf(),
                    source,
                })?;
                self.notices.push(MemoNotice::Imported { from: from.to_path_buf(), to, calls });
                Ok(())
            }
            Err(Unread::InUse) => Ok(()),
            Err(Unread::Damaged(detail)) => {
                let to = set_aside_as(from, "damaged")?;
                self.notices.push(MemoNotice::LegacyDamaged { from: from.to_path_buf(), to, detail });
                Ok(())
            }
            Err(Unread::Memo(e)) => Err(e),
        }
    }

    /// Copies the old memo's rows in; the number of rows read.
    fn read_redb(&self, from: &Path) -> Result<u64, Unread> {
        let Some(write) = &self.write else {
            return Err(Unread::Memo(MemoError::ReadOnly { path: self.path.clone() }));
        };
        // redb asserts on some damage (a file cut short) rather than
        // returning an error: a panic in here is a damaged file. The hook is
        // silenced meanwhile so no panic message reaches the user; this runs
        // once, as the memo is opened, before a run starts its threads.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let result = catch_unwind(AssertUnwindSafe(|| {
            let db = match redb::Database::builder().set_cache_size(CACHE_BYTES).open(from) {
                Ok(db) => db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(Unread::InUse),
                Err(e) => return Err(Unread::Damaged(e.to_string())),
            };
            let damaged = |e: &dyn std::fmt::Display| Unread::Damaged(e.to_string());
            let tx = db.begin_read().map_err(|e| damaged(&e))?;
            let table = match tx.open_table(CALLS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
                Err(e) => return Err(damaged(&e)),
            };
            let mut conn = lock(write);
            let into = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| Unread::Memo(self.err(e)))?;
            let mut n = 0;
            {
                let mut st = into
                    .prepare_cached("INSERT OR IGNORE INTO calls (key, value) VALUES (?1, ?2)")
                    .map_err(|e| Unread::Memo(self.err(e)))?;
                for row in table.iter().map_err(|e| damaged(&e))? {
                    let (key, value) = row.map_err(|e| damaged(&e))?;
                    st.execute(rusqlite::params![&key.value()[..], value.value()])
                        .map_err(|e| Unread::Memo(self.err(e)))?;
                    n += 1;
                }
            }
            into.commit().map_err(|e| Unread::Memo(self.err(e)))?;
            Ok(n)
        }));
        std::panic::set_hook(hook);
        result.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unreadable");
            Err(Unread::Damaged(what.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContentHash, Store};

    /// A memo as flow wrote it before SQLite: `n` rows in redb.
    fn redb_memo(path: &Path, n: u32) {
        let db = redb::Database::create(path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(CALLS).unwrap();
            for i in 0..n {
                table.insert(&ContentHash::of(&i.to_le_bytes()).0, format!("answer {i}").as_bytes()).unwrap();
            }
        }
        tx.commit().unwrap();
    }

    #[test]
    fn an_older_memo_is_imported_once_and_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join(".flow"));
        store.create().unwrap();
        let old = store.root().join("memo.redb");
        redb_memo(&old, 500);
        // Until a run imports it, a read-only open says so.
        assert!(matches!(store.read_call_memo(), Err(MemoError::NotImported { .. })));

        let memo = store.call_memo().unwrap();
        let kept = store.root().join("memo.redb.migrated");
        assert_eq!(memo.notices(), [MemoNotice::Imported { from: old.clone(), to: kept.clone(), calls: 500 }]);
        assert!(!memo.notices()[0].is_warning());
        assert!(!old.exists() && kept.is_file());
        assert_eq!(memo.len().unwrap(), 500);
        assert_eq!(memo.get(&ContentHash::of(&7u32.to_le_bytes())).unwrap(), Some(b"answer 7".to_vec()));
        drop(memo);
        let again = store.call_memo().unwrap();
        assert!(again.notices().is_empty());
        assert_eq!(again.len().unwrap(), 500);
        assert!(store.read_call_memo().unwrap().is_some());
    }

    #[test]
    fn a_damaged_older_memo_is_set_aside_without_a_panic() {
        for cut in [4096, 0] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path().join(".flow"));
            store.create().unwrap();
            let old = store.root().join("memo.redb");
            redb_memo(&old, 3000);
            let len = if cut == 0 { std::fs::metadata(&old).unwrap().len() / 2 } else { cut };
            std::fs::OpenOptions::new().write(true).open(&old).unwrap().set_len(len).unwrap();
            let memo = store.call_memo().unwrap();
            let [MemoNotice::LegacyDamaged { to, .. }] = memo.notices() else {
                panic!("cut to {len}: {:?}", memo.notices());
            };
            assert!(memo.notices()[0].is_warning());
            assert!(to.is_file() && !old.exists());
            assert!(to.file_name().unwrap().to_string_lossy().starts_with("memo.redb.damaged-"));
            assert!(memo.is_empty().unwrap());
        }
    }
}
