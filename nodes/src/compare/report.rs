//! What a comparison looks like to people and machines: the output records,
//! `report.json`, the Markdown table, and the text of a tripped gate.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::analysis::{CandidateComparison, Comparison, MetricComparison};
use super::Gate;

/// Keys listed at most in Markdown and gate messages; `report.json` has all.
const MAX_LISTED: usize = 20;

/// One rule of `fail_if` checked against one candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct GateResult {
    /// `fail_if[0]`.
    pub rule: String,
    pub candidate: String,
    pub metric: String,
    /// The message when the rule tripped.
    pub tripped: Option<String>,
}

/// Checks every rule against every candidate. A rule on a metric with no
/// pairs trips: nothing shows that the candidate did not regress.
pub fn check_gates(c: &Comparison, rules: &[Gate]) -> Vec<GateResult> {
    let several = c.candidates.len() > 1;
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        for cand in &c.candidates {
            let Some(m) = cand.metrics.iter().find(|m| m.metric == rule.metric) else { continue };
            let prefix = if several { format!("`{}`: ", cand.name) } else { String::new() };
            let name = format!("fail_if[{i}]");
            let tripped = match (m.delta, rule.drop_more_than, rule.significant_drop) {
                (None, ..) => Some(format!(
                    "{prefix}{} has no record scored on both sides ({} skipped) ({name})",
                    m.metric, m.skipped
                )),
                // A tolerance, so a drop of exactly the limit does not trip on rounding.
                (Some(d), Some(limit), _) if d < -(limit + 1e-9) => Some(format!(
                    "{prefix}{} dropped {} {} > {limit} ({name}: drop_more_than){}",
                    m.metric,
                    num(-d),
                    figures(m, c.settings.confidence),
                    flips(m)
                )),
                (Some(d), _, Some(true)) if m.significant_drop(c.settings.confidence) => Some(format!(
                    "{prefix}{} dropped {} {}, significant at {}: p < {} ({name}: significant_drop){}",
                    m.metric,
                    num(-d),
                    figures(m, c.settings.confidence),
                    pct(c.settings.confidence),
                    round6(1.0 - c.settings.confidence),
                    flips(m)
                )),
                _ => None,
            };
            out.push(GateResult { rule: name, candidate: cand.name.clone(), metric: m.metric.clone(), tripped });
        }
    }
    out
}

/// `(0.900 → 0.775, 95% CI [-0.225, -0.025], p=0.125)`
fn figures(m: &MetricComparison, confidence: f64) -> String {
    format!(
        "({} → {}, {} CI {}, p{})",
        opt(m.baseline_mean),
        opt(m.candidate_mean),
        pct(confidence),
        ci(m.ci),
        p_eq(m.p)
    )
}

/// `; pass → fail: a, b; fail → pass: c`
fn flips(m: &MetricComparison) -> String {
    let mut s = String::new();
    if !m.pass_to_fail.is_empty() {
        let _ = write!(s, "; pass → fail: {}", keys(&m.pass_to_fail));
    }
    if !m.fail_to_pass.is_empty() {
        let _ = write!(s, "; fail → pass: {}", keys(&m.fail_to_pass));
    }
    s
}

/// The output record of one metric of one candidate.
pub fn record(c: &Comparison, cand: &CandidateComparison, m: &MetricComparison, gates: &[GateResult]) -> Value {
    let mut v = metric_json(m, c.settings.confidence);
    let tripped: Vec<&str> = gates
        .iter()
        .filter(|g| g.tripped.is_some() && g.candidate == cand.name && g.metric == m.metric)
        .map(|g| g.rule.as_str())
        .collect();
    let fields = v.as_object_mut().expect("an object");
    let mut out = serde_json::Map::new();
    out.insert("id".into(), json!(format!("{}/{}", cand.name, m.metric)));
    out.insert("baseline".into(), json!(c.baseline));
    out.insert("candidate".into(), json!(cand.name));
    out.append(fields);
    out.insert("gates_tripped".into(), json!(tripped));
    Value::Object(out)
}

fn metric_json(m: &MetricComparison, confidence: f64) -> Value {
    json!({
        "metric": m.metric,
        "pairs": m.pairs,
        "skipped": m.skipped,
        "baseline_mean": m.baseline_mean.map(round6),
        "candidate_mean": m.candidate_mean.map(round6),
        "delta": m.delta.map(round6),
        "ci": m.ci.map(|(lo, hi)| [round6(lo), round6(hi)]),
        "confidence": confidence,
        "p": m.p,
        "test": m.test.name(),
        "significant_drop": m.significant_drop(confidence),
        "mcnemar_p": m.mcnemar_p,
        "pass_rate": {"baseline": m.baseline_pass_rate.map(round6), "candidate": m.candidate_pass_rate.map(round6)},
        "pass_to_fail": m.pass_to_fail,
        "fail_to_pass": m.fail_to_pass,
    })
}

/// `report.json`: the settings, each candidate with its unmatched keys and
/// metrics, and every gate with whether it tripped.
pub fn json_report(c: &Comparison, gates: &[GateResult]) -> Value {
    let s = &c.settings;
    json!({
        "key": c.key,
        "metrics": s.metrics,
        "confidence": s.confidence,
        "resamples": s.resamples,
        "seed": s.seed,
        "baseline": {"name": c.baseline, "records": c.baseline_records},
        "candidates": c.candidates.iter().map(|cand| json!({
            "name": cand.name,
            "records": cand.records,
            "matched": cand.matched,
            "only_in_baseline": cand.only_in_baseline,
            "only_in_candidate": cand.only_in_candidate,
            "metrics": cand.metrics.iter().map(|m| metric_json(m, s.confidence)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "gates": gates.iter().map(|g| json!({
            "rule": g.rule,
            "candidate": g.candidate,
            "metric": g.metric,
            "tripped": g.tripped.is_some(),
            "message": g.tripped,
        })).collect::<Vec<_>>(),
    })
}

/// The readable report: per candidate a line on what was matched, a table
/// (metric, n, baseline, candidate, delta, CI, p, flips) and the flipped
/// keys; then the gates that tripped.
pub fn markdown(c: &Comparison, gates: &[GateResult]) -> String {
    let s = &c.settings;
    let conf = pct(s.confidence);
    let mut md = String::new();
    for cand in &c.candidates {
        let _ = writeln!(
            md,
            "`{}` ({} records) vs baseline `{}` ({} records), joined by `{}`: {} matched",
            cand.name, cand.records, c.baseline, c.baseline_records, c.key, cand.matched
        );
        for (side, only) in [(&c.baseline, &cand.only_in_baseline), (&cand.name, &cand.only_in_candidate)] {
            if !only.is_empty() {
                let _ = writeln!(md, "only in `{side}` ({}, not compared): {}", only.len(), keys(only));
            }
        }
        let _ = writeln!(
            md,
            "\n| metric | n | baseline | candidate | delta | {conf} CI | p | flips |\n|---|---:|---:|---:|---:|---|---:|---|"
        );
        for m in &cand.metrics {
            let flips = match (m.pass_to_fail.len(), m.fail_to_pass.len()) {
                (0, 0) => "-".to_string(),
                (down, up) => format!("{down} pass→fail, {up} fail→pass"),
            };
            let delta = m.delta.map(|d| format!("{:+.3}", rounded(d))).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {delta} | {} | {} | {flips} |",
                m.metric,
                m.pairs,
                opt(m.baseline_mean),
                opt(m.candidate_mean),
                ci(m.ci),
                m.p.map(p_value).unwrap_or_else(|| "-".into()),
            );
        }
        md.push('\n');
        for m in &cand.metrics {
            if !m.pass_to_fail.is_empty() {
                let _ = writeln!(md, "- {} pass → fail: {}", m.metric, keys(&m.pass_to_fail));
            }
            if !m.fail_to_pass.is_empty() {
                let _ = writeln!(md, "- {} fail → pass: {}", m.metric, keys(&m.fail_to_pass));
            }
            if m.skipped > 0 {
                let records = if m.skipped == 1 { "record" } else { "records" };
                let _ = writeln!(md, "- {}: {} matched {records} skipped (no score on one side)", m.metric, m.skipped);
            }
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "CI: paired bootstrap ({} resamples, seed {}); p: exact McNemar for pass/fail metrics, paired bootstrap otherwise.",
        s.resamples, s.seed
    );
    let tripped: Vec<&GateResult> = gates.iter().filter(|g| g.tripped.is_some()).collect();
    if !gates.is_empty() {
        md.push('\n');
        if tripped.is_empty() {
            let _ = writeln!(md, "gates: none tripped ({} checked)", gates.len());
        }
        for g in tripped {
            let _ = writeln!(md, "GATE TRIPPED: {}", g.tripped.as_deref().unwrap_or_default());
        }
    }
    md
}

/// The text of `gate_failed.txt`: one line per tripped rule.
pub fn gate_text(gates: &[GateResult]) -> Option<String> {
    let lines: Vec<&str> = gates.iter().filter_map(|g| g.tripped.as_deref()).collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

fn keys(keys: &[String]) -> String {
    let shown: Vec<&str> = keys.iter().take(MAX_LISTED).map(String::as_str).collect();
    match keys.len().saturating_sub(MAX_LISTED) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// Rounded to 3 places with no negative zero, for display.
fn rounded(v: f64) -> f64 {
    let r = (v * 1000.0).round() / 1000.0;
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

fn num(v: f64) -> String {
    format!("{:.3}", rounded(v))
}

fn opt(v: Option<f64>) -> String {
    v.map(num).unwrap_or_else(|| "-".into())
}

fn ci(ci: Option<(f64, f64)>) -> String {
    ci.map(|(lo, hi)| format!("[{}, {}]", num(lo), num(hi))).unwrap_or_else(|| "-".into())
}

fn p_value(p: f64) -> String {
    if p < 0.001 {
        "<0.001".into()
    } else {
        format!("{p:.3}")
    }
}

fn p_eq(p: Option<f64>) -> String {
    match p {
        Some(p) if p < 0.001 => "<0.001".into(),
        Some(p) => format!("={}", p_value(p)),
        None => "=-".into(),
    }
}

/// `95%`
fn pct(confidence: f64) -> String {
    format!("{}%", round6(confidence * 100.0))
}

/// Reports are compared byte for byte across runs: keep floats short.
fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}
