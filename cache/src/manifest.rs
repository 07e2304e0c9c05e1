//! The two JSON records the store keeps: a node manifest per finished node
//! key, and a run manifest per `flow run`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::{ContentHash, Liveness, RunProcess};

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
    /// Calls that failed on a transient failure after their retries: the
    /// entry is not reused, so the next run re-sends them (the memo answers
    /// the rest).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retryable_errors: u64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Interrupted,
    /// Never written: how a run recorded as `running` reads once its
    /// process is gone (killed with SIGKILL, out of memory, a reboot)
    /// without recording its end. Its finished nodes are kept.
    Died,
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
    /// What looked wrong in its input without failing it (ids that repeat).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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
    /// Of `errors`, those on a transient failure (429, 5xx, timeout,
    /// connection) that outlasted the retries. They are not memoized, so the
    /// next run sends exactly them again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retryable_errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// USD spent by this run's requests; null when a request's model has no
    /// known price.
    pub cost_usd: Option<f64>,
    /// Answers whose reported token counts no model could produce (a broken
    /// or hostile server's `u64::MAX`): counted as no tokens, and said so.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub implausible_usage: u64,
    /// The backend's adaptive concurrency as these calls saw it; absent
    /// when it stayed at `max_concurrency` throughout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
}

/// How a backend's concurrency cap went while a node called it: it starts
/// at `max_concurrency`, shrinks on sustained 429s and grows back as calls
/// are answered.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Concurrency {
    /// `max_concurrency`.
    pub max: u32,
    /// The cap when the node's last call ended.
    pub cap: u32,
    /// The lowest cap the node's calls saw.
    pub low: u32,
    /// Milliseconds during which the cap was below `max`.
    pub throttled_ms: u64,
}

impl Concurrency {
    /// Two nodes' (a run's total): the lowest caps, the longest throttled.
    pub fn merge(&self, other: &Concurrency) -> Concurrency {
        Concurrency {
            max: self.max.max(other.max),
            cap: self.cap.min(other.cap),
            low: self.low.min(other.low),
            throttled_ms: self.throttled_ms.max(other.throttled_ms),
        }
    }
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
            retryable_errors: self.retryable_errors + other.retryable_errors,
            prompt_tokens: self.prompt_tokens + other.prompt_tokens,
            completion_tokens: self.completion_tokens + other.completion_tokens,
            cost_usd,
            implausible_usage: self.implausible_usage + other.implausible_usage,
            concurrency: match (self.concurrency, other.concurrency) {
                (Some(a), Some(b)) => Some(a.merge(&b)),
                (a, b) => a.or(b),
            },
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
            warnings: Vec::new(),
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
    /// The `flow` process running it: how a reader tells a run in progress
    /// from one that died. Absent in manifests from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<RunProcess>,
    /// Resolved parameter values.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// `--shard i/n`: the slice of the records this run processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Backend calls of the whole run, summed over its nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<CallStats>,
    pub nodes: Vec<NodeOutcome>,
}

/// A run recorded as running whose process cannot be looked up (no
/// process recorded, another host, a platform without `/proc`) is taken
/// for alive this long after its start, and for died after.
pub const RUNNING_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

impl RunManifest {
    /// The record of a node by name.
    pub fn node(&self, name: &str) -> Option<&NodeOutcome> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The manifest as a reader sees it: `running` becomes [`RunStatus::Died`]
    /// when its process is gone (see [`RunProcess::liveness`]), or, when that
    /// cannot be told, once it started more than [`RUNNING_FOR`] ago.
    pub fn settled(mut self, now: SystemTime) -> Self {
        if self.status != RunStatus::Running {
            return self;
        }
        let alive = match self.process.as_ref().map_or(Liveness::Unknown, RunProcess::liveness) {
            Liveness::Alive => true,
            Liveness::Dead => false,
            Liveness::Unknown => humantime::parse_rfc3339_weak(&self.started)
                .map(|t| now.duration_since(t).unwrap_or_default() < RUNNING_FOR)
                .unwrap_or(true),
        };
        if !alive {
            self.status = RunStatus::Died;
            let pid = self.process.as_ref().map(|p| format!(" (pid {})", p.pid)).unwrap_or_default();
            self.error.get_or_insert(format!(
                "died: its flow process{pid} is gone and recorded no end (killed?); finished nodes are kept"
            ));
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest as flow wrote it before it recorded the process.
    fn old_running(started: &str) -> RunManifest {
        let text = format!(
            r#"{{"run_id": "r1", "spec": "demo", "spec_path": "demo.yaml", "started": "{started}", "status": "running", "nodes": []}}"#
        );
        serde_json::from_str(&text).expect("a manifest without a process loads")
    }

    #[test]
    fn a_running_manifest_without_a_process_is_running_for_a_week() {
        let now = humantime::parse_rfc3339("2026-01-10T00:00:00Z").unwrap();
        let recent = old_running("2026-01-09T00:00:00Z").settled(now);
        assert_eq!((recent.status, recent.error), (RunStatus::Running, None));
        let old = old_running("2026-01-01T00:00:00Z").settled(now);
        assert_eq!(old.status, RunStatus::Died);
        assert!(old.error.unwrap().starts_with("died: its flow process is gone"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_running_manifest_reads_as_died_once_its_process_is_gone() {
        let now = SystemTime::now();
        let started = crate::now_rfc3339();
        let alive = RunManifest { process: Some(RunProcess::this_process()), ..old_running(&started) };
        assert_eq!(alive.clone().settled(now).status, RunStatus::Running);
        let died = RunManifest { process: Some(gone_process()), ..old_running(&started) }.settled(now);
        assert_eq!(died.status, RunStatus::Died);
        assert!(died.error.unwrap().contains("(pid 1073741824)"));
        // Only `running` is settled: an ended run says how it ended.
        let ended = RunManifest { status: RunStatus::Interrupted, process: Some(gone_process()), ..alive };
        assert_eq!(ended.settled(now).status, RunStatus::Interrupted);
    }

    /// A pid above the kernel's largest (2^22): no process has it.
    #[cfg(target_os = "linux")]
    fn gone_process() -> RunProcess {
        RunProcess { pid: 1 << 30, ..RunProcess::this_process() }
    }
}
