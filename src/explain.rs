//! `flow plan --explain NODE`: the fields a node's cache key is hashed from,
//! and which of them differ from the entry last cached for that node.

use std::fmt::Write as _;

use serde_json::Value;

use flow_engine::assess::{why_changed, Assessment};
use flow_engine::cache::Store;
use flow_engine::key::{diff_paths, KeyFields, KeyInput};
use flow_engine::Plan;

/// The value at a path such as `metrics[1].threshold`.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.') {
        let (name, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        for idx in indexes.split('[').filter(|s| !s.is_empty()) {
            cur = cur.get(idx.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(cur)
}

fn brief(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 60 {
                format!("{}…", s.chars().take(59).collect::<String>())
            } else {
                s
            }
        }
    }
}

fn short(h: &flow_engine::cache::ContentHash) -> String {
    h.hex()[..12].to_string()
}

/// The explanation of node `i`, as text.
pub fn explain(plan: &Plan, assessed: &[Assessment], store: &Store, i: usize) -> anyhow::Result<String> {
    let node = &plan.nodes[i];
    let a = &assessed[i];
    let mut out = String::new();
    let reasons: Vec<String> = a.reasons.iter().map(ToString::to_string).collect();
    let status = if reasons.is_empty() { a.state.to_string() } else { format!("{} ({})", a.state, reasons.join("; ")) };
    writeln!(out, "node `{}` ({} v{}): {status}", node.name, node.kind, node.version)?;
    let last = store.last_manifest(&plan.spec_name, &node.name)?;
    let then: Option<KeyFields> = last.as_ref().and_then(|m| serde_json::from_value(m.fields.clone()).ok());
    match (&a.key, &a.fields) {
        (Some(key), _) => writeln!(out, "key: {}", key.hex())?,
        (None, _) => {
            writeln!(out, "key: not known yet: an upstream node will run first, and its output is part of the key")?
        }
    }
    writeln!(out, "\nthe key is blake3 over:")?;
    let config = &node.compiled.config;
    writeln!(out, "  kind      {}", node.kind)?;
    writeln!(out, "  version   {}", node.version)?;
    writeln!(out, "  config    {}", brief(Some(config)))?;
    if let Some(t) = &then {
        for p in diff_paths(&t.config, config) {
            writeln!(out, "            changed `{p}`: {} → {}", brief(at(&t.config, &p)), brief(at(config, &p)))?;
        }
    }
    let inputs: Vec<KeyInput> = match &a.fields {
        Some(f) => f.inputs.clone(),
        None => Vec::new(),
    };
    for (n, &u) in node.inputs.iter().enumerate() {
        let name = &plan.nodes[u].name;
        let now = inputs.iter().find_map(|k| match k {
            KeyInput::Node { node, output } if node == name => Some(*output),
            _ => None,
        });
        let was = then
            .as_ref()
            .and_then(|t| t.inputs.iter().filter(|k| matches!(k, KeyInput::Node { .. })).nth(n))
            .and_then(|k| match k {
                KeyInput::Node { output, .. } => Some(*output),
                KeyInput::File { .. } => None,
            });
        let line = match (now, was) {
            (None, _) => "output not known yet (it will run)".to_string(),
            (Some(h), Some(w)) if h == w => format!("output {} (same)", short(&h)),
            (Some(h), Some(w)) => format!("output {} (was {})", short(&h), short(&w)),
            (Some(h), None) => format!("output {}", short(&h)),
        };
        writeln!(out, "  input     node `{name}`: {line}")?;
    }
    for f in &node.compiled.files {
        let was = then.as_ref().and_then(|t| {
            t.inputs.iter().find_map(|k| match k {
                KeyInput::File { path, hash } if *path == f.written => Some(*hash),
                _ => None,
            })
        });
        let line = match was {
            Some(w) if w == f.hash => format!("{} (same)", short(&f.hash)),
            Some(w) => format!("{} (was {})", short(&f.hash), short(&w)),
            None => short(&f.hash),
        };
        writeln!(out, "  input     file {}: {line}", f.written)?;
    }
    if !node.compiled.backends.is_empty() {
        let now = serde_json::json!({"backends": node.compiled.backends, "prices": plan.prices});
        for (name, identity) in &node.compiled.backends {
            writeln!(out, "  backend   `{name}`: {}", brief(Some(identity)))?;
        }
        if let Some(t) = &then {
            for p in diff_paths(&t.backends, &now) {
                let shown = p.strip_prefix("backends.").unwrap_or(&p);
                writeln!(
                    out,
                    "            changed `{shown}`: {} → {}",
                    brief(at(&t.backends, &p)),
                    brief(at(&now, &p))
                )?;
            }
        }
    }
    match (&last, &a.fields) {
        (None, _) => writeln!(out, "\nno entry was cached for `{}` of spec `{}` yet", node.name, plan.spec_name)?,
        (Some(m), Some(f)) => {
            let same = m.key == f.key();
            writeln!(
                out,
                "\nlast cached entry: key {} ({}), {} records, {}{}",
                short(&m.key),
                m.created,
                m.records,
                if same { "the same key: reused" } else { "a different key: " },
                if same {
                    String::new()
                } else {
                    why_changed(f, Some(m)).iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
                }
            )?;
        }
        (Some(m), None) => {
            writeln!(out, "\nlast cached entry: key {} ({}), {} records", short(&m.key), m.created, m.records)?
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_reach_nested_values() {
        let v = serde_json::json!({"metrics": [{"t": 1}, {"threshold": 0.8}], "a": {"b": true}});
        assert_eq!(at(&v, "metrics[1].threshold"), Some(&serde_json::json!(0.8)));
        assert_eq!(at(&v, "a.b"), Some(&Value::Bool(true)));
        assert_eq!(at(&v, "metrics[5]"), None);
    }
}
