//! A small OpenAI-compatible HTTP server for tests and benchmarks: its
//! configuration, state and admission checks here; the chat and embeddings
//! answers in `answers.rs`, files and fine-tuning jobs in `fine_tune.rs`,
//! batches in `batch.rs`, the Anthropic and Azure routes in `providers.rs`.
//!
//! It answers `POST /v1/chat/completions` and `POST /v1/embeddings` with
//! deterministic content derived from the request, after an optional
//! latency, and can inject failures (alternately 429 with `Retry-After: 0`,
//! or any headers, and 500; or one status), refuse with 429 what exceeds a
//! concurrency limit, hold one request back with a 429 and a long
//! `Retry-After`, or demand an API key. Everything it observes is counted on the
//! server side — requests, successes, the most requests in flight at once,
//! the Authorization headers and the successful request bodies — so a test
//! of the `flow` binary can check what the binary really sent, not what it
//! reports.
//!
//! The server binds 127.0.0.1 on a free port and runs on its own tokio
//! runtime in a background thread, so tests stay plain `#[test]` functions;
//! dropping the [`LlmServer`] shuts it down gracefully and joins the thread.
//!
//! It also plays OpenAI's fine-tuning API: `POST /v1/files` (multipart,
//! parsed here by hand), `POST /v1/fine_tuning/jobs`, and
//! `GET /v1/fine_tuning/jobs/{id}` and `.../events`. A job walks
//! `validating_files` → `running` → `succeeded` (or `failed`, with a
//! message) over a set number of polls of its status, and can be held
//! `running` until a test releases it. Jobs and files live as long as the
//! server, across runs of `flow`; every request is counted per route
//! ([`LlmServer::route_count`]).
//!
//! This file is included with `#[path]` both by the CLI tests and by the
//! `calls` benchmark, each of which uses only part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

mod answers;
mod batch;
mod fine_tune;
mod providers;

use answers::*;

pub use batch::BatchScript;
pub use providers::Seen;

/// How the server behaves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// How long each request is held before it is answered (failures too).
    pub latency: Duration,
    /// `Some(n)`: every n-th request fails, alternately with 429 (with
    /// [`ServerConfig::throttle_headers`]) and 500, starting with 429.
    pub fail_every: Option<u32>,
    /// The headers of an injected 429: `Retry-After: 0` by default; a
    /// hostile server's `1e300` or `inf` in tests of the client.
    pub throttle_headers: Vec<(&'static str, &'static str)>,
    /// `Some(code)`: the injected failures all answer this status instead
    /// (a 429 with [`ServerConfig::throttle_headers`]).
    pub fail_status: Option<u16>,
    /// With [`ServerConfig::fail_every`]: a chat request whose last user
    /// message failed once is answered, and not counted in the schedule,
    /// so each failing case fails once and its retry succeeds.
    pub fail_once: bool,
    /// `Some(n)`: a request arriving while `n` are in flight is refused at
    /// once with 429 (and [`ServerConfig::throttle_headers`]), as a
    /// server with a concurrency limit does.
    pub max_concurrent: Option<u64>,
    /// `Some((text, wait))`: the first chat request whose last user message
    /// is `text` is refused with 429 and `Retry-After: wait`.
    pub stall: Option<(String, &'static str)>,
    /// `Some(n)`: every chat answer reports `n` prompt and `n` completion
    /// tokens (a broken server's `u64::MAX`), instead of its word counts.
    pub usage: Option<u64>,
    /// `Some(key)`: requests without `Authorization: Bearer <key>` get 401.
    pub api_key: Option<String>,
    /// Keep the bodies of successful requests for [`LlmServer::bodies`].
    /// Benchmarks sending many requests may turn this off.
    pub record_bodies: bool,
    /// The assistant's content for a chat request body, instead of the echo.
    pub reply: Option<ReplyFn>,
    /// How fine-tuning jobs go.
    pub fine_tune: FineTuneScript,
    /// The model an Azure deployment reports it serves (in its answers).
    pub azure_model: String,
    /// `Some(calls)`: chat answers call tools (see [`ToolCallFn`]).
    pub tool_calls: Option<ToolCallFn>,
    /// How batches go (`batch.rs`).
    pub batch: BatchScript,
}

/// The tool calls (name, arguments) a chat answer makes, from the request
/// body; none: the answer is text as usual.
#[derive(Clone)]
pub struct ToolCallFn(pub Arc<ToolCalls>);

/// What a [`ToolCallFn`] holds.
pub type ToolCalls = dyn Fn(&Value) -> Vec<(String, Value)> + Send + Sync;

impl std::fmt::Debug for ToolCallFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToolCallFn")
    }
}

/// How a fine-tuning job goes, counted in polls of its status (`GET
/// /v1/fine_tuning/jobs/{id}`): `validating_files` for the first
/// `validating_polls`, `running` for the next `running_polls` (and as long
/// as the server holds jobs, see [`LlmServer::hold_jobs`]), then
/// `succeeded`, or `failed` with `fail_with` as the error message.
#[derive(Clone, Debug)]
pub struct FineTuneScript {
    pub validating_polls: u32,
    pub running_polls: u32,
    pub fail_with: Option<String>,
}

impl Default for FineTuneScript {
    fn default() -> Self {
        Self { validating_polls: 1, running_polls: 2, fail_with: None }
    }
}

/// Computes a chat answer from the request body.
#[derive(Clone)]
pub struct ReplyFn(pub Arc<dyn Fn(&Value) -> String + Send + Sync>);

impl std::fmt::Debug for ReplyFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyFn")
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            fail_every: None,
            throttle_headers: vec![("retry-after", "0")],
            fail_status: None,
            fail_once: false,
            max_concurrent: None,
            stall: None,
            usage: None,
            api_key: None,
            record_bodies: true,
            reply: None,
            fine_tune: FineTuneScript::default(),
            azure_model: "gpt-4o-mini-2024-07-18".to_string(),
            tool_calls: None,
            batch: BatchScript::default(),
        }
    }
}

/// A running server; stops when dropped.
pub struct LlmServer {
    addr: SocketAddr,
    state: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What the handlers share: the configuration and the counters.
struct Shared {
    cfg: ServerConfig,
    /// Whether `fail_every` applies; [`LlmServer::recover`] turns it off.
    failing: AtomicBool,
    /// Requests received on the API paths, answered or not.
    requests: AtomicU64,
    /// Requests answered 200.
    successes: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// 429s sent (injected, over the concurrency limit, the stall).
    throttled: AtomicU64,
    /// Requests in flight as each request arrived (itself included).
    arrivals: Mutex<Vec<u32>>,
    /// The last user message of each chat request, in the order received
    /// (failed ones too), when bodies are recorded.
    arrived: Mutex<Vec<String>>,
    /// Whether the stalled request was refused already.
    stalled: AtomicBool,
    /// With `fail_once`: the last user messages of the requests failed,
    /// and the count of the others, which the failure schedule follows.
    failed_once: Mutex<BTreeSet<String>>,
    scheduled: AtomicU64,
    /// Numbers the `chatcmpl-N` ids; never reset.
    next_id: AtomicU64,
    authorizations: Mutex<BTreeSet<String>>,
    bodies: Mutex<Vec<Value>>,
    /// Requests per route (`POST /v1/files`, `GET /v1/fine_tuning/jobs/{id}`, ...).
    routes: Mutex<BTreeMap<String, u64>>,
    /// Uploaded files by id; never reset.
    files: Mutex<BTreeMap<String, UploadedFile>>,
    /// Fine-tuning jobs by id; never reset.
    jobs: Mutex<BTreeMap<String, Job>>,
    /// While set, a job past validation stays `running`.
    hold_jobs: AtomicBool,
    /// Every request on the Anthropic and Azure routes, answered or not.
    seen: Mutex<Vec<Seen>>,
    /// Batches by id; never reset.
    batches: Mutex<BTreeMap<String, batch::ServerBatch>>,
    /// While set, a batch past validation stays `in_progress`.
    hold_batches: AtomicBool,
}

/// A file received on `POST /v1/files`.
#[derive(Clone, Debug)]
pub struct UploadedFile {
    pub filename: String,
    pub purpose: String,
    pub bytes: Vec<u8>,
}

/// A fine-tuning job: its creation request and how often it was polled.
#[derive(Clone, Debug)]
struct Job {
    number: u64,
    request: Value,
    polls: u32,
    /// Why the file was rejected, found when the job was created.
    invalid_file: Option<String>,
    trained_tokens: u64,
}

impl LlmServer {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub fn start(cfg: ServerConfig) -> LlmServer {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        std_listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = std_listener.local_addr().expect("listener address");
        let state = Arc::new(Shared {
            cfg,
            failing: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            arrivals: Mutex::new(Vec::new()),
            arrived: Mutex::new(Vec::new()),
            stalled: AtomicBool::new(false),
            failed_once: Mutex::new(BTreeSet::new()),
            scheduled: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            authorizations: Mutex::new(BTreeSet::new()),
            bodies: Mutex::new(Vec::new()),
            routes: Mutex::new(BTreeMap::new()),
            files: Mutex::new(BTreeMap::new()),
            jobs: Mutex::new(BTreeMap::new()),
            hold_jobs: AtomicBool::new(false),
            seen: Mutex::new(Vec::new()),
            batches: Mutex::new(BTreeMap::new()),
            hold_batches: AtomicBool::new(false),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/files", post(fine_tune::upload_file))
            .route("/v1/fine_tuning/jobs", post(fine_tune::create_job))
            .route("/v1/fine_tuning/jobs/{id}", get(fine_tune::job_status))
            .route("/v1/fine_tuning/jobs/{id}/events", get(fine_tune::job_events))
            .route("/v1/messages", post(providers::messages))
            .route("/v1/batches", post(batch::create).get(batch::list))
            .route("/v1/batches/{id}", get(batch::status))
            .route("/v1/files/{id}/content", get(batch::file_content))
            .route("/v1/messages/batches", post(batch::anthropic_create))
            .route("/v1/messages/batches/{id}", get(batch::anthropic_status))
            .route("/v1/messages/batches/{id}/results", get(batch::anthropic_results))
            .route("/openai/deployments/{deployment}/{*rest}", post(providers::azure_deployment))
            .route("/openai/v1/{*rest}", post(providers::azure_v1))
            .fallback(not_found)
            .with_state(state.clone());
        let thread = std::thread::Builder::new()
            .name(format!("llm-server-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(4)
                    .enable_all()
                    .build()
                    .expect("server runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
                    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
                    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                        let _ = stop_rx.wait_for(|stop| *stop).await;
                    });
                    let signal = async move {
                        // A dropped sender (the server leaked, or unwinding)
                        // also means stop.
                        let _ = rx.await;
                        let _ = stop_tx.send(true);
                        // Grace period for requests in flight; a client that
                        // keeps its connection open does not hold us forever.
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    };
                    tokio::select! {
                        r = serve => r.expect("serve"),
                        () = signal => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("spawn the server thread");
        LlmServer { addr, state, shutdown: Some(tx), thread: Some(thread) }
    }

    /// The API base URL, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Requests received on the API paths, failed ones included.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests answered 200.
    pub fn successes(&self) -> u64 {
        self.state.successes.load(Ordering::SeqCst)
    }

    /// The most requests handled at once (latency included).
    pub fn max_in_flight(&self) -> u64 {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// 429s sent.
    pub fn throttled(&self) -> u64 {
        self.state.throttled.load(Ordering::SeqCst)
    }

    /// Requests in flight as each request arrived (itself included), in
    /// the order they arrived.
    pub fn arrivals(&self) -> Vec<u32> {
        self.state.arrivals.lock().unwrap().clone()
    }

    /// The last user message of each chat request in the order they
    /// arrived, failed ones too (with `record_bodies`).
    pub fn arrived(&self) -> Vec<String> {
        self.state.arrived.lock().unwrap().clone()
    }

    /// The distinct `Authorization` header values seen, sorted.
    pub fn authorizations(&self) -> Vec<String> {
        self.state.authorizations.lock().unwrap().iter().cloned().collect()
    }

    /// The JSON bodies of the successful requests, in the order answered.
    pub fn bodies(&self) -> Vec<Value> {
        self.state.bodies.lock().unwrap().clone()
    }

    /// The server's root, `http://127.0.0.1:PORT` (Anthropic's and Azure's
    /// base URL).
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests on the Anthropic and Azure routes, in the order they
    /// arrived, failed ones too.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Stops injecting failures: the server had a bad spell and is well again.
    pub fn recover(&self) {
        self.state.failing.store(false, Ordering::SeqCst);
    }

    /// Zeroes every counter (the failure schedule starts over too).
    pub fn reset_counters(&self) {
        let s = &self.state;
        s.requests.store(0, Ordering::SeqCst);
        s.successes.store(0, Ordering::SeqCst);
        s.max_in_flight.store(s.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
        s.throttled.store(0, Ordering::SeqCst);
        s.arrivals.lock().unwrap().clear();
        s.arrived.lock().unwrap().clear();
        s.failed_once.lock().unwrap().clear();
        s.scheduled.store(0, Ordering::SeqCst);
        s.authorizations.lock().unwrap().clear();
        s.bodies.lock().unwrap().clear();
        s.routes.lock().unwrap().clear();
    }

    /// Requests received on `route` (`"POST /v1/fine_tuning/jobs"`,
    /// `"GET /v1/fine_tuning/jobs/{id}"`, ...), failed ones included.
    pub fn route_count(&self, route: &str) -> u64 {
        self.state.routes.lock().unwrap().get(route).copied().unwrap_or(0)
    }

    /// The files uploaded since the server started, by id.
    pub fn files(&self) -> BTreeMap<String, UploadedFile> {
        self.state.files.lock().unwrap().clone()
    }

    /// The creation requests of the jobs made since the server started.
    pub fn jobs(&self) -> Vec<Value> {
        self.state.jobs.lock().unwrap().values().map(|j| j.request.clone()).collect()
    }

    /// While `hold` is set, jobs past validation stay `running`.
    pub fn hold_jobs(&self, hold: bool) {
        self.state.hold_jobs.store(hold, Ordering::SeqCst);
    }
}

impl Drop for LlmServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Re-panicking while a failed test unwinds would abort it.
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("the llm server thread panicked");
            }
        }
    }
}

/// Counts a request in flight for as long as it lives, also when the
/// client goes away and the handler's future is dropped mid-sleep.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What every API request goes through before its own handler: counting,
/// latency, the key check, failure injection and body parsing. `Ok` is the
/// parsed body of a request to answer with 200.
async fn admit(s: &Shared, headers: &HeaderMap, body: &Bytes) -> Result<Value, Response> {
    admit_text(s, headers, body, None).await
}

/// [`admit`] for a chat request whose last user message is `text`.
async fn admit_text(s: &Shared, headers: &HeaderMap, body: &Bytes, text: Option<&str>) -> Result<Value, Response> {
    admit_as(s, headers, text).await?;
    parse_object(body)
}

/// [`admit`] without the body: counting, latency, the key check and
/// failure injection, for every kind of request.
async fn admit_any(s: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    admit_as(s, headers, None).await
}

/// [`admit_any`] for a chat request whose last user message is `text`
/// (for [`ServerConfig::fail_once`]).
async fn admit_as(s: &Shared, headers: &HeaderMap, text: Option<&str>) -> Result<(), Response> {
    admit_auth(s, headers, text, Auth::Bearer).await
}

/// How a route takes its key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// `Authorization: Bearer <key>` (OpenAI).
    Bearer,
    /// `x-api-key: <key>` (Anthropic).
    XApiKey,
    /// `api-key: <key>`, or a bearer token (Azure OpenAI).
    Azure,
}

/// [`admit_as`] for a route that takes its key as `auth` says.
async fn admit_auth(s: &Shared, headers: &HeaderMap, text: Option<&str>, how: Auth) -> Result<(), Response> {
    let n = s.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let now = s.in_flight.load(Ordering::SeqCst);
    s.arrivals.lock().unwrap().push(now as u32);
    if s.cfg.max_concurrent.is_some_and(|max| now > max) {
        return Err(throttle(s, "too many requests in flight (injected)"));
    }
    let auth = headers.get(header::AUTHORIZATION).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if let Some(a) = &auth {
        s.authorizations.lock().unwrap().insert(a.clone());
    }
    if !s.cfg.latency.is_zero() {
        tokio::time::sleep(s.cfg.latency).await;
    }
    if let Some(key) = &s.cfg.api_key {
        let bearer = auth.as_deref() == Some(format!("Bearer {key}").as_str());
        let header_is = |name: &str| headers.get(name).is_some_and(|v| v.as_bytes() == key.as_bytes());
        let ok = match how {
            Auth::Bearer => bearer,
            Auth::XApiKey => header_is("x-api-key"),
            Auth::Azure => bearer || header_is("api-key"),
        };
        if !ok {
            let kind = if how == Auth::XApiKey { "authentication_error" } else { "invalid_request_error" };
            return Err(error(StatusCode::UNAUTHORIZED, "invalid api key", kind));
        }
    }
    // With `fail_once`, a case that failed before is answered, and the
    // schedule counts only the others.
    let n = match text.filter(|_| s.cfg.fail_once) {
        Some(t) if s.failed_once.lock().unwrap().contains(t) => 0,
        Some(_) => s.scheduled.fetch_add(1, Ordering::SeqCst) + 1,
        None => n,
    };
    if let Some(every) = s.cfg.fail_every.filter(|&e| e > 0 && n > 0 && s.failing.load(Ordering::SeqCst)).map(u64::from)
    {
        if n.is_multiple_of(every) {
            if let Some(t) = text.filter(|_| s.cfg.fail_once) {
                s.failed_once.lock().unwrap().insert(t.to_string());
            }
            if let Some(code) = s.cfg.fail_status {
                if code == 429 {
                    return Err(throttle(s, "rate limited (injected)"));
                }
                if code == 529 {
                    // Anthropic's "overloaded", with the throttle's headers.
                    let mut r = error(StatusCode::from_u16(529).expect("a status"), "Overloaded", "overloaded_error");
                    for (name, value) in &s.cfg.throttle_headers {
                        r.headers_mut().insert(*name, header::HeaderValue::from_static(value));
                    }
                    return Err(r);
                }
                let status = StatusCode::from_u16(code).expect("an HTTP status");
                return Err(error(status, "failure (injected)", "server_error"));
            }
            // Failures alternate: the 1st, 3rd, ... is a 429, the others a 500.
            return Err(if (n / every) % 2 == 1 {
                throttle(s, "rate limited (injected)")
            } else {
                error(StatusCode::INTERNAL_SERVER_ERROR, "server error (injected)", "server_error")
            });
        }
    }
    Ok(())
}

/// A 429 with the configured headers, counted.
fn throttle(s: &Shared, message: &str) -> Response {
    s.throttled.fetch_add(1, Ordering::SeqCst);
    let mut r = error(StatusCode::TOO_MANY_REQUESTS, message, "rate_limit_error");
    for (name, value) in &s.cfg.throttle_headers {
        r.headers_mut().insert(*name, header::HeaderValue::from_static(value));
    }
    r
}

/// The last user message of a chat request body.
fn last_user_text(body: &[u8]) -> Option<String> {
    let req: Value = serde_json::from_slice(body).ok()?;
    let messages = req.get("messages")?.as_array()?;
    let last = messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    Some(content_text(last.get("content")))
}

/// Records a successful request and its body.
fn succeed(s: &Shared, body: Value) {
    if s.cfg.record_bodies {
        s.bodies.lock().unwrap().push(body);
    }
    s.successes.fetch_add(1, Ordering::SeqCst);
}

/// A request body that must be a JSON object.
// A response is what axum handlers return; boxing it here buys nothing.
#[allow(clippy::result_large_err)]
fn parse_object(body: &[u8]) -> Result<Value, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(error(StatusCode::BAD_REQUEST, "the request body must be a JSON object", "invalid_request_error")),
        Err(e) => Err(error(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}"), "invalid_request_error")),
    }
}

/// Counts a request on `route`.
fn count_route(s: &Shared, route: &str) {
    *s.routes.lock().unwrap().entry(route.to_string()).or_insert(0) += 1;
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "unknown path", "invalid_request_error")
}

/// An error answer in OpenAI's shape, which is Anthropic's too but for
/// its top-level `type` (OpenAI clients ignore it).
fn error(status: StatusCode, message: &str, kind: &str) -> Response {
    (status, Json(json!({"type": "error", "error": {"message": message, "type": kind}}))).into_response()
}

/// A message's text: a string, or the `text` parts of a content array.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" ")
        }
        _ => String::new(),
    }
}

/// Whitespace-separated words: the server's idea of a token.
fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Eight floats in [-1, 1] derived from `text` (FNV-1a per dimension), unit
/// length unless all are zero.
fn embed(text: &str) -> Vec<f64> {
    let raw: Vec<f64> = (0..8u64)
        .map(|dim| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ dim.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for b in text.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 {
        raw
    } else {
        raw.into_iter().map(|x| x / norm).collect()
    }
}
