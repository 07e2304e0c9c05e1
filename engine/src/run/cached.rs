//! Nodes whose output comes from the cache. Their artifacts are copied
//! into the run folder either way; their output object is streamed
//! downstream only when a node that runs reads it, so a cached leaf costs
//! no read at all.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use flow_cache::{ContentHash, NodeManifest, NodeOutcome, NodeStatus, Store};

use super::sink::{copy_artifacts, with_reports, Emitter};
use super::RunEvent;
use crate::node::NodeError;
use crate::record::BATCH_SIZE;

/// The record of a node reused from its cache entry `m`.
pub(super) fn cached_record(name: String, kind: &str, m: &NodeManifest) -> NodeOutcome {
    NodeOutcome {
        records_out: m.records,
        output: Some(m.output),
        artifacts: m.artifacts.clone(),
        ..NodeOutcome::new(name, kind.to_string(), NodeStatus::Cached, Some(m.key))
    }
}

/// Files a cached node's artifacts in the run folder; a failure to do so
/// fails the node (its run folder would be incomplete).
pub(super) fn finish_cached(store: &Store, run_dir: &Path, mut r: NodeOutcome, m: &NodeManifest) -> NodeOutcome {
    if let Err(e) = copy_artifacts(store, run_dir, &r.name, &m.artifacts) {
        r.status = NodeStatus::Failed;
        r.error = Some(e.to_string());
    }
    r
}

/// A cached node that nothing downstream reads: not even opened.
pub(super) fn unread(store: &Store, run_dir: &Path, base: NodeOutcome, m: &NodeManifest) -> NodeOutcome {
    with_reports(store, finish_cached(store, run_dir, base, m))
}

/// A cached node that nodes which run read: its stored output is replayed
/// to them. `Err` holds the record of a node that failed or was cancelled.
pub(super) async fn replayed(
    store: Store,
    run_dir: std::path::PathBuf,
    base: NodeOutcome,
    m: NodeManifest,
    mut out: Emitter,
) -> Result<NodeOutcome, NodeOutcome> {
    let started = Instant::now();
    let events = out.events.clone();
    let replayed = replay(&store, &m.output, &mut out).await;
    let mut r = with_reports(&store, finish_cached(&store, &run_dir, base, &m));
    r.wall_ms = started.elapsed().as_millis() as u64;
    let result = match replayed {
        Ok(()) => Ok(r),
        Err(NodeError::Cancelled) => Err(NodeOutcome { status: NodeStatus::Cancelled, ..r }),
        Err(e) => Err(NodeOutcome { status: NodeStatus::Failed, error: Some(e.to_string()), ..r }),
    };
    let _ = events.send(RunEvent::NodeFinished(Box::new(result.clone().unwrap_or_else(|r| r))));
    result
}

/// Streams a stored output object downstream.
pub(super) async fn replay(store: &Store, output: &ContentHash, out: &mut Emitter) -> Result<(), NodeError> {
    let file = store.open_object(output).map_err(|e| NodeError::new(e.to_string()))?;
    let mut lines = BufReader::with_capacity(256 * 1024, file).lines();
    loop {
        let mut batch = Vec::with_capacity(BATCH_SIZE);
        for line in lines.by_ref().take(BATCH_SIZE) {
            let line = line.map_err(|e| NodeError::new(format!("reading cached output: {e}")))?;
            let rec: crate::record::Fields = serde_json::from_str(&line)
                .map_err(|e| NodeError::new(format!("corrupt cached output {output}: {e}")))?;
            batch.push(Arc::new(rec));
        }
        if batch.is_empty() {
            return Ok(());
        }
        out.emit(batch).await?;
    }
}
