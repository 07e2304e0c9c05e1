//! What the user's own application sees and says, for `provider: http`
//! and `provider: exec`: the request built from the record and the
//! rendered prompt, and the answer read back into the chat-completion
//! shape every stage reads (`choices[0].message.content`, `usage`), so the
//! memo, accounting and stages treat an app like any other backend.
//!
//! The request is a pure function of the backend's spec, the record and the
//! messages, so `flow plan` computes the same memo keys as the run: an
//! `exec` program reads `{record, prompt, system, messages}` as one JSON
//! line; an `http` endpoint gets its `body:` template rendered over the
//! record's fields plus `prompt`, `system`, `messages` and `record` (the
//! same object when the spec gives no `body:`).

use serde_json::{json, Map, Value};

use flow_engine::spec::app::ResponsePath;
use flow_engine::template::RenderError;
use flow_engine::{BackendSpec, Provider, Template};

use super::{CallError, Message};

/// Whether the backend is the user's own application.
pub fn is_app(provider: Provider) -> bool {
    matches!(provider, Provider::Http | Provider::Exec)
}

/// The prompt as an app takes it: the last user message.
fn prompt(messages: &[Message]) -> &str {
    messages.iter().rev().find(|m| m.role == "user").map_or("", |m| m.content.as_str())
}

/// `{record, prompt, system, messages}`: an `exec` program's request line,
/// and what an `http` body template may read besides the record's fields.
pub fn request(record: &Map<String, Value>, messages: &[Message]) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("record".into(), Value::Object(record.clone()));
    out.insert("prompt".into(), json!(prompt(messages)));
    if let Some(system) = messages.iter().find(|m| m.role == "system") {
        out.insert("system".into(), json!(system.content));
    }
    let msgs: Vec<Value> = messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
    out.insert("messages".into(), Value::Array(msgs));
    out
}

/// The body an app backend is sent for `record` and `messages`: the memo
/// key's body. A record without a field the `body:` reads is an error of
/// that record.
pub fn body(spec: &BackendSpec, record: &Map<String, Value>, messages: &[Message]) -> Result<Value, RenderError> {
    let request = request(record, messages);
    match (&spec.provider, &spec.body) {
        (Provider::Http, Some(template)) => {
            let mut cx = record.clone();
            cx.extend(request);
            render(template, &cx)
        }
        _ => Ok(Value::Object(request)),
    }
}

/// A `body:` template filled from `cx`: every string is a `{{field}}`
/// template; one that is a single `{{field}}` alone takes that value.
fn render(template: &Value, cx: &Map<String, Value>) -> Result<Value, RenderError> {
    Ok(match template {
        Value::String(s) => {
            if let Some(path) = whole_field(s) {
                let mut v = cx.get(path[0]);
                for seg in &path[1..] {
                    v = v.and_then(|x| match x {
                        Value::Object(o) => o.get(*seg),
                        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                        _ => None,
                    });
                }
                match v {
                    Some(v) if !v.is_null() => v.clone(),
                    _ => return Err(RenderError { field: path.join(".") }),
                }
            } else {
                match Template::parse(s) {
                    Ok(t) => Value::String(t.render(cx)?.into_owned()),
                    // Checked when the spec loaded: not reached.
                    Err(_) => Value::String(s.clone()),
                }
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| render(x, cx)).collect::<Result<_, _>>()?),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, x)| Ok((k.clone(), render(x, cx)?))).collect::<Result<_, _>>()?)
        }
        other => other.clone(),
    })
}

/// The dotted path of a string that is one `{{field}}` and nothing else.
fn whole_field(s: &str) -> Option<Vec<&str>> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") {
        return None;
    }
    let path: Vec<&str> = inner.trim().split('.').collect();
    path.iter().all(|p| !p.is_empty()).then_some(path)
}

/// Where an app's answer holds its parts.
pub struct Reading {
    pub output: ResponsePath,
    pub usage: Option<ResponsePath>,
    pub cost: Option<ResponsePath>,
}

impl Reading {
    /// An `http` backend's paths (checked when the spec loaded).
    pub fn of_http(spec: &BackendSpec) -> Self {
        let path = |p: &str| ResponsePath::parse(p).unwrap_or_else(|_| ResponsePath::parse("output").expect("a path"));
        Self {
            output: path(spec.output.as_deref().unwrap_or("output")),
            usage: spec.usage.as_deref().map(path),
            cost: spec.cost.as_deref().map(path),
        }
    }

    /// The `exec` protocol's answer: `{"output", "usage", "cost_usd"}`.
    pub fn of_exec() -> Self {
        let path = |p: &str| ResponsePath::parse(p).expect("a path");
        Self { output: path("output"), usage: Some(path("usage")), cost: Some(path("cost_usd")) }
    }

    /// The answer in the chat-completion shape: its text (a value that is
    /// not a string as JSON), token counts and cost. No answer at the
    /// `output` path fails the call (not retried); the start of what came
    /// is in the message.
    pub fn normalize(&self, answer: &Value, model: &str) -> Result<Value, CallError> {
        let text = match self.output.get(answer) {
            Some(Value::String(s)) => s.clone(),
            Some(v) if !v.is_null() => v.to_string(),
            _ => {
                let shown: String = answer.to_string().chars().take(200).collect();
                return Err(CallError::fatal(format!("the answer has no `{}`: {shown}", self.output.written)));
            }
        };
        let mut out = json!({
            "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "model": answer.get("model").and_then(Value::as_str).unwrap_or(model),
        });
        if let Some(u) = self.usage.as_ref().and_then(|p| p.get(answer)) {
            let count = |names: [&str; 2]| names.iter().find_map(|n| u.get(*n).and_then(Value::as_u64)).unwrap_or(0);
            out["usage"] = json!({
                "prompt_tokens": count(["prompt_tokens", "input_tokens"]),
                "completion_tokens": count(["completion_tokens", "output_tokens"]),
            });
        }
        if let Some(c) = self.cost.as_ref().and_then(|p| p.get(answer)).and_then(Value::as_f64) {
            if c.is_finite() && c >= 0.0 {
                out["cost_usd"] = json!(c);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> BackendSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn ask() -> Vec<Message> {
        vec![
            Message { role: "system".into(), content: "Be brief.".into() },
            Message { role: "user".into(), content: "What is flow?".into() },
        ]
    }

    #[test]
    fn a_body_template_takes_fields_values_and_the_prompt() {
        let s = spec("{provider: http, url: 'http://x', body: {q: '{{question}}', k: '{{top_k}}', says: 'Q: {{question}} ({{meta.lang}})', history: '{{messages}}', p: '{{prompt}}', fixed: 3}}");
        let record = json!({"question": "why?", "top_k": 4, "meta": {"lang": "en"}});
        let b = body(&s, record.as_object().unwrap(), &ask()).unwrap();
        assert_eq!(b["q"], "why?");
        assert_eq!(b["k"], 4, "a field alone keeps its type");
        assert_eq!(b["says"], "Q: why? (en)");
        assert_eq!(b["history"][1]["content"], "What is flow?");
        assert_eq!(b["p"], "What is flow?");
        assert_eq!(b["fixed"], 3);
        let missing = body(&s, json!({"top_k": 1}).as_object().unwrap(), &ask()).unwrap_err();
        assert_eq!(missing.field, "question");
        let exec = body(&spec("{provider: exec, command: [app]}"), record.as_object().unwrap(), &ask()).unwrap();
        assert_eq!((exec["prompt"].as_str(), exec["system"].as_str()), (Some("What is flow?"), Some("Be brief.")));
        assert_eq!(exec["record"], record);
    }

    #[test]
    fn answers_are_read_into_the_chat_shape() {
        let s = spec("{provider: http, url: 'http://x', output: 'data.answer', usage: meta.usage, cost: meta.cost}");
        let r = Reading::of_http(&s);
        let a =
            json!({"data": {"answer": "42"}, "meta": {"usage": {"input_tokens": 7, "output_tokens": 2}, "cost": 0.25}});
        let n = r.normalize(&a, "app").unwrap();
        assert_eq!(n["choices"][0]["message"]["content"], "42");
        assert_eq!(
            (n["usage"]["prompt_tokens"].as_u64(), n["usage"]["completion_tokens"].as_u64()),
            (Some(7), Some(2))
        );
        assert_eq!(n["cost_usd"], 0.25);
        let e = r.normalize(&json!({"data": {}}), "app").unwrap_err();
        assert!(!e.retryable && e.message.contains("no `data.answer`"), "{}", e.message);
        let n = Reading::of_exec().normalize(&json!({"output": {"label": "spam"}}), "app").unwrap();
        assert_eq!(n["choices"][0]["message"]["content"], "{\"label\":\"spam\"}");
    }
}
