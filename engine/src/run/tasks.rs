//! The graph of a run: one bounded channel per edge into a node that runs,
//! and one `done` watch per node, which says a node's output is complete
//! (a closed input channel alone cannot tell finished from failed).

use tokio::sync::{mpsc, watch};

use flow_cache::ContentHash;

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
