//! Call accounting: what a node's backend calls cost, counted as they happen
//! and written into the run manifest ([`CallStats`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// When the latest retry wait ends, in ms since the Unix epoch (0: none).
    backoff_until_ms: AtomicU64,
    /// The HTTP status that caused it (0: none, a timeout or connection).
    backoff_status: AtomicU64,
}

/// A call waiting to be retried, as progress shows it: "backing off (429,
/// retry in 12 s)".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The HTTP status of the failed attempt, when the server answered.
    pub status: Option<u16>,
    /// How long until the retry goes out.
    pub retry_in: Duration,
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

    /// A failed attempt whose retry goes out after `wait`: what progress
    /// shows while the node waits (see [`Meter::backoff`]).
    pub fn backing_off(&self, status: Option<u16>, wait: Duration) {
        let until = now_ms().saturating_add(wait.as_millis() as u64);
        self.backoff_status.store(status.map_or(0, u64::from), Relaxed);
        self.backoff_until_ms.fetch_max(until, Relaxed);
    }

    /// The retry wait in progress, if one is: the latest one set.
    pub fn backoff(&self) -> Option<Backoff> {
        let until = self.backoff_until_ms.load(Relaxed);
        let now = now_ms();
        (until > now).then(|| {
            let status = self.backoff_status.load(Relaxed);
            Backoff {
                status: u16::try_from(status).ok().filter(|s| *s > 0),
                retry_in: Duration::from_millis(until - now),
            }
        })
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

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backoff_shows_until_its_wait_ends() {
        let m = Meter::default();
        assert_eq!(m.backoff(), None);
        m.backing_off(Some(429), Duration::from_secs(12));
        let b = m.backoff().unwrap();
        assert_eq!(b.status, Some(429));
        assert!(b.retry_in > Duration::from_secs(11) && b.retry_in <= Duration::from_secs(12), "{b:?}");
        m.backing_off(None, Duration::ZERO);
        assert_eq!(m.backoff().unwrap().status, None, "the latest attempt's cause");
        let m = Meter::default();
        m.backing_off(Some(503), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(m.backoff(), None, "over once the wait ends");
    }
}
