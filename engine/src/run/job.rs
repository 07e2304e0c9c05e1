//! One node that runs: its inputs gathered, its stage built and driven,
//! and its output completed. The order of that last step is the cache's
//! safety: every upstream must have finished, then the output object is
//! completed, then the artifacts stored, and only then the node manifest
//! written, so a manifest always points at whole, final output.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use flow_cache::{ContentHash, NodeManifest, NodeOutcome, NodeStatus, Store};

use super::cached::cached_record;
use super::sink::{copy_artifacts, store_err, with_reports, Emitter, Sink};
use super::stage::Driven;
use super::{RunEvent, SIDE_WAIT_BUFFER};
use crate::assess::key_fields;
use crate::compile::Plan;
use crate::key::KeyFields;
use crate::meter::Meter;
use crate::node::{BuildCx, NodeError, RunContext};
use crate::record::{Batch, Record};

/// Everything one running node needs.
pub(super) struct NodeJob {
    pub index: usize,
    pub plan: Arc<Plan>,
    pub store: Store,
    pub run_dir: PathBuf,
    /// Key fields when known before running (all inputs cached).
    pub fields: Option<KeyFields>,
    pub forced: bool,
    pub memo_reads: bool,
    pub context: Option<RunContext>,
    pub inputs: Vec<mpsc::Receiver<Batch>>,
    pub upstream_done: Vec<watch::Receiver<Option<ContentHash>>>,
    pub done: watch::Sender<Option<ContentHash>>,
    pub outputs: Vec<mpsc::Sender<Batch>>,
    pub events: mpsc::UnboundedSender<RunEvent>,
    pub meter: Arc<Meter>,
    /// The records it is expected to output, when known (for progress).
    pub total: Option<u64>,
    /// The bytes a barrier's inputs may hold in memory before they spill.
    pub barrier_memory: u64,
}

impl NodeJob {
    /// Runs the node to its record: `Err` holds the record of a node that
    /// failed or was cancelled.
    pub async fn run(self) -> Result<NodeOutcome, NodeOutcome> {
        let node = &self.plan.nodes[self.index];
        let (name, kind) = (node.name.clone(), node.kind);
        let _ = self.events.send(RunEvent::NodeStarted {
            node: name.clone(),
            kind,
            cached: false,
            total: self.total,
            meter: Some(self.meter.clone()),
        });
        let started = Instant::now();
        let mut record =
            NodeOutcome::new(name.clone(), kind.to_string(), NodeStatus::Ran, self.fields.as_ref().map(KeyFields::key));
        let events = self.events.clone();
        let store = self.store.clone();
        let meter = self.meter.clone();
        let result = self.execute(&mut record, meter.clone()).await;
        record.wall_ms = started.elapsed().as_millis() as u64;
        // Calls count whether the node finished or not: they were made.
        record.calls = meter.snapshot();
        let result = match result {
            Ok(()) => Ok(with_reports(&store, record)),
            Err(NodeError::Cancelled) => {
                record.status = NodeStatus::Cancelled;
                Err(record)
            }
            Err(e) => {
                record.status = NodeStatus::Failed;
                record.error = Some(e.to_string());
                Err(record)
            }
        };
        let _ = events.send(RunEvent::NodeFinished(Box::new(result.clone().unwrap_or_else(|r| r))));
        result
    }

    async fn execute(mut self, record: &mut NodeOutcome, meter: Arc<Meter>) -> Result<(), NodeError> {
        let plan = self.plan.clone();
        let node = &plan.nodes[self.index];
        let side_inputs = self.read_side_inputs().await;
        let main = node.main_inputs();
        let cx = BuildCx {
            node: node.name.clone(),
            spec_dir: node.file.dir.clone(),
            files: node.compiled.files.clone(),
            meter: meter.clone(),
            memo_reads: self.memo_reads,
            context: self.context.clone(),
            inputs: main.len(),
            input_names: main.iter().map(|&u| plan.nodes[u].name.clone()).collect(),
            side_inputs,
        };
        let stage = node.compiled.build(&cx)?;

        let mut out = Emitter {
            node: node.name.clone(),
            senders: std::mem::take(&mut self.outputs),
            sink: Some(Sink::spawn(&self.store)?),
            count: 0,
            events: self.events.clone(),
        };
        let driven = match self.drive(stage, &mut out).await {
            Ok(driven) => driven,
            Err(e) => {
                let (e, partial) = out.stopped(e).await;
                if let Some((output, records)) = partial {
                    (record.output, record.records_out) = (Some(output), records);
                }
                return Err(e);
            }
        };
        let (records_in, artifacts) = match driven {
            Driven::Ran { records_in, artifacts } => (records_in, artifacts),
            Driven::Reused { records_in, manifest: m } => {
                *record = NodeOutcome { records_in, ..cached_record(node.name.clone(), node.kind, &m) };
                copy_artifacts(&self.store, &self.run_dir, &node.name, &m.artifacts).map_err(store_err)?;
                let _ = self.done.send(Some(m.output));
                return Ok(());
            }
        };

        // Every upstream must have completed (not failed) before this
        // node's output counts as complete.
        let upstream = match self.upstream_outputs().await {
            Ok(upstream) => upstream,
            Err(e) => return Err(out.stopped(e).await.0),
        };
        // Close downstream channels, then complete the output object.
        let records_out = out.count;
        let (output, written) = out.close().await?;
        debug_assert_eq!(written, records_out);

        let mut stored = BTreeMap::new();
        for a in artifacts {
            let h = self.store.put_bytes(&a.bytes).map_err(store_err)?;
            stored.insert(a.name, h);
        }
        let fields = match self.fields.take() {
            Some(f) => f,
            None => key_fields(&plan, self.index, &upstream),
        };
        let key = fields.key();
        let m = NodeManifest {
            key,
            kind: node.kind.to_string(),
            node: node.name.clone(),
            spec: plan.spec_name.clone(),
            fields: serde_json::to_value(&fields).expect("fields serialize"),
            output,
            records: records_out,
            artifacts: stored.clone(),
            created: flow_cache::now_rfc3339(),
            retryable_errors: meter.snapshot().map_or(0, |c| c.retryable_errors),
        };
        self.store.put_node_manifest(&m).map_err(store_err)?;
        copy_artifacts(&self.store, &self.run_dir, &node.name, &stored).map_err(store_err)?;
        let _ = self.done.send(Some(output));
        *record = NodeOutcome {
            key: Some(key),
            records_in,
            records_out,
            output: Some(output),
            artifacts: stored,
            ..record.clone()
        };
        Ok(())
    }

    /// Reads the side inputs (the last receivers) whole, by config field,
    /// before the node starts. Meanwhile the main inputs are drained into
    /// memory: their producer may also feed a side input, and must not wait
    /// on us.
    async fn read_side_inputs(&mut self) -> BTreeMap<String, Vec<Record>> {
        let plan = self.plan.clone();
        let node = &plan.nodes[self.index];
        let side_rx = self.inputs.split_off(self.inputs.len() - node.side_inputs.len());
        if !side_rx.is_empty() {
            for rx in &mut self.inputs {
                let (tx, buffered) = mpsc::channel(SIDE_WAIT_BUFFER);
                let mut upstream = std::mem::replace(rx, buffered);
                tokio::spawn(async move {
                    while let Some(batch) = upstream.recv().await {
                        if tx.send(batch).await.is_err() {
                            break;
                        }
                    }
                });
            }
        }
        let mut side_inputs = BTreeMap::new();
        for (field, mut rx) in node.side_inputs.iter().zip(side_rx) {
            let mut all: Vec<Record> = Vec::new();
            while let Some(batch) = rx.recv().await {
                all.extend(batch.iter().cloned());
            }
            side_inputs.insert(field.clone(), all);
        }
        side_inputs
    }

    /// Output hashes of the upstream nodes, once each has finished. An
    /// input channel also closes when its upstream fails, so a node must see
    /// every upstream complete before it completes its own output; if one
    /// stopped without finishing, this node is cancelled.
    pub async fn upstream_outputs(&mut self) -> Result<Vec<ContentHash>, NodeError> {
        let mut out = Vec::with_capacity(self.upstream_done.len());
        for rx in &mut self.upstream_done {
            let h = rx.wait_for(Option::is_some).await.map_err(|_| NodeError::Cancelled)?;
            out.push(h.expect("checked by wait_for"));
        }
        Ok(out)
    }
}
