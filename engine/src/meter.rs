//! Call accounting: what a node's backend calls cost, counted as they happen
//! and written into the run manifest ([`CallStats`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use flow_cache::CallStats;

/// Counters of one node's backend calls, shared by its concurrent calls.
#[derive(Debug, Default)]
pub struct Meter {
    requests: AtomicU64,
    memo_hits: AtomicU64,
    retries: AtomicU64,
    errors: AtomicU64,
    retryable_errors: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    /// In units of 1e-9 USD, so concurrent adds stay exact.
    nano_usd: AtomicU64,
    /// Some call had no known price.
    unpriced: AtomicBool,
    implausible_usage: AtomicU64,
}

impl Meter {
    /// A call answered by the server (after `retries` failed attempts).
    pub fn request(&self, prompt_tokens: u64, completion_tokens: u64, cost_usd: Option<f64>) {
        self.requests.fetch_add(1, Relaxed);
        self.prompt_tokens.fetch_add(prompt_tokens, Relaxed);
        self.completion_tokens.fetch_add(completion_tokens, Relaxed);
        match cost_usd {
            Some(c) => {
                self.nano_usd.fetch_add((c.max(0.0) * 1e9).round() as u64, Relaxed);
            }
            None => self.unpriced.store(true, Relaxed),
        }
    }

    /// An answer whose token counts were implausible, and not counted.
    pub fn implausible_usage(&self) {
        self.implausible_usage.fetch_add(1, Relaxed);
    }

    /// A call answered from the call memo: nothing sent, nothing spent.
    pub fn memo_hit(&self) {
        self.memo_hits.fetch_add(1, Relaxed);
    }

    /// An attempt that failed and was tried again.
    pub fn retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    /// A call that failed for good.
    pub fn error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }

    /// A call that failed for good on a transient failure (429, 5xx,
    /// timeout, connection) after its retries: counted in `error` too, and
    /// sent again by the next run.
    pub fn gave_up(&self) {
        self.retryable_errors.fetch_add(1, Relaxed);
    }

    /// The counts so far; `None` when the node made no call at all.
    pub fn snapshot(&self) -> Option<CallStats> {
        let s = CallStats {
            requests: self.requests.load(Relaxed),
            memo_hits: self.memo_hits.load(Relaxed),
            retries: self.retries.load(Relaxed),
            errors: self.errors.load(Relaxed),
            retryable_errors: self.retryable_errors.load(Relaxed),
            prompt_tokens: self.prompt_tokens.load(Relaxed),
            completion_tokens: self.completion_tokens.load(Relaxed),
            // A sum with an unpriced call in it is not the cost: unknown.
            cost_usd: (!self.unpriced.load(Relaxed)).then(|| self.nano_usd.load(Relaxed) as f64 / 1e9),
            implausible_usage: self.implausible_usage.load(Relaxed),
        };
        (s.requests + s.memo_hits + s.errors > 0).then_some(s)
    }
}
