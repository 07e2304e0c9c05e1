//! Assessing a plan against the cache: for each node, whether it is cached,
//! will run, or cannot be known yet, and why. Reads the store, writes
//! nothing; `flow plan` and `flow run` share it, so the plan says exactly
//! what the run will do.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use flow_cache::{ContentHash, NodeManifest, Store, StoreError};

use crate::compile::Plan;
use crate::key::{diff_paths, KeyFields, KeyInput};

/// What will happen to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Its key has a complete cache entry: it will not run.
    Cached,
    /// It will run.
    WillRun,
    /// An upstream node will run, so this node's input is not known yet.
    Unknown,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Cached => "cached",
            State::WillRun => "will run",
            State::Unknown => "unknown",
        })
    }
}

/// Why a node will run (or is unknown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    NeverRun,
    ConfigChanged {
        fields: Vec<String>,
    },
    BackendChanged {
        fields: Vec<String>,
    },
    InputFileChanged {
        files: Vec<String>,
    },
    UpstreamChanged {
        nodes: Vec<String>,
    },
    InputsChanged,
    ImplementationChanged {
        from: u32,
        to: u32,
    },
    /// `--limit`: a subset instead of all records, or another subset.
    LimitChanged {
        from: Option<u64>,
        to: Option<u64>,
    },
    KindChanged {
        from: String,
    },
    Forced {
        by: String,
    },
    UpstreamWillRun {
        nodes: Vec<String>,
    },
    EntryMissing,
    /// The entry holds calls that failed on a transient failure (429, 5xx,
    /// timeout) after their retries: the node runs again, the memo answers
    /// what succeeded and only these are sent.
    CallsFailed {
        calls: u64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NeverRun => f.write_str("never run"),
            Reason::ConfigChanged { fields } => write!(f, "config changed: {}", fields.join(", ")),
            Reason::BackendChanged { fields } => write!(f, "backend changed: {}", fields.join(", ")),
            Reason::InputFileChanged { files } => {
                write!(f, "input file changed: {}", files.join(", "))
            }
            Reason::UpstreamChanged { nodes } => {
                write!(f, "upstream changed: {}", nodes.join(", "))
            }
            Reason::InputsChanged => f.write_str("inputs changed"),
            Reason::ImplementationChanged { from, to } => {
                write!(f, "implementation changed (v{from} → v{to})")
            }
            Reason::LimitChanged { from, to } => {
                let n = |l: &Option<u64>| l.map_or("all records".to_string(), |n| format!("--limit {n}"));
                write!(f, "limit changed ({} → {})", n(from), n(to))
            }
            Reason::KindChanged { from } => write!(f, "kind changed (was {from})"),
            Reason::Forced { by } => write!(f, "forced ({by})"),
            Reason::UpstreamWillRun { nodes } => {
                write!(f, "upstream will run: {}", nodes.join(", "))
            }
            Reason::EntryMissing => f.write_str("cache entry missing"),
            Reason::CallsFailed { calls } => {
                let s = if *calls == 1 { "" } else { "s" };
                write!(f, "{calls} call{s} failed last time (sent again; the memo answers the rest)")
            }
        }
    }
}

/// Work the user asked for regardless of the cache.
#[derive(Debug, Clone, Default)]
pub struct Force {
    /// `--no-cache`: every node runs.
    pub all: bool,
    /// `--rerun NODE`: these run.
    pub nodes: BTreeSet<String>,
}

impl Force {
    /// Whether the user forces this node (`--no-cache`, `--rerun`).
    pub fn forces(&self, node: &str) -> bool {
        self.all || self.nodes.contains(node)
    }

    fn reason(&self, node: &str, cache: bool) -> Option<Reason> {
        if self.all {
            Some(Reason::Forced { by: "--no-cache".into() })
        } else if self.nodes.contains(node) {
            Some(Reason::Forced { by: format!("--rerun {node}") })
        } else if !cache {
            Some(Reason::Forced { by: "cache: false".into() })
        } else {
            None
        }
    }
}

/// One node's assessment.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub state: State,
    /// Key fields, when all inputs are known.
    pub fields: Option<KeyFields>,
    pub key: Option<ContentHash>,
    /// The cache entry, when cached.
    pub manifest: Option<NodeManifest>,
    pub reasons: Vec<Reason>,
}

/// Key fields of plan node `i`, given its upstream nodes' output hashes.
pub fn key_fields(plan: &Plan, i: usize, upstream_outputs: &[ContentHash]) -> KeyFields {
    let node = &plan.nodes[i];
    let mut inputs: Vec<KeyInput> = node
        .inputs
        .iter()
        .zip(upstream_outputs)
        .map(|(&u, h)| KeyInput::Node { node: plan.nodes[u].name.clone(), output: *h })
        .collect();
    inputs.extend(node.compiled.files.iter().map(|f| KeyInput::File { path: f.written.clone(), hash: f.hash }));
    let backends = if node.compiled.backends.is_empty() {
        serde_json::Value::Null
    } else {
        // Costs in the output depend on prices too.
        serde_json::json!({"backends": node.compiled.backends, "prices": plan.prices})
    };
    KeyFields {
        kind: node.kind.to_string(),
        version: node.version,
        config: node.compiled.config.clone(),
        inputs,
        backends,
        limit: node.limit,
        shard: node.shard,
    }
}

/// Assesses every node of the plan, in plan order.
pub fn assess(plan: &Plan, store: &Store, force: &Force) -> Result<Vec<Assessment>, StoreError> {
    let mut out: Vec<Assessment> = Vec::with_capacity(plan.nodes.len());
    for (i, node) in plan.nodes.iter().enumerate() {
        let forced = force.reason(&node.name, node.cache);
        let pending: Vec<String> = node
            .inputs
            .iter()
            .filter(|&&u| out[u].state != State::Cached)
            .map(|&u| plan.nodes[u].name.clone())
            .collect();
        if !pending.is_empty() {
            let mut reasons: Vec<Reason> = forced.into_iter().collect();
            reasons.push(Reason::UpstreamWillRun { nodes: pending });
            out.push(Assessment { state: State::Unknown, fields: None, key: None, manifest: None, reasons });
            continue;
        }
        let upstream: Vec<ContentHash> = node
            .inputs
            .iter()
            .map(|&u| out[u].manifest.as_ref().expect("cached upstream has a manifest").output)
            .collect();
        let fields = key_fields(plan, i, &upstream);
        let key = fields.key();
        let assessment = if let Some(r) = forced {
            Assessment { state: State::WillRun, fields: Some(fields), key: Some(key), manifest: None, reasons: vec![r] }
        } else {
            match store.node_manifest(&key)? {
                Some(m) if store.is_complete(&m) && m.retryable_errors > 0 => Assessment {
                    state: State::WillRun,
                    fields: Some(fields),
                    key: Some(key),
                    manifest: None,
                    reasons: vec![Reason::CallsFailed { calls: m.retryable_errors }],
                },
                Some(m) if store.is_complete(&m) => Assessment {
                    state: State::Cached,
                    fields: Some(fields),
                    key: Some(key),
                    manifest: Some(m),
                    reasons: vec![],
                },
                _ => {
                    let reasons = why_changed(&fields, store.last_manifest(&plan.spec_name, &node.name)?.as_ref());
                    Assessment { state: State::WillRun, fields: Some(fields), key: Some(key), manifest: None, reasons }
                }
            }
        };
        out.push(assessment);
    }
    Ok(out)
}

/// What differs between the key fields now and those of the last entry
/// stored for the same node.
pub fn why_changed(now: &KeyFields, last: Option<&NodeManifest>) -> Vec<Reason> {
    let Some(last) = last else {
        return vec![Reason::NeverRun];
    };
    let Ok(then) = serde_json::from_value::<KeyFields>(last.fields.clone()) else {
        return vec![Reason::NeverRun];
    };
    let mut reasons = Vec::new();
    if then.kind != now.kind {
        reasons.push(Reason::KindChanged { from: then.kind.clone() });
    } else if then.version != now.version {
        reasons.push(Reason::ImplementationChanged { from: then.version, to: now.version });
    }
    if then.limit != now.limit {
        reasons.push(Reason::LimitChanged { from: then.limit, to: now.limit });
    }
    let fields = diff_paths(&then.config, &now.config);
    if !fields.is_empty() {
        reasons.push(Reason::ConfigChanged { fields });
    }
    let fields: Vec<String> = diff_paths(&then.backends, &now.backends)
        .into_iter()
        .map(|f| f.strip_prefix("backends.").unwrap_or(&f).to_string())
        .collect();
    if !fields.is_empty() {
        reasons.push(Reason::BackendChanged { fields });
    }
    let mut files = Vec::new();
    let mut nodes = Vec::new();
    let mut shape_changed = then.inputs.len() != now.inputs.len();
    for (a, b) in then.inputs.iter().zip(&now.inputs) {
        match (a, b) {
            (KeyInput::File { path: pa, hash: ha }, KeyInput::File { path: pb, hash: hb }) if ha != hb => {
                files.push(if pa == pb { pb.clone() } else { format!("{pa} → {pb}") });
            }
            (KeyInput::Node { output: ha, .. }, KeyInput::Node { node, output: hb }) if ha != hb => {
                nodes.push(node.clone())
            }
            (KeyInput::File { .. }, KeyInput::Node { .. }) | (KeyInput::Node { .. }, KeyInput::File { .. }) => {
                shape_changed = true
            }
            _ => {}
        }
    }
    if !files.is_empty() {
        reasons.push(Reason::InputFileChanged { files });
    }
    if !nodes.is_empty() {
        reasons.push(Reason::UpstreamChanged { nodes });
    }
    if shape_changed {
        reasons.push(Reason::InputsChanged);
    }
    if reasons.is_empty() {
        reasons.push(Reason::EntryMissing);
    }
    reasons
}
