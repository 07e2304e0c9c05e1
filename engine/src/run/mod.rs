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
//!
//! The module by role: `tasks` wires the edges, `job` runs one node and
//! `stage` drives its stage by shape, `sink` takes its output to
//! consumers and the store, and `cached` replays the nodes the cache
//! already has. This file is the public face and the main loop.

mod cached;
mod job;
mod sink;
mod stage;
mod tasks;
mod totals;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc;

use flow_cache::{NodeOutcome, NodeStatus, RunManifest, RunProcess, RunStatus, Store, StoreError};

use crate::assess::{Assessment, Force, State};
use crate::compile::{Plan, PlanNode};
use crate::meter::Meter;
use crate::node::RunContext;
use crate::record::Batch;
use cached::cached_record;
use job::NodeJob;
use sink::Emitter;
use tasks::{Edges, Joined, Tasks};

/// Batches buffered on one edge before the producer waits.
const EDGE_CAPACITY: usize = 4;

/// Batches a node with side inputs may buffer from its main input while it
/// waits for them (memory is allocated as batches arrive).
const SIDE_WAIT_BUFFER: usize = 1 << 20;

/// What a run reports as it goes (progress bars, `--json` lines).
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// The run began: its id names its folder (`.flow/runs/<run-id>/`),
    /// where a display may keep a log of these events.
    RunStarted { run_id: String },
    /// A node began: running, or replaying its cached output.
    NodeStarted {
        node: String,
        kind: &'static str,
        cached: bool,
        /// The records it is expected to output, when that is known.
        total: Option<u64>,
        /// Its calls so far (errors, cost, a retry wait), for a display to
        /// read as often as it redraws; `None` for a cached node.
        meter: Option<Arc<Meter>>,
    },
    /// Output records so far.
    Progress { node: String, records: u64 },
    /// Records a running node just output (the batch it sent downstream,
    /// shared, not copied), for a display that shows them as they come; a
    /// cached node's replay sends none.
    Records { node: String, records: Batch },
    /// A node's expected output became known, or changed, once an
    /// upstream node finished with its real count.
    Total { node: String, total: u64 },
    /// A node ended (ran, cached, failed or cancelled).
    NodeFinished(Box<NodeOutcome>),
    /// News for the user that is no node's progress: a backend's batch
    /// created, its state, collected (it may take hours).
    Note { text: String },
}

/// Options of one run.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// What the user forced: the same [`Force`] the run's assessment was
    /// made with. The assessment already says which nodes run; this says
    /// whether a forced node may still reuse memoized calls or a barrier's
    /// cache entry found once its input is in.
    pub force: Force,
    /// Shared state for the stages (flow-nodes' backends and call memo).
    pub context: Option<RunContext>,
}

/// Errors that stop a run before or outside any node.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// [`crate::spill::BOUND_VAR`] is set to something that is not a size.
    #[error(transparent)]
    Bound(#[from] crate::spill::BoundError),
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
///
/// `assessed` is the plan's [`assess`](crate::assess()) against `store`
/// with `opts.force`, made by the caller: the run follows it, so what the
/// caller decided from it (which backends to open, what to tell the user)
/// is what runs, even if the cache changed in between.
///
/// # Panics
///
/// If `assessed` is not one assessment per plan node.
pub async fn run(
    plan: Arc<Plan>,
    store: Store,
    assessed: Vec<Assessment>,
    opts: RunOptions,
    events: mpsc::UnboundedSender<RunEvent>,
    interrupt: impl Future<Output = ()>,
) -> Result<RunManifest, RunError> {
    assert_eq!(assessed.len(), plan.nodes.len(), "one assessment per plan node");
    let barrier_memory = crate::spill::bound_from_env()?;
    store.create()?;
    store.sweep_temp();
    let run_id = new_run_id();
    let mut manifest = RunManifest {
        run_id: run_id.clone(),
        spec: plan.spec_name.clone(),
        spec_path: plan.file.source.path.display().to_string(),
        started: flow_cache::now_rfc3339(),
        finished: None,
        status: RunStatus::Running,
        // So a reader can tell this run from one whose process was killed.
        process: Some(RunProcess::this_process()),
        params: plan.params.clone(),
        shard: plan.shard.map(|s| s.to_string()),
        error: None,
        calls: None,
        nodes: Vec::new(),
    };
    store.write_run_manifest(&manifest)?;
    let _ = events.send(RunEvent::RunStarted { run_id: run_id.clone() });

    let n = plan.nodes.len();
    let Edges { mut senders, mut receivers, done_tx, done_rx } = Edges::wire(&plan, &assessed);

    let mut records: Vec<Option<NodeOutcome>> = vec![None; n];
    // One meter per node, kept here: a node aborted mid-way (Ctrl-C, another
    // node failed) still reports the calls it made.
    let meters: Vec<Arc<Meter>> = (0..n).map(|_| Arc::new(Meter::default())).collect();
    let mut finished: Vec<Option<u64>> = vec![None; n];
    let mut expected = totals::expected(&plan, &assessed, &finished);
    let mut early_failure: Option<String> = None;
    let mut tasks = Tasks::default();
    let run_dir = store.run_dir(&run_id);
    for i in 0..n {
        let a = &assessed[i];
        let node = &plan.nodes[i];
        let outputs = std::mem::take(&mut senders[i]);
        if a.state == State::Cached {
            let m = a.manifest.clone().expect("cached has a manifest");
            let _ = done_tx[i].send(Some(m.output));
            let _ = events.send(RunEvent::NodeStarted {
                node: node.name.clone(),
                kind: node.kind,
                cached: true,
                total: expected[i],
                meter: None,
            });
            let base = cached_record(node.name.clone(), node.kind, &m);
            if outputs.is_empty() {
                // Nothing downstream needs it: not even read.
                let r = cached::unread(&store, &run_dir, base, &m);
                let _ = events.send(RunEvent::NodeFinished(Box::new(r.clone())));
                if r.status == NodeStatus::Failed && early_failure.is_none() {
                    early_failure = Some(failure_message(&r));
                }
                records[i] = Some(r);
                continue;
            }
            let out =
                Emitter { node: base.name.clone(), senders: outputs, sink: None, count: 0, events: events.clone() };
            let replayed = cached::replayed(store.clone(), run_dir.clone(), base, m, out);
            tasks.spawn(i, replayed);
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
            total: expected[i],
            barrier_memory,
        };
        tasks.spawn(i, job.run());
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
                let (i, result) = match joined {
                    None => break,
                    Some(Joined::Returned(i, result)) => (i, *result),
                    Some(Joined::Panicked { index, message, wall_ms }) => {
                        let r = panicked(&plan.nodes[index], &assessed[index], &meters[index], &message, wall_ms);
                        let _ = events.send(RunEvent::NodeFinished(Box::new(r.clone())));
                        (index, Err(r))
                    }
                    Some(Joined::Aborted) => continue,
                };
                if let Ok(r) = &result {
                    finished[i] = Some(r.records_out);
                    let now = totals::expected(&plan, &assessed, &finished);
                    for (j, (old, new)) in expected.iter().zip(&now).enumerate() {
                        if let (Some(total), true) = (new, old != new && finished[j].is_none()) {
                            let _ = events.send(RunEvent::Total { node: plan.nodes[j].name.clone(), total: *total });
                        }
                    }
                    expected = now;
                }
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
                NodeOutcome::new(node.name.clone(), node.kind.to_string(), NodeStatus::Cancelled, assessed[i].key);
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

fn failure_message(r: &NodeOutcome) -> String {
    format!("node `{}` ({}) failed: {}", r.name, r.kind, r.error.as_deref().unwrap_or("unknown error"))
}

/// The record of a node whose task panicked: failed, with the panic's
/// message and the calls it made.
fn panicked(node: &PlanNode, a: &Assessment, meter: &Meter, message: &str, wall_ms: u64) -> NodeOutcome {
    let mut r = NodeOutcome::new(node.name.clone(), node.kind.to_string(), NodeStatus::Failed, a.key);
    r.error = Some(format!("panicked: {message}"));
    r.calls = meter.snapshot();
    r.wall_ms = wall_ms;
    r
}
