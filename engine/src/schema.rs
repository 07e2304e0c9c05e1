//! The JSON Schema of a spec (`flow schema`), generated from the Rust types:
//! the backend and price types of the spec, and each kind's config type
//! (`Node::Config`, deriving `JsonSchema`), joined under one document so editors validate
//! and complete specs (`# yaml-language-server: $schema=...`). The same
//! schema covers template files (`inputs:` and template uses).

use schemars::{JsonSchema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::node::Registry;
use crate::spec::{BackendSpec, Price};

/// One entry of `params:` in its long form (a bare scalar is a default).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ParamDecl {
    #[serde(rename = "type")]
    ty: Option<ParamType>,
    default: Option<Value>,
    description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum ParamType {
    String,
    Int,
    Float,
    Bool,
}

/// Fields every node has, whatever its kind (`spec::NODE_FIELDS`).
fn common_fields() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("input".into(), json!({"type": "string", "description": "the one upstream node"}));
    m.insert(
        "inputs".into(),
        json!({"description": "upstream nodes, in order", "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
    );
    m.insert("description".into(), json!({"type": "string"}));
    m.insert(
        "cache".into(),
        json!({"type": "boolean", "description": "false: run every time, reuse no memoized call"}),
    );
    m.insert("matrix".into(), matrix());
    m
}

/// `matrix:` — the node is expanded over every combination of the lists.
fn matrix() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "array"}, "description": "expand the node over these lists: `answers[model=x]`"})
}

/// A node that instantiates a template.
fn template_use() -> Value {
    json!({
        "type": "object",
        "required": ["uses"],
        "additionalProperties": false,
        "properties": {
            "uses": {"type": "string", "description": "a template file, relative to this spec"},
            "with": {"type": "object", "description": "values for the template's `inputs:`"},
            "matrix": matrix(),
            "description": {"type": "string"},
        },
    })
}

/// One entry of a template file's `inputs:`.
fn template_input() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "type": {"enum": ["string", "int", "float", "bool", "enum", "list", "node"]},
            "default": {},
            "description": {"type": "string"},
            "values": {"type": "array", "description": "`enum`: the values allowed"},
        },
    })
}

/// Lets every field's value also be a `${params.x}` / `${env.X}` reference,
/// which the spec resolves before its types are checked.
fn allow_references(schema: &mut Value) {
    let reference = json!({"type": "string", "pattern": "^\\$\\{[^}]+\\}$"});
    let Some(o) = schema.as_object_mut() else { return };
    if let Some(Value::Object(props)) = o.get_mut("properties") {
        for (name, field) in props.iter_mut() {
            allow_references(field);
            if name != "kind" {
                *field = json!({"anyOf": [field.take(), reference.clone()]});
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = o.get_mut(key).filter(|v| v.is_object()) {
            allow_references(inner);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(list)) = o.get_mut(key) {
            list.iter_mut().for_each(allow_references);
        }
    }
}

/// The schema document.
pub fn spec_schema(registry: &Registry) -> Value {
    let mut generator = SchemaGenerator::default();
    let mut kinds: Vec<(&'static str, Value)> = Vec::new();
    for kind in registry.kinds() {
        let name = kind.name();
        let mut node = kind.config_schema(&mut generator).to_value();
        // A config is a `$ref` to its type: wrap it so the common fields and
        // the `kind` discriminator sit beside the kind's own fields.
        let mut props = common_fields();
        props.insert("kind".into(), json!({"const": name, "description": kind.about()}));
        node = json!({
            "title": format!("`{name}` node"),
            "description": kind.about(),
            "allOf": [node],
            "properties": props,
            "required": ["kind"],
        });
        kinds.push((name, node));
    }
    let backend = generator.subschema_for::<BackendSpec>().to_value();
    let price = generator.subschema_for::<Price>().to_value();
    let param = generator.subschema_for::<ParamDecl>().to_value();
    let mut defs: Map<String, Value> = generator.take_definitions(true);
    // A kind's config denies unknown fields, but it is used beside the common
    // fields: the denial moves to the node wrapper (`unevaluatedProperties`
    // sees the fields of both).
    for (_, node) in kinds.iter_mut() {
        if let Some(name) = node["allOf"][0]["$ref"].as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
            if let Some(o) = defs.get_mut(name).and_then(Value::as_object_mut) {
                o.remove("additionalProperties");
            }
        }
        node["unevaluatedProperties"] = Value::Bool(false);
    }
    for v in defs.values_mut() {
        allow_references(v);
    }
    let names: Vec<&str> = kinds.iter().map(|(n, _)| *n).collect();
    for (name, node) in kinds.iter() {
        defs.insert(format!("node:{name}"), node.clone());
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://flow.dev/schema/flow-1.json",
        "title": "flow spec",
        "description": "A flow spec: params, backends, prices and a DAG of nodes. Generated by `flow schema`.",
        "type": "object",
        "additionalProperties": false,
        "required": ["flow", "nodes"],
        "properties": {
            "flow": {"const": 1, "description": "spec version"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "params": {
                "type": "object",
                "additionalProperties": {"oneOf": [param, {"type": ["string", "number", "boolean"]}]},
            },
            "backends": {"type": "object", "additionalProperties": backend},
            "prices": {"type": "object", "additionalProperties": price, "description": "USD per million tokens"},
            "inputs": {
                "type": "object",
                // `threshold: 0.8` is short for a declaration with that default.
                "additionalProperties": {"anyOf": [template_input(), {"type": ["string", "number", "boolean", "array"]}]},
                "description": "a template file's typed inputs",
            },
            "nodes": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "if": {"required": ["uses"]},
                    "then": template_use(),
                    "else": {
                        "required": ["kind"],
                        "properties": {"kind": {"enum": names}},
                        // `if kind is X then X's fields`: editors then report
                        // the field that is wrong, not "matches none of N kinds".
                        "allOf": names.iter().map(|n| json!({
                            "if": {"properties": {"kind": {"const": n}}, "required": ["kind"]},
                            "then": {"$ref": format!("#/$defs/node:{n}")},
                        })).collect::<Vec<_>>(),
                    },
                },
            },
        },
        "$defs": Value::Object(defs),
    })
}
