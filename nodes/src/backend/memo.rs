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
//!
//! A commit that fails (a full disk, a damaged file) is not retried and
//! stops the memo for the run: what it held and every answer after it are
//! lost, counted, and [`MemoWriter::failure`] says why, which the backends
//! turn into no more calls sent (paying for answers that cannot be kept
//! would only pay for them again next run) and a failed run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the writer waits for more answers before a commit.
const GATHER: Duration = Duration::from_millis(5);
/// The most answers in one commit.
const MAX_BATCH: usize = 1024;

use flow_engine::cache::{CallMemo, ContentHash, MemoError};

/// Why the call memo records no more answers in this run: its first failed
/// commit.
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not record answers: {cause}; no more calls are sent{}; hint: {}", lost_note(*.lost), .cause.hint())]
pub struct MemoFailed {
    pub cause: Arc<MemoError>,
    /// Answers received but not recorded (paid for again next run), once
    /// the run is over and the count final ([`MemoWriter::flush`]).
    pub lost: Option<u64>,
}

fn lost_note(lost: Option<u64>) -> String {
    match lost {
        None => String::new(),
        Some(1) => " (1 answer received was not recorded)".into(),
        Some(n) => format!(" ({n} answers received were not recorded)"),
    }
}

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
    /// Set by the writer at the first failed commit.
    failed: Arc<OnceLock<Arc<MemoError>>>,
    /// Answers not recorded since then.
    lost: Arc<AtomicU64>,
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl MemoWriter {
    pub fn start(memo: CallMemo) -> Self {
        let memo = Arc::new(memo);
        let pending: Arc<Mutex<HashMap<ContentHash, Arc<Vec<u8>>>>> = Arc::default();
        let (tx, rx) = mpsc::channel::<Msg>();
        let failed: Arc<OnceLock<Arc<MemoError>>> = Arc::default();
        let lost: Arc<AtomicU64> = Arc::default();
        let (m, p, f, l) = (memo.clone(), pending.clone(), failed.clone(), lost.clone());
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
                        if f.get().is_some() {
                            l.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        } else {
                            let rows: Vec<(ContentHash, Vec<u8>)> =
                                batch.iter().map(|(k, v)| (*k, v.as_ref().clone())).collect();
                            if let Err(e) = m.put_many(&rows) {
                                tracing::debug!("could not record {} calls in the call memo: {e}", rows.len());
                                l.fetch_add(rows.len() as u64, Ordering::Relaxed);
                                let _ = f.set(Arc::new(e));
                            }
                        }
                        let mut pending = lock(&p);
                        for (k, _) in &batch {
                            pending.remove(k);
                        }
                    }
                    for f in flushes {
                        let (done, cv) = &*f;
                        *lock(done) = true;
                        cv.notify_all();
                    }
                }
            })
            .expect("spawn the memo writer");
        Self { memo, pending, failed, lost, tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)) }
    }

    /// Why answers are no longer recorded, once a commit failed.
    pub fn failure(&self) -> Option<MemoFailed> {
        Some(MemoFailed { cause: self.failed.get()?.clone(), lost: None })
    }

    /// A memoized answer: committed, or waiting for its commit.
    pub fn get(&self, key: &ContentHash) -> Option<Vec<u8>> {
        if let Some(v) = lock(&self.pending).get(key) {
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
        lock(&self.pending).insert(key, value.clone());
        if let Some(tx) = lock(&self.tx).as_ref() {
            let _ = tx.send(Msg::Put(key, value));
        }
    }

    /// Blocks until every answer recorded so far is committed, or says why
    /// some could not be.
    pub fn flush(&self) -> Result<(), MemoFailed> {
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let sent = match lock(&self.tx).as_ref() {
            Some(tx) => tx.send(Msg::Flush(done.clone())).is_ok(),
            None => false,
        };
        if sent {
            let (flag, cv) = &*done;
            let mut finished = lock(flag);
            while !*finished {
                finished = cv.wait(finished).unwrap_or_else(|e| e.into_inner());
            }
        }
        match self.failure() {
            Some(failed) => Err(MemoFailed { lost: Some(self.lost.load(Ordering::Relaxed)), ..failed }),
            None => Ok(()),
        }
    }
}

impl Drop for MemoWriter {
    fn drop(&mut self) {
        lock(&self.tx).take();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

/// The writer's locks guard plain data that a panic cannot leave half
/// changed, so a poisoned one is still good.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_visible_at_once_and_on_disk_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo.sqlite");
        let w = MemoWriter::start(CallMemo::open(&path).unwrap());
        let keys: Vec<ContentHash> = (0..500u32).map(|i| ContentHash::of(&i.to_le_bytes())).collect();
        for (i, k) in keys.iter().enumerate() {
            w.put(*k, format!("{i}").into_bytes());
            assert_eq!(w.get(k), Some(format!("{i}").into_bytes()));
        }
        w.flush().unwrap();
        assert!(w.failure().is_none());
        assert!(w.pending.lock().unwrap().is_empty());
        drop(w);
        let memo = CallMemo::open(&path).unwrap();
        assert_eq!(memo.len().unwrap(), 500);
        assert_eq!(memo.get(&keys[499]).unwrap(), Some(b"499".to_vec()));
    }

    /// A memo that cannot commit (here: open read-only) stops recording at
    /// the first batch: the failure and every answer lost are reported.
    #[test]
    fn a_failed_commit_is_reported_and_counts_what_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo.sqlite");
        drop(CallMemo::open(&path).unwrap());
        let w = MemoWriter::start(CallMemo::open_read_only(&path).unwrap());
        assert!(w.failure().is_none());
        for i in 0..3u32 {
            w.put(ContentHash::of(&i.to_le_bytes()), b"answer".to_vec());
        }
        let failed = w.flush().unwrap_err();
        assert_eq!(failed.lost, Some(3));
        assert!(matches!(*failed.cause, MemoError::ReadOnly { .. }), "{failed}");
        w.put(ContentHash::of(b"later"), b"answer".to_vec());
        let text = w.flush().unwrap_err().to_string();
        assert!(text.starts_with("could not record answers: call memo "), "{text}");
        assert!(
            text.ends_with(
                "no more calls are sent (4 answers received were not recorded); hint: free space and run again (answers recorded before are kept)"
            ),
            "{text}"
        );
        assert!(w.failure().unwrap().to_string().contains("no more calls are sent; hint: "));
    }
}
