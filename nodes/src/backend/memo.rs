//! Writing answers into the call memo as calls complete, in group commits.
//!
//! Every commit of the memo waits for the disk (fsync). One commit per call
//! would cap a fast backend at a few hundred calls a second, so a writer
//! thread takes every answer that arrived while the previous commit was on
//! its way, and those arriving within a few milliseconds after, and commits
//! them together: under light load each call is committed alone within
//! milliseconds, under heavy load commits grow. Answers are queued without
//! waking the writer unless it is idle: a wake-up per answer (a futex call
//! and two context switches) cost more than the insert itself. Answers
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
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

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

/// What callers hand the writer thread.
#[derive(Default)]
struct Queue {
    msgs: Vec<Msg>,
    /// The writer waits for a message (and must be woken for one).
    idle: bool,
    /// No more messages: the writer ends once it took the last.
    closed: bool,
}

type Inbox = Arc<(Mutex<Queue>, Condvar)>;

/// The call memo, with its group-commit writer.
pub struct MemoWriter {
    memo: Arc<CallMemo>,
    pending: Arc<Mutex<HashMap<ContentHash, Arc<Vec<u8>>>>>,
    /// Set by the writer at the first failed commit.
    failed: Arc<OnceLock<Arc<MemoError>>>,
    /// Answers not recorded since then.
    lost: Arc<AtomicU64>,
    inbox: Inbox,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl MemoWriter {
    pub fn start(memo: CallMemo) -> Self {
        let memo = Arc::new(memo);
        let pending: Arc<Mutex<HashMap<ContentHash, Arc<Vec<u8>>>>> = Arc::default();
        let inbox: Inbox = Arc::default();
        let failed: Arc<OnceLock<Arc<MemoError>>> = Arc::default();
        let lost: Arc<AtomicU64> = Arc::default();
        let (m, p, f, l, i) = (memo.clone(), pending.clone(), failed.clone(), lost.clone(), inbox.clone());
        let thread = std::thread::Builder::new()
            .name("flow-memo".into())
            .spawn(move || {
                let (queue, wake) = &*i;
                loop {
                    let mut q = lock(queue);
                    while q.msgs.is_empty() && !q.closed {
                        q.idle = true;
                        q = wake.wait(q).unwrap_or_else(|e| e.into_inner());
                    }
                    q.idle = false;
                    if q.msgs.is_empty() {
                        break;
                    }
                    // Gather what arrives in the next few milliseconds too:
                    // a commit costs about the same for one call or hundreds.
                    // A flush waiting is answered at once.
                    if !q.msgs.iter().any(|m| matches!(m, Msg::Flush(_))) {
                        drop(q);
                        std::thread::sleep(GATHER);
                        q = lock(queue);
                    }
                    let msgs = std::mem::take(&mut q.msgs);
                    drop(q);
                    let mut batch = Vec::new();
                    let mut flushes = Vec::new();
                    for msg in msgs {
                        match msg {
                            Msg::Put(k, v) => batch.push((k, v)),
                            Msg::Flush(f) => flushes.push(f),
                        }
                    }
                    for part in batch.chunks(MAX_BATCH) {
                        if f.get().is_some() {
                            l.fetch_add(part.len() as u64, Ordering::Relaxed);
                        } else {
                            let rows: Vec<(ContentHash, Vec<u8>)> =
                                part.iter().map(|(k, v)| (*k, v.as_ref().clone())).collect();
                            if let Err(e) = m.put_many(&rows) {
                                tracing::debug!("could not record {} calls in the call memo: {e}", rows.len());
                                l.fetch_add(rows.len() as u64, Ordering::Relaxed);
                                let _ = f.set(Arc::new(e));
                            }
                        }
                        let mut pending = lock(&p);
                        for (k, _) in part {
                            pending.remove(k);
                        }
                    }
                    // Everything sent before each flush is committed now.
                    for f in flushes {
                        let (done, cv) = &*f;
                        *lock(done) = true;
                        cv.notify_all();
                    }
                }
            })
            .expect("spawn the memo writer");
        Self { memo, pending, failed, lost, inbox, thread: Mutex::new(Some(thread)) }
    }

    /// Hands `msg` to the writer, waking it only if it waits for one.
    fn send(&self, msg: Msg) -> bool {
        let (queue, wake) = &*self.inbox;
        let mut q = lock(queue);
        if q.closed {
            return false;
        }
        q.msgs.push(msg);
        if std::mem::take(&mut q.idle) {
            wake.notify_one();
        }
        true
    }

    /// The memo itself, for what is not an answer (the batches table).
    pub(crate) fn memo(&self) -> &CallMemo {
        &self.memo
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
        self.send(Msg::Put(key, value));
    }

    /// Blocks until every answer recorded so far is committed, or says why
    /// some could not be.
    pub fn flush(&self) -> Result<(), MemoFailed> {
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let sent = self.send(Msg::Flush(done.clone()));
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
        {
            let (queue, wake) = &*self.inbox;
            lock(queue).closed = true;
            wake.notify_one();
        }
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
