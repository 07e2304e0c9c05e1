//! What `evaluate` counts as it scores ([`Totals`]) and the summary it
//! writes from them: `summary.json` for machines, `summary.md` for people
//! (printed after the run). Per metric, the mean and the pass rate share
//! one denominator, the records scored without error; the errored ones are
//! their own column, so a judge that failed on half the records shows as
//! errors, not as a lower pass rate.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::gate::GateResult;
use super::metric::{round6, Metric};

/// Ids listed at most in a gate's text; `flow show` has them all.
pub const MAX_LISTED: usize = 10;

/// The first records of some kind, by input position, whatever order the
/// chunks are scored in.
#[derive(Debug, Clone, Default)]
pub struct Listed {
    first: Vec<(u64, String)>,
    pub total: u64,
}

impl Listed {
    pub fn add(&mut self, position: u64, id: impl FnOnce() -> String) {
        self.total += 1;
        if self.first.len() == MAX_LISTED && self.first.last().is_some_and(|(p, _)| *p < position) {
            return;
        }
        let at = self.first.partition_point(|(p, _)| *p < position);
        self.first.insert(at, (position, id()));
        self.first.truncate(MAX_LISTED);
    }

    /// `a, b, c` or `a, b, … and 12 more (flow show NODE)`.
    pub fn shown(&self, node: &str) -> String {
        let ids: Vec<&str> = self.first.iter().map(|(_, id)| id.as_str()).collect();
        match self.total.saturating_sub(ids.len() as u64) {
            0 => ids.join(", "),
            more => format!("{} and {more} more (flow show {node})", ids.join(", ")),
        }
    }
}

/// One metric's counts.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Records scored without error.
    pub scored: u64,
    pub sum: f64,
    pub passed: u64,
    pub errors: u64,
    /// Records scored that did not pass.
    pub failing: Listed,
    /// Records whose verdict errored.
    pub errored: Listed,
    /// The first error by input position: `(on `id`): error`.
    pub first_error: Option<(u64, String)>,
}

impl Stats {
    pub fn count(&self) -> u64 {
        self.scored + self.errors
    }

    pub fn mean(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.sum / self.scored as f64)
    }

    pub fn pass_rate(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.passed as f64 / self.scored as f64)
    }

    /// The first error, for a node's own error message.
    pub fn first(&self) -> &str {
        self.first_error.as_ref().map(|(_, e)| e.as_str()).unwrap_or_default()
    }
}

/// The running counts of the node, behind one lock taken once per record.
#[derive(Debug, Default)]
pub struct Totals {
    pub metrics: Vec<Stats>,
    pub records: u64,
    /// Records that passed every metric.
    pub passed: u64,
    /// Records that did not.
    pub failed: Listed,
    /// Sum and count of the records' weighted scores (a record whose
    /// metrics all errored, or weigh 0, has none).
    pub score_sum: f64,
    pub scored: u64,
}

impl Totals {
    pub fn new(metrics: usize) -> Self {
        Self { metrics: vec![Stats::default(); metrics], ..Self::default() }
    }

    pub fn errors(&self) -> u64 {
        self.metrics.iter().map(|s| s.errors).sum()
    }

    /// The mean weighted score of the records that have one.
    pub fn mean_score(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.score_sum / self.scored as f64)
    }

    pub fn pass_rate(&self) -> Option<f64> {
        (self.records > 0).then(|| self.passed as f64 / self.records as f64)
    }
}

/// `summary.json`: the records, how many passed every metric, the mean
/// weighted score, per metric its figures, and each gate.
pub fn json(metrics: &[Metric], t: &Totals, gates: &[GateResult]) -> Value {
    let mut per = serde_json::Map::new();
    for (m, s) in metrics.iter().zip(&t.metrics) {
        per.insert(
            m.name.clone(),
            json!({
                "mean": s.mean().map(round6),
                "pass_rate": s.pass_rate().map(round6),
                "scored": s.scored,
                "errors": s.errors,
                "count": s.count(),
                "weight": m.weight,
            }),
        );
    }
    let mut v = json!({
        "records": t.records,
        "passed": t.passed,
        "pass_rate": t.pass_rate().map(round6),
        "score": t.mean_score().map(round6),
        "errors": t.errors(),
        "metrics": per,
    });
    if !gates.is_empty() {
        v["gates"] = gates
            .iter()
            .map(|g| json!({"rule": g.rule, "metric": g.metric, "tripped": g.tripped.is_some(), "message": g.tripped}))
            .collect();
    }
    v
}

/// `summary.md`: the same figures as a table. A tripped gate is named
/// here and its figures given once, in the run's error.
pub fn markdown(metrics: &[Metric], t: &Totals, gates: &[GateResult]) -> String {
    let mut md = format!(
        "records: {}, passed every metric: {} ({}), mean score: {}\n\n\
         | metric | mean | pass rate | scored | errors |\n|---|---:|---:|---:|---:|\n",
        t.records,
        t.passed,
        pct(t.pass_rate()),
        t.mean_score().map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into()),
    );
    let weighted = metrics.iter().any(|m| m.weight != 1.0);
    for (m, s) in metrics.iter().zip(&t.metrics) {
        let name = if weighted { format!("{} (weight {})", m.name, m.weight) } else { m.name.clone() };
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} |",
            s.mean().map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into()),
            pct(s.pass_rate()),
            s.scored,
            s.errors
        );
    }
    if !gates.is_empty() {
        // Results come grouped by rule, one per metric a rule checks.
        let mut names: Vec<&str> = gates.iter().filter(|g| g.tripped.is_some()).map(|g| g.rule.as_str()).collect();
        names.dedup();
        let mut rules: Vec<&str> = gates.iter().map(|g| g.rule.as_str()).collect();
        rules.dedup();
        let rules = rules.len();
        md.push('\n');
        if names.is_empty() {
            let _ = writeln!(md, "gates: none tripped ({rules} checked)");
        } else {
            let _ = writeln!(md, "gates tripped: {} of {rules}", names.join(", "));
        }
    }
    md
}

fn pct(r: Option<f64>) -> String {
    r.map(|v| format!("{:.1}%", v * 100.0)).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_keeps_the_first_by_position_whatever_the_order() {
        let mut l = Listed::default();
        for p in (0..25u64).rev() {
            l.add(p, || format!("r{p}"));
        }
        assert_eq!(l.total, 25);
        assert_eq!(l.shown("scores"), "r0, r1, r2, r3, r4, r5, r6, r7, r8, r9 and 15 more (flow show scores)");
        let mut short = Listed::default();
        short.add(3, || "c".into());
        short.add(1, || "a".into());
        assert_eq!(short.shown("n"), "a, c");
    }
}
