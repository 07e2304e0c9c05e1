//! `matrix:` on a node: one copy of the node per combination of values,
//! named after them (`answers[model=gpt-4o,temp=0]`, keys in the order
//! written, the first varying slowest), each copy reading its values as
//! `${matrix.KEY}`.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::{yaml_brief, SpecFile, YamlPath};
use crate::diag::Diagnostic;

/// More copies than this from one node is almost surely a mistake.
const MAX_COPIES: usize = 1000;

/// One copy of a matrix node.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Combo {
    /// `[model=gpt-4o,temp=0]`, appended to the node's name.
    pub suffix: String,
    /// `${matrix.KEY}` values.
    pub values: BTreeMap<String, serde_json::Value>,
}

/// The copies of node `name` for its `matrix:` value (references already
/// resolved) at `at`; `None` when the matrix is rejected (reported).
pub(super) fn combos(
    file: &SpecFile,
    diags: &mut Vec<Diagnostic>,
    name: &str,
    value: &Value,
    at: &YamlPath,
) -> Option<Vec<Combo>> {
    let shape_hint = "write `matrix: {model: [gpt-4o, gpt-4o-mini]}`: each key a list of values";
    let map = match value {
        Value::Mapping(m) if !m.is_empty() => m,
        _ => {
            diags.push(
                file.at_value(at, format!("`matrix` of node `{name}` must map keys to lists of values"))
                    .hint(shape_hint),
            );
            return None;
        }
    };
    let before = diags.len();
    // (key, [(value, text in the name)]) in the order written.
    let mut axes: Vec<(String, Vec<(serde_json::Value, String)>)> = Vec::new();
    for (k, v) in map {
        let key = yaml_brief(k);
        let kpath = at.key(key.clone());
        let valid = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            diags.push(
                file.at_key(&kpath, format!("invalid matrix key `{key}` in node `{name}`"))
                    .hint("use letters, digits and `_`, starting with a letter (it is read as `${matrix.KEY}`)"),
            );
            continue;
        }
        let items = match v {
            Value::Sequence(items) if !items.is_empty() => items,
            _ => {
                diags.push(
                    file.at_value(&kpath, format!("matrix key `{key}` of node `{name}` must be a non-empty list"))
                        .hint(format!("write `{key}: [a, b]` (a single value is `[a]`)")),
                );
                continue;
            }
        };
        let mut values: Vec<(serde_json::Value, String)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let json = match item {
                Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                    serde_json::to_value(item).expect("a scalar converts to json")
                }
                _ => {
                    diags.push(
                        file.at_value(
                            &kpath.index(i),
                            format!("matrix values of `{key}` must be strings, numbers or booleans"),
                        )
                        .hint("each value becomes part of a node name, e.g. `answers[model=gpt-4o]`"),
                    );
                    continue;
                }
            };
            let text = name_text(item);
            if let Some((other, _)) = values.iter().find(|(_, t)| *t == text) {
                let (this, other) = (yaml_brief(item), yaml_brief(&serde_yaml::to_value(other).expect("json is yaml")));
                let what = if this == other {
                    format!("matrix key `{key}` of node `{name}` lists `{this}` twice")
                } else {
                    format!(
                        "matrix values `{other}` and `{this}` of key `{key}` give the same node name `{name}[{key}={text}]`"
                    )
                };
                diags.push(
                    file.at_value(&kpath.index(i), what)
                        .hint("in node names, characters other than letters, digits, `_`, `-` and `.` read as `_`"),
                );
                continue;
            }
            values.push((json, text));
        }
        axes.push((key, values));
    }
    if diags.len() > before {
        return None;
    }
    let count = axes.iter().try_fold(1usize, |n, (_, v)| n.checked_mul(v.len())).unwrap_or(usize::MAX);
    if count > MAX_COPIES {
        diags.push(
            file.at_key(at, format!("`matrix` of node `{name}` makes {count} copies, more than {MAX_COPIES}"))
                .hint("split the matrix over several nodes, or use fewer values"),
        );
        return None;
    }
    // Odometer: the last key varies fastest.
    let mut out = Vec::with_capacity(count);
    let mut at_value = vec![0usize; axes.len()];
    loop {
        let mut parts = Vec::with_capacity(axes.len());
        let mut values = BTreeMap::new();
        for ((key, vals), &i) in axes.iter().zip(&at_value) {
            parts.push(format!("{key}={}", vals[i].1));
            values.insert(key.clone(), vals[i].0.clone());
        }
        out.push(Combo { suffix: format!("[{}]", parts.join(",")), values });
        let mut k = axes.len();
        loop {
            if k == 0 {
                return Some(out);
            }
            k -= 1;
            at_value[k] += 1;
            if at_value[k] < axes[k].1.len() {
                break;
            }
            at_value[k] = 0;
        }
    }
}

/// A value as it reads in a node name: letters, digits, `_`, `-` and `.`
/// kept, anything else `_` (names are folder names and shell arguments).
fn name_text(v: &Value) -> String {
    name_chars(&yaml_brief(v))
}

/// A value's text as it reads in a node name (see [`name_text`]): so that
/// `answers[model=llama3:8b]` names the copy `answers[model=llama3_8b]`.
pub(super) fn name_chars(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Source;
    use crate::spec::LocationIndex;

    fn run(yaml: &str) -> (Option<Vec<Combo>>, Vec<Diagnostic>) {
        let file = SpecFile {
            source: Source { path: "s.yaml".into(), text: yaml.into() },
            dir: ".".into(),
            index: LocationIndex::build(yaml),
            template: false,
        };
        let value: Value = serde_yaml::from_str(yaml).unwrap();
        let mut diags = Vec::new();
        let c = combos(&file, &mut diags, "answers", &value, &YamlPath::root());
        (c, diags)
    }

    #[test]
    fn copies_in_written_order_first_key_slowest() {
        let (c, d) = run("{model: [gpt-4o, org/m], temp: [0, 0.5]}");
        assert!(d.is_empty());
        let names: Vec<String> = c.unwrap().iter().map(|c| c.suffix.clone()).collect();
        assert_eq!(
            names,
            ["[model=gpt-4o,temp=0]", "[model=gpt-4o,temp=0.5]", "[model=org_m,temp=0]", "[model=org_m,temp=0.5]"]
        );
        let (c, _) = run("{model: [a]}");
        assert_eq!(c.unwrap()[0].values["model"], serde_json::json!("a"));
    }

    #[test]
    fn rejects_shapes_and_collisions() {
        let msgs = |y: &str| run(y).1.into_iter().map(|d| d.message).collect::<Vec<_>>().join("\n");
        assert!(msgs("[a, b]").contains("must map keys to lists"));
        assert!(msgs("{model: gpt-4o}").contains("must be a non-empty list"));
        assert!(msgs("{model: [a, a]}").contains("lists `a` twice"));
        assert!(msgs("{model: [a/b, a_b]}").contains("give the same node name `answers[model=a_b]`"));
        assert!(msgs("{model: [[a]]}").contains("strings, numbers or booleans"));
        assert!(msgs("{2x: [a]}").contains("invalid matrix key `2x`"));
    }
}
