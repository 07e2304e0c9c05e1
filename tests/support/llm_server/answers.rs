//! The answers: chat completions (text, JSON mode, tool calls, log
//! probabilities, truncation at `max_tokens`) and embeddings, after the
//! admission checks of the parent module.

use super::*;

pub(super) async fn chat_completions(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    chat_as(&s, &headers, &body, Auth::Bearer, None).await
}

/// A chat completion on a route that takes its key as `how` says; `served`:
/// the model the answer names (an Azure deployment's), else the request's.
pub(super) async fn chat_as(
    s: &Shared,
    headers: &HeaderMap,
    body: &Bytes,
    how: Auth,
    served: Option<&str>,
) -> Response {
    let _in_flight = InFlight::enter(s);
    let text = (s.cfg.record_bodies || s.cfg.stall.is_some() || s.cfg.fail_once)
        .then(|| last_user_text(body).unwrap_or_default());
    if let Some(text) = text.clone().filter(|_| s.cfg.record_bodies || s.cfg.stall.is_some()) {
        if let Some((stalled, wait)) = &s.cfg.stall {
            if *stalled == text && !s.stalled.swap(true, Ordering::SeqCst) {
                s.requests.fetch_add(1, Ordering::SeqCst);
                s.arrived.lock().unwrap().push(text);
                s.throttled.fetch_add(1, Ordering::SeqCst);
                let mut r = error(StatusCode::TOO_MANY_REQUESTS, "held back (injected)", "rate_limit_error");
                r.headers_mut().insert("retry-after", header::HeaderValue::from_static(wait));
                return r;
            }
        }
        if s.cfg.record_bodies {
            s.arrived.lock().unwrap().push(text);
        }
    }
    if let Err(r) = admit_auth(s, headers, text.as_deref(), how).await {
        return r;
    }
    let req = match parse_object(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(model) = served.or(req.get("model").and_then(Value::as_str)).map(str::to_owned) else {
        return error(StatusCode::BAD_REQUEST, "`model` is required", "invalid_request_error");
    };
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return error(StatusCode::BAD_REQUEST, "`messages` must be an array", "invalid_request_error");
    };
    let texts: Vec<String> = messages.iter().map(|m| content_text(m.get("content"))).collect();
    let last_user = messages
        .iter()
        .zip(&texts)
        .rev()
        .find(|(m, _)| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|(_, t)| t.as_str())
        .unwrap_or("");
    let json_mode = matches!(
        req.pointer("/response_format/type").and_then(Value::as_str),
        Some("json_object") | Some("json_schema")
    );
    let answer = match &s.cfg.reply {
        Some(f) => (f.0)(&req),
        None if json_mode => r#"{"score": 1, "reason": "looks right"}"#.to_string(),
        None => format!("echo: {last_user}"),
    };
    let (answer, truncated) = truncate(&answer, req.get("max_tokens").and_then(Value::as_u64));
    let prompt_tokens: usize = texts.iter().map(|t| words(t)).sum();
    let completion_tokens = words(&answer);
    let id = s.next_id.fetch_add(1, Ordering::SeqCst);
    let calls = match &s.cfg.tool_calls {
        Some(f) if req.get("tools").is_some() => (f.0)(&req),
        _ => Vec::new(),
    };
    let (message, finish_reason) = if calls.is_empty() {
        (json!({"role": "assistant", "content": answer}), if truncated { "length" } else { "stop" })
    } else {
        let calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (name, args))| {
                json!({"id": format!("call_{id}_{i}"), "type": "function",
                       "function": {"name": name, "arguments": args.to_string()}})
            })
            .collect();
        (json!({"role": "assistant", "content": null, "tool_calls": calls}), "tool_calls")
    };
    // `logprobs: true`: one entry per word (this server's token), each
    // word's log probability −len/10, so a test can work out the figures.
    let logprobs = (req.get("logprobs") == Some(&Value::Bool(true))).then(|| {
        let content: Vec<Value> = answer
            .split_whitespace()
            .map(|w| json!({"token": w, "logprob": -(w.chars().count() as f64) / 10.0, "bytes": w.as_bytes(), "top_logprobs": []}))
            .collect();
        json!({"content": content, "refusal": null})
    });
    let reply = json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": logprobs,
            "finish_reason": finish_reason,
        }],
        "usage": match s.cfg.usage {
            Some(n) => json!({"prompt_tokens": n, "completion_tokens": n, "total_tokens": n}),
            None => json!({
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }),
        },
    });
    succeed(s, req);
    Json(reply).into_response()
}

/// The first `max` words of `answer` when it has more (the server's idea
/// of `max_tokens`), and whether it was cut.
pub(super) fn truncate(answer: &str, max: Option<u64>) -> (String, bool) {
    match max {
        Some(max) if words(answer) as u64 > max => {
            (answer.split_whitespace().take(max as usize).collect::<Vec<_>>().join(" "), true)
        }
        _ => (answer.to_string(), false),
    }
}

pub(super) async fn embeddings(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let _in_flight = InFlight::enter(&s);
    let req = match admit(&s, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(model) = req.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return error(StatusCode::BAD_REQUEST, "`model` is required", "invalid_request_error");
    };
    let inputs: Vec<&str> = match req.get("input") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).collect()
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "`input` must be a string or an array of strings",
                "invalid_request_error",
            )
        }
    };
    let reply = embeddings_of(&model, &inputs);
    succeed(&s, req);
    Json(reply).into_response()
}

/// An embeddings answer: a vector per input, tokens a word each.
pub(super) fn embeddings_of(model: &str, inputs: &[&str]) -> Value {
    let tokens: usize = inputs.iter().map(|t| words(t)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| json!({"object": "embedding", "index": i, "embedding": embed(text)}))
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })
}
