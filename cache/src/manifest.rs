//! The two JSON records the store keeps: a node manifest per finished node
//! key, and a run manifest per `flow run`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ContentHash;

/// Proof that a node with this key finished, and where its output is.
/// Written last, atomically: a node killed mid-way has none.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeManifest {
    /// The node key this manifest is filed under.
    pub key: ContentHash,
    /// Node kind (`load`, `evaluate`, ...).
    pub kind: String,
    /// Node name in the spec that produced it (informational: names are not
    /// part of the key).
    pub node: String,
    /// Spec name that produced it (informational).
    pub spec: String,
    /// The fields the key was hashed from, kept so `flow plan` can say which
    /// field changed since.
    pub fields: serde_json::Value,
    /// Output records as a JSONL object.
    pub output: ContentHash,
    /// Number of output records.
    pub records: u64,
    /// Named side files (summaries, reports), each an object.
    #[serde(default)]
    pub artifacts: BTreeMap<String, ContentHash>,
    /// RFC 3339 time the node finished.
    pub created: String,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Interrupted,
}

/// What happened to one node in a run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Executed in this run.
    Ran,
    /// Found in the cache; replayed or left unread.
    Cached,
    /// Failed in this run.
    Failed,
    /// Stopped because the run was cancelled (another node failed, Ctrl-C).
    Cancelled,
}

/// One node's line in a run manifest: how it ended and what it made
/// (not a dataflow record, which is a row of data between nodes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeOutcome {
    pub name: String,
    pub kind: String,
    pub status: NodeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<ContentHash>,
    pub records_in: u64,
    pub records_out: u64,
    pub wall_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ContentHash>,
    #[serde(default)]
    pub artifacts: BTreeMap<String, ContentHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Backend calls, for nodes that make any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<CallStats>,
    /// A gate of this node tripped (its output is complete, the run fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_failed: Option<String>,
    /// What the node says about its output (a generated dataset's counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
}

/// What backend calls a node (or a whole run) made and spent.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct CallStats {
    /// Calls answered by the server in this run (memo hits not included).
    pub requests: u64,
    /// Calls answered from the call memo: nothing sent, nothing spent.
    pub memo_hits: u64,
    /// Attempts that failed (429, 5xx, timeout, connection) and were retried.
    pub retries: u64,
    /// Calls that failed for good; their records carry the `error`.
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// USD spent by this run's requests; null when a request's model has no
    /// known price.
    pub cost_usd: Option<f64>,
    /// Answers whose reported token counts no model could produce (a broken
    /// or hostile server's `u64::MAX`): counted as no tokens, and said so.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub implausible_usage: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl CallStats {
    /// The sum of two counts (a run's total over its nodes).
    pub fn add(&self, other: &CallStats) -> CallStats {
        // Unknown in a part makes the sum unknown, unless that part made no
        // request (it spent nothing).
        let part = |s: &CallStats| if s.requests == 0 { Some(s.cost_usd.unwrap_or(0.0)) } else { s.cost_usd };
        let cost_usd = part(self).zip(part(other)).map(|(a, b)| a + b);
        CallStats {
            requests: self.requests + other.requests,
            memo_hits: self.memo_hits + other.memo_hits,
            retries: self.retries + other.retries,
            errors: self.errors + other.errors,
            prompt_tokens: self.prompt_tokens + other.prompt_tokens,
            completion_tokens: self.completion_tokens + other.completion_tokens,
            cost_usd,
            implausible_usage: self.implausible_usage + other.implausible_usage,
        }
    }
}

impl NodeOutcome {
    /// A record with nothing counted yet.
    pub fn new(name: String, kind: String, status: NodeStatus, key: Option<ContentHash>) -> Self {
        Self {
            name,
            kind,
            status,
            key,
            records_in: 0,
            records_out: 0,
            wall_ms: 0,
            output: None,
            artifacts: BTreeMap::new(),
            error: None,
            calls: None,
            gate_failed: None,
            meta: None,
        }
    }
}

/// `.flow/runs/<run-id>/manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunManifest {
    pub run_id: String,
    pub spec: String,
    pub spec_path: String,
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    pub status: RunStatus,
    /// Resolved parameter values.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Backend calls of the whole run, summed over its nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<CallStats>,
    pub nodes: Vec<NodeOutcome>,
}

impl RunManifest {
    /// The record of a node by name.
    pub fn node(&self, name: &str) -> Option<&NodeOutcome> {
        self.nodes.iter().find(|n| n.name == name)
    }
}
