//! `batch:` backends: chat calls go through the provider's batch API
//! (OpenAI Batch, Anthropic Message Batches) at half the live price,
//! behind the same call memo as live calls.
//!
//! The batcher is transparent to the stages: a call that the memo does not
//! answer is queued here instead of taking a concurrency slot, and waits
//! for its answer. What is queued is submitted as one batch when it reaches
//! `max_requests`, when the calling stage says its input is exhausted
//! ([`super::Backend::flush_batch`], after a short settle so the last calls
//! are in), or after an idle gap (a safety net for stages that do not say,
//! and for a reorder buffer full by bytes). Each request's `custom_id` is
//! its memo key in hex (64 characters: within Anthropic's
//! `^[a-zA-Z0-9_-]{1,64}$`), so answers are matched to calls by key.
//!
//! Durable: the batch id and the keys it holds are recorded in the memo
//! store, in one transaction, right after the create call returns and
//! before polling. A run that is killed while it waits, then started again,
//! finds the batch pending for those keys ([`Batcher::load`]) and polls it
//! rather than creating a second one. Answers are memoized as they are
//! read, then the batch is marked done; the keys an expired or failed batch
//! left unanswered are then free, and their calls fail as retryable (the
//! node runs again next time and submits exactly those). A request's own
//! error in the results becomes its record's `error`, as with live calls,
//! and is not memoized.

mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{oneshot, Notify, OnceCell};

use flow_engine::cache::{BatchRecord, ContentHash};
use flow_engine::spec::backend::RetrySpec;
use flow_engine::spec::batch::BatchSpec;
use flow_engine::{BackendSpec, Provider};

use super::request::has_content;
use super::run::Notes;
use super::{flight, openai, sim, Answer as SimAnswer, Backend, CallError, CallOpts, Endpoint, MemoWriter, Reply};
pub(in crate::backend) use wire::Wire;

/// No new call for this long: what is queued is submitted.
const IDLE_GAP: Duration = Duration::from_millis(1500);
/// After the stage said its input is exhausted, the calls it already
/// started get this long to be queued before the batch goes.
const SETTLE: Duration = Duration::from_millis(250);
/// How often a `sim` batch is polled when `poll:` is not set.
const SIM_POLL: Duration = Duration::from_millis(100);

/// A batch answer (body, ms from submission to its results) or why none.
type Answered = Result<(Value, u64), CallError>;

/// A call waiting to be submitted.
pub(in crate::backend) struct Queued {
    pub key: ContentHash,
    pub body: Value,
    pub sample: u32,
}

/// A batch this run created or followed, as a node's summary shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BatchSeen {
    pub id: String,
    pub requests: usize,
    /// The last state seen.
    pub state: String,
    /// Created by an earlier run, collected by this one.
    pub resumed: bool,
    /// Seconds from submission (or this run's first poll) to its results.
    pub waited_s: Option<f64>,
}

/// The batches of one backend.
pub(in crate::backend) struct Batcher {
    me: Weak<Batcher>,
    name: String,
    provider: Provider,
    cfg: BatchSpec,
    poll: Duration,
    /// Where its requests go: a batch holds requests to one endpoint.
    endpoint: Endpoint,
    /// The backend's identity hash (and endpoint): whose batches are
    /// whose in the store.
    backend: String,
    retry: RetrySpec,
    wire: Wire,
    memo: Option<Arc<MemoWriter>>,
    /// Where its news goes (a line a user waiting on a batch should see).
    notes: Arc<Notes>,
    inner: Mutex<Inner>,
    wake: Notify,
    loaded: OnceCell<()>,
    seen: Mutex<Vec<BatchSeen>>,
    /// `flow run --detach`: batches are created and recorded, then left at
    /// the provider (a pending one is polled once) for a later run.
    detach: AtomicBool,
    /// The calling stage said its input is exhausted.
    input_ended: AtomicBool,
    /// Batches being created, or polled for the first time when detached:
    /// not yet known to be left.
    busy: AtomicUsize,
}

#[derive(Default)]
struct Inner {
    queue: Vec<Queued>,
    waiters: HashMap<ContentHash, Vec<oneshot::Sender<Answered>>>,
    /// Keys in a batch not yet collected, and its id.
    held: HashMap<ContentHash, String>,
    /// The stage said its input is exhausted.
    flush: bool,
    last_in: Option<Instant>,
    driving: bool,
}

/// `24h`, `90m`, `30s`, `1.5s`.
fn shown(d: Duration) -> String {
    let s = d.as_secs();
    match (s, d.subsec_millis()) {
        (s, 0) if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        (s, 0) if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        (s, 0) => format!("{s}s"),
        _ => format!("{:.1}s", d.as_secs_f64()),
    }
}

/// Whether a batch's answer holds what its endpoint gives (a chat answer's
/// content, an embeddings list); one that does not is its request's error.
fn holds_answer(endpoint: Endpoint, body: &Value) -> Result<(), String> {
    match endpoint {
        Endpoint::Chat => has_content(body).map_err(|e| e.to_string()),
        Endpoint::Embeddings if body["data"].is_array() => Ok(()),
        Endpoint::Embeddings => {
            let shown: String = body.to_string().chars().take(200).collect();
            Err(format!("the embeddings answer has no `data` list: {shown}"))
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Batcher {
    /// The batcher of backend `name`, when its spec says `batch:`; `key`
    /// is its API key, for its own HTTP client.
    pub fn of(
        name: &str,
        spec: &BackendSpec,
        key: Option<String>,
        answers: &Arc<[SimAnswer]>,
        memo: Option<Arc<MemoWriter>>,
        notes: Arc<Notes>,
        endpoint: Endpoint,
    ) -> Result<Option<Arc<Self>>, openai::ClientError> {
        let Some(cfg) = spec.batch.clone() else { return Ok(None) };
        if endpoint == Endpoint::Embeddings && spec.provider == Provider::Anthropic {
            // Anthropic has no embeddings: such a call fails live.
            return Ok(None);
        }
        let wire = match spec.provider {
            Provider::Openai => Wire::Openai(openai::Client::new(spec, key)?),
            Provider::Anthropic => Wire::Anthropic(openai::Client::new(spec, key)?),
            Provider::Sim => Wire::Sim(wire::SimBatches::new(sim::Sim::new(spec, answers.clone()))),
            // Refused when the spec loads.
            _ => return Ok(None),
        };
        let poll = match (spec.provider, cfg.poll) {
            (Provider::Sim, None) => SIM_POLL,
            _ => cfg.poll(),
        }
        .max(Duration::from_millis(10));
        Ok(Some(Arc::new_cyclic(|me| Self {
            me: me.clone(),
            name: name.to_string(),
            provider: spec.provider,
            poll,
            // A chat batcher's as before; an embeddings one's apart, so
            // each resumes its own batches.
            backend: match endpoint {
                Endpoint::Chat => flow_engine::cache::hash_json(&spec.identity()).hex(),
                Endpoint::Embeddings => flow_engine::cache::hash_json(&(spec.identity(), "embeddings")).hex(),
            },
            endpoint,
            retry: spec.retry.clone(),
            cfg,
            wire,
            memo,
            notes,
            inner: Mutex::default(),
            wake: Notify::new(),
            loaded: OnceCell::new(),
            seen: Mutex::default(),
            detach: AtomicBool::new(false),
            input_ended: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
        })))
    }

    pub fn spec(&self) -> &BatchSpec {
        &self.cfg
    }

    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// Marks the keys of batch `b` as waiting on it.
    fn hold(&self, b: &BatchRecord) {
        let mut inner = lock(&self.inner);
        for k in &b.keys {
            inner.held.insert(*k, b.id.clone());
        }
    }

    /// The calling stage has no more calls: submit what is queued.
    pub fn flush(&self) {
        self.input_ended.store(true, Ordering::SeqCst);
        lock(&self.inner).flush = true;
        self.wake.notify_one();
    }

    /// Leave batches at the provider once created (`flow run --detach`).
    pub fn detach(&self) {
        self.detach.store(true, Ordering::SeqCst);
    }

    /// Whether any call came to this batcher in this run.
    pub fn has_calls(&self) -> bool {
        let inner = lock(&self.inner);
        !inner.waiters.is_empty() || !inner.queue.is_empty() || !lock(&self.seen).is_empty()
    }

    /// Detached: whether every call of this backend waits on a batch left
    /// at the provider (nothing queued, nothing being created or polled a
    /// first time), and some does.
    pub fn all_left(&self) -> bool {
        if !self.detach.load(Ordering::SeqCst) || self.busy.load(Ordering::SeqCst) > 0 {
            return false;
        }
        let inner = lock(&self.inner);
        self.input_ended.load(Ordering::SeqCst)
            && inner.queue.is_empty()
            && !inner.waiters.is_empty()
            && inner.waiters.keys().all(|k| inner.held.get(k).is_some_and(|id| !id.is_empty()))
    }

    pub fn seen(&self) -> Vec<BatchSeen> {
        lock(&self.seen).clone()
    }

    /// Once a run: the batches earlier runs left pending for this backend,
    /// whose keys wait on them, each polled from now.
    async fn load(&self) {
        self.loaded
            .get_or_init(|| async {
                let Some(memo) = &self.memo else { return };
                let pending = match memo.memo().pending_batches(Some(&self.backend)) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!("backend `{}`: could not read the pending batches: {e}", self.name);
                        return;
                    }
                };
                let Some(me) = self.me.upgrade() else { return };
                for b in pending {
                    self.hold(&b);
                    self.notes.say(format!(
                        "backend `{}`: batch {} ({} requests, {}) was created by an earlier run at {}: collecting it",
                        self.name,
                        b.id,
                        b.keys.len(),
                        b.state,
                        b.created_at
                    ));
                    if self.detach.load(Ordering::SeqCst) {
                        self.busy.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::spawn(me.clone().follow(b, Instant::now(), true));
                }
            })
            .await;
    }

    /// Queues a call (or joins the pending batch that holds its key) and
    /// waits for its answer.
    pub async fn submit(&self, key: ContentHash, body: &Value, sample: u32) -> Answered {
        self.load().await;
        let rx = {
            let mut inner = lock(&self.inner);
            let (tx, rx) = oneshot::channel();
            let first = !inner.waiters.contains_key(&key);
            inner.waiters.entry(key).or_default().push(tx);
            if first && !inner.held.contains_key(&key) {
                inner.queue.push(Queued { key, body: body.clone(), sample });
                inner.last_in = Some(Instant::now());
            }
            if !std::mem::replace(&mut inner.driving, true) {
                if let Some(me) = self.me.upgrade() {
                    tokio::spawn(me.drive());
                }
            }
            rx
        };
        self.wake.notify_one();
        rx.await.unwrap_or_else(|_| Err(CallError::fatal("the batch was dropped before its answer came")))
    }

    /// Submits what is queued when it is due (full, flushed and settled,
    /// or idle).
    async fn drive(self: Arc<Self>) {
        loop {
            let wait = {
                let inner = lock(&self.inner);
                match inner.last_in.filter(|_| !inner.queue.is_empty()) {
                    None => IDLE_GAP,
                    Some(t) => (if inner.flush { SETTLE } else { IDLE_GAP }).saturating_sub(t.elapsed()),
                }
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
            }
            let taken = {
                let mut inner = lock(&self.inner);
                let quiet = inner.last_in.map_or(Duration::MAX, |t| t.elapsed());
                let full = inner.queue.len() >= self.cfg.max_requests();
                let due = !inner.queue.is_empty() && (full || (inner.flush && quiet >= SETTLE) || quiet >= IDLE_GAP);
                if !due {
                    continue;
                }
                let n = inner.queue.len().min(self.cfg.max_requests());
                let taken: Vec<Queued> = inner.queue.drain(..n).collect();
                for q in &taken {
                    inner.held.insert(q.key, String::new());
                }
                if inner.queue.is_empty() {
                    inner.flush = false;
                }
                taken
            };
            self.busy.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(self.clone().create(taken));
        }
    }

    /// Creates one batch, records it, then follows it to its results.
    async fn create(self: Arc<Self>, taken: Vec<Queued>) {
        let started = Instant::now();
        let keys: Vec<ContentHash> = taken.iter().map(|q| q.key).collect();
        let created = match self.wire.create(self.endpoint, &taken, &self.retry).await {
            Ok(c) => c,
            Err(e) => {
                let e = CallError { message: format!("creating a batch: {}", e.message), ..e };
                self.answer_all(&keys, "", Err(e));
                self.busy.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        };
        drop(taken);
        let record = BatchRecord {
            id: created.id,
            provider: self.provider.name().to_string(),
            backend: self.backend.clone(),
            created_at: flow_engine::cache::now_rfc3339(),
            state: created.state,
            done: false,
            info: created.info.to_string(),
            keys,
        };
        // Before anything else: a run killed from here on finds it.
        if let Some(memo) = &self.memo {
            if let Err(e) = memo.memo().record_batch(&record) {
                tracing::warn!(
                    "backend `{}`: batch {} is not recorded ({e}); a killed run would not find it",
                    self.name,
                    record.id
                );
            }
        }
        self.hold(&record);
        self.notes.say(format!(
            "backend `{}`: batch {} created with {} requests ({}); results within {}",
            self.name,
            record.id,
            record.keys.len(),
            record.state,
            shown(self.cfg.max_wait())
        ));
        if self.detach.load(Ordering::SeqCst) {
            self.left(&record, false);
            self.busy.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        self.busy.fetch_sub(1, Ordering::SeqCst);
        self.follow(record, started, false).await;
    }

    /// Polls batch `b` until it ends, then memoizes and hands out its
    /// answers; a batch still unfinished after `max_wait` is left pending
    /// for a later run.
    async fn follow(self: Arc<Self>, b: BatchRecord, started: Instant, resumed: bool) {
        let at = {
            let mut seen = lock(&self.seen);
            seen.push(BatchSeen {
                id: b.id.clone(),
                requests: b.keys.len(),
                state: b.state.clone(),
                resumed,
                waited_s: None,
            });
            seen.len() - 1
        };
        let mut state = b.state.clone();
        let detached_first = resumed && self.detach.load(Ordering::SeqCst);
        let status = loop {
            tokio::time::sleep(self.poll).await;
            let status = match self.wire.status(&b.id, &self.retry).await {
                Ok(s) => s,
                Err(e) => {
                    if detached_first {
                        self.busy.fetch_sub(1, Ordering::SeqCst);
                    }
                    let e = CallError {
                        message: format!("polling batch {}: {}; the next run polls it again", b.id, e.message),
                        retryable: true,
                        ..e
                    };
                    self.answer_all(&b.keys, &b.id, Err(e));
                    return;
                }
            };
            if status.state != state {
                state = status.state.clone();
                self.notes.say(format!("backend `{}`: batch {} {state}", self.name, b.id));
                lock(&self.seen)[at].state = state.clone();
                if let Some(memo) = &self.memo {
                    let _ = memo.memo().update_batch(&b.id, &state, false);
                }
            }
            if status.ended {
                if detached_first {
                    self.busy.fetch_sub(1, Ordering::SeqCst);
                }
                break status;
            }
            // Detached, a batch still under way after one look is left.
            if detached_first {
                self.left(&b, true);
                self.busy.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            if started.elapsed() > self.cfg.max_wait() {
                let e = CallError {
                    message: format!(
                        "batch {} is still {state} after {} (`batch.max_wait`); the next run collects it",
                        b.id,
                        shown(self.cfg.max_wait())
                    ),
                    status: None,
                    retryable: true,
                    retry_after: None,
                };
                self.answer_all(&b.keys, &b.id, Err(e));
                return;
            }
        };
        let results = match self.wire.results(&b.id, &status, &self.retry).await {
            Ok(r) => r,
            Err(e) => {
                let e = CallError {
                    message: format!("reading batch {}'s results: {}; the next run reads them again", b.id, e.message),
                    retryable: true,
                    ..e
                };
                self.answer_all(&b.keys, &b.id, Err(e));
                return;
            }
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        let mut by_key: HashMap<ContentHash, Result<Value, CallError>> = HashMap::new();
        for (id, outcome) in results {
            if let Ok(k) = id.parse::<ContentHash>() {
                by_key.insert(k, outcome);
            }
        }
        let (mut answered, mut failed, mut missing) = (0, 0, 0);
        let mut outcomes = Vec::with_capacity(b.keys.len());
        for k in &b.keys {
            let outcome = match by_key.remove(k) {
                Some(Ok(body)) => match holds_answer(self.endpoint, &body) {
                    Ok(()) => {
                        answered += 1;
                        if let Some(memo) = &self.memo {
                            #[derive(Serialize)]
                            struct Stored<'a> {
                                body: &'a Value,
                                latency_ms: u64,
                            }
                            memo.put(*k, serde_json::to_vec(&Stored { body: &body, latency_ms }).expect("json"));
                        }
                        Ok((body, latency_ms))
                    }
                    Err(e) => {
                        failed += 1;
                        Err(CallError::fatal(e))
                    }
                },
                Some(Err(e)) => {
                    failed += 1;
                    Err(e)
                }
                None => {
                    missing += 1;
                    let why = status.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
                    Err(CallError {
                        message: format!(
                            "batch {} ended `{state}` without answering this request{why}; the next run submits it again",
                            b.id
                        ),
                        status: None,
                        retryable: true,
                        retry_after: None,
                    })
                }
            };
            outcomes.push((*k, outcome));
        }
        // Done once its answers are on disk (a run killed before reads
        // them again), and before the calls hear: a run whose calls are
        // all answered leaves no batch pending.
        if let Some(memo) = self.memo.clone() {
            let id = b.id.clone();
            let state = state.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if memo.flush().is_ok() {
                    let _ = memo.memo().update_batch(&id, &state, true);
                }
            })
            .await;
        }
        for (k, outcome) in outcomes {
            self.answer(&k, &b.id, outcome);
        }
        {
            let mut seen = lock(&self.seen);
            seen[at].waited_s = Some(started.elapsed().as_secs_f64());
        }
        let unanswered = if missing > 0 {
            format!(", {missing} unanswered (submitted again by the next run)")
        } else {
            String::new()
        };
        let why = status.error.as_deref().map(|e| format!("; the provider says: {e}")).unwrap_or_default();
        self.notes.say(format!(
            "backend `{}`: batch {} {state}: {answered} answered, {failed} failed{unanswered}{why}",
            self.name, b.id
        ));
    }

    /// A batch left at the provider by a detached run: said, and seen in
    /// the node's summary; its calls wait until the run is left.
    fn left(&self, b: &BatchRecord, resumed: bool) {
        let mut seen = lock(&self.seen);
        match seen.iter_mut().find(|s| s.id == b.id) {
            Some(s) => s.state = format!("{} (left)", s.state),
            None => seen.push(BatchSeen {
                id: b.id.clone(),
                requests: b.keys.len(),
                state: format!("{} (left)", b.state),
                resumed,
                waited_s: None,
            }),
        }
        self.notes.say(format!(
            "backend `{}`: batch {} ({} requests) is left at the provider (--detach): `flow run` again collects it",
            self.name,
            b.id,
            b.keys.len()
        ));
    }

    /// Hands `key`'s outcome to its callers; the key is no longer held by
    /// batch `id` (an error hands the same to each).
    fn answer(&self, key: &ContentHash, id: &str, outcome: Answered) {
        let waiters = {
            let mut inner = lock(&self.inner);
            if inner.held.get(key).is_some_and(|h| h == id || h.is_empty()) {
                inner.held.remove(key);
            }
            inner.waiters.remove(key).unwrap_or_default()
        };
        for w in waiters {
            let _ = w.send(outcome.clone());
        }
    }

    fn answer_all(&self, keys: &[ContentHash], id: &str, outcome: Answered) {
        for k in keys {
            self.answer(k, id, outcome.clone());
        }
    }
}

impl Backend {
    /// A call of a `batch:` backend that the memo did not answer, once
    /// its batch answered it ([`Batcher::submit`]): counted as a live call
    /// is (at the batch price, see [`Backend::reply`]); the batcher
    /// memoized it.
    pub(super) fn batched(
        &self,
        answered: Answered,
        opts: CallOpts<'_>,
        leader: Option<flight::Leader<'_>>,
        usable: impl Fn(&Value) -> Result<(), super::Unusable>,
    ) -> Result<Reply, CallError> {
        match answered {
            Ok((body, latency_ms)) => {
                let reply = self.counted(body, latency_ms, super::Priced::Batch, opts, usable)?;
                if let Some(l) = leader {
                    l.land(&reply.body, latency_ms);
                }
                Ok(reply)
            }
            Err(e) => {
                opts.meter.error();
                if e.retryable {
                    opts.meter.gave_up();
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests;
