//! Where a node's output goes: to its consumers' channels, to a new
//! content-addressed object (written on a blocking thread, so serializing
//! runs beside the node's own work), and its artifacts to the run folder.
//!
//! The object is completed only when the node says all output was sent; a
//! node that stops early leaves nothing behind but an unfinished temp file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;

use flow_cache::{ContentHash, NodeOutcome, Store, StoreError};

use super::tasks::panic_message;
use super::{RunEvent, EDGE_CAPACITY};
use crate::node::{NodeError, GATE_FAILED, META_JSON, WARNINGS_TXT};
use crate::record::{Batch, Record};

enum SinkMsg {
    Batch(Batch),
    /// All output was sent: store the object. Without it the object is
    /// discarded (the node was cancelled or failed).
    Done,
}

/// Sends a node's output to its consumers and its output object.
pub(super) struct Emitter {
    pub node: String,
    pub senders: Vec<mpsc::Sender<Batch>>,
    /// The output object; `None` where nothing new is stored (a replay).
    pub sink: Option<Sink>,
    pub count: u64,
    pub events: mpsc::UnboundedSender<RunEvent>,
}

impl Emitter {
    pub async fn emit(&mut self, records: Vec<Record>) -> Result<(), NodeError> {
        if records.is_empty() {
            return Ok(());
        }
        self.count += records.len() as u64;
        let batch: Batch = Arc::new(records);
        if let Some(sink) = &self.sink {
            sink.send(batch.clone()).await?;
            let _ = self.events.send(RunEvent::Records { node: self.node.clone(), records: batch.clone() });
        }
        for tx in &self.senders {
            tx.send(batch.clone()).await.map_err(|_| NodeError::Cancelled)?;
        }
        let _ = self.events.send(RunEvent::Progress { node: self.node.clone(), records: self.count });
        Ok(())
    }

    /// All output was sent: closes the consumers' channels, then completes
    /// the output object and returns its hash and record count.
    pub async fn close(self) -> Result<(ContentHash, u64), NodeError> {
        let Emitter { senders, sink, .. } = self;
        drop(senders);
        sink.expect("a node that runs writes its output").finish().await
    }

    /// The node stopped with `e`: closes everything. A node that failed
    /// keeps what it wrote so far as an object (with its count), for `flow
    /// show` to say why its records failed; no cache entry points at it. A
    /// cancelled node's is discarded. When the writer failed first (an I/O
    /// error, a panic), its error is the cause and `e` only the "output
    /// writer stopped" it led to.
    pub async fn stopped(self, e: NodeError) -> (NodeError, Option<(ContentHash, u64)>) {
        let Emitter { senders, sink, .. } = self;
        drop(senders);
        match (sink, &e) {
            (Some(sink), NodeError::Cancelled) => (sink.discard().await.err().unwrap_or(e), None),
            (Some(sink), _) => match sink.finish().await {
                Ok(written) => (e, Some(written)),
                // The writer's own failure is the cause.
                Err(w) if w.to_string() != "output writer stopped" => (w, None),
                Err(_) => (e, None),
            },
            (None, _) => (e, None),
        }
    }
}

pub(super) fn store_err(e: StoreError) -> NodeError {
    NodeError::new(e.to_string())
}

/// What the writer thread ends with: the object's hash and record count,
/// or `None` when its input closed without [`SinkMsg::Done`].
type Written = Result<Option<(ContentHash, u64)>, NodeError>;

/// A node's output object being written as JSONL, on a blocking thread so
/// serialization runs beside the node's own work.
pub(super) struct Sink {
    tx: mpsc::Sender<SinkMsg>,
    writer: tokio::task::JoinHandle<Written>,
}

impl Sink {
    /// Starts a new object.
    pub fn spawn(store: &Store) -> Result<Sink, NodeError> {
        let mut writer = store.object_writer().map_err(store_err)?;
        let (tx, mut rx) = mpsc::channel::<SinkMsg>(EDGE_CAPACITY);
        let writer = tokio::task::spawn_blocking(move || {
            let mut n = 0u64;
            let io = |e: std::io::Error| NodeError::new(format!("writing output: {e}"));
            while let Some(msg) = rx.blocking_recv() {
                match msg {
                    SinkMsg::Batch(batch) => {
                        for r in batch.iter() {
                            serde_json::to_writer(&mut writer, &**r)
                                .map_err(|e| NodeError::new(format!("writing output: {e}")))?;
                            writer.write_all(b"\n").map_err(io)?;
                            n += 1;
                        }
                    }
                    SinkMsg::Done => {
                        let hash = writer.finish().map_err(store_err)?;
                        return Ok(Some((hash, n)));
                    }
                }
            }
            Ok(None)
        });
        Ok(Sink { tx, writer })
    }

    async fn send(&self, batch: Batch) -> Result<(), NodeError> {
        self.tx.send(SinkMsg::Batch(batch)).await.map_err(|_| NodeError::new("output writer stopped"))
    }

    /// Completes the object: its hash and record count.
    async fn finish(self) -> Result<(ContentHash, u64), NodeError> {
        // A failed send means the writer already stopped: its end says why.
        let _ = self.tx.send(SinkMsg::Done).await;
        drop(self.tx);
        Self::end(self.writer).await?.ok_or_else(|| NodeError::new("output writer stopped"))
    }

    /// Discards the object; `Err` when the writer had failed on its own.
    async fn discard(self) -> Result<(), NodeError> {
        drop(self.tx);
        Self::end(self.writer).await.map(drop)
    }

    /// Waits for the writer: a panic in it fails the node like an error.
    async fn end(writer: tokio::task::JoinHandle<Written>) -> Written {
        match writer.await {
            Ok(written) => written,
            Err(e) => match e.try_into_panic() {
                Ok(payload) => {
                    Err(NodeError::new(format!("output writer panicked: {}", panic_message(payload.as_ref()))))
                }
                Err(e) => Err(NodeError::new(format!("output writer stopped: {e}"))),
            },
        }
    }
}

/// Copies a node's artifacts into the run folder, so every run folder is
/// complete whether its nodes ran or came from the cache.
pub(super) fn copy_artifacts(
    store: &Store,
    run_dir: &Path,
    node: &str,
    artifacts: &BTreeMap<String, ContentHash>,
) -> Result<(), StoreError> {
    for (name, hash) in artifacts {
        let bytes = store.read_object(hash)?;
        let p = run_dir.join(node).join(name);
        flow_cache::write_atomic(&p, &bytes).map_err(|source| StoreError::Io { action: "write", path: p, source })?;
    }
    Ok(())
}

/// Adds what a finished node's artifacts say to its record: a tripped gate
/// ([`GATE_FAILED`]), its `meta` ([`META_JSON`]) and its warnings
/// ([`WARNINGS_TXT`]).
pub(super) fn with_reports(store: &Store, mut r: NodeOutcome) -> NodeOutcome {
    if let Some(h) = r.artifacts.get(WARNINGS_TXT) {
        let text = store.read_object(h).map(|b| String::from_utf8_lossy(&b).into_owned());
        r.warnings = match text {
            Ok(t) => t.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect(),
            Err(e) => vec![format!("its warnings are unreadable: {e}")],
        };
    }
    if let Some(h) = r.artifacts.get(GATE_FAILED) {
        let text = store.read_object(h).map(|b| String::from_utf8_lossy(&b).trim().to_string());
        r.gate_failed = Some(text.unwrap_or_else(|e| format!("a gate tripped (its report is unreadable: {e})")));
    }
    if let Some(h) = r.artifacts.get(META_JSON) {
        r.meta = store.read_object(h).ok().and_then(|b| serde_json::from_slice(&b).ok());
    }
    r
}
