//! `tool_call`: the answer called the tool `tool`, with the arguments
//! expected. A `run` node with `tools:` keeps an answer's calls as the
//! record's `tool_calls` (`[{name, arguments}]`, arguments parsed); this
//! passes when some call of that name has arguments equal to `arguments`
//! (`match: exact`, the default), containing them (`match: subset`: extra
//! keys and list items in order are allowed), and valid against `schema`
//! when given. The reason says what was called instead.

use serde_json::Value;

use flow_engine::NodeError;

use super::json::validator;
use super::{arg, shorten, Score, ScoreError, Verdict};
use crate::evaluate::config::{ArgumentsMatch, MetricConfig};

pub struct ToolCallCheck {
    tool: String,
    arguments: Option<Value>,
    subset: bool,
    schema: Option<Box<jsonschema::Validator>>,
}

impl ToolCallCheck {
    pub fn new(m: &MetricConfig) -> Result<Self, NodeError> {
        let schema = match &m.schema {
            Some(s) => Some(Box::new(validator(s).map_err(|e| NodeError::new(format!("`schema`: {e}")))?)),
            None => None,
        };
        Ok(Self {
            tool: arg(m, &m.tool, "tool")?.clone(),
            arguments: m.arguments.clone(),
            subset: m.arguments_match == Some(ArgumentsMatch::Subset),
            schema,
        })
    }

    /// The verdict on a record's `tool_calls`.
    pub fn score(&self, value: &Value, field: &str) -> Verdict {
        let calls = value.as_array().ok_or_else(|| ScoreError::NotToolCalls { field: field.to_string() })?;
        let named: Vec<&Value> =
            calls.iter().filter(|c| c["name"] == self.tool.as_str()).map(|c| &c["arguments"]).collect();
        if named.is_empty() {
            let called: Vec<&str> = calls.iter().filter_map(|c| c["name"].as_str()).collect();
            let reason = if called.is_empty() {
                format!("no tool was called; expected `{}`", self.tool)
            } else {
                format!("`{}` was not called; called: {}", self.tool, called.join(", "))
            };
            return Ok(Score::failing_because(false, || reason));
        }
        let mut why = String::new();
        for args in named {
            match self.mismatch(args) {
                None => return Ok(Score::flag(true)),
                Some(w) if why.is_empty() => why = w,
                Some(_) => {}
            }
        }
        Ok(Score::failing_because(false, || why))
    }

    /// Why `args` are not what is expected, if they are not.
    fn mismatch(&self, args: &Value) -> Option<String> {
        let shown = || shorten(&args.to_string(), 120);
        if let Some(expected) = &self.arguments {
            let ok = if self.subset { contains(args, expected) } else { args == expected };
            if !ok {
                let how = if self.subset { "do not contain" } else { "are not" };
                return Some(format!(
                    "`{}`'s arguments {} {how} {}",
                    self.tool,
                    shown(),
                    shorten(&expected.to_string(), 120)
                ));
            }
        }
        if let Some(v) = &self.schema {
            if let Some(e) = v.iter_errors(args).next() {
                let at = e.instance_path().as_str().to_string();
                let at = if at.is_empty() { String::new() } else { format!(" at `{at}`") };
                return Some(format!(
                    "`{}`'s arguments do not fit the schema{at}: {}",
                    self.tool,
                    shorten(&e.to_string(), 160)
                ));
            }
        }
        None
    }
}

/// Whether `have` holds `want`: objects by key (extra keys allowed), lists
/// item by item in order (extra items allowed), anything else equal.
fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w.iter().all(|(k, v)| h.get(k).is_some_and(|x| contains(x, v))),
        (Value::Array(h), Value::Array(w)) => {
            let mut rest = h.iter();
            w.iter().all(|v| rest.any(|x| contains(x, v)))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => have == want,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{rec, score};

    fn calls() -> flow_engine::Record {
        rec(json!({"output": "", "tool_calls": [
            {"name": "search", "arguments": {"q": "rust"}},
            {"name": "weather", "arguments": {"city": "Paris", "unit": "c", "days": [1, 2]}},
        ]}))
    }

    #[test]
    fn names_and_exact_arguments() {
        let r = calls();
        assert!(score("{type: tool_call, tool: search}", &r).unwrap().pass);
        assert!(score("{type: tool_call, tool: search, arguments: {q: rust}}", &r).unwrap().pass);
        let s = score("{type: tool_call, tool: weather, arguments: {city: Paris}}", &r).unwrap();
        assert!(!s.pass);
        assert!(s.reason.unwrap().contains("are not {\"city\":\"Paris\"}"));
        let s = score("{type: tool_call, tool: book}", &r).unwrap();
        assert_eq!(s.reason.as_deref(), Some("`book` was not called; called: search, weather"));
        let none = rec(json!({"output": "hi", "tool_calls": []}));
        assert!(score("{type: tool_call, tool: book}", &none).unwrap().reason.unwrap().contains("no tool was called"));
    }

    #[test]
    fn subset_and_schema() {
        let r = calls();
        let yaml = "{type: tool_call, tool: weather, match: subset, arguments: {city: Paris, days: [2]}}";
        assert!(score(yaml, &r).unwrap().pass);
        let yaml = "{type: tool_call, tool: weather, match: subset, arguments: {city: Rome}}";
        assert!(!score(yaml, &r).unwrap().pass);
        let schema = "{type: object, required: [city], properties: {unit: {enum: [c, f]}}}";
        assert!(score(&format!("{{type: tool_call, tool: weather, schema: {schema}}}"), &r).unwrap().pass);
        let strict = "{type: object, required: [country]}";
        let s = score(&format!("{{type: tool_call, tool: weather, schema: {strict}}}"), &r).unwrap();
        assert!(!s.pass && s.reason.unwrap().contains("do not fit the schema"));
        let text = rec(json!({"tool_calls": "x"}));
        assert!(score("{type: tool_call, tool: a}", &text).unwrap_err().contains("not a list of tool calls"));
    }
}
