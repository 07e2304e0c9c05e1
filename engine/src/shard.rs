//! `flow run SPEC --shard i/n`: one process's slice of the records, so that
//! a scheduler the user already has (a Kubernetes Indexed Job, a CI matrix,
//! a Slurm array) spreads one spec over many processes.
//!
//! Each source emits only the records whose `id` hashes to shard `i`
//! ([`shard_of`]: the first 8 bytes of the id's blake3 hash, little-endian,
//! modulo `n`: stable across machines and versions), and every streaming
//! node that maps its input record by record (`run`, `evaluate`: a kind
//! that declares so many output records per input) processes that slice.
//! Nodes that need all records (barriers such as `compare`, or a `generate`)
//! do not run in a shard. Shard outputs are cached under keys of their own
//! (the key fields carry the shard), and every call a shard makes is in the
//! call memo of the workspace the shards share.
//!
//! The merge is a plain `flow run SPEC` in that workspace: every call is
//! then answered by the memo, so it sends nothing the shards sent, and its
//! outputs are those of a one-process run, byte for byte (the records come
//! out in the sources' order, with the answers the shards got); then the
//! barrier nodes run on the whole.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compile::{Plan, PlanNode};
use crate::node::{OutputRecords, Shape};
use crate::record::Record;

/// Shard `index` of `count` (0 ≤ index < count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// `--shard` text that is not `i/n`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a shard; write `i/n` with 0 ≤ i < n, e.g. `--shard 0/4` … `--shard 3/4`")]
pub struct ShardError(pub String);

impl std::str::FromStr for Shard {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Self, ShardError> {
        let bad = || ShardError(text.to_string());
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard of `count` that the record with id `id` falls in.
pub fn shard_of(id: &str, count: u32) -> u32 {
    let h = blake3::hash(id.as_bytes());
    let first: [u8; 8] = h.as_bytes()[..8].try_into().expect("32 bytes");
    (u64::from_le_bytes(first) % u64::from(count.max(1))) as u32
}

impl Shard {
    /// Whether `record` is this shard's: by its `id` (as text; a record
    /// without one by its JSON).
    pub fn holds(&self, record: &Record) -> bool {
        let id: Cow<str> = match record.get("id") {
            Some(Value::String(s)) => Cow::Borrowed(s),
            Some(v) => Cow::Owned(v.to_string()),
            None => Cow::Owned(serde_json::to_string(&**record).unwrap_or_default()),
        };
        shard_of(&id, self.count) == self.index
    }
}

/// Whether plan node `node` runs in a shard, given which of the nodes
/// before it do: a source, or a streaming node that maps each record of
/// one sharded input to its own output records (and reads no side input).
fn runs_in_shard(node: &PlanNode, sharded: &[bool]) -> bool {
    match node.shape {
        Shape::Source => true,
        Shape::Streaming => {
            !node.inputs.is_empty()
                && node.side_inputs.is_empty()
                && node.inputs.iter().all(|&u| sharded[u])
                && matches!(node.compiled.records, OutputRecords::PerInput(_))
        }
        Shape::Barrier => false,
    }
}

impl Plan {
    /// `--shard i/n`: keeps the nodes that run in a shard (see the module
    /// doc), each with the shard in its key, and returns the names of those
    /// left to the merge.
    pub fn shard(&mut self, shard: Shard) -> Vec<String> {
        let mut sharded = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let keep = runs_in_shard(node, &sharded);
            sharded.push(keep);
        }
        // Kept nodes read only kept nodes: indices shift down.
        let mut new_index = vec![usize::MAX; self.nodes.len()];
        let mut kept = Vec::new();
        let mut left = Vec::new();
        for (i, mut node) in std::mem::take(&mut self.nodes).into_iter().enumerate() {
            if !sharded[i] {
                left.push(node.name);
                continue;
            }
            new_index[i] = kept.len();
            node.inputs = node.inputs.iter().map(|&u| new_index[u]).collect();
            node.shard = Some(shard);
            kept.push(node);
        }
        self.nodes = kept;
        self.shard = Some(shard);
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_split_ids_stably() {
        assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
        for bad in ["4/4", "1/0", "a/4", "1", "-1/4", "1/4/2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?}");
        }
        assert_eq!(Shard { index: 3, count: 4 }.to_string(), "3/4");
        // Stable: these are the figures of the documented hash.
        let first: [u8; 8] = blake3::hash(b"case-001").as_bytes()[..8].try_into().unwrap();
        assert_eq!(shard_of("case-001", 7), (u64::from_le_bytes(first) % 7) as u32);
        // Every id in exactly one shard, and the shards near even.
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            let id = format!("case-{i}");
            let holders: Vec<u32> = (0..4).filter(|&s| shard_of(&id, 4) == s).collect();
            assert_eq!(holders.len(), 1);
            counts[holders[0] as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (900..1100).contains(&c)), "{counts:?}");
    }
}
