//! Node keys: what a node's cached output depends on, hashed with blake3.
//!
//! The key covers the kind, its implementation version, the canonical
//! config, and the *content* of every input: for a file its hash, for an
//! upstream node the hash of its output. So an upstream that re-runs and
//! produces the same bytes leaves its consumers' keys unchanged. The fields
//! are stored in each manifest, which is how `flow plan` names what changed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use flow_cache::{hash_json, ContentHash};

/// The fields a node key is computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyFields {
    pub kind: String,
    pub version: u32,
    pub config: Value,
    pub inputs: Vec<KeyInput>,
    /// Identities of the backends the node calls (provider, base URL, model,
    /// sampling; never a key), with the prices that apply: what its answers
    /// and costs depend on besides its own config.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub backends: Value,
    /// `--limit N` on a source: only its first `N` records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// `--shard i/n`: only that slice of the records (a shard's output has
    /// a key of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::shard::Shard>,
}

/// One input's contribution to a key. Names and paths are kept to explain
/// changes; only the hashes are hashed, so renaming an upstream node does not
/// invalidate its consumers. (A file's path is still in the config of the
/// node that names it.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum KeyInput {
    Node { node: String, output: ContentHash },
    File { path: String, hash: ContentHash },
}

impl KeyInput {
    fn hash(&self) -> &ContentHash {
        match self {
            KeyInput::Node { output, .. } => output,
            KeyInput::File { hash, .. } => hash,
        }
    }
}

impl KeyFields {
    /// The node key.
    pub fn key(&self) -> ContentHash {
        #[derive(Serialize)]
        struct Hashed<'a> {
            kind: &'a str,
            version: u32,
            config: &'a Value,
            inputs: Vec<&'a ContentHash>,
            #[serde(skip_serializing_if = "Value::is_null")]
            backends: &'a Value,
            #[serde(skip_serializing_if = "Option::is_none")]
            limit: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            shard: Option<crate::shard::Shard>,
        }
        hash_json(&Hashed {
            kind: &self.kind,
            version: self.version,
            config: &self.config,
            inputs: self.inputs.iter().map(KeyInput::hash).collect(),
            backends: &self.backends,
            limit: self.limit,
            shard: self.shard,
        })
    }
}

/// Paths (`metrics[1].threshold`) at which two JSON values differ.
pub fn diff_paths(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into(old, new, String::new(), &mut out);
    out
}

fn diff_into(old: &Value, new: &Value, at: String, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_into(x, y, p, out),
                    _ => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_into(x, y, format!("{at}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        _ => out.push(if at.is_empty() { "(config)".to_string() } else { at }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_ignores_names_but_not_content() {
        let h = ContentHash::of(b"x");
        let a = KeyFields {
            kind: "evaluate".into(),
            version: 1,
            config: json!({"m": 1}),
            inputs: vec![KeyInput::Node { node: "a".into(), output: h }],
            backends: Value::Null,
            limit: None,
            shard: None,
        };
        let mut b = a.clone();
        b.inputs = vec![KeyInput::Node { node: "renamed".into(), output: h }];
        assert_eq!(a.key(), b.key());
        b.inputs = vec![KeyInput::Node { node: "a".into(), output: ContentHash::of(b"y") }];
        assert_ne!(a.key(), b.key());
        let mut c = a.clone();
        c.version = 2;
        assert_ne!(a.key(), c.key());
    }

    #[test]
    fn diff_names_field_paths() {
        let old =
            json!({"metrics": [{"type": "exact_match"}, {"type": "similarity", "threshold": 0.8}], "field": "output"});
        let new =
            json!({"metrics": [{"type": "exact_match"}, {"type": "similarity", "threshold": 0.9}], "field": "output"});
        assert_eq!(diff_paths(&old, &new), ["metrics[1].threshold"]);
        let more = json!({"metrics": [{"type": "exact_match"}], "field": "answer"});
        assert_eq!(diff_paths(&old, &more), ["field", "metrics"]);
    }
}
