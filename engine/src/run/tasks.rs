//! The graph of a run: one bounded channel per edge into a node that runs,
//! and one `done` watch per node, which says a node's output is complete
//! (a closed input channel alone cannot tell finished from failed); and the
//! set of node tasks, which turns a task that panicked into a node that
//! failed rather than one that quietly went missing.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio::task::{self, JoinSet};

use flow_cache::{ContentHash, NodeOutcome};

use super::EDGE_CAPACITY;
use crate::assess::{Assessment, State};
use crate::compile::Plan;
use crate::record::Batch;

/// The channels between the node tasks, by node index, taken as each task
/// is spawned.
pub(super) struct Edges {
    /// Each node's outgoing channels, one per consumer that runs.
    pub senders: Vec<Vec<mpsc::Sender<Batch>>>,
    /// Each node's incoming channels, in the order of its inputs.
    pub receivers: Vec<Vec<mpsc::Receiver<Batch>>>,
    /// Set to a node's output hash once its output is complete.
    pub done_tx: Vec<watch::Sender<Option<ContentHash>>>,
    pub done_rx: Vec<watch::Receiver<Option<ContentHash>>>,
}

impl Edges {
    /// Wires the plan: a cached node reads nothing, so no edge leads into it.
    pub fn wire(plan: &Plan, assessed: &[Assessment]) -> Edges {
        let n = plan.nodes.len();
        let (done_tx, done_rx) = (0..n).map(|_| watch::channel(None)).unzip();
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
        Edges { senders, receivers, done_tx, done_rx }
    }
}

/// A node task's outcome: its record, `Err` when it failed or was cancelled.
pub(super) type NodeResult = Result<NodeOutcome, NodeOutcome>;

/// How a node task ended.
pub(super) enum Joined {
    /// It returned its record.
    Returned(usize, Box<NodeResult>),
    /// It panicked: a bug, in its stage or here. The node gets no record
    /// of its own, so the run makes one, and fails like for any node error.
    Panicked { index: usize, message: String, wall_ms: u64 },
    /// It was aborted (the run is stopping); its record is made at the end.
    Aborted,
}

/// The running node tasks. Tokio names a task that panicked or was aborted
/// only by its id, so the id says which node it was.
#[derive(Default)]
pub(super) struct Tasks {
    set: JoinSet<NodeResult>,
    nodes: HashMap<task::Id, (usize, Instant)>,
}

impl Tasks {
    /// Spawns the task of node `index`.
    pub fn spawn(&mut self, index: usize, task: impl Future<Output = NodeResult> + Send + 'static) {
        let id = self.set.spawn(task).id();
        self.nodes.insert(id, (index, Instant::now()));
    }

    pub fn abort_all(&mut self) {
        self.set.abort_all();
    }

    /// The next task to end, `None` when none is left. Cancel safe, like
    /// [`JoinSet::join_next`].
    pub async fn join_next(&mut self) -> Option<Joined> {
        let joined = self.set.join_next_with_id().await?;
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        let (index, started) = self.nodes.remove(&id).expect("every task is spawned by Tasks::spawn");
        Some(match joined {
            Ok((_, result)) => Joined::Returned(index, Box::new(result)),
            Err(e) => match e.try_into_panic() {
                Ok(payload) => Joined::Panicked {
                    index,
                    message: panic_message(payload.as_ref()),
                    wall_ms: started.elapsed().as_millis() as u64,
                },
                Err(_) => Joined::Aborted,
            },
        })
    }
}

/// The message a panic was raised with (`panic!` makes a `&str` or a
/// `String`).
pub(super) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}
