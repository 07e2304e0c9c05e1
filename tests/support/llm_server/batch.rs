//! The batch half of the test server: OpenAI's Batch API (a JSONL file
//! uploaded with purpose `batch`, `POST /v1/batches`, `GET
//! /v1/batches/{id}`, the results as files read with `GET
//! /v1/files/{id}/content`) and Anthropic's Message Batches (`POST
//! /v1/messages/batches`, `GET /v1/messages/batches/{id}` and its
//! `results_url`). A batch walks `validating` → `in_progress` →
//! `finalizing` → `completed` (Anthropic: `in_progress` → `ended`) over
//! polls ([`BatchScript`]), stays `in_progress` while the server holds
//! batches ([`LlmServer::hold_batches`]), answers each request as a chat
//! call would (`echo: <last user message>`), and can fail chosen requests
//! (a per-request 400 in the error file, or `errored`) or let the first
//! batch expire after answering only some. Batches live as long as the
//! server, across runs of `flow`; every request is counted per route.

use axum::extract::{Path, Query};

use super::*;

/// How batches go, counted in polls of their status.
#[derive(Clone, Debug)]
pub struct BatchScript {
    pub validating_polls: u32,
    pub in_progress_polls: u32,
    pub finalizing_polls: u32,
    /// Requests whose last user message is one of these fail on their own
    /// (the rest of the batch is answered).
    pub fail_texts: Vec<String>,
    /// `Some(n)`: the first batch created expires having answered only its
    /// first `n` requests.
    pub expire_first: Option<usize>,
    /// The first `POST /v1/batches` creates its batch, then answers 502
    /// (a gateway that lost the answer).
    pub lose_first_create: bool,
}

impl Default for BatchScript {
    fn default() -> Self {
        Self {
            validating_polls: 1,
            in_progress_polls: 1,
            finalizing_polls: 1,
            fail_texts: Vec::new(),
            expire_first: None,
            lose_first_create: false,
        }
    }
}

/// Which API a batch came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchApi {
    Openai,
    Anthropic,
}

/// A batch as the server keeps it.
#[derive(Clone, Debug)]
pub struct ServerBatch {
    pub id: String,
    pub api: BatchApi,
    /// The path its requests go to (OpenAI: chat completions or
    /// embeddings).
    pub endpoint: String,
    /// `(custom_id, request body)`, in the order sent.
    pub requests: Vec<(String, Value)>,
    polls: u32,
    /// The uploaded file its requests came in (OpenAI).
    input_file: Option<String>,
    /// Answers only the first n (then `expired`).
    expire_after: Option<usize>,
    /// The files with its answers and errors, once it ended (OpenAI).
    output_file: Option<String>,
    error_file: Option<String>,
}

impl ServerBatch {
    /// Its place in the order of creation (`batch_3` → 3).
    fn number(&self) -> u64 {
        self.id[self.id.rfind('_').map_or(0, |i| i + 1)..].parse().unwrap_or(0)
    }
}

impl LlmServer {
    /// The batches created since the server started, in order.
    pub fn batches(&self) -> Vec<ServerBatch> {
        let mut all: Vec<ServerBatch> = self.state.batches.lock().unwrap().values().cloned().collect();
        all.sort_by_key(ServerBatch::number);
        all
    }

    /// While `hold` is set, batches stay `in_progress`.
    pub fn hold_batches(&self, hold: bool) {
        self.state.hold_batches.store(hold, Ordering::SeqCst);
    }
}

/// Where a batch is after `polls` polls.
fn stage(s: &Shared, b: &ServerBatch) -> &'static str {
    let c = &s.cfg.batch;
    let held = s.hold_batches.load(Ordering::SeqCst);
    let validating = c.validating_polls;
    let in_progress = validating + c.in_progress_polls;
    let finalizing = in_progress + c.finalizing_polls;
    match b.polls {
        p if p <= validating => "validating",
        _ if held => "in_progress",
        p if p <= in_progress => "in_progress",
        _ if b.expire_after.is_some() => "expired",
        p if p <= finalizing => "finalizing",
        _ => "completed",
    }
}

/// What one request of a batch gets: an answer, its own error, or nothing
/// (expired).
enum Fate {
    Answer(Value),
    Fail(String),
    Expired,
}

fn fate(s: &Shared, b: &ServerBatch, i: usize, body: &Value) -> Fate {
    if b.expire_after.is_some_and(|n| i >= n) {
        return Fate::Expired;
    }
    let text = last_user(body);
    if s.cfg.batch.fail_texts.contains(&text) {
        return Fate::Fail(format!("request `{text}` refused (injected)"));
    }
    let json_mode = matches!(body["response_format"]["type"].as_str(), Some("json_object" | "json_schema"));
    Fate::Answer(Value::String(match &s.cfg.reply {
        Some(f) => (f.0)(body),
        // As a live call answers a JSON-mode request (a judge's).
        None if json_mode => r#"{"score": 1, "reason": "looks right"}"#.to_string(),
        None => format!("echo: {text}"),
    }))
}

fn last_user(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| content_text(m.get("content")))
        .unwrap_or_default()
}

fn input_words(body: &Value) -> usize {
    let messages = body["messages"].as_array().map(|m| m.iter().map(|m| words(&content_text(m.get("content")))).sum());
    messages.unwrap_or(0) + words(&content_text(body.get("system")))
}

fn openai_batch(s: &Shared, b: &ServerBatch) -> Value {
    let status = stage(s, b);
    let n = b.requests.len();
    let (done, failed) = if matches!(status, "completed" | "expired") {
        let failed = (0..n).filter(|i| !matches!(fate(s, b, *i, &b.requests[*i].1), Fate::Answer(_))).count();
        (n - failed, failed)
    } else {
        (0, 0)
    };
    json!({
        "id": b.id, "object": "batch", "endpoint": b.endpoint, "errors": null,
        "input_file_id": b.input_file, "completion_window": "24h", "status": status,
        "output_file_id": b.output_file, "error_file_id": b.error_file,
        "created_at": 0, "in_progress_at": null, "expires_at": 86400,
        "request_counts": {"total": n, "completed": done, "failed": failed},
        "metadata": null,
    })
}

pub(super) async fn create(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    count_route(&s, "POST /v1/batches");
    if let Err(r) = admit_any(&s, &headers).await {
        return r;
    }
    let req = match parse_object(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, m, "invalid_request_error");
    let endpoint = req["endpoint"].as_str().unwrap_or_default().to_string();
    if !["/v1/chat/completions", "/v1/embeddings"].contains(&endpoint.as_str()) || req["completion_window"] != "24h" {
        return bad("`endpoint` must be /v1/chat/completions or /v1/embeddings and `completion_window` 24h");
    }
    let Some(file_id) = req["input_file_id"].as_str() else { return bad("`input_file_id` is required") };
    let Some(file) = s.files.lock().unwrap().get(file_id).cloned() else {
        return error(StatusCode::NOT_FOUND, &format!("no file `{file_id}`"), "invalid_request_error");
    };
    if file.purpose != "batch" {
        return bad("the input file's purpose must be `batch`");
    }
    let mut requests = Vec::new();
    let mut ids = BTreeSet::new();
    for (i, line) in String::from_utf8_lossy(&file.bytes).lines().enumerate() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { return bad(&format!("line {}: not JSON", i + 1)) };
        let Some(id) = v["custom_id"].as_str() else { return bad(&format!("line {}: no custom_id", i + 1)) };
        if v["method"] != "POST" || v["url"] != endpoint.as_str() || !v["body"].is_object() {
            return bad(&format!("line {}: method, url or body is wrong", i + 1));
        }
        if !ids.insert(id.to_string()) {
            return bad(&format!("line {}: duplicate custom_id `{id}`", i + 1));
        }
        requests.push((id.to_string(), v["body"].clone()));
    }
    let mut all = s.batches.lock().unwrap();
    let expire_after = s.cfg.batch.expire_first.filter(|_| all.is_empty());
    let id = format!("batch_{}", all.len() + 1);
    let b = ServerBatch {
        id: id.clone(),
        api: BatchApi::Openai,
        endpoint,
        requests,
        polls: 0,
        input_file: Some(file_id.to_string()),
        expire_after,
        output_file: None,
        error_file: None,
    };
    let reply = openai_batch(&s, &b);
    let first = all.is_empty();
    all.insert(id, b);
    if first && s.cfg.batch.lose_first_create {
        return error(StatusCode::BAD_GATEWAY, "upstream timed out", "server_error");
    }
    s.successes.fetch_add(1, Ordering::SeqCst);
    Json(reply).into_response()
}

/// `GET /v1/batches`: the newest first, `limit` of them (default 20).
pub(super) async fn list(
    State(s): State<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    count_route(&s, "GET /v1/batches");
    if let Err(r) = admit_any(&s, &headers).await {
        return r;
    }
    let limit = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(20);
    let all = s.batches.lock().unwrap();
    let mut openai: Vec<&ServerBatch> = all.values().filter(|b| b.api == BatchApi::Openai).collect();
    openai.sort_by_key(|b| std::cmp::Reverse(b.number()));
    let data: Vec<Value> = openai.iter().take(limit).map(|b| openai_batch(&s, b)).collect();
    Json(json!({"object": "list", "data": data, "has_more": openai.len() > limit})).into_response()
}

pub(super) async fn status(State(s): State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    count_route(&s, "GET /v1/batches/{id}");
    if let Err(r) = admit_any(&s, &headers).await {
        return r;
    }
    let mut all = s.batches.lock().unwrap();
    let Some(b) = all.get_mut(&id).filter(|b| b.api == BatchApi::Openai) else {
        return error(StatusCode::NOT_FOUND, &format!("no batch `{id}`"), "invalid_request_error");
    };
    b.polls += 1;
    if matches!(stage(&s, b), "completed" | "expired") && b.output_file.is_none() {
        let (mut out, mut errs) = (Vec::new(), Vec::new());
        for (i, (cid, body)) in b.requests.iter().enumerate() {
            let rid = format!("batch_req_{}_{i}", b.id);
            match fate(&s, b, i, body) {
                Fate::Answer(_) if b.endpoint == "/v1/embeddings" => {
                    let inputs: Vec<&str> = match &body["input"] {
                        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                        v => v.as_str().into_iter().collect(),
                    };
                    let answer = super::answers::embeddings_of(body["model"].as_str().unwrap_or_default(), &inputs);
                    out.push(json!({"id": rid, "custom_id": cid, "response": {"status_code": 200, "request_id": rid, "body": answer}, "error": null}));
                }
                Fate::Answer(text) => {
                    let text = text.as_str().unwrap_or_default().to_string();
                    let n = s.next_id.fetch_add(1, Ordering::SeqCst);
                    let (p, c) = (input_words(body), words(&text));
                    let answer = json!({
                        "id": format!("chatcmpl-{n}"), "object": "chat.completion", "created": 0,
                        "model": body["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
                    });
                    out.push(json!({"id": rid, "custom_id": cid, "response": {"status_code": 200, "request_id": rid, "body": answer}, "error": null}));
                }
                Fate::Fail(message) => errs.push(json!({
                    "id": rid, "custom_id": cid,
                    "response": {"status_code": 400, "request_id": rid, "body": {"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}}},
                    "error": null,
                })),
                Fate::Expired => errs.push(json!({
                    "id": rid, "custom_id": cid, "response": null,
                    "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."},
                })),
            }
        }
        let mut files = s.files.lock().unwrap();
        let mut store = |lines: Vec<Value>| {
            (!lines.is_empty()).then(|| {
                let id = format!("file-{}", files.len() + 1);
                let bytes = lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes();
                let file =
                    UploadedFile { filename: "batch_output.jsonl".into(), purpose: "batch_output".into(), bytes };
                files.insert(id.clone(), file);
                id
            })
        };
        b.output_file = store(out);
        b.error_file = store(errs);
    }
    let reply = openai_batch(&s, b);
    s.successes.fetch_add(1, Ordering::SeqCst);
    Json(reply).into_response()
}

pub(super) async fn file_content(State(s): State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    count_route(&s, "GET /v1/files/{id}/content");
    if let Err(r) = admit_any(&s, &headers).await {
        return r;
    }
    let Some(file) = s.files.lock().unwrap().get(&id).cloned() else {
        return error(StatusCode::NOT_FOUND, &format!("no file `{id}`"), "invalid_request_error");
    };
    s.successes.fetch_add(1, Ordering::SeqCst);
    ([(header::CONTENT_TYPE, "application/octet-stream")], file.bytes).into_response()
}

/// Anthropic's `custom_id` rule: `^[a-zA-Z0-9_-]{1,64}$`.
fn valid_custom_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn anthropic_batch(s: &Shared, b: &ServerBatch, host: &str) -> Value {
    let ended = matches!(stage(s, b), "completed" | "expired");
    let n = b.requests.len();
    let count = |want: fn(&Fate) -> bool| (0..n).filter(|i| ended && want(&fate(s, b, *i, &b.requests[*i].1))).count();
    json!({
        "id": b.id, "type": "message_batch",
        "processing_status": if ended { "ended" } else { "in_progress" },
        "request_counts": {
            "processing": if ended { 0 } else { n },
            "succeeded": count(|f| matches!(f, Fate::Answer(_))),
            "errored": count(|f| matches!(f, Fate::Fail(_))),
            "canceled": 0,
            "expired": count(|f| matches!(f, Fate::Expired)),
        },
        "ended_at": if ended { json!("2025-01-01T01:00:00Z") } else { Value::Null },
        "created_at": "2025-01-01T00:00:00Z", "expires_at": "2025-01-02T00:00:00Z",
        "cancel_initiated_at": null, "archived_at": null,
        "results_url": if ended { json!(format!("http://{host}/v1/messages/batches/{}/results", b.id)) } else { Value::Null },
    })
}

fn host_of(headers: &HeaderMap) -> String {
    headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_string()
}

pub(super) async fn anthropic_create(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    count_route(&s, "POST /v1/messages/batches");
    if let Err(r) = admit_auth(&s, &headers, None, Auth::XApiKey).await {
        return r;
    }
    let bad = |m: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"type": "error", "error": {"type": "invalid_request_error", "message": m}})),
        )
            .into_response()
    };
    if headers.get("anthropic-version").is_none() {
        return bad("anthropic-version: header is required");
    }
    let req = match parse_object(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(list) = req["requests"].as_array() else { return bad("requests: Field required") };
    let mut requests = Vec::new();
    let mut ids = BTreeSet::new();
    for (i, r) in list.iter().enumerate() {
        let id = r["custom_id"].as_str().unwrap_or_default();
        if !valid_custom_id(id) {
            return bad(&format!("requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"));
        }
        if !ids.insert(id.to_string()) {
            return bad(&format!("requests.{i}.custom_id: duplicate `{id}`"));
        }
        let p = &r["params"];
        if !p["model"].is_string() || !p["max_tokens"].is_u64() || !p["messages"].is_array() {
            return bad(&format!("requests.{i}.params: model, max_tokens and messages are required"));
        }
        requests.push((id.to_string(), p.clone()));
    }
    let mut all = s.batches.lock().unwrap();
    let expire_after = s.cfg.batch.expire_first.filter(|_| all.is_empty());
    let id = format!("msgbatch_{}", all.len() + 1);
    let b = ServerBatch {
        id: id.clone(),
        api: BatchApi::Anthropic,
        endpoint: "/v1/messages".into(),
        requests,
        polls: 0,
        input_file: None,
        expire_after,
        output_file: None,
        error_file: None,
    };
    let reply = anthropic_batch(&s, &b, &host_of(&headers));
    all.insert(id, b);
    s.successes.fetch_add(1, Ordering::SeqCst);
    Json(reply).into_response()
}

/// The batch `id` of Anthropic's, polled once more (`poll`) or not.
// A response is what axum handlers return; boxing it here buys nothing.
#[allow(clippy::result_large_err)]
fn anthropic_get(s: &Shared, id: &str, poll: bool) -> Result<ServerBatch, Response> {
    let mut all = s.batches.lock().unwrap();
    let Some(b) = all.get_mut(id).filter(|b| b.api == BatchApi::Anthropic) else {
        let body =
            json!({"type": "error", "error": {"type": "not_found_error", "message": format!("no batch `{id}`")}});
        return Err((StatusCode::NOT_FOUND, Json(body)).into_response());
    };
    if poll {
        b.polls += 1;
    }
    Ok(b.clone())
}

pub(super) async fn anthropic_status(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    count_route(&s, "GET /v1/messages/batches/{id}");
    if let Err(r) = admit_auth(&s, &headers, None, Auth::XApiKey).await {
        return r;
    }
    match anthropic_get(&s, &id, true) {
        Ok(b) => {
            s.successes.fetch_add(1, Ordering::SeqCst);
            Json(anthropic_batch(&s, &b, &host_of(&headers))).into_response()
        }
        Err(r) => r,
    }
}

pub(super) async fn anthropic_results(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    count_route(&s, "GET /v1/messages/batches/{id}/results");
    if let Err(r) = admit_auth(&s, &headers, None, Auth::XApiKey).await {
        return r;
    }
    let b = match anthropic_get(&s, &id, false) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut out = String::new();
    for (i, (cid, params)) in b.requests.iter().enumerate() {
        let result = match fate(&s, &b, i, params) {
            Fate::Answer(text) => {
                let text = text.as_str().unwrap_or_default().to_string();
                let n = s.next_id.fetch_add(1, Ordering::SeqCst);
                json!({"type": "succeeded", "message": {
                    "id": format!("msg_{n}"), "type": "message", "role": "assistant", "model": params["model"],
                    "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
                    "usage": {"input_tokens": input_words(params), "output_tokens": words(&text),
                              "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
                }})
            }
            Fate::Fail(message) => {
                json!({"type": "errored", "error": {"type": "error", "error": {"type": "invalid_request_error", "message": message}}})
            }
            Fate::Expired => json!({"type": "expired"}),
        };
        out.push_str(&json!({"custom_id": cid, "result": result}).to_string());
        out.push('\n');
    }
    s.successes.fetch_add(1, Ordering::SeqCst);
    ([(header::CONTENT_TYPE, "application/binary")], out).into_response()
}
