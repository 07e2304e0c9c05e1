//! What `evaluate` counts as it scores ([`Totals`]) and the summary it
//! writes from them: `summary.json` for machines, `summary.md` for people
//! (printed after the run). Per metric, the mean and the pass rate share
//! one denominator, the records scored without error; the errored ones are
//! their own column, so a judge that failed on half the records shows as
//! errors, not as a lower pass rate.

use std::collections::BTreeSet;
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

/// One metric's verdict on one record, as the totals count it.
pub enum Counted {
    Scored { score: f64, pass: bool },
    Errored(String),
}

/// How records without a `variant` are named beside those with one.
pub const NO_VARIANT: &str = "-";

/// The running counts of the node, behind one lock taken once per record:
/// over every record, and per prompt `variant` when records carry one (a
/// `run` node's `prompts:`), since a figure over all variants hides the
/// worse one.
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
    /// Per variant (`None`: records without one): its name, the input
    /// position it was first seen at, and its counts (their own `variants`
    /// empty).
    pub variants: Vec<(Option<String>, u64, Totals)>,
}

impl Totals {
    pub fn new(metrics: usize) -> Self {
        Self { metrics: vec![Stats::default(); metrics], ..Self::default() }
    }

    /// Counts one record at input `position`: each metric's verdict, in
    /// the metrics' order, and its weighted score; into the totals and
    /// those of its `variant`.
    pub fn add(
        &mut self,
        position: u64,
        id: &dyn Fn() -> String,
        variant: Option<&str>,
        verdicts: &[Counted],
        score: Option<f64>,
    ) {
        self.count(position, id, verdicts, score);
        let at = match self.variants.iter().position(|(name, _, _)| name.as_deref() == variant) {
            Some(at) => at,
            None => {
                self.variants.push((variant.map(str::to_string), position, Totals::new(self.metrics.len())));
                self.variants.len() - 1
            }
        };
        let (_, first, totals) = &mut self.variants[at];
        *first = (*first).min(position);
        totals.count(position, id, verdicts, score);
    }

    fn count(&mut self, position: u64, id: &dyn Fn() -> String, verdicts: &[Counted], score: Option<f64>) {
        let mut all = true;
        for (st, verdict) in self.metrics.iter_mut().zip(verdicts) {
            match verdict {
                Counted::Scored { score, pass } => {
                    st.scored += 1;
                    st.sum += score;
                    if *pass {
                        st.passed += 1;
                    } else {
                        st.failing.add(position, id);
                    }
                    all &= pass;
                }
                Counted::Errored(text) => {
                    st.errors += 1;
                    st.errored.add(position, id);
                    all = false;
                    if st.first_error.as_ref().is_none_or(|(p, _)| position < *p) {
                        st.first_error = Some((position, format!("(on `{}`): {text}", id())));
                    }
                }
            }
        }
        self.records += 1;
        if all {
            self.passed += 1;
        } else {
            self.failed.add(position, id);
        }
        if let Some(s) = score {
            self.score_sum += s;
            self.scored += 1;
        }
    }

    /// The variants in the order the input first had them (chunks are
    /// scored in any order), records without one as `-`; none when no
    /// record has one.
    pub fn by_variant(&self) -> Vec<(&str, &Totals)> {
        if self.variants.iter().all(|(n, _, _)| n.is_none()) {
            return Vec::new();
        }
        let mut v: Vec<(&str, u64, &Totals)> =
            self.variants.iter().map(|(n, f, t)| (n.as_deref().unwrap_or(NO_VARIANT), *f, t)).collect();
        v.sort_by_key(|(_, first, _)| *first);
        v.into_iter().map(|(n, _, t)| (n, t)).collect()
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
/// weighted score, per metric its figures, the same per variant
/// (`variants`, in the input's order) when records carry one, and each
/// gate.
pub fn json(metrics: &[Metric], t: &Totals, gates: &[GateResult]) -> Value {
    let mut v = figures(metrics, t);
    let variants = t.by_variant();
    if !variants.is_empty() {
        let mut per = serde_json::Map::new();
        for (name, totals) in variants {
            per.insert(name.to_string(), figures(metrics, totals));
        }
        v["variants"] = Value::Object(per);
    }
    if !gates.is_empty() {
        v["gates"] = gates
            .iter()
            .map(|g| {
                let mut rule =
                    json!({"rule": g.rule, "metric": g.metric, "tripped": g.tripped.is_some(), "message": g.tripped});
                if let Some(variant) = &g.variant {
                    rule["variant"] = json!(variant);
                }
                rule
            })
            .collect();
    }
    v
}

fn figures(metrics: &[Metric], t: &Totals) -> Value {
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
    json!({
        "records": t.records,
        "passed": t.passed,
        "pass_rate": t.pass_rate().map(round6),
        "score": t.mean_score().map(round6),
        "errors": t.errors(),
        "metrics": per,
    })
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
    let variants = t.by_variant();
    if !variants.is_empty() {
        md.push_str("\nby variant (pass rate per metric):\n\n| variant | records | passed every metric | mean score |");
        for m in metrics {
            let _ = write!(md, " {} |", m.name);
        }
        md.push_str("\n|---|---:|---:|---:|");
        md.push_str(&"---:|".repeat(metrics.len()));
        md.push('\n');
        for (name, v) in variants {
            let _ = write!(
                md,
                "| {name} | {} | {} | {} |",
                v.records,
                pct(v.pass_rate()),
                v.mean_score().map(|s| format!("{s:.3}")).unwrap_or_else(|| "-".into())
            );
            for s in &v.metrics {
                let _ = write!(md, " {} |", pct(s.pass_rate()));
            }
            md.push('\n');
        }
    }
    if !gates.is_empty() {
        // One result per rule, metric and variant: each rule named once,
        // with the variants it tripped on.
        let mut tripped: Vec<(&str, Vec<&str>)> = Vec::new();
        for g in gates.iter().filter(|g| g.tripped.is_some()) {
            let at = match tripped.iter().position(|(r, _)| *r == g.rule) {
                Some(at) => at,
                None => {
                    tripped.push((&g.rule, Vec::new()));
                    tripped.len() - 1
                }
            };
            if let Some(v) = g.variant.as_deref().filter(|v| !tripped[at].1.contains(v)) {
                tripped[at].1.push(v);
            }
        }
        let names: Vec<String> = tripped
            .iter()
            .map(|(rule, variants)| match variants.as_slice() {
                [] => rule.to_string(),
                vs => format!("{rule} (on {})", vs.join(", ")),
            })
            .collect();
        let rules = gates.iter().map(|g| g.rule.as_str()).collect::<BTreeSet<_>>().len();
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
