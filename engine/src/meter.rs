//! Call accounting: what a node's backend calls cost, counted as they happen
//! and written into the run manifest ([`CallStats`]).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flow_cache::{CallStats, Concurrency};

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
    /// Calls waiting out a retry's backoff now.
    waiting: AtomicU64,
    /// The backend's concurrency cap as last seen, its `max_concurrency`
    /// and the lowest seen (0: none seen yet).
    cap: AtomicU32,
    cap_max: AtomicU32,
    cap_low: AtomicU32,
    /// Nanoseconds since `base` (plus one; 0: not throttled) at which the
    /// cap was first seen below its max, and the throttled time before.
    throttled_since: AtomicU64,
    throttled_ns: AtomicU64,
    base: OnceLock<Instant>,
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
        self.waiting.fetch_add(1, Relaxed);
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

    /// A call that was backing off tries again (or was dropped).
    pub fn resumed(&self) {
        let _ = self.waiting.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
    }

    /// Calls waiting out a backoff now: they hold no slot, so a stage does
    /// not count them among the calls that keep the backend busy.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Relaxed)
    }

    /// The backend's concurrency cap after a call: `cap` of `max` slots.
    pub fn concurrency(&self, cap: u32, max: u32) {
        self.cap.store(cap, Relaxed);
        self.cap_max.store(max, Relaxed);
        let _ = self.cap_low.fetch_update(Relaxed, Relaxed, |low| (low == 0 || cap < low).then_some(cap));
        let since = self.throttled_since.load(Relaxed);
        if cap < max && since == 0 {
            let _ = self.throttled_since.compare_exchange(0, self.now_ns() + 1, Relaxed, Relaxed);
        } else if cap >= max && since != 0 && self.throttled_since.compare_exchange(since, 0, Relaxed, Relaxed).is_ok()
        {
            self.throttled_ns.fetch_add((self.now_ns() + 1).saturating_sub(since), Relaxed);
        }
    }

    fn now_ns(&self) -> u64 {
        self.base.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }

    /// The cap as seen so far; `None` while it never left its max.
    fn concurrency_seen(&self) -> Option<Concurrency> {
        let (max, low) = (self.cap_max.load(Relaxed), self.cap_low.load(Relaxed));
        if low == 0 || low >= max {
            return None;
        }
        let since = self.throttled_since.load(Relaxed);
        let open = if since == 0 { 0 } else { (self.now_ns() + 1).saturating_sub(since) };
        Some(Concurrency {
            max,
            cap: self.cap.load(Relaxed),
            low,
            throttled_ms: (self.throttled_ns.load(Relaxed) + open) / 1_000_000,
        })
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
            concurrency: self.concurrency_seen(),
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

    #[test]
    fn the_cap_is_recorded_only_once_it_left_its_max() {
        let m = Meter::default();
        m.request(1, 1, Some(0.0));
        m.concurrency(16, 16);
        assert_eq!(m.snapshot().unwrap().concurrency, None);
        m.concurrency(11, 16);
        m.concurrency(7, 16);
        std::thread::sleep(Duration::from_millis(20));
        m.concurrency(12, 16);
        let c = m.snapshot().unwrap().concurrency.unwrap();
        assert_eq!((c.max, c.cap, c.low), (16, 12, 7));
        assert!(c.throttled_ms >= 20, "{c:?}");
        m.concurrency(16, 16);
        let done = m.snapshot().unwrap().concurrency.unwrap();
        assert_eq!((done.cap, done.low), (16, 7));
        std::thread::sleep(Duration::from_millis(20));
        let later = m.snapshot().unwrap().concurrency.unwrap();
        assert_eq!(later.throttled_ms, done.throttled_ms, "the clock stops once the cap is back at its max");
    }

    #[test]
    fn waiting_counts_calls_backing_off() {
        let m = Meter::default();
        m.backing_off(Some(429), Duration::from_secs(2));
        m.backing_off(None, Duration::from_millis(10));
        assert_eq!(m.waiting(), 2);
        m.resumed();
        m.resumed();
        m.resumed();
        assert_eq!(m.waiting(), 0, "never below zero");
    }
}
