//! The comparison itself, apart from the node: scored records of a baseline
//! and of each candidate joined by a key, and per metric the figures a
//! report shows. The `compare` node and `flow compare` both call
//! [`compare`], so the same inputs give the same figures either way.

use std::collections::BTreeSet;

use serde_json::Value;

use flow_engine::Record;

use super::index::{Index, Indexing};
use super::stats::{mcnemar_exact, mean, paired_bootstrap};

/// How to compare: the node's settings, or `flow compare`'s defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The fields records are joined by (with `variant` and `sample`
    /// when records have them and the key does not name them).
    pub key: Vec<String>,
    /// Metrics to compare; `None`: every metric both sides scored.
    pub metrics: Option<Vec<String>>,
    pub confidence: f64,
    pub resamples: u32,
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { key: vec!["id".into()], metrics: None, confidence: 0.95, resamples: 2000, seed: 0 }
    }
}

/// One side of a comparison: a name for reports and its scored records.
pub struct Side {
    pub name: String,
    pub records: Vec<Record>,
}

/// Which test gives a metric's p-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// Pass/fail metrics (every score 0 or 1, and 1 exactly when it
    /// passed): exact McNemar on the records that flipped.
    McNemar,
    /// Other scores: the paired bootstrap's p-value.
    Bootstrap,
}

impl Test {
    pub fn name(self) -> &'static str {
        match self {
            Test::McNemar => "mcnemar",
            Test::Bootstrap => "bootstrap",
        }
    }
}

/// One metric of one candidate against the baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricComparison {
    pub metric: String,
    /// Matched records with a score on both sides.
    pub pairs: usize,
    /// Matched records without a score on one side or both (an `error`, a
    /// null score, the metric missing): not compared.
    pub skipped: usize,
    /// Means over the pairs; `None` without pairs.
    pub baseline_mean: Option<f64>,
    pub candidate_mean: Option<f64>,
    /// Candidate mean − baseline mean.
    pub delta: Option<f64>,
    /// Paired bootstrap interval for the delta at the settings' confidence.
    pub ci: Option<(f64, f64)>,
    /// Two-sided p-value of "no change", by `test`.
    pub p: Option<f64>,
    pub test: Test,
    /// Exact McNemar p on the pass/fail flips, whatever `test` is.
    pub mcnemar_p: f64,
    pub baseline_pass_rate: Option<f64>,
    pub candidate_pass_rate: Option<f64>,
    /// Keys of the records that passed in the baseline and fail in the
    /// candidate, in the baseline's order; and the other way round.
    pub pass_to_fail: Vec<String>,
    pub fail_to_pass: Vec<String>,
}

impl MetricComparison {
    /// The delta is negative and its p-value below 1 − `confidence`.
    pub fn significant_drop(&self, confidence: f64) -> bool {
        matches!((self.delta, self.p), (Some(d), Some(p)) if d < 0.0 && p < 1.0 - confidence)
    }
}

/// One candidate against the baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateComparison {
    pub name: String,
    pub records: usize,
    /// Keys present on both sides.
    pub matched: usize,
    /// Keys on one side only, in that side's order: counted and shown, not
    /// compared.
    pub only_in_baseline: Vec<String>,
    pub only_in_candidate: Vec<String>,
    pub metrics: Vec<MetricComparison>,
}

/// A whole comparison: every candidate against the baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub settings: Settings,
    /// The fields records were joined by, as `id+sample`.
    pub key: String,
    pub baseline: String,
    pub baseline_records: usize,
    pub candidates: Vec<CandidateComparison>,
}

/// Why two sides cannot be compared: a record without the key or the
/// scores, a key twice on one side, a metric no record scored, nothing
/// matched. Each names the side (its input, or the stored baseline).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompareError {
    /// Record `record` (from 1) of `side` lacks the join key.
    #[error("record {record} of `{side}` has no `{key}` to join by; set `key:` to a field every record has")]
    NoKey { record: usize, side: String, key: String },
    #[error("record `{value}` of `{side}` has no `scores`: compare reads the output of an `evaluate` node")]
    NoScores { value: String, side: String },
    /// `value` of `key` at records `first` and `second` (from 1).
    #[error(
        "`{key}` `{value}` appears twice in `{side}` (records {first} and {second}); set `key:` to a field that is unique"
    )]
    DuplicateKey { key: String, value: String, side: String, first: usize, second: usize },
    /// A metric under `metrics:` that no record of `side` scored.
    #[error(
        "metric `{metric}` is not in the scores of `{side}`; {}they have: {}",
        .suggestion.as_ref().map(|c| format!("did you mean `{c}`? ")).unwrap_or_default(),
        list(.scored)
    )]
    UnknownMetric { metric: String, side: String, suggestion: Option<String>, scored: BTreeSet<String> },
    #[error(
        "`{baseline}` and `{candidate}` have no metric in common ({baseline}: {}; {candidate}: {})",
        list(.baseline_metrics),
        list(.candidate_metrics)
    )]
    NoCommonMetric {
        baseline: String,
        candidate: String,
        baseline_metrics: BTreeSet<String>,
        candidate_metrics: BTreeSet<String>,
    },
    /// No key of `candidate` is one of `baseline`; an example key of each.
    #[error(
        "no record of `{candidate}` matches one of `{baseline}` by `{key}` (e.g. `{baseline_example}` in `{baseline}`, `{candidate_example}` in `{candidate}`)"
    )]
    NothingMatched {
        candidate: String,
        baseline: String,
        key: String,
        baseline_example: String,
        candidate_example: String,
    },
}

/// Compares each candidate with the baseline. Errors (a record without the
/// key, a key twice on one side, a metric no record scored, nothing
/// matched) are the node's error messages.
pub fn compare(baseline: &Side, candidates: &[Side], settings: &Settings) -> Result<Comparison, CompareError> {
    let index = |side: &Side| Index::new(&side.name, &settings.key, side.records.iter().cloned().map(Ok));
    let base = index(baseline).map_err(Indexing::into_compare)?;
    let cands = candidates.iter().map(|c| index(c).map_err(Indexing::into_compare)).collect::<Result<Vec<_>, _>>()?;
    compare_indexed(&base, &cands, settings)
}

/// [`compare`] on sides already indexed: what the `compare` node calls on
/// inputs it read as they came, holding only their keys and scores.
pub fn compare_indexed(base: &Index, candidates: &[Index], settings: &Settings) -> Result<Comparison, CompareError> {
    let mut out = Vec::with_capacity(candidates.len());
    for cand in candidates {
        let metrics = match &settings.metrics {
            Some(names) => {
                for name in names {
                    base.require_metric(name)?;
                    cand.require_metric(name)?;
                }
                names.clone()
            }
            None => {
                let common: Vec<String> = base.metrics().intersection(&cand.metrics()).cloned().collect();
                if common.is_empty() {
                    return Err(CompareError::NoCommonMetric {
                        baseline: base.name.clone(),
                        candidate: cand.name.clone(),
                        baseline_metrics: base.metrics(),
                        candidate_metrics: cand.metrics(),
                    });
                }
                common
            }
        };
        let mut matched: Vec<(u32, u32)> = Vec::new();
        let mut only_in_baseline = Vec::new();
        for i in 0..base.len() {
            match cand.find(base.key(i)) {
                Some(j) => matched.push((i as u32, j as u32)),
                None => only_in_baseline.push(base.key(i).to_string()),
            }
        }
        if matched.is_empty() {
            return Err(CompareError::NothingMatched {
                candidate: cand.name.clone(),
                baseline: base.name.clone(),
                key: base.key_name().to_string(),
                baseline_example: base.first_key().unwrap_or("-").to_string(),
                candidate_example: cand.first_key().unwrap_or("-").to_string(),
            });
        }
        let only_in_candidate =
            (0..cand.len()).map(|j| cand.key(j)).filter(|k| base.find(k).is_none()).map(str::to_string).collect();
        let metrics = metrics.iter().map(|m| compare_metric(m, base, cand, &matched, settings)).collect();
        out.push(CandidateComparison {
            name: cand.name.clone(),
            records: cand.len(),
            matched: matched.len(),
            only_in_baseline,
            only_in_candidate,
            metrics,
        });
    }
    let key = if base.key_name().is_empty() { settings.key.join("+") } else { base.key_name().to_string() };
    Ok(Comparison {
        settings: settings.clone(),
        key,
        baseline: base.name.clone(),
        baseline_records: base.len(),
        candidates: out,
    })
}

/// A metric's verdict on one record, when it has a score.
#[derive(Clone, Copy)]
pub(super) struct Outcome {
    pub score: f64,
    pub pass: Option<bool>,
}

pub(super) fn outcome(entry: &Value) -> Option<Outcome> {
    let entry = entry.as_object()?;
    if entry.get("error").is_some_and(|e| !e.is_null()) {
        return None;
    }
    Some(Outcome { score: entry.get("score")?.as_f64()?, pass: entry.get("pass").and_then(Value::as_bool) })
}

fn compare_metric(
    metric: &str,
    base: &Index,
    cand: &Index,
    matched: &[(u32, u32)],
    settings: &Settings,
) -> MetricComparison {
    // The pairs' scores, side by side, and whether every one is pass/fail.
    let (mut base_scores, mut cand_scores) = (Vec::with_capacity(matched.len()), Vec::with_capacity(matched.len()));
    let mut all_binary = true;
    let binary = |o: &Outcome| (o.score == 0.0 || o.score == 1.0) && o.pass.is_none_or(|p| p == (o.score == 1.0));
    let (mut pass_to_fail, mut fail_to_pass) = (Vec::new(), Vec::new());
    let mut skipped = 0;
    let (mut base_passed, mut cand_passed, mut with_pass) = (0usize, 0usize, 0usize);
    let (bc, cc) = (base.column(metric), cand.column(metric));
    for &(i, j) in matched {
        let (i, j) = (i as usize, j as usize);
        let (Some(b), Some(c)) = (bc.and_then(|m| m.get(i)), cc.and_then(|m| m.get(j))) else {
            skipped += 1;
            continue;
        };
        base_scores.push(b.score);
        cand_scores.push(c.score);
        all_binary &= binary(&b) && binary(&c);
        if let (Some(bp), Some(cp)) = (b.pass, c.pass) {
            with_pass += 1;
            base_passed += bp as usize;
            cand_passed += cp as usize;
            match (bp, cp) {
                (true, false) => pass_to_fail.push(base.key(i).to_string()),
                (false, true) => fail_to_pass.push(base.key(i).to_string()),
                _ => {}
            }
        }
    }
    let pairs = base_scores.len();
    let test = if pairs > 0 && all_binary { Test::McNemar } else { Test::Bootstrap };
    let diffs: Vec<f64> = base_scores.iter().zip(&cand_scores).map(|(b, c)| c - b).collect();
    let boot = paired_bootstrap(&diffs, settings.resamples, settings.confidence, settings.seed);
    let mcnemar_p = mcnemar_exact(pass_to_fail.len() as u64, fail_to_pass.len() as u64);
    let some = pairs > 0;
    let (baseline_mean, candidate_mean) =
        if some { (Some(mean(&base_scores)), Some(mean(&cand_scores))) } else { (None, None) };
    let rate = |n: usize| (with_pass > 0).then(|| n as f64 / with_pass as f64);
    MetricComparison {
        metric: metric.to_string(),
        pairs,
        skipped,
        baseline_mean,
        candidate_mean,
        delta: some.then(|| mean(&diffs)),
        ci: boot.map(|b| (b.lo, b.hi)),
        p: match test {
            Test::McNemar => Some(mcnemar_p),
            Test::Bootstrap => boot.map(|b| b.p),
        },
        test,
        mcnemar_p,
        baseline_pass_rate: rate(base_passed),
        candidate_pass_rate: rate(cand_passed),
        pass_to_fail,
        fail_to_pass,
    }
}

fn list(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{json, Map};

    use super::*;

    /// A side from `(id, {metric: score or "error"})` pairs; a score of 1
    /// or 0 passes or fails, others pass at 0.5.
    fn side(name: &str, rows: &[(&str, Value)]) -> Side {
        let records = rows
            .iter()
            .map(|(id, scores)| {
                let scores: Map<String, Value> = scores
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(m, v)| {
                        let entry = match v.as_f64() {
                            Some(s) => json!({"score": s, "pass": s >= 0.5}),
                            None => json!({"score": null, "pass": false, "error": "failed"}),
                        };
                        (m.clone(), entry)
                    })
                    .collect();
                let v = json!({"id": id, "scores": scores});
                Arc::new(v.as_object().unwrap().clone())
            })
            .collect();
        Side { name: name.into(), records }
    }

    #[test]
    fn joins_by_key_and_counts_what_it_cannot_compare() {
        let base = side(
            "base",
            &[
                ("a", json!({"em": 1, "sim": 0.9})),
                ("b", json!({"em": 1, "sim": 0.8})),
                ("c", json!({"em": 0, "sim": "error"})),
                ("gone", json!({"em": 1, "sim": 0.7})),
            ],
        );
        let cand = side(
            "cand",
            &[
                ("new", json!({"em": 1, "sim": 0.1})),
                ("c", json!({"em": 1, "sim": 0.5})),
                ("b", json!({"em": 0, "sim": 0.6})),
                ("a", json!({"em": 1, "sim": 0.9})),
            ],
        );
        let c = compare(&base, &[cand], &Settings::default()).unwrap();
        let cand = &c.candidates[0];
        assert_eq!(
            (cand.matched, cand.only_in_baseline.clone(), cand.only_in_candidate.clone()),
            (3, vec!["gone".to_string()], vec!["new".to_string()])
        );
        let names: Vec<&str> = cand.metrics.iter().map(|m| m.metric.as_str()).collect();
        assert_eq!(names, ["em", "sim"], "every metric both sides scored, sorted");
        let em = &cand.metrics[0];
        assert_eq!((em.pairs, em.skipped, em.test), (3, 0, Test::McNemar));
        assert_eq!((em.pass_to_fail.clone(), em.fail_to_pass.clone()), (vec!["b".to_string()], vec!["c".to_string()]));
        assert_eq!(em.delta, Some(0.0));
        assert_eq!(em.p, Some(1.0));
        let sim = &cand.metrics[1];
        assert_eq!((sim.pairs, sim.skipped, sim.test), (2, 1, Test::Bootstrap), "c's baseline sim failed");
        assert!((sim.delta.unwrap() - (-0.1)).abs() < 1e-12);
        let (lo, hi) = sim.ci.unwrap();
        assert!(lo <= sim.delta.unwrap() && sim.delta.unwrap() <= hi);
    }

    #[test]
    fn names_what_is_wrong_with_the_inputs() {
        let base = side("base", &[("a", json!({"exact_match": 1}))]);
        let twice = side("cand", &[("a", json!({"exact_match": 1})), ("a", json!({"exact_match": 0}))]);
        let e = compare(&base, &[twice], &Settings::default()).unwrap_err().to_string();
        assert!(e.contains("`id` `a` appears twice in `cand` (records 1 and 2)"), "{e}");

        let cand = side("cand", &[("a", json!({"exact_match": 0}))]);
        let typo = Settings { metrics: Some(vec!["exact_mach".into()]), ..Settings::default() };
        let e = compare(&base, std::slice::from_ref(&cand), &typo).unwrap_err().to_string();
        assert!(e.contains("metric `exact_mach` is not in the scores of `base`; did you mean `exact_match`?"), "{e}");

        let other = side("cand", &[("b", json!({"exact_match": 0}))]);
        let e = compare(&base, &[other], &Settings::default()).unwrap_err().to_string();
        assert!(e.contains("no record of `cand` matches one of `base` by `id`"), "{e}");

        let bare =
            Side { name: "raw".into(), records: vec![Arc::new(json!({"id": "a"}).as_object().unwrap().clone())] };
        let e = compare(&base, &[bare], &Settings::default()).unwrap_err().to_string();
        assert!(e.contains("has no `scores`"), "{e}");
    }

    #[test]
    fn several_candidates_are_each_compared_with_the_baseline() {
        let base = side("base", &[("a", json!({"m": 1})), ("b", json!({"m": 1}))]);
        let worse = side("worse", &[("a", json!({"m": 0})), ("b", json!({"m": 0}))]);
        let same = side("same", &[("a", json!({"m": 1})), ("b", json!({"m": 1}))]);
        let c = compare(&base, &[worse, same], &Settings::default()).unwrap();
        assert_eq!(c.candidates[0].metrics[0].delta, Some(-1.0));
        assert_eq!(c.candidates[1].metrics[0].delta, Some(0.0));
        assert_eq!(c.candidates[0].metrics[0].pass_to_fail, ["a", "b"]);
    }

    /// Records with extra fields (`variant`, `sample`, ...) beside `id`
    /// and an `m` score of 0 or 1.
    fn records(rows: &[Value]) -> Vec<Record> {
        rows.iter()
            .map(|r| {
                let mut r = r.as_object().unwrap().clone();
                let m = r.remove("m").unwrap();
                r.insert("scores".into(), json!({"m": {"score": m, "pass": m == 1}}));
                Arc::new(r)
            })
            .collect()
    }

    #[test]
    fn samples_and_variants_pair_with_their_own() {
        // `repeat: 2` on both sides: sample 1 of `a` flips, sample 0 does not.
        let base = Side {
            name: "base".into(),
            records: records(&[
                json!({"id": "a", "sample": 0, "m": 1}),
                json!({"id": "a", "sample": 1, "m": 1}),
                json!({"id": "b", "sample": 0, "m": 0}),
            ]),
        };
        let cand = Side {
            name: "cand".into(),
            records: records(&[
                json!({"id": "a", "sample": 1, "m": 0}),
                json!({"id": "a", "sample": 0, "m": 1}),
                json!({"id": "b", "sample": 0, "m": 0}),
            ]),
        };
        let c = compare(&base, std::slice::from_ref(&cand), &Settings::default()).unwrap();
        assert_eq!(c.key, "id+sample");
        assert_eq!(c.candidates[0].matched, 3);
        assert_eq!(c.candidates[0].metrics[0].pass_to_fail, ["a/1"]);
        // A key that names the sample joins by it as written.
        let listed = Settings { key: vec!["sample".into(), "id".into()], ..Settings::default() };
        let c = compare(&base, std::slice::from_ref(&cand), &listed).unwrap();
        assert_eq!(
            (c.key.as_str(), c.candidates[0].metrics[0].pass_to_fail.clone()),
            ("sample+id", vec!["1/a".to_string()])
        );
        // Two runs of the same variants: `short` pairs with `short`.
        let v = |id: &str, variant: &str, m: u8| json!({"id": id, "variant": variant, "m": m});
        let base = Side { name: "base".into(), records: records(&[v("a", "short", 1), v("a", "long", 0)]) };
        let cand = Side { name: "cand".into(), records: records(&[v("a", "long", 1), v("a", "short", 1)]) };
        let c = compare(&base, &[cand], &Settings::default()).unwrap();
        assert_eq!(c.key, "id+variant");
        assert_eq!(
            (c.candidates[0].matched, c.candidates[0].metrics[0].fail_to_pass.clone()),
            (2, vec!["a/long".to_string()])
        );
    }

    #[test]
    fn one_input_splits_into_its_variants() {
        let v = |id: &str, variant: &str, m: u8| json!({"id": id, "variant": variant, "m": m});
        let rows = records(&[v("a", "short", 1), v("a", "long", 0), v("b", "short", 1), v("b", "long", 1)]);
        let sides =
            Index::by_variant("scores", &["id".to_string()], rows.into_iter().map(Ok::<_, String>)).ok().unwrap();
        let names: Vec<&str> = sides.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["short", "long"], "in the order the records first have them");
        assert_eq!(sides[0].key_name(), "id", "a side's records are one variant's");
        let c = compare_indexed(&sides[0], &sides[1..], &Settings::default()).unwrap();
        assert_eq!(
            (c.baseline.as_str(), c.candidates[0].metrics[0].pass_to_fail.clone()),
            ("short", vec!["a".to_string()])
        );
        // A key twice within a variant is named at its records in the input.
        let rows = records(&[v("a", "short", 1), v("a", "long", 0), v("a", "short", 0)]);
        let e = match Index::by_variant("scores", &["id".to_string()], rows.into_iter().map(Ok::<_, String>)) {
            Err(Indexing::Compare(e)) => e.to_string(),
            _ => panic!("a key twice in `short` is an error"),
        };
        assert!(e.contains("`id` `a` appears twice in `short` (records 1 and 3)"), "{e}");
    }
}
