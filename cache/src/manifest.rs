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

/// One node's line in a run manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeRecord {
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
}

impl NodeRecord {
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
    pub nodes: Vec<NodeRecord>,
}

impl RunManifest {
    /// The record of a node by name.
    pub fn node(&self, name: &str) -> Option<&NodeRecord> {
        self.nodes.iter().find(|n| n.name == name)
    }
}
