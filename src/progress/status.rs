//! What one node is doing, in words: done/total, rate, ETA, errors, cost
//! so far, and a retry wait ("backing off (429, retry in 12 s)"). The bars,
//! the plain lines and the `--json` events all say it from this one state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flow_engine::Meter;

/// A node as progress follows it.
pub struct NodeState {
    pub name: String,
    pub kind: &'static str,
    pub started: Option<Instant>,
    pub cached: bool,
    pub finished: bool,
    /// Output records so far.
    pub done: u64,
    /// Output records expected, when known.
    pub total: Option<u64>,
    pub meter: Option<Arc<Meter>>,
    /// What the last plain line showed: (records, calls answered or failed).
    pub last_line: Option<(u64, u64)>,
    pub last_line_at: Option<Instant>,
}

impl NodeState {
    pub fn new(name: &str, kind: &'static str) -> Self {
        Self {
            name: name.to_string(),
            kind,
            started: None,
            cached: false,
            finished: false,
            done: 0,
            total: None,
            meter: None,
            last_line: None,
            last_line_at: None,
        }
    }

    /// Records per second since the node started.
    pub fn rate(&self) -> Option<f64> {
        let secs = self.started?.elapsed().as_secs_f64();
        (secs > 0.2 && self.done > 0).then(|| self.done as f64 / secs)
    }

    /// Time left at the rate so far.
    pub fn eta(&self) -> Option<Duration> {
        let left = self.total?.saturating_sub(self.done);
        let rate = self.rate()?;
        Some(Duration::from_secs_f64(left as f64 / rate))
    }

    /// Calls answered or failed so far: what tells a node that is working
    /// from one that waits.
    pub fn calls_seen(&self) -> u64 {
        self.meter.as_ref().and_then(|m| m.snapshot()).map_or(0, |c| c.requests + c.memo_hits + c.errors)
    }

    /// `12/24 records (50%)`, or `12 records` without a total.
    pub fn count(&self) -> String {
        match self.total {
            Some(t) if t > 0 => format!("{}/{t} records ({}%)", self.done, self.done * 100 / t),
            Some(t) => format!("{}/{t} records", self.done),
            None => format!("{} records", self.done),
        }
    }

    /// `3.2/s, ETA 4 s, 1 error, $0.0012, backing off (429, retry in 12 s)`:
    /// the figures after the count, each only when there is something to say.
    pub fn figures(&self, colour: bool) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(r) = self.rate() {
            out.push(if r >= 10.0 { format!("{r:.0}/s") } else { format!("{r:.1}/s") });
        }
        if let Some(eta) = self.eta().filter(|_| self.total.is_some_and(|t| t > self.done)) {
            out.push(format!("ETA {}", duration(eta)));
        }
        if let Some(c) = self.meter.as_ref().and_then(|m| m.snapshot()) {
            if c.errors > 0 {
                out.push(format!("{} error{}", c.errors, if c.errors == 1 { "" } else { "s" }));
            }
            match c.cost_usd {
                Some(v) if v > 0.0 => out.push(super::summary::cost_cell(Some(v))),
                _ => {}
            }
        }
        if let Some(b) = self.meter.as_ref().and_then(|m| m.backoff()) {
            let why = b.status.map_or_else(|| "timeout or connection".to_string(), |s| s.to_string());
            let text = format!("backing off ({why}, retry in {})", duration(b.retry_in));
            out.push(if colour { format!("\x1b[33m{text}\x1b[0m") } else { text });
        }
        out
    }

    /// The plain line: `[answers] run: 12/24 records (50%), 3.2/s, ETA 4 s`.
    pub fn line(&self) -> String {
        let mut parts = vec![self.count()];
        parts.extend(self.figures(false));
        format!("[{}] {}: {}", self.name, self.kind, parts.join(", "))
    }
}

/// `850 ms`, `12 s`, `3 min 20 s`, `1 h 5 min`: rounded as a person says it.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 && d.as_millis() < 1000 {
        return format!("{} ms", d.as_millis());
    }
    let s = if d.subsec_millis() >= 500 { s + 1 } else { s };
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_millis(11_600)), "12 s");
        assert_eq!(duration(Duration::from_secs(200)), "3 min 20 s");
        assert_eq!(duration(Duration::from_secs(3900)), "1 h 5 min");
    }

    #[test]
    fn a_line_says_count_rate_eta_and_a_retry_wait() {
        let mut n = NodeState::new("answers", "run");
        n.total = Some(24);
        n.done = 12;
        n.started = Some(Instant::now() - Duration::from_secs(4));
        let meter = Arc::new(Meter::default());
        meter.error();
        meter.backing_off(Some(429), Duration::from_secs(12));
        n.meter = Some(meter);
        let line = n.line();
        assert!(line.starts_with("[answers] run: 12/24 records (50%), 3.0/s, ETA 4 s, 1 error, "), "{line}");
        assert!(line.ends_with("backing off (429, retry in 12 s)"), "{line}");
    }
}
