//! `evaluate`'s absolute gates (`fail_if`): checked on the node's totals
//! when it finishes. A tripped gate writes [`flow_engine::GATE_FAILED`],
//! whose text the run prints once as its error (exit 1), also when the
//! node is replayed from the cache, as `compare`'s gates do. The text gives
//! the rule, the figures, and the first failing records by id.

use super::config::{GateConfig, GateTest};
use super::metric::Metric;
use super::summary::{Stats, Totals};

/// One rule checked against one metric (or the weighted score).
#[derive(Debug, Clone, PartialEq)]
pub struct GateResult {
    /// `fail_if[0]`.
    pub rule: String,
    /// The metric checked; `None` for `score_below`.
    pub metric: Option<String>,
    /// The prompt variant checked, when records carry one: each variant
    /// is held to every rule on its own.
    pub variant: Option<String>,
    /// The message when the rule tripped.
    pub tripped: Option<String>,
}

/// Checks every rule: a rule without `metric` against each metric; with
/// records in variants, against each variant's figures (the worse variant
/// must not hide behind the better).
pub fn check(rules: &[GateConfig], metrics: &[Metric], t: &Totals, node: &str) -> Vec<GateResult> {
    let variants = t.by_variant();
    if variants.is_empty() {
        return check_one(rules, metrics, t, node, None);
    }
    variants.into_iter().flat_map(|(v, totals)| check_one(rules, metrics, totals, node, Some(v))).collect()
}

fn check_one(
    rules: &[GateConfig],
    metrics: &[Metric],
    t: &Totals,
    node: &str,
    variant: Option<&str>,
) -> Vec<GateResult> {
    let mut out = Vec::new();
    let of = variant.map(|v| format!(" (variant `{v}`)")).unwrap_or_default();
    let owned = || variant.map(str::to_string);
    for (i, rule) in rules.iter().enumerate() {
        let name = format!("fail_if[{i}]{of}");
        let Some((_, test)) = rule.tests().into_iter().next() else { continue };
        if let GateTest::ScoreBelow(limit) = test {
            let tripped = match t.mean_score() {
                // A tolerance, so a mean of exactly the limit does not trip on rounding.
                Some(mean) if mean < limit - 1e-9 => Some(format!(
                    "{name}: mean score {} is below {limit} ({} records); not passing every metric: {}",
                    num(mean),
                    t.scored,
                    t.failed.shown(node)
                )),
                Some(_) => None,
                None => Some(format!("{name}: no record has a score (every metric errored or weighs 0)")),
            };
            out.push(GateResult { rule: format!("fail_if[{i}]"), metric: None, variant: owned(), tripped });
            continue;
        }
        for (m, s) in metrics.iter().zip(&t.metrics) {
            if rule.metric.as_ref().is_some_and(|r| *r != m.name) {
                continue;
            }
            let tripped = tripped(&name, test, &m.name, s, node);
            out.push(GateResult {
                rule: format!("fail_if[{i}]"),
                metric: Some(m.name.clone()),
                variant: owned(),
                tripped,
            });
        }
    }
    out
}

/// The message of `test` on one metric, when it trips. A rate or mean
/// with no record scored trips: nothing shows the metric holds.
fn tripped(rule: &str, test: GateTest, metric: &str, s: &Stats, node: &str) -> Option<String> {
    let errors = match s.errors {
        0 => String::new(),
        1 => ", 1 error".to_string(),
        n => format!(", {n} errors"),
    };
    let none_scored = || {
        Some(format!(
            "{rule}: {metric} has no record scored without error ({} errors): {}",
            s.errors,
            s.errored.shown(node)
        ))
    };
    match test {
        GateTest::PassRateBelow(limit) => match s.pass_rate() {
            None => none_scored(),
            Some(rate) if rate < limit - 1e-9 => Some(format!(
                "{rule}: {metric} pass rate {} is below {limit} ({} of {} passed{errors}); failing: {}",
                num(rate),
                s.passed,
                s.scored,
                s.failing.shown(node)
            )),
            Some(_) => None,
        },
        GateTest::MeanBelow(limit) => match s.mean() {
            None => none_scored(),
            Some(mean) if mean < limit - 1e-9 => Some(format!(
                "{rule}: {metric} mean {} is below {limit} ({} scored{errors}); failing: {}",
                num(mean),
                s.scored,
                s.failing.shown(node)
            )),
            Some(_) => None,
        },
        GateTest::ErrorsAbove(limit) if s.errors > limit => Some(format!(
            "{rule}: {metric} has {} errors, more than {limit} (of {} records): {}",
            s.errors,
            s.count(),
            s.errored.shown(node)
        )),
        GateTest::ErrorsAbove(_) => None,
        GateTest::ScoreBelow(_) => unreachable!("checked on the totals"),
    }
}

/// The text of `gate_failed.txt`: one line per tripped rule and metric.
pub fn text(results: &[GateResult]) -> Option<String> {
    let lines: Vec<&str> = results.iter().filter_map(|g| g.tripped.as_deref()).collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// Three places, no negative zero.
fn num(v: f64) -> String {
    let r = (v * 1000.0).round() / 1000.0;
    format!("{:.3}", if r == 0.0 { 0.0 } else { r })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::metric::testing::metric;

    fn stats(scored: u64, passed: u64, sum: f64, errors: u64) -> Stats {
        let mut s = Stats { scored, passed, sum, errors, ..Stats::default() };
        for p in 0..scored - passed {
            s.failing.add(p, || format!("r{p}"));
        }
        for p in 0..errors {
            s.errored.add(100 + p, || format!("e{p}"));
        }
        s
    }

    fn rule(yaml: &str) -> GateConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn rates_means_errors_and_the_score() {
        let metrics = vec![metric("{type: exact_match, expected: x}"), metric("{type: contains, value: x}")];
        let mut t = Totals::new(2);
        // exact_match: 16 of 24 passed; contains: 20 scored, 19 passed, 4 errors.
        t.metrics[0] = stats(24, 16, 16.0, 0);
        t.metrics[1] = stats(20, 19, 19.0, 4);
        t.records = 24;
        (t.score_sum, t.scored) = (18.0, 24);
        for p in 0..12 {
            t.failed.add(p, || format!("r{p}"));
        }
        let rules = [
            rule("{metric: exact_match, pass_rate_below: 0.9}"),
            rule("{pass_rate_below: 0.9}"),
            rule("{metric: contains, mean_below: 0.95}"),
            rule("{errors_above: 0}"),
            rule("{score_below: 0.8}"),
            rule("{metric: exact_match, pass_rate_below: 0.5}"),
        ];
        let results = check(&rules, &metrics, &t, "scores");
        let tripped: Vec<(&str, Option<&str>)> =
            results.iter().filter(|g| g.tripped.is_some()).map(|g| (g.rule.as_str(), g.metric.as_deref())).collect();
        assert_eq!(
            tripped,
            [
                ("fail_if[0]", Some("exact_match")),
                ("fail_if[1]", Some("exact_match")),
                ("fail_if[3]", Some("contains")),
                ("fail_if[4]", None),
            ],
            "contains' pass rate 0.95 and mean 0.95 hold; exact_match holds at 0.5"
        );
        // The figures: 16/24 = 0.667; 8 failing, the first 8 listed.
        assert_eq!(
            results[0].tripped.as_deref(),
            Some("fail_if[0]: exact_match pass rate 0.667 is below 0.9 (16 of 24 passed); failing: r0, r1, r2, r3, r4, r5, r6, r7")
        );
        let errors = results.iter().find(|g| g.rule == "fail_if[3]" && g.tripped.is_some()).unwrap();
        assert_eq!(
            errors.tripped.as_deref(),
            Some("fail_if[3]: contains has 4 errors, more than 0 (of 24 records): e0, e1, e2, e3")
        );
        let score = results.iter().find(|g| g.rule == "fail_if[4]").unwrap();
        assert_eq!(
            score.tripped.as_deref(),
            Some("fail_if[4]: mean score 0.750 is below 0.8 (24 records); not passing every metric: r0, r1, r2, r3, r4, r5, r6, r7, r8, r9 and 2 more (flow show scores)")
        );
        // A metric nothing was scored on trips a rate gate.
        t.metrics[1] = stats(0, 0, 0.0, 24);
        let r = check(&[rule("{metric: contains, pass_rate_below: 0.1}")], &metrics, &t, "scores");
        assert!(r[0].tripped.as_deref().unwrap().contains("contains has no record scored without error (24 errors)"));
        assert!(text(&r).is_some() && text(&results[results.len() - 1..]).is_none());
    }

    #[test]
    fn each_variant_is_held_to_the_rules_on_its_own() {
        use crate::evaluate::summary::Counted;
        let metrics = vec![metric("{type: exact_match, expected: x}")];
        let mut t = Totals::new(1);
        // Interleaved as `run` emits them: `short` passes 9 of 10,
        // `long` 5 of 10; together 14 of 20 = 0.7.
        for p in 0..20u64 {
            let (variant, k) = if p % 2 == 0 { ("short", p / 2) } else { ("long", p / 2) };
            let pass = if variant == "short" { k != 0 } else { k % 2 == 0 };
            let id = move || format!("{variant}/q{k}");
            t.add(p, &id, Some(variant), &[Counted::Scored { score: f64::from(u8::from(pass)), pass }], None);
        }
        assert_eq!((t.records, t.passed), (20, 14));
        let rules = [rule("{metric: exact_match, pass_rate_below: 0.8}")];
        let r = check(&rules, &metrics, &t, "scores");
        let by: Vec<(Option<&str>, bool)> = r.iter().map(|g| (g.variant.as_deref(), g.tripped.is_some())).collect();
        assert_eq!(by, [(Some("short"), false), (Some("long"), true)], "in the input's order; only `long` trips");
        assert_eq!(
            r[1].tripped.as_deref(),
            Some("fail_if[0] (variant `long`): exact_match pass rate 0.500 is below 0.8 (5 of 10 passed); failing: long/q1, long/q3, long/q5, long/q7, long/q9")
        );
        // A rule every variant holds trips none.
        let r = check(&[rule("{metric: exact_match, pass_rate_below: 0.5}")], &metrics, &t, "scores");
        assert!(text(&r).is_none(), "{r:?}");
    }
}
