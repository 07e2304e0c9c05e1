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

use flow_cache::{ContentHash, NodeRecord, Store, StoreError};

use super::{RunEvent, EDGE_CAPACITY};
use crate::node::{NodeError, GATE_FAILED, META_JSON};
use crate::record::{Batch, Record};

pub(super) enum SinkMsg {
    Batch(Batch),
    /// All output was sent: store the object. Without it the object is
    /// discarded (the node was cancelled or failed).
    Done,
}

/// Sends a node's output to its consumers and its output object.
pub(super) struct Emitter {
    pub node: String,
    pub senders: Vec<mpsc::Sender<Batch>>,
    pub sink: Option<mpsc::Sender<SinkMsg>>,
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
            sink.send(SinkMsg::Batch(batch.clone())).await.map_err(|_| NodeError::new("output writer stopped"))?;
        }
        for tx in &self.senders {
            tx.send(batch.clone()).await.map_err(|_| NodeError::Cancelled)?;
        }
        let _ = self.events.send(RunEvent::Progress { node: self.node.clone(), records: self.count });
        Ok(())
    }
}

pub(super) fn store_err(e: StoreError) -> NodeError {
    NodeError::new(e.to_string())
}

pub(super) type SinkHandle = tokio::task::JoinHandle<Result<(ContentHash, u64), NodeError>>;

/// Writes a node's output as JSONL into a new object, on a blocking thread
/// so serialization runs beside the node's own work.
pub(super) fn spawn_sink(store: &Store) -> Result<(mpsc::Sender<SinkMsg>, SinkHandle), NodeError> {
    let mut writer = store.object_writer().map_err(store_err)?;
    let (tx, mut rx) = mpsc::channel::<SinkMsg>(EDGE_CAPACITY);
    let handle = tokio::task::spawn_blocking(move || {
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
                    return Ok((hash, n));
                }
            }
        }
        Err(NodeError::new("cancelled"))
    });
    Ok((tx, handle))
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
/// ([`GATE_FAILED`]) and its `meta` ([`META_JSON`]).
pub(super) fn with_reports(store: &Store, mut r: NodeRecord) -> NodeRecord {
    if let Some(h) = r.artifacts.get(GATE_FAILED) {
        let text = store.read_object(h).map(|b| String::from_utf8_lossy(&b).trim().to_string());
        r.gate_failed = Some(text.unwrap_or_else(|e| format!("a gate tripped (its report is unreadable: {e})")));
    }
    if let Some(h) = r.artifacts.get(META_JSON) {
        r.meta = store.read_object(h).ok().and_then(|b| serde_json::from_slice(&b).ok());
    }
    r
}
