//! How many records each node of a run is expected to output, so progress
//! can say done/total and an ETA: a cached node's stored count, a count its
//! kind declared ([`OutputRecords`]), or its input's total times what it
//! emits per input record. A node that finished has its real count, which
//! may make its consumers' totals known (a `run` after a `generate`).

use crate::assess::{Assessment, State};
use crate::compile::Plan;
use crate::node::OutputRecords;

/// The expected output records of every node, in plan order; `finished`
/// holds the real counts of the nodes that have finished.
pub(super) fn expected(plan: &Plan, assessed: &[Assessment], finished: &[Option<u64>]) -> Vec<Option<u64>> {
    let mut totals: Vec<Option<u64>> = Vec::with_capacity(plan.nodes.len());
    // Plan order is topological: every input's total is known by now.
    for (i, node) in plan.nodes.iter().enumerate() {
        let total = if let Some(n) = finished[i] {
            Some(n)
        } else if let (State::Cached, Some(m)) = (assessed[i].state, &assessed[i].manifest) {
            Some(m.records)
        } else {
            match (node.compiled.records, node.main_inputs()) {
                // A shard's slice of a source is known once it is read.
                (OutputRecords::Exactly(_), _) if node.shard.is_some() => None,
                (OutputRecords::Exactly(n), _) => Some(node.limit.map_or(n, |l| l.min(n))),
                (OutputRecords::PerInput(k), [u]) => totals[*u].map(|t| t.saturating_mul(k)),
                _ => None,
            }
        };
        totals.push(total);
    }
    totals
}
