//! `${params.x}`, `${inputs.x}` (in a template), `${matrix.k}` (in a node
//! with `matrix:`), `${env.NAME}` and `${env.NAME:-default}`, resolved when
//! the spec loads. `{{field}}` is left alone: it is filled per record at run
//! time. `$${` writes a literal `${`.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::{SpecFile, YamlPath};
use crate::diag::{suggest, Diagnostic};

/// What `${...}` may name where a value is written.
#[derive(Clone, Copy)]
pub struct Vars<'a> {
    /// The spec's params; `None` inside a template, which sees only its inputs.
    pub params: Option<&'a BTreeMap<String, serde_json::Value>>,
    /// A template's inputs; `None` outside a template. A `None` value is an
    /// input whose value is missing or rejected (already reported).
    pub inputs: Option<&'a BTreeMap<String, Option<serde_json::Value>>>,
    /// The values of this copy of a `matrix:` node; `None` elsewhere.
    pub matrix: Option<&'a BTreeMap<String, serde_json::Value>>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Vars<'a> {
    /// The same names plus one copy's matrix values.
    pub fn with_matrix(self, matrix: Option<&'a BTreeMap<String, serde_json::Value>>) -> Self {
        Self { matrix, ..self }
    }
}

/// Why a `${...}` reference could not be resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum InterpError {
    UnknownParam(String),
    /// `${params.x}` inside a template.
    ParamInTemplate(String),
    UnknownInput(String),
    /// `${inputs.x}` outside a template.
    InputOutsideTemplate(String),
    /// A declared input without a value; its problem is reported at `with:`.
    InputUnset(String),
    UnknownMatrixKey(String),
    /// `${matrix.k}` in a node without `matrix:`.
    NoMatrix(String),
    MissingEnv(String),
    Malformed(String),
}

/// Resolves every reference in `s`. A string that is exactly one
/// `${params.x}`, `${inputs.x}` or `${matrix.k}` takes the value with its
/// type (so `threshold: ${params.t}` stays a number and a list input stays a
/// list); otherwise values are spliced in as text.
pub fn resolve(s: &str, vars: &Vars) -> Result<Value, InterpError> {
    if !s.contains("${") {
        return Ok(Value::String(s.to_string()));
    }
    let trimmed = s.trim();
    if trimmed.starts_with("${") && trimmed.ends_with('}') && trimmed[2..].find('}') == Some(trimmed.len() - 3) {
        let inner = &trimmed[2..trimmed.len() - 1];
        if let Some(v) = typed(inner, vars)? {
            return Ok(serde_yaml::to_value(v).expect("json converts to yaml"));
        }
        if inner.starts_with("env.") {
            // `threshold: ${env.T:-0.9}` is a number, as if written in place.
            let text = resolve_one(inner, vars)?;
            return Ok(match serde_yaml::from_str::<Value>(&text) {
                Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
                _ => Value::String(text),
            });
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or_else(|| InterpError::Malformed(after.to_string()))?;
            out.push_str(&resolve_one(&tail[..end], vars)?);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

/// The typed value of a `params.`, `inputs.` or `matrix.` reference; `None`
/// for other references.
fn typed<'v>(inner: &str, vars: &'v Vars) -> Result<Option<&'v serde_json::Value>, InterpError> {
    if let Some(name) = inner.strip_prefix("params.") {
        let Some(params) = vars.params else {
            return Err(InterpError::ParamInTemplate(name.to_string()));
        };
        return params.get(name).map(Some).ok_or_else(|| InterpError::UnknownParam(name.to_string()));
    }
    if let Some(name) = inner.strip_prefix("inputs.") {
        let Some(inputs) = vars.inputs else {
            return Err(InterpError::InputOutsideTemplate(name.to_string()));
        };
        return match inputs.get(name) {
            Some(Some(v)) => Ok(Some(v)),
            Some(None) => Err(InterpError::InputUnset(name.to_string())),
            None => Err(InterpError::UnknownInput(name.to_string())),
        };
    }
    if let Some(key) = inner.strip_prefix("matrix.") {
        let Some(matrix) = vars.matrix else {
            return Err(InterpError::NoMatrix(key.to_string()));
        };
        return matrix.get(key).map(Some).ok_or_else(|| InterpError::UnknownMatrixKey(key.to_string()));
    }
    Ok(None)
}

fn resolve_one(inner: &str, vars: &Vars) -> Result<String, InterpError> {
    if let Some(v) = typed(inner, vars)? {
        return Ok(match v {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        });
    }
    if let Some(spec) = inner.strip_prefix("env.") {
        let (name, default) = match spec.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (spec, None),
        };
        return match ((vars.env)(name), default) {
            (Some(v), _) => Ok(v),
            (None, Some(d)) => Ok(d.to_string()),
            (None, None) => Err(InterpError::MissingEnv(name.to_string())),
        };
    }
    Err(InterpError::Malformed(format!("${{{inner}}}")))
}

/// Resolves the references in YAML values of one file, reporting each
/// problem where it is written.
pub(super) struct Interp<'a> {
    pub file: &'a SpecFile,
    pub diags: &'a mut Vec<Diagnostic>,
    /// Set when a reference could not be resolved, reported or not (an
    /// input whose value is missing is reported at the `with:` that misses it).
    pub unresolved: bool,
}

impl<'a> Interp<'a> {
    pub fn new(file: &'a SpecFile, diags: &'a mut Vec<Diagnostic>) -> Self {
        Self { file, diags, unresolved: false }
    }

    /// `v` with every `${...}` in its strings resolved; `path` locates `v`.
    pub fn value(&mut self, v: &Value, path: &YamlPath, vars: &Vars) -> Value {
        match v {
            Value::String(s) => match resolve(s, vars) {
                Ok(v) => v,
                Err(e) => {
                    self.unresolved = true;
                    if let Some(d) = self.diagnostic(e, path, vars) {
                        self.diags.push(d);
                    }
                    v.clone()
                }
            },
            Value::Sequence(items) => {
                Value::Sequence(items.iter().enumerate().map(|(i, x)| self.value(x, &path.index(i), vars)).collect())
            }
            Value::Mapping(m) => Value::Mapping(
                m.iter().map(|(k, x)| (k.clone(), self.value(x, &path.key(super::yaml_brief(k)), vars))).collect(),
            ),
            Value::Tagged(t) => self.value(&t.value, path, vars),
            other => other.clone(),
        }
    }

    fn diagnostic(&self, e: InterpError, path: &YamlPath, vars: &Vars) -> Option<Diagnostic> {
        fn keys<V>(m: Option<&BTreeMap<String, V>>) -> Vec<String> {
            m.map(|m| m.keys().cloned().collect()).unwrap_or_default()
        }
        let at = |msg: String| self.file.at_value(path, msg);
        Some(match e {
            InterpError::UnknownParam(p) => at(format!("unknown param `{p}` in `${{params.{p}}}`")).hint(suggest(
                &p,
                vars.params.into_iter().flat_map(|m| m.keys().map(String::as_str)),
                "a param",
            )),
            InterpError::ParamInTemplate(p) => at(format!("a template cannot read `${{params.{p}}}`"))
                .hint(format!(
                    "templates see only their inputs: declare `inputs: {{{p}: {{type: ...}}}}`, write `${{inputs.{p}}}`, and pass it from the spec with `with: {{{p}: ${{params.{p}}}}}`"
                )),
            InterpError::UnknownInput(i) => {
                let names = keys(vars.inputs);
                let hint = if names.is_empty() {
                    format!("the template declares no inputs; add `inputs: {{{i}: {{type: string}}}}`")
                } else {
                    suggest(&i, names.iter().map(String::as_str), "an input")
                };
                at(format!("unknown input `{i}` in `${{inputs.{i}}}`")).hint(hint)
            }
            InterpError::InputOutsideTemplate(i) => at(format!("`${{inputs.{i}}}` outside a template")).hint(
                "`${inputs.NAME}` is for template files (used with `uses:`); in a spec, use `${params.NAME}`",
            ),
            InterpError::InputUnset(_) => return None,
            InterpError::UnknownMatrixKey(k) => at(format!("unknown matrix key `{k}` in `${{matrix.{k}}}`")).hint(
                suggest(&k, keys(vars.matrix).iter().map(String::as_str), "a key of this node's `matrix:`"),
            ),
            InterpError::NoMatrix(k) => at(format!("`${{matrix.{k}}}` in a node without `matrix:`"))
                .hint(format!("add `matrix: {{{k}: [a, b]}}` to the node to make one copy per value")),
            InterpError::MissingEnv(n) => at(format!("environment variable `{n}` is not set"))
                .hint(format!("export {n}=..., or give a default: `${{env.{n}:-value}}`")),
            InterpError::Malformed(r) => at(format!("cannot resolve `{r}`")).hint(
                "references are `${params.NAME}`, `${env.NAME}`, `${env.NAME:-default}`, `${inputs.NAME}` in a template, `${matrix.KEY}` in a node with `matrix:`; write `$${` for a literal `${`",
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> BTreeMap<String, serde_json::Value> {
        [("t".to_string(), serde_json::json!(0.8)), ("who".to_string(), serde_json::json!("bot"))].into()
    }

    fn env(name: &str) -> Option<String> {
        (name == "HOME_DIR").then(|| "/home/u".to_string())
    }

    fn resolve_str(s: &str) -> Result<Value, InterpError> {
        let p = params();
        resolve(s, &Vars { params: Some(&p), inputs: None, matrix: None, env: &env })
    }

    #[test]
    fn whole_string_keeps_type() {
        assert_eq!(resolve_str("${params.t}").unwrap(), Value::from(0.8));
    }

    #[test]
    fn splices_text_env_and_defaults() {
        let v = resolve_str("${params.who} at ${env.HOME_DIR}, ${env.NOPE:-x} $${keep} {{field}}");
        assert_eq!(v.unwrap(), Value::from("bot at /home/u, x ${keep} {{field}}"));
    }

    #[test]
    fn whole_env_reference_is_typed_like_yaml() {
        let t = |s: &str| resolve_str(s).unwrap();
        assert_eq!(t("${env.NOPE:-0.9}"), Value::from(0.9));
        assert_eq!(t("${env.NOPE:-true}"), Value::from(true));
        assert_eq!(t("${env.HOME_DIR}"), Value::from("/home/u"));
        assert_eq!(t("x${env.NOPE:-1}"), Value::from("x1"));
    }

    #[test]
    fn errors_name_what_is_missing() {
        assert_eq!(resolve_str("${params.zz}"), Err(InterpError::UnknownParam("zz".into())));
        assert_eq!(resolve_str("a ${env.NOPE}"), Err(InterpError::MissingEnv("NOPE".into())));
        assert!(matches!(resolve_str("${foo}"), Err(InterpError::Malformed(_))));
        assert!(matches!(resolve_str("${params.t"), Err(InterpError::Malformed(_))));
        assert_eq!(resolve_str("${inputs.x}"), Err(InterpError::InputOutsideTemplate("x".into())));
        assert_eq!(resolve_str("${matrix.m}"), Err(InterpError::NoMatrix("m".into())));
    }

    #[test]
    fn inputs_and_matrix_in_a_template() {
        let inputs: BTreeMap<String, Option<serde_json::Value>> = [
            ("metrics".to_string(), Some(serde_json::json!(["a", "b"]))),
            ("n".to_string(), Some(serde_json::json!(3))),
            ("unset".to_string(), None),
        ]
        .into();
        let matrix: BTreeMap<String, serde_json::Value> = [("model".to_string(), serde_json::json!("m1"))].into();
        let vars = Vars { params: None, inputs: Some(&inputs), matrix: Some(&matrix), env: &env };
        let list: Value = serde_yaml::from_str("[a, b]").unwrap();
        assert_eq!(resolve("${inputs.metrics}", &vars).unwrap(), list);
        assert_eq!(resolve("${inputs.n}", &vars).unwrap(), Value::from(3));
        assert_eq!(resolve("n=${inputs.n} on ${matrix.model}", &vars).unwrap(), Value::from("n=3 on m1"));
        assert_eq!(resolve("${params.t}", &vars), Err(InterpError::ParamInTemplate("t".into())));
        assert_eq!(resolve("${inputs.nope}", &vars), Err(InterpError::UnknownInput("nope".into())));
        assert_eq!(resolve("${inputs.unset}", &vars), Err(InterpError::InputUnset("unset".into())));
        assert_eq!(resolve("${matrix.temp}", &vars), Err(InterpError::UnknownMatrixKey("temp".into())));
    }
}
