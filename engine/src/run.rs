//! The scheduler: one tokio task per node, bounded channels on every edge.
//!
//! A slow consumer fills its channel and so slows its producer
//! (backpressure), which keeps memory flat whatever the dataset size. Fan-out
//! sends the same `Arc` batch to every consumer. Each running node also
//! streams its output into a content-addressed object on a blocking thread;
//! its manifest is written only after that object is complete, so a node
//! killed mid-way leaves no manifest and is redone by the next run, while
//! every node that finished is reused. A failing node cancels the run; Ctrl-C
//! does the same and the run is recorded as interrupted.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use flow_cache::{ContentHash, NodeManifest, NodeRecord, NodeStatus, RunManifest, RunStatus, Store, StoreError};

use crate::assess::{assess, key_fields, Force, State};
use crate::compile::Plan;
use crate::key::KeyFields;
use crate::meter::Meter;
use crate::node::{Artifact, BuildCx, NodeError, RunContext, Stage, GATE_FAILED, META_JSON};
use crate::record::{Batch, Record, BATCH_SIZE};

/// Batches buffered on one edge before the producer waits.
const EDGE_CAPACITY: usize = 4;

/// Batches a node with side inputs may buffer from its main input while it
/// waits for them (memory is allocated as batches arrive).
const SIDE_WAIT_BUFFER: usize = 1 << 20;

/// What a run reports as it goes (progress bars, `--json` lines).
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// A node began: running, or replaying its cached output.
    NodeStarted { node: String, kind: &'static str, cached: bool },
    /// Output records so far.
    Progress { node: String, records: u64 },
    /// A node ended (ran, cached, failed or cancelled).
    NodeFinished(Box<NodeRecord>),
}

/// Options of one run.
#[derive(Clone, Default)]
pub struct RunOptions {
    pub force: Force,
    /// Shared state for the stages (flow-nodes' backends and call memo).
    pub context: Option<RunContext>,
}

/// Errors that stop a run before or outside any node.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new run id: sortable by start time, unique across machines in practice.
pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now();
    let stamp = utc_stamp(now);
    let nanos = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let salt = flow_cache::ContentHash::of(format!("{nanos}-{}", std::process::id()).as_bytes());
    format!("{stamp}-{}", &salt.hex()[..4])
}

/// `YYYYMMDD-HHMMSS-mmm` in UTC.
fn utc_stamp(t: std::time::SystemTime) -> String {
    let s = flow_cache::rfc3339_millis(t);
    // 2026-11-21T07:36:00.123Z
    let digits: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    format!("{}-{}-{}", &digits[..8], &digits[8..14], &digits[14..17])
}

/// Runs a plan to the end (or the first failure, or `interrupt`), and
/// returns the run manifest it wrote.
pub async fn run(
    plan: Arc<Plan>,
    store: Store,
    opts: RunOptions,
    events: mpsc::UnboundedSender<RunEvent>,
    interrupt: impl Future<Output = ()>,
) -> Result<RunManifest, RunError> {
    store.create()?;
    let run_id = new_run_id();
    let assessed = assess(&plan, &store, &opts.force)?;
    let mut manifest = RunManifest {
        run_id: run_id.clone(),
        spec: plan.spec_name.clone(),
        spec_path: plan.file.source.path.display().to_string(),
        started: flow_cache::now_rfc3339(),
        finished: None,
        status: RunStatus::Running,
        params: plan.params.clone(),
        error: None,
        calls: None,
        nodes: Vec::new(),
    };
    store.write_run_manifest(&manifest)?;

    let n = plan.nodes.len();
    let (done_tx, done_rx): (Vec<_>, Vec<_>) = (0..n).map(|_| watch::channel(None::<ContentHash>)).unzip();
    let mut senders: Vec<Vec<mpsc::Sender<Batch>>> = (0..n).map(|_| Vec::new()).collect();
    let mut receivers: Vec<Vec<mpsc::Receiver<Batch>>> = (0..n).map(|_| Vec::new()).collect();
    for (j, node) in plan.nodes.iter().enumerate() {
        if assessed[j].state == State::Cached {
            continue;
        }
        for &u in &node.inputs {
            let (tx, rx) = mpsc::channel(EDGE_CAPACITY);
            senders[u].push(tx);
            receivers[j].push(rx);
        }
    }

    let mut records: Vec<Option<NodeRecord>> = vec![None; n];
    // One meter per node, kept here: a node aborted mid-way (Ctrl-C, another
    // node failed) still reports the calls it made.
    let meters: Vec<Arc<Meter>> = (0..n).map(|_| Arc::new(Meter::default())).collect();
    let mut early_failure: Option<String> = None;
    let mut tasks: JoinSet<(usize, Result<NodeRecord, NodeRecord>)> = JoinSet::new();
    let run_dir = store.run_dir(&run_id);
    for i in 0..n {
        let a = &assessed[i];
        let node = &plan.nodes[i];
        let outputs = std::mem::take(&mut senders[i]);
        if a.state == State::Cached {
            let m = a.manifest.clone().expect("cached has a manifest");
            let _ = done_tx[i].send(Some(m.output));
            let _ = events.send(RunEvent::NodeStarted { node: node.name.clone(), kind: node.kind, cached: true });
            let base = cached_record(node.name.clone(), node.kind, &m);
            if outputs.is_empty() {
                // Nothing downstream needs it: not even read.
                let r = with_reports(&store, finish_cached(&store, &run_dir, base, &m));
                let _ = events.send(RunEvent::NodeFinished(Box::new(r.clone())));
                if r.status == NodeStatus::Failed && early_failure.is_none() {
                    early_failure = Some(failure_message(&r));
                }
                records[i] = Some(r);
                continue;
            }
            let (store, run_dir, events) = (store.clone(), run_dir.clone(), events.clone());
            tasks.spawn(async move {
                let started = Instant::now();
                let mut out =
                    Emitter { node: base.name.clone(), senders: outputs, sink: None, count: 0, events: events.clone() };
                let replayed = replay(&store, &m.output, &mut out).await;
                let mut r = with_reports(&store, finish_cached(&store, &run_dir, base, &m));
                r.wall_ms = started.elapsed().as_millis() as u64;
                let result = match replayed {
                    Ok(()) => Ok(r),
                    Err(NodeError::Cancelled) => Err(NodeRecord { status: NodeStatus::Cancelled, ..r }),
                    Err(e) => Err(NodeRecord { status: NodeStatus::Failed, error: Some(e.to_string()), ..r }),
                };
                let _ = events.send(RunEvent::NodeFinished(Box::new(result.clone().unwrap_or_else(|r| r))));
                (i, result)
            });
            continue;
        }
        let job = NodeJob {
            index: i,
            plan: plan.clone(),
            store: store.clone(),
            run_dir: run_dir.clone(),
            fields: a.fields.clone(),
            forced: opts.force.forces(&node.name) || !node.cache,
            memo_reads: !opts.force.all && node.cache,
            context: opts.context.clone(),
            inputs: std::mem::take(&mut receivers[i]),
            upstream_done: node.inputs.iter().map(|&u| done_rx[u].clone()).collect(),
            done: done_tx[i].clone(),
            outputs,
            events: events.clone(),
            meter: meters[i].clone(),
        };
        tasks.spawn(async move { (i, job.run().await) });
    }
    drop(done_tx);

    let mut failure: Option<String> = early_failure;
    if failure.is_some() {
        tasks.abort_all();
    }
    let mut interrupted = false;
    tokio::pin!(interrupt);
    loop {
        tokio::select! {
                    joined = tasks.join_next() => {
                        let Some(joined) = joined else { break };
                        let Ok((i, result)) = joined else { continue }; // aborted
                        match result {
                            Ok(r) => records[i] = Some(r),
                            Err(r) => {
                                if failure.is_none() && r.status == NodeStatus::Failed {
        failure = Some(failure_message(&r));
                                    tasks.abort_all();
                                }
                                records[i] = Some(r);
                            }
                        }
                        manifest.nodes = records.iter().flatten().cloned().collect();
                        store.write_run_manifest(&manifest)?;
                    }
                    _ = &mut interrupt, if !interrupted => {
                        interrupted = true;
                        tasks.abort_all();
                    }
                }
    }

    for (i, slot) in records.iter_mut().enumerate() {
        if slot.is_none() {
            let node = &plan.nodes[i];
            let mut r =
                NodeRecord::new(node.name.clone(), node.kind.to_string(), NodeStatus::Cancelled, assessed[i].key);
            r.calls = meters[i].snapshot();
            let _ = events.send(RunEvent::NodeFinished(Box::new(r.clone())));
            *slot = Some(r);
        }
    }
    manifest.nodes = records.into_iter().flatten().collect();
    manifest.calls = manifest.nodes.iter().filter_map(|n| n.calls).reduce(|a, b| a.add(&b));
    manifest.finished = Some(flow_cache::now_rfc3339());
    let gates: Vec<String> = manifest
        .nodes
        .iter()
        .filter_map(|n| n.gate_failed.as_ref().map(|g| format!("node `{}`: {g}", n.name)))
        .collect();
    manifest.status = if interrupted {
        manifest.error = Some("interrupted".into());
        RunStatus::Interrupted
    } else if let Some(f) = failure {
        manifest.error = Some(f);
        RunStatus::Failed
    } else if !gates.is_empty() {
        manifest.error = Some(format!("gate tripped: {}", gates.join("; ")));
        RunStatus::Failed
    } else {
        RunStatus::Succeeded
    };
    store.write_run_manifest(&manifest)?;
    Ok(manifest)
}

/// Adds what a finished node's artifacts say to its record: a tripped gate
/// ([`GATE_FAILED`]) and its `meta` ([`META_JSON`]).
fn with_reports(store: &Store, mut r: NodeRecord) -> NodeRecord {
    if let Some(h) = r.artifacts.get(GATE_FAILED) {
        let text = store.read_object(h).map(|b| String::from_utf8_lossy(&b).trim().to_string());
        r.gate_failed = Some(text.unwrap_or_else(|e| format!("a gate tripped (its report is unreadable: {e})")));
    }
    if let Some(h) = r.artifacts.get(META_JSON) {
        r.meta = store.read_object(h).ok().and_then(|b| serde_json::from_slice(&b).ok());
    }
    r
}

fn failure_message(r: &NodeRecord) -> String {
    format!("node `{}` ({}) failed: {}", r.name, r.kind, r.error.as_deref().unwrap_or("unknown error"))
}

fn cached_record(name: String, kind: &str, m: &NodeManifest) -> NodeRecord {
    NodeRecord {
        records_out: m.records,
        output: Some(m.output),
        artifacts: m.artifacts.clone(),
        ..NodeRecord::new(name, kind.to_string(), NodeStatus::Cached, Some(m.key))
    }
}

/// Copies a node's artifacts into the run folder, so every run folder is
/// complete whether its nodes ran or came from the cache.
fn copy_artifacts(
    store: &Store,
    run_dir: &std::path::Path,
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

fn finish_cached(store: &Store, run_dir: &std::path::Path, mut r: NodeRecord, m: &NodeManifest) -> NodeRecord {
    if let Err(e) = copy_artifacts(store, run_dir, &r.name, &m.artifacts) {
        r.status = NodeStatus::Failed;
        r.error = Some(e.to_string());
    }
    r
}

/// Streams a stored output object downstream.
async fn replay(store: &Store, output: &ContentHash, out: &mut Emitter) -> Result<(), NodeError> {
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

enum SinkMsg {
    Batch(Batch),
    /// All output was sent: store the object. Without it the object is
    /// discarded (the node was cancelled or failed).
    Done,
}

/// Sends a node's output to its consumers and its output object.
struct Emitter {
    node: String,
    senders: Vec<mpsc::Sender<Batch>>,
    sink: Option<mpsc::Sender<SinkMsg>>,
    count: u64,
    events: mpsc::UnboundedSender<RunEvent>,
}

impl Emitter {
    async fn emit(&mut self, records: Vec<Record>) -> Result<(), NodeError> {
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

/// Everything one running node needs.
struct NodeJob {
    index: usize,
    plan: Arc<Plan>,
    store: Store,
    run_dir: std::path::PathBuf,
    /// Key fields when known before running (all inputs cached).
    fields: Option<KeyFields>,
    forced: bool,
    memo_reads: bool,
    context: Option<RunContext>,
    inputs: Vec<mpsc::Receiver<Batch>>,
    upstream_done: Vec<watch::Receiver<Option<ContentHash>>>,
    done: watch::Sender<Option<ContentHash>>,
    outputs: Vec<mpsc::Sender<Batch>>,
    events: mpsc::UnboundedSender<RunEvent>,
    meter: Arc<Meter>,
}

impl NodeJob {
    async fn run(self) -> Result<NodeRecord, NodeRecord> {
        let node = &self.plan.nodes[self.index];
        let (name, kind) = (node.name.clone(), node.kind);
        let _ = self.events.send(RunEvent::NodeStarted { node: name.clone(), kind, cached: false });
        let started = Instant::now();
        let mut record =
            NodeRecord::new(name.clone(), kind.to_string(), NodeStatus::Ran, self.fields.as_ref().map(KeyFields::key));
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

    async fn execute(mut self, record: &mut NodeRecord, meter: Arc<Meter>) -> Result<(), NodeError> {
        let plan = self.plan.clone();
        let node = &plan.nodes[self.index];
        // Side inputs (the last receivers) are read whole before the node
        // starts. Meanwhile the main inputs are drained into memory: their
        // producer may also feed a side input, and must not wait on us.
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
        let main = node.main_inputs();
        let cx = BuildCx {
            node: node.name.clone(),
            spec_dir: node.file.dir.clone(),
            files: node.compiled.files.clone(),
            meter,
            memo_reads: self.memo_reads,
            context: self.context.clone(),
            inputs: main.len(),
            input_names: main.iter().map(|&u| plan.nodes[u].name.clone()).collect(),
            side_inputs,
        };
        let stage = node.compiled.build(&cx)?;

        let (sink_tx, sink) = spawn_sink(&self.store)?;
        let mut out = Emitter {
            node: node.name.clone(),
            senders: std::mem::take(&mut self.outputs),
            sink: Some(sink_tx),
            count: 0,
            events: self.events.clone(),
        };
        let mut records_in = 0u64;
        let artifacts: Vec<Artifact> = match stage {
            Stage::Source(mut src) => {
                while let Some(batch) = src.next_batch().await? {
                    out.emit(batch).await?;
                }
                src.finish()?
            }
            Stage::Map(map) => {
                let mut input = self.inputs.pop().expect("a map stage has one input");
                while let Some(batch) = input.recv().await {
                    records_in += batch.len() as u64;
                    let mut produced = Vec::with_capacity(batch.len());
                    for r in batch.iter() {
                        map.map(r, &mut produced)?;
                    }
                    out.emit(produced).await?;
                }
                map.finish()?
            }
            Stage::Stream(stage) => {
                let input = self.inputs.pop().expect("a stream stage has one input");
                let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
                let seen = counted.clone();
                let records =
                    futures::stream::unfold(input, |mut rx| async move { rx.recv().await.map(|batch| (batch, rx)) })
                        .flat_map(move |batch: Batch| {
                            seen.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
                            futures::stream::iter((0..batch.len()).map(move |i| batch[i].clone()))
                        });
                let mut output = stage.clone().run(Box::pin(records));
                while let Some(batch) = output.next().await {
                    out.emit(batch?).await?;
                }
                drop(output);
                records_in = counted.load(std::sync::atomic::Ordering::Relaxed);
                stage.finish()?
            }
            Stage::Barrier(barrier) => {
                let collected = join_all(self.inputs.drain(..).map(|mut rx| async move {
                    let mut all: Vec<Record> = Vec::new();
                    while let Some(batch) = rx.recv().await {
                        all.extend(batch.iter().cloned());
                    }
                    all
                }))
                .await;
                records_in = collected.iter().map(|v| v.len() as u64).sum();
                let upstream = self.upstream_outputs().await?;
                // All input is in: the key is known now, so a barrier whose
                // input turned out unchanged is reused instead of redone.
                if self.fields.is_none() && !self.forced {
                    let fields = key_fields(&plan, self.index, &upstream);
                    if let Some(m) = self.store.node_manifest(&fields.key()).map_err(store_err)? {
                        if self.store.is_complete(&m) {
                            out.sink = None; // drop: nothing new to store
                            replay(&self.store, &m.output, &mut out).await?;
                            *record = NodeRecord { records_in, ..cached_record(node.name.clone(), node.kind, &m) };
                            copy_artifacts(&self.store, &self.run_dir, &node.name, &m.artifacts).map_err(store_err)?;
                            let _ = self.done.send(Some(m.output));
                            return Ok(());
                        }
                    }
                    self.fields = Some(fields);
                }
                let (output, artifacts) = barrier.run(collected).await?;
                for chunk in output.chunks(BATCH_SIZE) {
                    out.emit(chunk.to_vec()).await?;
                }
                artifacts
            }
        };

        // Every upstream must have completed (not failed) before this
        // node's output counts as complete.
        let upstream = self.upstream_outputs().await?;
        // Close downstream channels, then complete the output object.
        let records_out = out.count;
        let sink_tx = out.sink.take().expect("sink present while running");
        drop(out);
        sink_tx.send(SinkMsg::Done).await.map_err(|_| NodeError::new("output writer stopped"))?;
        drop(sink_tx);
        let (output, written) = sink.await.map_err(|e| NodeError::new(format!("output writer panicked: {e}")))??;
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
        };
        self.store.put_node_manifest(&m).map_err(store_err)?;
        copy_artifacts(&self.store, &self.run_dir, &node.name, &stored).map_err(store_err)?;
        let _ = self.done.send(Some(output));
        *record = NodeRecord {
            key: Some(key),
            records_in,
            records_out,
            output: Some(output),
            artifacts: stored,
            ..record.clone()
        };
        Ok(())
    }

    /// Output hashes of the upstream nodes, once each has finished. An
    /// input channel also closes when its upstream fails, so a node must see
    /// every upstream complete before it completes its own output; if one
    /// stopped without finishing, this node is cancelled.
    async fn upstream_outputs(&mut self) -> Result<Vec<ContentHash>, NodeError> {
        let mut out = Vec::with_capacity(self.upstream_done.len());
        for rx in &mut self.upstream_done {
            let h = rx.wait_for(Option::is_some).await.map_err(|_| NodeError::Cancelled)?;
            out.push(h.expect("checked by wait_for"));
        }
        Ok(out)
    }
}

fn store_err(e: StoreError) -> NodeError {
    NodeError::new(e.to_string())
}

type SinkHandle = tokio::task::JoinHandle<Result<(ContentHash, u64), NodeError>>;

/// Writes a node's output as JSONL into a new object, on a blocking thread
/// so serialization runs beside the node's own work.
fn spawn_sink(store: &Store) -> Result<(mpsc::Sender<SinkMsg>, SinkHandle), NodeError> {
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
