//! The native-provider half of the test server: Anthropic's Messages API
//! (`POST /v1/messages`) and Azure OpenAI's chat routes, deployment style
//! (`/openai/deployments/{deployment}/chat/completions?api-version=...`)
//! and v1 style (`/openai/v1/chat/completions`). Each checks what the real
//! API checks and answers 400 where it would (Anthropic: the
//! `anthropic-version` header, `max_tokens`, no `system` role inside
//! `messages`; Azure: the `api-version` parameter), and every request is
//! kept ([`Seen`]: route, query, headers, body) for tests to assert on.

use axum::extract::{Path, RawQuery};

use super::*;

/// One request on an Anthropic or Azure route, as it arrived.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `POST /v1/messages`, `POST /openai/deployments/{deployment}/...`.
    pub route: String,
    pub query: Option<String>,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The body, when it is JSON.
    pub body: Value,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

fn see(s: &Shared, route: String, query: Option<String>, headers: &HeaderMap, body: &[u8]) {
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = serde_json::from_slice(body).unwrap_or(Value::Null);
    s.seen.lock().unwrap().push(Seen { route, query, headers, body });
}

/// An error in Anthropic's shape.
fn anthropic_error(status: StatusCode, message: &str, kind: &str) -> Response {
    (status, Json(json!({"type": "error", "error": {"type": kind, "message": message}}))).into_response()
}

/// A block list's or a string's text.
fn blocks_text(v: &Value) -> String {
    content_text(Some(v))
}

/// Whether any block of `v` (a system value or a message's content) asks
/// for caching.
fn cached(v: &Value) -> bool {
    v.as_array().is_some_and(|blocks| blocks.iter().any(|b| b.get("cache_control").is_some()))
}

pub(super) async fn messages(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    see(&s, "POST /v1/messages".into(), None, &headers, &body);
    let _in_flight = InFlight::enter(&s);
    let text = last_user_text(&body).unwrap_or_default();
    if let Err(r) = admit_auth(&s, &headers, Some(&text), Auth::XApiKey).await {
        return r;
    }
    if headers.get("anthropic-version").is_none() {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "anthropic-version: header is required",
            "invalid_request_error",
        );
    }
    let req = match parse_object(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let bad = |m: &str| anthropic_error(StatusCode::BAD_REQUEST, m, "invalid_request_error");
    let Some(model) = req.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return bad("model: Field required");
    };
    let Some(max_tokens) = req.get("max_tokens").and_then(Value::as_u64) else {
        return bad("max_tokens: Field required");
    };
    let Some(msgs) = req.get("messages").and_then(Value::as_array) else {
        return bad("messages: Field required");
    };
    if let Some(i) = msgs.iter().position(|m| {
        m.get("role").and_then(Value::as_str) != Some("user")
            && m.get("role").and_then(Value::as_str) != Some("assistant")
    }) {
        return bad(&format!("messages.{i}.role: Input should be 'user' or 'assistant'"));
    }
    let system = req.get("system").cloned().unwrap_or(Value::Null);
    let system_text = blocks_text(&system);
    let texts: Vec<String> = msgs.iter().map(|m| blocks_text(m.get("content").unwrap_or(&Value::Null))).collect();
    let forced = req.pointer("/tool_choice/name").and_then(Value::as_str).map(str::to_owned);
    let id = s.next_id.fetch_add(1, Ordering::SeqCst);
    let calls = match &s.cfg.tool_calls {
        Some(f) if req.get("tools").is_some() && forced.is_none() => (f.0)(&req),
        _ => Vec::new(),
    };
    let (content, stop_reason, out_words) = if let Some(name) = forced {
        let input: Value = match &s.cfg.reply {
            Some(f) => serde_json::from_str(&(f.0)(&req)).unwrap_or(json!({})),
            None => json!({"score": 1, "reason": "looks right"}),
        };
        let n = words(&input.to_string());
        (json!([{"type": "tool_use", "id": format!("toolu_{id}"), "name": name, "input": input}]), "tool_use", n)
    } else if !calls.is_empty() {
        let blocks: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (name, input))| json!({"type": "tool_use", "id": format!("toolu_{id}_{i}"), "name": name, "input": input}))
            .collect();
        (Value::Array(blocks), "tool_use", calls.len())
    } else {
        let answer = match &s.cfg.reply {
            Some(f) => (f.0)(&req),
            None => format!("echo: {text}"),
        };
        let (answer, truncated) = truncate(&answer, Some(max_tokens));
        let n = words(&answer);
        (json!([{"type": "text", "text": answer}]), if truncated { "max_tokens" } else { "end_turn" }, n)
    };
    // Cached blocks are read from the cache (their words), the rest is input.
    let mut read = 0;
    if cached(&system) {
        read += words(&system_text);
    }
    let mut input = if cached(&system) { 0 } else { words(&system_text) };
    for (m, t) in msgs.iter().zip(&texts) {
        if cached(m.get("content").unwrap_or(&Value::Null)) {
            read += words(t);
        } else {
            input += words(t);
        }
    }
    let reply = json!({
        "id": format!("msg_{id}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {
            "input_tokens": input,
            "output_tokens": out_words,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": read,
        },
    });
    succeed(&s, req);
    Json(reply).into_response()
}

pub(super) async fn azure_deployment(
    State(s): State<Arc<Shared>>,
    Path((deployment, rest)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    see(&s, format!("POST /openai/deployments/{deployment}/{rest}"), query.clone(), &headers, &body);
    let version = query.as_deref().unwrap_or("").split('&').find_map(|kv| kv.strip_prefix("api-version="));
    if version.is_none_or(str::is_empty) {
        s.requests.fetch_add(1, Ordering::SeqCst);
        return error(
            StatusCode::BAD_REQUEST,
            "Missing required query parameter: api-version",
            "invalid_request_error",
        );
    }
    azure_chat(&s, &rest, &headers, &body).await
}

pub(super) async fn azure_v1(
    State(s): State<Arc<Shared>>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    see(&s, format!("POST /openai/v1/{rest}"), query, &headers, &body);
    azure_chat(&s, &rest, &headers, &body).await
}

async fn azure_chat(s: &Shared, rest: &str, headers: &HeaderMap, body: &Bytes) -> Response {
    if rest != "chat/completions" {
        return error(StatusCode::NOT_FOUND, "Resource not found", "invalid_request_error");
    }
    chat_as(s, headers, body, Auth::Azure, Some(&s.cfg.azure_model)).await
}
