//! Writing answers into the call memo as calls complete, in group commits.
//!
//! Every commit of the memo waits for the disk (fsync). One commit per call
//! would cap a fast backend at a few hundred calls a second, so a writer
//! thread takes every answer that arrived while the previous commit was on
//! its way, and those arriving within a few milliseconds after, and commits
//! them together: under light load each call is committed alone within
//! milliseconds, under heavy load commits grow. Answers
//! waiting for their commit are served from memory, so a repeated request
//! in the same run is not sent twice.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the writer waits for more answers before a commit.
const GATHER: Duration = Duration::from_millis(5);
/// The most answers in one commit.
const MAX_BATCH: usize = 1024;

use flow_engine::cache::{CallMemo, ContentHash};

/// Set once everything sent before it is committed.
type Flush = Arc<(Mutex<bool>, Condvar)>;

enum Msg {
    Put(ContentHash, Arc<Vec<u8>>),
    /// Reply once everything sent before is committed.
    Flush(Flush),
}

/// The call memo, with its group-commit writer.
pub struct MemoWriter {
    memo: Arc<CallMemo>,
    pending: Arc<Mutex<HashMap<ContentHash, Arc<Vec<u8>>>>>,
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl MemoWriter {
    pub fn start(memo: CallMemo) -> Self {
        let memo = Arc::new(memo);
        let pending: Arc<Mutex<HashMap<ContentHash, Arc<Vec<u8>>>>> = Arc::default();
        let (tx, rx) = mpsc::channel::<Msg>();
        let (m, p) = (memo.clone(), pending.clone());
        let thread = std::thread::Builder::new()
            .name("flow-memo".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = Vec::new();
                    let mut flushes = Vec::new();
                    fn take(msg: Msg, batch: &mut Vec<(ContentHash, Arc<Vec<u8>>)>, flushes: &mut Vec<Flush>) {
                        match msg {
                            Msg::Put(k, v) => batch.push((k, v)),
                            Msg::Flush(f) => flushes.push(f),
                        }
                    }
                    take(first, &mut batch, &mut flushes);
                    // Gather what arrives in the next few milliseconds too:
                    // a commit costs about the same for one call or hundreds.
                    let deadline = Instant::now() + GATHER;
                    while batch.len() < MAX_BATCH && flushes.is_empty() {
                        let left = deadline.saturating_duration_since(Instant::now());
                        match rx.recv_timeout(left) {
                            Ok(more) => take(more, &mut batch, &mut flushes),
                            Err(_) => break,
                        }
                    }
                    if !batch.is_empty() {
                        let rows: Vec<(ContentHash, Vec<u8>)> =
                            batch.iter().map(|(k, v)| (*k, v.as_ref().clone())).collect();
                        if let Err(e) = m.put_many(&rows) {
                            // The run goes on; these calls will be made again next time.
                            tracing::warn!("could not record {} calls in the call memo: {e}", rows.len());
                        }
                        let mut pending = p.lock().expect("memo pending lock");
                        for (k, _) in &batch {
                            pending.remove(k);
                        }
                    }
                    for f in flushes {
                        let (done, cv) = &*f;
                        *done.lock().expect("flush lock") = true;
                        cv.notify_all();
                    }
                }
            })
            .expect("spawn the memo writer");
        Self { memo, pending, tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)) }
    }

    /// A memoized answer: committed, or waiting for its commit.
    pub fn get(&self, key: &ContentHash) -> Option<Vec<u8>> {
        if let Some(v) = self.pending.lock().expect("memo pending lock").get(key) {
            return Some(v.as_ref().clone());
        }
        match self.memo.get(key) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("call memo read failed: {e}");
                None
            }
        }
    }

    /// Records an answer; it is committed by the writer thread shortly.
    pub fn put(&self, key: ContentHash, value: Vec<u8>) {
        let value = Arc::new(value);
        self.pending.lock().expect("memo pending lock").insert(key, value.clone());
        if let Some(tx) = self.tx.lock().expect("memo sender lock").as_ref() {
            let _ = tx.send(Msg::Put(key, value));
        }
    }

    /// Blocks until every answer recorded so far is committed.
    pub fn flush(&self) {
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let sent = match self.tx.lock().expect("memo sender lock").as_ref() {
            Some(tx) => tx.send(Msg::Flush(done.clone())).is_ok(),
            None => false,
        };
        if sent {
            let (lock, cv) = &*done;
            let mut finished = lock.lock().expect("flush lock");
            while !*finished {
                finished = cv.wait(finished).expect("flush wait");
            }
        }
    }
}

impl Drop for MemoWriter {
    fn drop(&mut self) {
        self.tx.lock().expect("memo sender lock").take();
        if let Some(t) = self.thread.lock().expect("memo thread lock").take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_visible_at_once_and_on_disk_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo.redb");
        let w = MemoWriter::start(CallMemo::open(&path).unwrap());
        let keys: Vec<ContentHash> = (0..500u32).map(|i| ContentHash::of(&i.to_le_bytes())).collect();
        for (i, k) in keys.iter().enumerate() {
            w.put(*k, format!("{i}").into_bytes());
            assert_eq!(w.get(k), Some(format!("{i}").into_bytes()));
        }
        w.flush();
        assert!(w.pending.lock().unwrap().is_empty());
        drop(w);
        let memo = CallMemo::open(&path).unwrap();
        assert_eq!(memo.len().unwrap(), 500);
        assert_eq!(memo.get(&keys[499]).unwrap(), Some(b"499".to_vec()));
    }
}
