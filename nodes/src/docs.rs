//! The kinds' reference, generated from the kinds themselves: the README's
//! table of kinds (each kind's `ABOUT`) and a page per kind under
//! `docs/kinds/` (its inputs, shape and every config field, with the type,
//! default and doc comment of the field in its config type). A test fails
//! when the committed files are stale; `UPDATE=1 cargo test -p flow-nodes
//! docs` rewrites them.

use std::fmt::Write as _;

use schemars::SchemaGenerator;
use serde_json::{Map, Value};

use flow_engine::{Arity, Kind, Shape};

/// The lines between which the README holds the generated table.
pub const TABLE_START: &str = "<!-- kinds: generated from the kinds by `UPDATE=1 cargo test -p flow-nodes docs` -->";
pub const TABLE_END: &str = "<!-- kinds: end -->";

/// The README's table of kinds, each linked to its page.
pub fn kinds_table() -> String {
    let mut out = String::from("| kind | what it does |\n|---|---|\n");
    for kind in crate::registry().kinds() {
        let name = kind.name();
        let _ = writeln!(out, "| [`{name}`](docs/kinds/{name}.md) | {} |", cell(kind.about()));
    }
    out
}

/// The page of one kind: `docs/kinds/<kind>.md`.
pub fn kind_page(kind: &dyn Kind) -> String {
    let name = kind.name();
    let mut generator = SchemaGenerator::default();
    let schema = kind.config_schema(&mut generator).to_value();
    let defs = generator.take_definitions(true);
    let config = resolve(&schema, &defs);
    let mut out = format!("# `{name}`\n\n<!-- generated from the kind's code: do not edit -->\n\n");
    let about = kind.about();
    let _ = writeln!(out, "{}{}.\n", about[..1].to_uppercase(), &about[1..]);
    // The config type's own doc comment, unless it only names the kind.
    if let Some(d) = config.get("description").and_then(Value::as_str).filter(|d| !d.starts_with("`kind:")) {
        let _ = writeln!(out, "{}\n", d.trim());
    }
    let input = match kind.inputs() {
        Arity::None => "none (a source)",
        Arity::One => "one upstream node (`input:`)",
        Arity::Optional => "none, or one upstream node (`input:`)",
        Arity::Many => "one or more upstream nodes (`inputs:`)",
    };
    let shape = match kind.shape() {
        Shape::Source => "a source: it emits records as it reads them",
        Shape::Streaming => "streaming: it emits each record as its input arrives",
        Shape::Barrier => "a barrier: it reads all of its input, then emits",
    };
    let _ = writeln!(out, "- **input**: {input}");
    let _ = writeln!(out, "- **runs as** {shape}");
    for side in kind.side_inputs() {
        let _ = writeln!(out, "- **side input**: `{side}:` names another node, read whole before this one starts");
    }
    let _ = writeln!(out, "- **version** {} (part of every key: a new version re-runs the node)\n", kind.version());
    out.push_str("## Fields\n\n");
    out.push_str("Besides `kind`, `input`/`inputs`, `description`, `cache` and `matrix`, which every node has.\n");
    out.push_str("Every field also takes a `${param}`.\n\n");
    match fields_table(config, &defs) {
        Some(table) => out.push_str(&table),
        None => out.push_str("None of its own.\n"),
    }
    // The types the fields are made of (a metric, a message), each once.
    let mut shown: Vec<&str> = Vec::new();
    let mut next: Vec<&str> = structs_in(config, &defs);
    while let Some(name) = next.pop() {
        if shown.contains(&name) {
            continue;
        }
        shown.push(name);
        let def = &defs[name];
        let Some(table) = fields_table(def, &defs) else { continue };
        let _ = writeln!(out, "\n### {name}\n");
        if let Some(d) = def.get("description").and_then(Value::as_str) {
            let _ = writeln!(out, "{}\n", d.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        out.push_str(&table);
        next.extend(structs_in(def, &defs).into_iter().rev());
    }
    out
}

/// The table of the fields of an object schema; `None` without fields.
fn fields_table(def: &Value, defs: &Map<String, Value>) -> Option<String> {
    let props = def.get("properties").and_then(Value::as_object).filter(|p| !p.is_empty())?;
    let required: Vec<&str> = def["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let mut out = String::from("| field | type | default | what it is |\n|---|---|---|---|\n");
    for (field, p) in props {
        let default = if required.contains(&field.as_str()) {
            "required".to_string()
        } else {
            p.get("default").map_or_else(String::new, |d| format!("`{d}`"))
        };
        let about = description(p, defs);
        let _ = writeln!(out, "| `{field}` | {} | {} | {} |", cell(&type_of(p, defs)), cell(&default), cell(&about));
    }
    Some(out)
}

/// The object types (with fields) that the fields of `def` refer to, in
/// field order.
fn structs_in<'a>(def: &Value, defs: &'a Map<String, Value>) -> Vec<&'a str> {
    fn walk<'a>(v: &Value, defs: &'a Map<String, Value>, out: &mut Vec<&'a str>) {
        if let Some(name) = v.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
            if let Some((name, def)) = defs.get_key_value(name) {
                if def.get("properties").is_some() && !out.contains(&name.as_str()) {
                    out.push(name);
                }
            }
            return;
        }
        for key in ["items", "additionalProperties"] {
            if let Some(inner) = v.get(key) {
                walk(inner, defs, out);
            }
        }
        for key in ["anyOf", "oneOf"] {
            for inner in v.get(key).and_then(Value::as_array).into_iter().flatten() {
                walk(inner, defs, out);
            }
        }
    }
    let mut out = Vec::new();
    for p in def.get("properties").and_then(Value::as_object).into_iter().flat_map(|p| p.values()) {
        walk(p, defs, &mut out);
    }
    out
}

/// A definition `$ref` points at, else `v` itself.
fn resolve<'a>(v: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => defs.get(name).unwrap_or(v),
        None => v,
    }
}

/// A field's doc comment, or the one of the type it refers to.
fn description(p: &Value, defs: &Map<String, Value>) -> String {
    let own = p.get("description").and_then(Value::as_str);
    let referred = || {
        let alternatives = p.get("anyOf").or_else(|| p.get("oneOf")).and_then(Value::as_array);
        let inner = alternatives.and_then(|a| a.iter().find(|x| x.get("$ref").is_some())).unwrap_or(p);
        resolve(inner, defs).get("description").and_then(Value::as_str)
    };
    own.or_else(referred).unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A short name of a field's type: `string`, `list of string`, `a | b`.
fn type_of(v: &Value, defs: &Map<String, Value>) -> String {
    if let Some(name) = v.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        let def = resolve(v, defs);
        let plain = ["enum", "const", "anyOf", "oneOf"].iter().any(|k| def.get(k).is_some())
            || def.get("type").is_some_and(|t| t != "object");
        return if plain { type_of(def, defs) } else { name.to_string() };
    }
    if let Some(values) = v.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(|x| format!("`{}`", x.as_str().map_or_else(|| x.to_string(), str::to_string)))
            .collect::<Vec<_>>()
            .join(" | ");
    }
    if let Some(c) = v.get("const") {
        return format!("`{}`", c.as_str().map_or_else(|| c.to_string(), str::to_string));
    }
    if let Some(alternatives) = v.get("anyOf").or_else(|| v.get("oneOf")).and_then(Value::as_array) {
        let mut names: Vec<String> = Vec::new();
        for a in alternatives.iter().filter(|a| a.get("type") != Some(&Value::from("null"))) {
            let t = type_of(a, defs);
            if !names.contains(&t) {
                names.push(t);
            }
        }
        return names.join(" | ");
    }
    let types: Vec<&str> = match v.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect(),
        _ => Vec::new(),
    };
    let named = |t: &str| match t {
        "array" => match v.get("items") {
            Some(items) => format!("list of {}", type_of(items, defs)),
            None => "list".to_string(),
        },
        "object" => match v.get("additionalProperties").filter(|a| a.is_object()) {
            Some(values) => format!("map of {}", type_of(values, defs)),
            None => "object".to_string(),
        },
        other => other.to_string(),
    };
    match types.as_slice() {
        [] => "any".to_string(),
        ts => ts.iter().map(|t| named(t)).collect::<Vec<_>>().join(" | "),
    }
}

/// Text safe in a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository").to_path_buf()
    }

    /// Compares `path` with `text`, or writes it with `UPDATE=1`; the stale
    /// ones, named.
    fn check(path: &Path, text: &str, stale: &mut Vec<String>) {
        if std::env::var_os("UPDATE").is_some_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        } else if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
            stale.push(path.strip_prefix(repo()).unwrap_or(path).display().to_string());
        }
    }

    #[test]
    fn docs_of_the_kinds_are_current() {
        let mut stale = Vec::new();
        let docs = repo().join("docs/kinds");
        let registry = crate::registry();
        for kind in registry.kinds() {
            check(&docs.join(format!("{}.md", kind.name())), &kind_page(kind), &mut stale);
        }
        // No page of a kind that is gone.
        let names: Vec<String> = registry.names().map(|n| format!("{n}.md")).collect();
        for entry in std::fs::read_dir(&docs).unwrap() {
            let file = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(names.contains(&file), "docs/kinds/{file} is the page of no kind: remove it");
        }
        let readme_path = repo().join("README.md");
        let readme = std::fs::read_to_string(&readme_path).unwrap();
        let (before, rest) = readme.split_once(TABLE_START).expect("the README has the kinds' table start line");
        let (_, after) = rest.split_once(TABLE_END).expect("the README has the kinds' table end line");
        check(&readme_path, &format!("{before}{TABLE_START}\n{}{TABLE_END}{after}", kinds_table()), &mut stale);
        assert!(
            stale.is_empty(),
            "stale: {}; regenerate with `UPDATE=1 cargo test -p flow-nodes docs`",
            stale.join(", ")
        );
    }

    #[test]
    fn a_page_lists_the_fields_with_their_types_defaults_and_docs() {
        let registry = crate::registry();
        let page = kind_page(registry.get("run").unwrap());
        assert!(page.contains("| `backend` | string | required | A name under the spec's `backends:`. |"), "{page}");
        assert!(page.contains("| `messages` | list of MessageConfig |"), "{page}");
        assert!(page.contains("- **side input**: `rules:`"), "{page}");
        assert!(kinds_table().contains("| [`load`](docs/kinds/load.md) | records from a JSONL"));
    }
}
