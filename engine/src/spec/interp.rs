//! `${params.x}`, `${env.NAME}` and `${env.NAME:-default}`, resolved when the
//! spec loads. `{{field}}` is left alone: it is filled per record at run time.
//! `$${` writes a literal `${`.

use std::collections::BTreeMap;

use serde_yaml::Value;

/// Why a `${...}` reference could not be resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum InterpError {
    UnknownParam(String),
    MissingEnv(String),
    Malformed(String),
}

/// Resolves every reference in `s`. A string that is exactly one
/// `${params.x}` takes the parameter's typed value (so `threshold:
/// ${params.t}` stays a number); otherwise values are spliced in as text.
pub fn resolve_str(
    s: &str,
    params: &BTreeMap<String, serde_json::Value>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, InterpError> {
    if !s.contains("${") {
        return Ok(Value::String(s.to_string()));
    }
    let trimmed = s.trim();
    if trimmed.starts_with("${") && trimmed.ends_with('}') && trimmed[2..].find('}') == Some(trimmed.len() - 3) {
        let inner = &trimmed[2..trimmed.len() - 1];
        if let Some(name) = inner.strip_prefix("params.") {
            let v = params.get(name).ok_or_else(|| InterpError::UnknownParam(name.to_string()))?;
            return Ok(serde_yaml::to_value(v).expect("json converts to yaml"));
        }
        if inner.starts_with("env.") {
            // `threshold: ${env.T:-0.9}` is a number, as if written in place.
            let text = resolve_one(inner, params, env)?;
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
            out.push_str(&resolve_one(&tail[..end], params, env)?);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

fn resolve_one(
    inner: &str,
    params: &BTreeMap<String, serde_json::Value>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpError> {
    if let Some(name) = inner.strip_prefix("params.") {
        return match params.get(name) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(v) => Ok(v.to_string()),
            None => Err(InterpError::UnknownParam(name.to_string())),
        };
    }
    if let Some(spec) = inner.strip_prefix("env.") {
        let (name, default) = match spec.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (spec, None),
        };
        return match (env(name), default) {
            (Some(v), _) => Ok(v),
            (None, Some(d)) => Ok(d.to_string()),
            (None, None) => Err(InterpError::MissingEnv(name.to_string())),
        };
    }
    Err(InterpError::Malformed(format!("${{{inner}}}")))
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

    #[test]
    fn whole_string_keeps_type() {
        assert_eq!(resolve_str("${params.t}", &params(), &env).unwrap(), Value::from(0.8));
    }

    #[test]
    fn splices_text_env_and_defaults() {
        let v = resolve_str("${params.who} at ${env.HOME_DIR}, ${env.NOPE:-x} $${keep} {{field}}", &params(), &env);
        assert_eq!(v.unwrap(), Value::from("bot at /home/u, x ${keep} {{field}}"));
    }

    #[test]
    fn whole_env_reference_is_typed_like_yaml() {
        let t = |s: &str| resolve_str(s, &params(), &env).unwrap();
        assert_eq!(t("${env.NOPE:-0.9}"), Value::from(0.9));
        assert_eq!(t("${env.NOPE:-true}"), Value::from(true));
        assert_eq!(t("${env.HOME_DIR}"), Value::from("/home/u"));
        assert_eq!(t("x${env.NOPE:-1}"), Value::from("x1"));
    }

    #[test]
    fn errors_name_what_is_missing() {
        assert_eq!(resolve_str("${params.zz}", &params(), &env), Err(InterpError::UnknownParam("zz".into())));
        assert_eq!(resolve_str("a ${env.NOPE}", &params(), &env), Err(InterpError::MissingEnv("NOPE".into())));
        assert!(matches!(resolve_str("${foo}", &params(), &env), Err(InterpError::Malformed(_))));
        assert!(matches!(resolve_str("${params.t", &params(), &env), Err(InterpError::Malformed(_))));
    }
}
