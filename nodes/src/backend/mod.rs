//! The backend layer every stage calls through: one [`Backend`] per entry of
//! the spec's `backends:`, shared by all nodes of a run.
//!
//! A call goes: call memo (blake3 of backend identity + request; a hit
//! sends nothing) → rate limits (`rpm`, `tpm`, governor) → a concurrency
//! slot (up to `max_concurrency`, shared by every node on the backend, the
//! cap adapting to 429s: [`slots`]) → the transport (`openai` over HTTP, the offline `sim`, or a `local` model in process) → retries with
//! exponential backoff and jitter on 429, 5xx, timeouts and connection
//! errors, honouring `Retry-After` (backon) → the answer is memoized and
//! counted (tokens, cost) on the node's meter. Endpoints are paths under the
//! API root, so chat completions and embeddings share all of it, and so do
//! fine-tuning's files and jobs endpoints: a multipart upload
//! ([`Backend::upload`]) and a JSON POST at any path ([`Backend::post_as`])
//! are memoized like a chat call, so a re-run replays the upload and the job
//! creation instead of starting a second job; a GET ([`Backend::get`], a
//! job's status) goes through limits, retries and accounting but is never
//! memoized, since its answer changes over time.
//!
//! This module is the pipeline; [`call`] holds what a call is and gives
//! back, `chat` the calls stages make by name (chat, embeddings),
//! `describe` how `flow plan` shows a backend, and a file per provider
//! (`openai`, `anthropic`, `azure`, `http`, `exec`, `sim`) its transport.

mod anthropic;
pub mod app;
mod azure;
mod batch;
mod call;
mod chat;
mod describe;
mod exec;
mod flight;
mod http;
pub mod local;
mod memo;
mod openai;
pub mod ordered;
pub mod price;
mod request;
mod run;
pub mod sim;
mod slots;
pub mod tools;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use governor::DefaultDirectRateLimiter;
use serde_json::Value;

use flow_engine::cache::ContentHash;
use flow_engine::{BackendSpec, Meter, Provider};

pub use batch::BatchSeen;
use call::Request;
pub use call::*;
pub use describe::{describe, expected, expected_cost, expected_json, shown_in_plan, total, Cost};
pub use memo::{MemoFailed, MemoWriter};
pub use openai::ClientError;
use price::Prices;
pub use request::{
    chat_body, chat_body_for, chat_body_schema, chat_body_with, embed_body, memo_key, planned, post_key, upload_key,
};
use request::{estimate_tokens, memo_key_of, path_key_of, upload_key_of};
pub use run::{withheld_key, BackendError, Backends, Withheld};
pub use sim::Answer;
use slots::{Outcome, Slots};
pub use tools::{Tool, ToolCall};

enum Transport {
    Openai(openai::Client),
    Sim(sim::Sim),
    Local(local::Local),
    /// The user's application over HTTP ([`http`]).
    Http(Box<http::Client>),
    /// The user's program over JSONL ([`exec`]).
    Exec(exec::Client),
}

/// One backend of the spec, with its limits, shared by every node that
/// uses it in a run.
pub struct Backend {
    pub name: String,
    pub spec: BackendSpec,
    identity: Value,
    transport: Transport,
    slots: Slots,
    rpm: Option<DefaultDirectRateLimiter>,
    tpm: Option<(DefaultDirectRateLimiter, u32)>,
    prices: Arc<Prices>,
    memo: Option<Arc<MemoWriter>>,
    /// Identical memoized calls in flight, made once: shared by the run's
    /// backends (keys hold the backend's identity, so two names for one
    /// endpoint share their calls too).
    flights: Arc<flight::Flights>,
    /// With `batch:`, the batches its calls go through: one batcher an
    /// endpoint (a batch holds requests to one), chat then embeddings.
    batch: Vec<Arc<batch::Batcher>>,
}

impl Backend {
    /// Why this backend sends no more calls in this run: the call memo can
    /// record no more answers. A stage that sees a call fail checks this
    /// and fails the node, rather than the one record.
    pub fn halted(&self) -> Option<MemoFailed> {
        self.memo.as_ref()?.failure()
    }

    /// The memo key of a request to this backend (see [`memo_key`]).
    pub fn memo_key(&self, endpoint: Endpoint, body: &Value, sample: u32) -> ContentHash {
        memo_key_of(&self.identity, endpoint, body, sample)
    }

    /// One call: memo, limits, transport, retries, accounting. `usable`
    /// says whether a response the server sent with success holds what the
    /// caller needs (a chat answer's content); one that does not is a failed
    /// call: counted as an error and not memoized.
    pub async fn call_checked(
        &self,
        endpoint: Endpoint,
        body: Value,
        opts: CallOpts<'_>,
        usable: impl Fn(&Value) -> Result<(), Unusable>,
    ) -> Result<Reply, CallError> {
        let key = self.memo_key(endpoint, &body, opts.sample);
        // Only `tpm` reads it, and it costs a serialization of the body.
        let tokens = self.tpm.is_some().then(|| estimate_tokens(&body, self.spec.max_tokens));
        self.execute(Request::Endpoint(endpoint, &body, opts.sample), Some(key), tokens, opts, usable).await
    }

    /// A JSON POST to `path` under the base URL (a fine-tuning job's
    /// creation), memoized under `key` rather than the body: the caller
    /// names what the answer depends on when the body holds ids an earlier
    /// call returned (the uploaded file's id), so the key can be computed
    /// before that call is made (`flow plan`) and stays the same when the
    /// server hands out a new id. `usable` as in [`Backend::call_checked`].
    pub async fn post_as(
        &self,
        path: &str,
        body: Value,
        key: &Value,
        opts: CallOpts<'_>,
        usable: impl Fn(&Value) -> Result<(), Unusable>,
    ) -> Result<Reply, CallError> {
        let key = path_key_of(&self.identity, path, key, 0);
        self.execute(Request::Post(path, &body), Some(key), None, opts, usable).await
    }

    /// A `multipart/form-data` upload to `path` (OpenAI's `files`),
    /// memoized under the file's content, name and purpose: uploading the
    /// same dataset again replays the first answer (the same file id).
    pub async fn upload(
        &self,
        path: &str,
        file: Upload<'_>,
        opts: CallOpts<'_>,
        usable: impl Fn(&Value) -> Result<(), Unusable>,
    ) -> Result<Reply, CallError> {
        let key = upload_key_of(&self.identity, path, &file);
        self.execute(Request::Upload(path, file), Some(key), None, opts, usable).await
    }

    /// A GET of `path` under the base URL (a job's status, its events):
    /// limits, retries and accounting, never the memo (the answer changes
    /// over time).
    pub async fn get(&self, path: &str, opts: CallOpts<'_>) -> Result<Reply, CallError> {
        self.execute(Request::Get(path), None, None, opts, |_| Ok(())).await
    }

    /// One call of any kind: the memo when it has a `key`, the limits
    /// (`tokens` for `tpm`: only inference calls count), the transport with
    /// retries, then accounting and the memo.
    async fn execute(
        &self,
        request: Request<'_>,
        key: Option<ContentHash>,
        tokens: Option<u32>,
        opts: CallOpts<'_>,
        usable: impl Fn(&Value) -> Result<(), Unusable>,
    ) -> Result<Reply, CallError> {
        let priced = Priced::of(&request, !self.batch.is_empty());
        if let (true, Some(memo), Some(key)) = (opts.memo_reads, &self.memo, &key) {
            if let Some(stored) = memo.get(key) {
                if let Ok(stored) = serde_json::from_slice::<Value>(&stored) {
                    let latency_ms = stored["latency_ms"].as_u64().unwrap_or(0);
                    let body = stored["body"].clone();
                    if usable(&body).is_ok() {
                        opts.meter.memo_hit();
                        if let Transport::Sim(s) = &self.transport {
                            // The sim plays a server with state (files,
                            // jobs) that this request, answered here, does
                            // not reach: it learns what the answer made.
                            s.replayed(request, &body);
                        }
                        return Ok(self.reply(body, latency_ms, true, priced));
                    }
                }
            }
        }
        // An identical call in flight: its answer, once it has one.
        let mut leader = None;
        if let (true, Some(key)) = (opts.memo_reads && self.memo.is_some(), &key) {
            match self.flights.board(*key) {
                flight::Seat::Leader(l) => leader = Some(l),
                flight::Seat::Follower(rx) => {
                    if let Some((body, latency_ms)) = flight::follow(rx).await {
                        if usable(&body).is_ok() {
                            opts.meter.memo_hit();
                            return Ok(self.reply(body, latency_ms, true, priced));
                        }
                    }
                }
            }
        }
        if let (Request::Endpoint(endpoint, body, sample), Some(key)) = (request, key) {
            if let Some(b) = self.batch.iter().find(|b| b.endpoint() == endpoint) {
                return self.batched(b.submit(key, body, sample).await, opts, leader, usable);
            }
        }
        // Set while this call waits out a backoff (see `Meter::waiting`);
        // cleared when it tries again, or here if it is dropped meanwhile.
        let parked = Parked { on: AtomicBool::new(false), meter: opts.meter };
        let attempt = || async {
            parked.resume();
            if let Some(rpm) = &self.rpm {
                rpm.until_ready().await;
            }
            if let (Some((tpm, cap)), Some(tokens)) = (&self.tpm, tokens) {
                // A request larger than a minute's budget waits for all of it.
                let n = NonZeroU32::new(tokens.clamp(1, *cap)).expect("clamped to at least 1");
                let _ = tpm.until_n_ready(n).await;
            }
            let slot = self.slots.acquire().await.map_err(|_| CallError::fatal("backend closed"))?;
            // Checked at the last moment, so no call goes out once the memo
            // failed, not even one that waited for its slot or a retry.
            if let Some(halted) = self.halted() {
                return Err(CallError::fatal(halted.to_string()));
            }
            let started = Instant::now();
            let sent = async {
                match (&self.transport, request) {
                    (Transport::Openai(_), request) if self.spec.provider == Provider::Anthropic => {
                        self.send_anthropic(request).await
                    }
                    (Transport::Openai(c), Request::Endpoint(endpoint, body, _)) => c.send(endpoint, body).await,
                    (Transport::Openai(c), Request::Post(path, body)) => c.post(path, body).await,
                    (Transport::Openai(c), Request::Upload(path, file)) => c.upload(path, &file).await,
                    (Transport::Openai(c), Request::Get(path)) => c.get(path).await,
                    (Transport::Sim(s), Request::Endpoint(endpoint, body, sample)) => {
                        s.send(endpoint, body, sample).await
                    }
                    (Transport::Sim(s), other) => s.fine_tuning(other).await,
                    (Transport::Local(l), request) => l.send(request).await,
                    (Transport::Http(c), Request::Endpoint(Endpoint::Chat, body, _)) => c.send(body).await,
                    (Transport::Exec(c), Request::Endpoint(Endpoint::Chat, body, _)) => c.send(body).await,
                    (Transport::Http(_) | Transport::Exec(_), _) => Err(CallError::fatal(format!(
                        "backend `{}` is your application ({}): it answers prompts, not embeddings or fine-tuning; use an `openai` (or `sim`) backend for those",
                        self.name,
                        self.spec.provider.name()
                    ))),
                }
            }
            .await;
            let cap = slot.finish(match &sent {
                Err(e) if e.status == Some(429) => Outcome::Throttled,
                Err(e) if e.retryable => Outcome::Other,
                _ => Outcome::Answered,
            });
            opts.meter.concurrency(cap.now, cap.max);
            Ok::<_, CallError>((sent?, started.elapsed()))
        };
        let retry = &self.spec.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(retry.initial_delay)
            .with_max_delay(retry.max_delay)
            .with_max_times(retry.max_retries as usize)
            .with_jitter();
        let result = attempt
            .retry(backoff)
            .when(|e: &CallError| e.retryable)
            // The server knows best when to come back.
            .adjust(|e: &CallError, d| {
                d.map(|d| e.retry_after.map(|r| r.min(retry.max_delay.saturating_mul(4))).unwrap_or(d))
            })
            .notify(|e: &CallError, d| {
                opts.meter.retry();
                parked.park(e.status, d);
                tracing::debug!(backend = %self.name, error = %e, wait = ?d, "retrying");
            })
            .await;
        match result {
            Ok((body, elapsed)) => {
                let latency_ms = elapsed.as_millis() as u64;
                let reply = self.counted(body, latency_ms, priced, opts, usable)?;
                if let (Some(memo), Some(key)) = (&self.memo, key) {
                    // Borrowed, not a `json!` copy of the body; the same
                    // bytes (`body` sorts before `latency_ms`).
                    #[derive(serde::Serialize)]
                    struct Stored<'a> {
                        body: &'a Value,
                        latency_ms: u64,
                    }
                    memo.put(key, serde_json::to_vec(&Stored { body: &reply.body, latency_ms }).expect("json"));
                }
                if let Some(l) = leader {
                    l.land(&reply.body, latency_ms);
                }
                Ok(reply)
            }
            Err(mut e) => {
                opts.meter.error();
                if e.retryable {
                    opts.meter.gave_up();
                    e.message = format!("{} (gave up after {} retries)", e.message, retry.max_retries);
                }
                Err(e)
            }
        }
    }

    /// A fresh answer (sent live, or from a batch): counted and paid for
    /// whatever it holds, then a failed call if it lacks what the caller
    /// needs (`usable`).
    fn counted(
        &self,
        body: Value,
        latency_ms: u64,
        priced: Priced,
        opts: CallOpts<'_>,
        usable: impl Fn(&Value) -> Result<(), Unusable>,
    ) -> Result<Reply, CallError> {
        let reply = self.reply(body, latency_ms, false, priced);
        opts.meter.request(reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.cost_usd);
        if reply.implausible_usage {
            opts.meter.implausible_usage();
        }
        if let Err(e) = usable(&reply.body) {
            opts.meter.error();
            return Err(CallError::fatal(e.to_string()));
        }
        Ok(reply)
    }

    /// The answer to a call, priced as `priced` says: by its tokens (a chat
    /// or embeddings call, at the live or the batch price), or not at all
    /// (files, jobs: the provider bills a fine-tuning job by trained tokens,
    /// so their cost is unknown, `null`, not $0; the offline `sim` costs
    /// nothing either way).
    fn reply(&self, body: Value, latency_ms: u64, memo_hit: bool, priced: Priced) -> Reply {
        let batch = priced == Priced::Batch;
        let count = |field: &str| body["usage"][field].as_u64().unwrap_or(0);
        let (prompt, completion) = (count("prompt_tokens"), count("completion_tokens"));
        let implausible_usage = prompt > MAX_CALL_TOKENS || completion > MAX_CALL_TOKENS;
        let usage = if implausible_usage {
            Usage::default()
        } else {
            Usage { prompt_tokens: prompt, completion_tokens: completion }
        };
        let model = body["model"].as_str().filter(|m| !m.is_empty()).unwrap_or(self.spec.model()).to_string();
        let cost_usd = match self.spec.provider {
            // The offline backend and a local model cost nothing, unless
            // `prices:` says so for a demo.
            Provider::Sim | Provider::Local => {
                Some(self.prices.overridden(&model).map(|p| price::usd(price::batched(p, batch), usage)).unwrap_or(0.0))
            }
            _ if priced == Priced::No => None,
            // What the app says its call cost, before any price.
            Provider::Http | Provider::Exec if body["cost_usd"].is_number() => body["cost_usd"].as_f64(),
            provider => {
                let price = self.prices.for_backend(&self.spec, &model);
                let price = price.or_else(|| self.prices.for_backend(&self.spec, self.spec.model()));
                match price.map(|(p, s)| (price::batched(p, batch), s)) {
                    Some((p, _)) if provider == Provider::Anthropic => Some(anthropic::cost(p, &body)),
                    Some((p, _)) => Some(price::usd(p, usage)),
                    None => None,
                }
            }
        };
        Reply { body, latency_ms, memo_hit, usage, model, cost_usd, implausible_usage }
    }

    /// One attempt at a call to Anthropic's Messages API, its answer in
    /// the chat-completion shape; the API has no embeddings or
    /// fine-tuning, which fail at once (not retried).
    async fn send_anthropic(&self, request: Request<'_>) -> Result<Value, CallError> {
        let Transport::Openai(c) = &self.transport else { unreachable!("anthropic speaks HTTP") };
        match request {
            Request::Endpoint(Endpoint::Chat, body, _) => c.send(Endpoint::Chat, body).await.map(anthropic::normalize),
            Request::Endpoint(Endpoint::Embeddings, ..) => Err(CallError::fatal(format!(
                "backend `{}`: Anthropic has no embeddings API; use an `openai` (or `sim`) backend for embeddings",
                self.name
            ))),
            _ => Err(CallError::fatal(format!(
                "backend `{}`: Anthropic has no fine-tuning API; use `export:` to write the dataset instead",
                self.name
            ))),
        }
    }

    /// With `batch:`: the calling stage has no more calls to make, so what
    /// is queued goes now (see [`batch`]).
    pub fn flush_batch(&self) {
        for b in &self.batch {
            b.flush();
        }
    }

    /// The requests one batch holds at most, when the backend batches: a
    /// stage keeps that many calls pending, not a few per slot.
    pub fn batch_window(&self) -> Option<usize> {
        self.batch.first().map(|b| b.spec().max_requests())
    }

    /// See [`Backends::detach_batches`].
    pub fn detach_batch(&self) {
        for b in &self.batch {
            b.detach();
        }
    }

    /// Whether calls of this run went to its batchers.
    fn batch_has_calls(&self) -> bool {
        self.batch.iter().any(|b| b.has_calls())
    }

    /// See [`batch::Batcher::all_left`]: every batcher with calls has left
    /// them all, and one has.
    fn batch_all_left(&self) -> bool {
        let busy: Vec<_> = self.batch.iter().filter(|b| b.has_calls()).collect();
        !busy.is_empty() && busy.iter().all(|b| b.all_left())
    }

    /// The batches this run created or collected on this backend.
    pub fn batches_seen(&self) -> Vec<BatchSeen> {
        self.batch.iter().flat_map(|b| b.seen()).collect()
    }
}

/// How a call is priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Priced {
    /// Not by tokens (files, jobs).
    No,
    Live,
    /// Through the provider's batch API, at half the price: a chat or
    /// embeddings call on a `batch:` backend (answered by a batch, or by
    /// the memo for one of its calls).
    Batch,
}

impl Priced {
    fn of(request: &Request<'_>, batch_backend: bool) -> Self {
        match request {
            Request::Endpoint(..) if batch_backend => Priced::Batch,
            Request::Endpoint(..) => Priced::Live,
            _ => Priced::No,
        }
    }
}

/// A call waiting out a backoff, counted on its node's meter.
struct Parked<'a> {
    on: AtomicBool,
    meter: &'a Meter,
}

impl Parked<'_> {
    fn park(&self, status: Option<u16>, wait: Duration) {
        if !self.on.swap(true, Ordering::Relaxed) {
            self.meter.backing_off(status, wait);
        }
    }

    fn resume(&self) {
        if self.on.swap(false, Ordering::Relaxed) {
            self.meter.resumed();
        }
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.resume();
    }
}

#[cfg(test)]
mod tests {
    use super::request::has_content;
    use super::*;
    use flow_engine::cache::CallMemo;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn sim_backends(extra: &str) -> Backends {
        let spec: BackendSpec = serde_yaml::from_str(&format!("{{provider: sim, temperature: 0.7{extra}}}")).unwrap();
        let specs = BTreeMap::from([("bot".to_string(), spec)]);
        Backends::new(&specs, &BTreeMap::new(), &["bot".into()], None, &[], &|_| None).unwrap()
    }

    fn ask(text: &str) -> Vec<Message> {
        vec![Message { role: "user".into(), content: text.into() }]
    }

    #[tokio::test]
    async fn sim_answers_deterministically_and_counts() {
        let b = sim_backends("").get("bot").unwrap();
        let meter = Meter::default();
        let opts = CallOpts { meter: &meter, memo_reads: true, sample: 0 };
        let a = b.chat(&ask("What is 12 + 30?"), false, opts).await.unwrap();
        let again = b.chat(&ask("What is 12 + 30?"), false, opts).await.unwrap();
        assert_eq!(a.text, again.text);
        assert!(a.usage.prompt_tokens > 0 && a.usage.completion_tokens > 0);
        assert_eq!(meter.snapshot().unwrap().requests, 2);
        let j = b.chat(&ask("Rate this."), true, opts).await.unwrap();
        assert!(serde_json::from_str::<Value>(&j.text).unwrap().is_object(), "{}", j.text);
        let e = b.embed(&["red apple".into(), "red apple".into(), "blue sky".into()], opts).await.unwrap();
        assert_eq!(e[0], e[1]);
        assert_ne!(e[0], e[2]);
        let norm: f32 = e[2].iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    #[test]
    fn a_reply_without_content_is_not_usable() {
        let ok = json!({"choices": [{"message": {"role": "assistant", "content": "hi"}}]});
        assert!(has_content(&ok).is_ok());
        let filtered = json!({"choices": [{"message": {"role": "assistant", "content": null}, "finish_reason": "content_filter"}]});
        assert!(has_content(&filtered)
            .unwrap_err()
            .to_string()
            .contains("no message content (finish_reason: content_filter)"));
    }

    #[test]
    fn body_carries_sampling_and_distinct_seeds() {
        let b = sim_backends(", seed: 7, max_tokens: 5, params: {presence_penalty: 0.5}").get("bot").unwrap();
        let body = b.chat_body(&ask("hi"), true, 2);
        assert_eq!(body["seed"], 9);
        assert_eq!(body["max_tokens"], 5);
        assert_eq!(body["presence_penalty"], 0.5);
        assert_eq!(body["response_format"]["type"], "json_object");
        assert_ne!(b.memo_key(Endpoint::Chat, &body, 0), b.memo_key(Endpoint::Chat, &body, 1));
    }

    /// What `flow plan` computes without a backend is the key a call files
    /// its answer under.
    #[tokio::test]
    async fn plan_time_keys_are_the_run_time_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo.sqlite");
        let spec: BackendSpec = serde_yaml::from_str("{provider: sim, seed: 7, stop: [\"\\n\"]}").unwrap();
        let specs = BTreeMap::from([("bot".to_string(), spec.clone())]);
        let memo = CallMemo::open(&path).unwrap();
        let backends = Backends::new(&specs, &BTreeMap::new(), &["bot".into()], Some(memo), &[], &|_| None).unwrap();
        let b = backends.get("bot").unwrap();
        let meter = Meter::default();
        let cases = [("What is 12 + 30?", false, 0), ("Rate this.", true, 0), ("What is 12 + 30?", false, 3)];
        for (text, json_mode, sample) in cases {
            let opts = CallOpts { meter: &meter, memo_reads: true, sample };
            b.chat(&ask(text), json_mode, opts).await.unwrap();
        }
        drop(b);
        drop(backends);
        let memo = CallMemo::open(&path).unwrap();
        assert_eq!(memo.len().unwrap(), 3);
        for (text, json_mode, sample) in cases {
            let key = memo_key(&spec, Endpoint::Chat, &chat_body(&spec, &ask(text), json_mode, sample), sample);
            assert!(memo.get(&key).unwrap().is_some(), "{text:?} {json_mode} {sample}: no answer under the plan's key");
        }
        let other = memo_key(&spec, Endpoint::Chat, &chat_body(&spec, &ask("other"), false, 0), 0);
        assert_eq!(memo.get(&other).unwrap(), None);
    }

    /// An upload and a job's creation are filed under the keys `flow plan`
    /// computes, and replayed; a GET (a job's status) never is.
    #[tokio::test]
    async fn uploads_and_keyed_posts_are_memoized_and_gets_never() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo.sqlite");
        let spec: BackendSpec = serde_yaml::from_str("{provider: sim, model: base-1}").unwrap();
        let specs = BTreeMap::from([("ft".to_string(), spec.clone())]);
        let memo = CallMemo::open(&path).unwrap();
        let backends = Backends::new(&specs, &BTreeMap::new(), &["ft".into()], Some(memo), &[], &|_| None).unwrap();
        let b = backends.get("ft").unwrap();
        let meter = Meter::default();
        let opts = CallOpts { meter: &meter, memo_reads: true, sample: 0 };
        let bytes = b"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n";
        let file = Upload { filename: "train.jsonl", bytes, purpose: "fine-tune" };
        let key = json!({"model": "base-1", "training_file": {"content": "the file's hash"}});
        let mut ids = Vec::new();
        for round in 0..2 {
            let up = b.upload("files", file, opts, |_| Ok(())).await.unwrap();
            let body = json!({"model": "base-1", "training_file": up.body["id"]});
            let job = b.post_as("fine_tuning/jobs", body, &key, opts, |_| Ok(())).await.unwrap();
            assert_eq!((up.memo_hit, job.memo_hit), (round == 1, round == 1));
            let id = job.body["id"].as_str().unwrap().to_string();
            let polled = b.get(&format!("fine_tuning/jobs/{id}"), opts).await.unwrap();
            assert!(!polled.memo_hit);
            ids.push(id);
        }
        assert_eq!(ids[0], ids[1], "the replayed creation names the same job");
        let counts = meter.snapshot().unwrap();
        assert_eq!((counts.requests, counts.memo_hits), (4, 2));
        drop(b);
        drop(backends);
        let memo = CallMemo::open(&path).unwrap();
        assert_eq!(memo.len().unwrap(), 2);
        assert!(memo.get(&upload_key(&spec, "files", &file)).unwrap().is_some());
        assert!(memo.get(&post_key(&spec, "fine_tuning/jobs", &key)).unwrap().is_some());
    }
}
