//! Request bodies, call-memo keys and token estimates: pure functions of
//! the spec and the request, used by [`Backend`](super::Backend) at run
//! time and by `flow plan` (through the kinds' `plan_calls`) to tell which
//! calls are memoized and what the others cost, so both compute exactly
//! the same keys.

use flow_engine::cache::{CallMemo, ContentHash};
use flow_engine::node::{PlannedCall, Tokens};
use flow_engine::{BackendSpec, Provider};
use serde_json::{json, Value};

use super::{Endpoint, Message, Tool, Unusable, Upload};

/// Whether a chat completion holds an answer: text, or tool calls (not a
/// refusal by a content filter).
pub(super) fn has_content(body: &Value) -> Result<(), Unusable> {
    let choice = &body["choices"][0];
    match &choice["message"]["content"] {
        Value::String(_) => Ok(()),
        _ if choice["message"]["tool_calls"].as_array().is_some_and(|c| !c.is_empty()) => Ok(()),
        _ => {
            let finish_reason = choice["finish_reason"].as_str().map(str::to_string);
            let shown: String = body.to_string().chars().take(200).collect();
            Err(Unusable::NoContent { finish_reason, shown })
        }
    }
}

/// A rough token count for rate limiting before the server says: the
/// prompt's [`prompt_tokens`] and the answer's bound (`max_tokens`, else
/// 256).
pub(super) fn estimate_tokens(body: &Value, max_tokens: Option<u64>) -> u32 {
    let answer = answer_bound(body).or(max_tokens).unwrap_or(256);
    (prompt_tokens(body) + answer).min(u32::MAX as u64) as u32
}

/// About how many tokens a request's prompt is: four characters a token
/// of its text (messages, system prompt, embedding inputs, tools), and a
/// few a message for the roles. Close for English on the GPT and Claude
/// tokenizers; only an estimate.
pub(super) fn prompt_tokens(body: &Value) -> u64 {
    fn chars(v: &Value) -> u64 {
        match v {
            Value::String(s) => s.chars().count() as u64,
            Value::Array(a) => a.iter().map(chars).sum(),
            // Not the roles and block types (`"type": "text"`): the
            // per-message count stands for them.
            Value::Object(o) => {
                o.iter().filter(|(k, _)| !matches!(k.as_str(), "role" | "type")).map(|(_, v)| chars(v)).sum()
            }
            _ => 0,
        }
    }
    let text: u64 = ["messages", "system", "input", "tools"].iter().map(|k| chars(&body[*k])).sum();
    let messages = body["messages"].as_array().map_or(0, |m| m.len() as u64);
    text.div_ceil(4) + 3 * messages
}

/// The most tokens a chat request lets its answer be.
fn answer_bound(body: &Value) -> Option<u64> {
    body["max_completion_tokens"].as_u64().or_else(|| body["max_tokens"].as_u64())
}

/// A call `flow plan` names for a kind: its memo key (as
/// [`Backend::call_checked`](super::Backend::call_checked) computes it), its
/// backend, and its tokens: what the offline `sim` will count (its answer
/// is known before it is asked), else an estimate from the request (the
/// answer bounded by `max_tokens`); none for the user's application, which
/// reports its own cost.
pub fn planned(name: &str, spec: &BackendSpec, endpoint: Endpoint, body: &Value, sample: u32) -> PlannedCall {
    let tokens = match spec.provider {
        Provider::Sim => super::sim::planned_tokens(spec, endpoint, body, sample),
        Provider::Http | Provider::Exec => None,
        _ => Some(Tokens {
            prompt: prompt_tokens(body),
            completion: match endpoint {
                Endpoint::Embeddings => Some(0),
                Endpoint::Chat => answer_bound(body),
            },
            exact: false,
        }),
    };
    PlannedCall { key: memo_key(spec, endpoint, body, sample), backend: name.to_string(), tokens }
}

/// The call-memo key of a request to the backend `spec`: what [`Backend::call_checked`]
/// looks up, computable without a live backend (so `flow plan` can tell
/// which calls are memoized). Sample 0 has none, so `repeat: 1` and the
/// first of `repeat: n` share their answer.
pub fn memo_key(spec: &BackendSpec, endpoint: Endpoint, body: &Value, sample: u32) -> ContentHash {
    memo_key_of(&spec.identity(), endpoint, body, sample)
}

pub(super) fn memo_key_of(identity: &Value, endpoint: Endpoint, body: &Value, sample: u32) -> ContentHash {
    path_key_of(identity, endpoint.path(), body, sample)
}

pub(super) fn path_key_of(identity: &Value, path: &str, body: &Value, sample: u32) -> ContentHash {
    // Borrowed rather than a `json!` copy of the body (a call's largest
    // part); serialized the same: `json!` objects sort their keys, and
    // these fields are in that order.
    #[derive(serde::Serialize)]
    struct Request<'a> {
        body: &'a Value,
        endpoint: &'a str,
        #[serde(skip_serializing_if = "is_zero")]
        sample: u32,
    }
    fn is_zero(n: &u32) -> bool {
        *n == 0
    }
    CallMemo::key(identity, &Request { body, endpoint: path, sample })
}

/// The memo key of a JSON POST to `path` filed under `key` (see
/// [`Backend::post_as`]); a chat call's body at `chat/completions` has the
/// key [`memo_key`] gives it.
pub fn post_key(spec: &BackendSpec, path: &str, key: &Value) -> ContentHash {
    path_key_of(&spec.identity(), path, key, 0)
}

/// The memo key of an upload to `path`: the file's content (by hash), name
/// and purpose.
pub fn upload_key(spec: &BackendSpec, path: &str, file: &Upload<'_>) -> ContentHash {
    upload_key_of(&spec.identity(), path, file)
}

pub(super) fn upload_key_of(identity: &Value, path: &str, file: &Upload<'_>) -> ContentHash {
    let upload = json!({
        "filename": file.filename,
        "purpose": file.purpose,
        "bytes": file.bytes.len(),
        "content": ContentHash::of(file.bytes).hex(),
    });
    CallMemo::key(identity, &json!({"endpoint": path, "upload": upload}))
}

/// The request body of an embeddings call to the backend `spec`: its model,
/// the texts, and `dimensions` when given.
pub fn embed_body(spec: &BackendSpec, texts: &[String], dimensions: Option<u32>) -> Value {
    let mut body = json!({"model": spec.request_model(), "input": texts});
    if let Some(d) = dimensions {
        body["dimensions"] = json!(d);
    }
    body
}

/// The request body of a chat completion to the backend `spec`: its model
/// and sampling parameters, then the messages.
pub fn chat_body(spec: &BackendSpec, messages: &[Message], json_mode: bool, sample: u32) -> Value {
    chat_body_with(spec, messages, json_mode, sample, &[])
}

/// The body of a JSON-mode chat whose answer should fit `schema` (named
/// `name`): with the backend's `json_schema: true`, the schema is sent
/// (`response_format: json_schema`; Anthropic: the `json` tool's
/// `input_schema`); without, it is [`chat_body`]'s JSON mode, as before.
pub fn chat_body_schema(spec: &BackendSpec, messages: &[Message], name: &str, schema: &Value, sample: u32) -> Value {
    if !spec.json_schema || super::app::is_app(spec.provider) {
        return chat_body(spec, messages, true, sample);
    }
    if spec.provider == Provider::Anthropic {
        return super::anthropic::body(spec, messages, true, Some(schema));
    }
    let mut body = chat_body(spec, messages, true, sample);
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema}});
    body
}

/// The body of a chat call for `record`: the user's application (`http`,
/// `exec`) is sent its request built from the record and the messages
/// ([`super::app::body`]; a record without a field its `body:` reads is an
/// error of that record); an LLM API, [`chat_body_with`]'s.
pub fn chat_body_for(
    spec: &BackendSpec,
    record: &serde_json::Map<String, Value>,
    messages: &[Message],
    json_mode: bool,
    sample: u32,
    tools: &[Tool],
) -> Result<Value, flow_engine::template::RenderError> {
    if super::app::is_app(spec.provider) {
        return super::app::body(spec, record, messages);
    }
    Ok(chat_body_with(spec, messages, json_mode, sample, tools))
}

/// [`chat_body`] offering `tools`, in the provider's shape (none: the
/// same body as [`chat_body`]'s, so the same memo key).
pub fn chat_body_with(spec: &BackendSpec, messages: &[Message], json_mode: bool, sample: u32, tools: &[Tool]) -> Value {
    if super::app::is_app(spec.provider) {
        // Without a record (a judge's, `generate`'s prompt): null when the
        // app's `body:` reads a record's field.
        return super::app::body(spec, &serde_json::Map::new(), messages).unwrap_or(Value::Null);
    }
    if spec.provider == Provider::Anthropic {
        let mut body = super::anthropic::body(spec, messages, json_mode, None);
        if !tools.is_empty() {
            let mut all: Vec<Value> = tools.iter().map(Tool::anthropic).collect();
            if let Some(Value::Array(json_tool)) = body.get("tools") {
                all.extend(json_tool.iter().cloned());
            }
            body["tools"] = Value::Array(all);
        }
        return body;
    }
    let s = spec;
    let mut body = serde_json::Map::new();
    body.insert("model".into(), json!(s.request_model()));
    let msgs: Vec<Value> = messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
    body.insert("messages".into(), Value::Array(msgs));
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            body.insert(k.to_string(), v);
        }
    };
    put("temperature", s.temperature.map(Value::from));
    put("max_tokens", s.max_tokens.map(Value::from));
    put("top_p", s.top_p.map(Value::from));
    // A fixed seed would make every sample the same draw.
    put("seed", s.seed.map(|seed| Value::from(seed.wrapping_add(sample as i64))));
    put("stop", s.stop.as_ref().map(|x| json!(x)));
    for (k, v) in &s.params {
        body.insert(k.clone(), v.clone());
    }
    if json_mode {
        body.insert("response_format".into(), json!({"type": "json_object"}));
    }
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools.iter().map(Tool::openai).collect()));
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> BackendSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn message(role: &str, content: &str) -> Message {
        Message { role: role.into(), content: content.into() }
    }

    /// Before a run, a call's prompt is about a token per four characters
    /// of its text (and three a message), its answer at most `max_tokens`.
    #[test]
    fn planned_calls_estimate_tokens_from_the_request() {
        let ask = [message("system", "Be brief."), message("user", "what is 2+2?")];
        let openai = spec("{provider: openai, model: gpt-4o-mini, max_tokens: 64}");
        let body = chat_body(&openai, &ask, false, 0);
        let call = planned("bot", &openai, Endpoint::Chat, &body, 0);
        assert_eq!(call.key, memo_key(&openai, Endpoint::Chat, &body, 0));
        assert_eq!(call.backend, "bot");
        // 9 + 12 characters: 6 tokens, and 3 for each of the 2 messages.
        assert_eq!(call.tokens, Some(Tokens { prompt: 12, completion: Some(64), exact: false }));
        let unbounded = spec("{provider: openai, model: gpt-4o-mini}");
        let t = planned("bot", &unbounded, Endpoint::Chat, &chat_body(&unbounded, &ask, false, 0), 0).tokens;
        assert_eq!(t.unwrap().completion, None, "no max_tokens: nothing bounds the answer");
        // Anthropic always sends a `max_tokens`, so its answers are bounded.
        let claude = spec("{provider: anthropic, model: claude-3-5-haiku}");
        let t = planned("c", &claude, Endpoint::Chat, &chat_body(&claude, &ask, false, 0), 0).tokens.unwrap();
        assert_eq!(t.completion, Some(1024));
        let embed = embed_body(&openai, &["abcdefgh".to_string()], None);
        let t = planned("e", &openai, Endpoint::Embeddings, &embed, 0).tokens;
        assert_eq!(t, Some(Tokens { prompt: 2, completion: Some(0), exact: false }));
        // The user's application reports its own cost.
        let app = spec("{provider: http, url: 'http://127.0.0.1:9/chat'}");
        assert_eq!(planned("app", &app, Endpoint::Chat, &json!({"q": "hi"}), 0).tokens, None);
    }

    /// The offline `sim`'s tokens are counted as it will count them.
    #[test]
    fn planned_sim_calls_count_the_sims_own_tokens() {
        let sim = spec("{provider: sim, model: sim-1}");
        let body = chat_body(&sim, &[message("user", "what is 2+2?")], false, 0);
        let t = planned("bot", &sim, Endpoint::Chat, &body, 0).tokens.unwrap();
        assert_eq!(t, Tokens { prompt: 3, completion: Some(1), exact: true });
    }

    /// The keys of answers memoized before stay the keys: the request is
    /// hashed as the `json!` object it once was.
    #[test]
    fn memo_keys_are_those_of_the_json_object() {
        let identity = json!({"provider": "openai", "model": "m"});
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0});
        for sample in [0, 3] {
            let old = if sample == 0 {
                json!({"endpoint": "chat/completions", "body": body})
            } else {
                json!({"endpoint": "chat/completions", "body": body, "sample": sample})
            };
            assert_eq!(path_key_of(&identity, "chat/completions", &body, sample), CallMemo::key(&identity, &old));
        }
    }
}
