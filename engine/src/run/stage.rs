//! Driving a built stage by its shape. A source is pulled batch by batch,
//! a map is called per record in order, a stream stage turns the input
//! stream into an output stream at its own pace, and a barrier gets every
//! input record at once, collected into a [`Spool`] per input (spilled to
//! disk past the node's memory bound). Each pushes its output through the
//! [`Emitter`], whose bounded channels give backpressure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::join_all;
use futures::StreamExt;
use tokio::sync::mpsc;

use flow_cache::NodeManifest;

use super::cached::replay;
use super::job::NodeJob;
use super::sink::{store_err, Emitter};
use crate::assess::key_fields;
use crate::node::{Artifact, BarrierStage, MapStage, NodeError, SourceStage, Stage, StreamStage};
use crate::record::{Batch, BATCH_SIZE};
use crate::spill::{Collector, Spool};

/// What driving a stage came to.
pub(super) enum Driven {
    /// The stage ran; its output went out, its artifacts are to be stored.
    Ran { records_in: u64, artifacts: Vec<Artifact> },
    /// A barrier's key turned out cached once its input was in: the cached
    /// output `manifest` went out instead.
    Reused { records_in: u64, manifest: Box<NodeManifest> },
}

impl NodeJob {
    /// Drives `stage` to its end, sending its output to `out`.
    pub(super) async fn drive(&mut self, stage: Stage, out: &mut Emitter) -> Result<Driven, NodeError> {
        match stage {
            Stage::Source(src) => {
                let node = &self.plan.nodes[self.index];
                let (limit, shard) = (node.limit, node.shard);
                source(src, out, limit, shard).await.map(|artifacts| Driven::Ran { records_in: 0, artifacts })
            }
            Stage::Map(map) => {
                let input = self.inputs.pop().expect("a map stage has one input");
                map_each(map, input, out).await
            }
            Stage::Stream(stage) => {
                let input = self.inputs.pop().expect("a stream stage has one input");
                stream(stage, input, out).await
            }
            Stage::Barrier(barrier) => self.barrier(barrier, out).await,
        }
    }

    async fn barrier(&mut self, barrier: Box<dyn BarrierStage>, out: &mut Emitter) -> Result<Driven, NodeError> {
        // The node's bound is shared evenly by its inputs, so two inputs
        // of a million records each stay within it together.
        let share = self.barrier_memory / self.inputs.len().max(1) as u64;
        let store = &self.store;
        let collected = join_all(self.inputs.drain(..).map(|mut rx| async move {
            let mut spool = Collector::new(store.clone(), share);
            let mut failed = None;
            while let Some(batch) = rx.recv().await {
                // After a failed write, the input is still drained: its
                // producer must not wait on us.
                if failed.is_none() {
                    failed = spool.push(&batch).err();
                }
            }
            match failed {
                Some(e) => Err(e),
                None => spool.finish(),
            }
        }))
        .await;
        let collected: Vec<Spool> = collected
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| NodeError::new(format!("collecting the input: {e}")))?;
        let records_in = collected.iter().map(|v| v.len() as u64).sum();
        let spilled: usize = collected.iter().map(Spool::spilled).sum();
        if spilled > 0 {
            let bytes: u64 = collected.iter().map(Spool::spilled_bytes).sum();
            tracing::debug!(node = %self.plan.nodes[self.index].name, records = spilled, bytes, "barrier input spilled to disk");
        }
        let upstream = self.upstream_outputs().await?;
        // All input is in: the key is known now, so a barrier whose input
        // turned out unchanged is reused instead of redone.
        if self.fields.is_none() && !self.forced {
            let fields = key_fields(&self.plan, self.index, &upstream);
            if let Some(m) = self.store.node_manifest(&fields.key()).map_err(store_err)? {
                if self.store.is_complete(&m) && m.retryable_errors == 0 {
                    out.sink = None; // drop: nothing new to store
                    replay(&self.store, &m.output, out).await?;
                    return Ok(Driven::Reused { records_in, manifest: Box::new(m) });
                }
            }
            self.fields = Some(fields);
        }
        let (output, artifacts) = barrier.run_spooled(collected).await?;
        for chunk in output.chunks(BATCH_SIZE) {
            out.emit(chunk.to_vec()).await?;
        }
        Ok(Driven::Ran { records_in, artifacts })
    }
}

/// `limit`: the source stops after its first `limit` records (`--limit`);
/// `shard`: of those, it emits the shard's (`--shard`).
async fn source(
    mut src: Box<dyn SourceStage>,
    out: &mut Emitter,
    limit: Option<u64>,
    shard: Option<crate::shard::Shard>,
) -> Result<Vec<Artifact>, NodeError> {
    let mut left = limit.unwrap_or(u64::MAX);
    while left > 0 {
        let Some(mut batch) = src.next_batch().await? else { break };
        batch.truncate(usize::try_from(left).unwrap_or(usize::MAX));
        left -= batch.len() as u64;
        if let Some(s) = shard {
            batch.retain(|r| s.holds(r));
            if batch.is_empty() {
                continue;
            }
        }
        out.emit(batch).await?;
    }
    src.finish()
}

async fn map_each(
    map: Box<dyn MapStage>,
    mut input: mpsc::Receiver<Batch>,
    out: &mut Emitter,
) -> Result<Driven, NodeError> {
    let mut records_in = 0u64;
    while let Some(batch) = input.recv().await {
        records_in += batch.len() as u64;
        let mut produced = Vec::with_capacity(batch.len());
        for r in batch.iter() {
            map.map(r, &mut produced)?;
        }
        out.emit(produced).await?;
    }
    Ok(Driven::Ran { records_in, artifacts: map.finish()? })
}

async fn stream(
    stage: Arc<dyn StreamStage>,
    input: mpsc::Receiver<Batch>,
    out: &mut Emitter,
) -> Result<Driven, NodeError> {
    let counted = Arc::new(AtomicU64::new(0));
    let seen = counted.clone();
    let records = futures::stream::unfold(input, |mut rx| async move { rx.recv().await.map(|batch| (batch, rx)) })
        .flat_map(move |batch: Batch| {
            seen.fetch_add(batch.len() as u64, Ordering::Relaxed);
            futures::stream::iter((0..batch.len()).map(move |i| batch[i].clone()))
        });
    let mut output = stage.clone().run(Box::pin(records));
    while let Some(batch) = output.next().await {
        out.emit(batch?).await?;
    }
    drop(output);
    let records_in = counted.load(Ordering::Relaxed);
    Ok(Driven::Ran { records_in, artifacts: stage.finish()? })
}
