//! `compare` and `flow compare`: scored records from `tests/fixtures/compare`
//! (40 cases; `regressed.jsonl` flips six known cases pass → fail and one
//! fail → pass on `exact_match` and lowers every `judge` score a little;
//! `noise.jsonl` flips two each way), compared with gates, against a stored
//! run, and between two stored runs.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::{node, repo, statuses, Project};

const PASS_TO_FAIL: [&str; 6] = ["case-03", "case-07", "case-12", "case-19", "case-26", "case-33"];
const FAIL_TO_PASS: [&str; 1] = ["case-38"];

/// A project with the compare fixtures under `specs/`.
fn project() -> Project {
    let p = Project::empty();
    let dir = repo().join("tests/fixtures/compare");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        p.write(&format!("specs/{name}"), &std::fs::read_to_string(&path).unwrap());
    }
    p
}

/// The `report.json` of node `ab` in the newest run.
fn report(p: &Project) -> Value {
    let m = p.latest_run("specs/.flow");
    let id = m["run_id"].as_str().unwrap();
    serde_json::from_str(&p.read(&format!("specs/.flow/runs/{id}/ab/report.json"))).unwrap()
}

fn metric<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["candidates"][0]["metrics"].as_array().unwrap().iter().find(|m| m["metric"] == name).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

/// Every `case-NN` a text names.
fn case_ids(text: &str) -> BTreeSet<String> {
    regex::Regex::new(r"case-\d\d").unwrap().find_iter(text).map(|m| m.as_str().to_string()).collect()
}

/// The table rows (and header) of a report.
fn table(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with('|')).collect()
}

#[test]
fn a_regression_trips_the_gates_naming_the_flipped_records() {
    let p = project();
    let r = p.flow(&["run", "specs/ab.yaml"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("failed: a gate tripped"), "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "exact_match dropped 0.125 (0.900 → 0.775, 95% CI [-0.250, 0.000], p=0.125) > 0.02 (fail_if[0]: drop_more_than); \
             pass → fail: case-03, case-07, case-12, case-19, case-26, case-33; fail → pass: case-38"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("(fail_if[1]: significant_drop)"), "{}", r.stderr);
    let flipped: BTreeSet<String> = PASS_TO_FAIL.iter().chain(&FAIL_TO_PASS).map(|s| s.to_string()).collect();
    assert_eq!(case_ids(&r.stderr), flipped, "stderr names exactly the flipped records:\n{}", r.stderr);
    // The report prints at the end of the run.
    assert!(r.stdout.contains("| exact_match | 40 | 0.900 | 0.775 | -0.125 |"), "{}", r.stdout);

    let rep = report(&p);
    let em = metric(&rep, "exact_match");
    assert_eq!(strings(&em["pass_to_fail"]), PASS_TO_FAIL);
    assert_eq!(strings(&em["fail_to_pass"]), FAIL_TO_PASS);
    assert_eq!((em["pairs"].as_u64(), em["test"].as_str(), em["p"].as_f64()), (Some(40), Some("mcnemar"), Some(0.125)));
    let judge = metric(&rep, "judge");
    assert_eq!((judge["pairs"].as_u64(), judge["skipped"].as_u64()), (Some(39), Some(1)), "case-20's judge failed");
    assert_eq!(judge["test"], "bootstrap");
    assert_eq!(judge["significant_drop"], true);
    assert!(strings(&judge["pass_to_fail"]).is_empty());
    assert_eq!(strings(&rep["candidates"][0]["only_in_candidate"]), ["case-41"]);
    let gates: Vec<bool> = rep["gates"].as_array().unwrap().iter().map(|g| g["tripped"].as_bool().unwrap()).collect();
    assert_eq!(gates, [true, true]);
    let m = p.latest_run("specs/.flow");
    assert_eq!(m["status"], "failed");
    assert_eq!(node(&m, "ab")["records_out"], 2, "one record per metric");
    assert!(node(&m, "ab")["gate_failed"].as_str().unwrap().contains("fail_if[0]"));

    // All cached: the gate fails the run again, from the stored report.
    let again = p.flow(&["run", "specs/ab.yaml"]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(statuses(&p.latest_run("specs/.flow")).iter().all(|(_, s)| s == "cached"));
    assert_eq!(case_ids(&again.stderr), flipped, "{}", again.stderr);
}

#[test]
fn noise_trips_no_gate() {
    let p = project();
    let r = p.flow(&["run", "specs/ab.yaml", "--set", "candidate=noise.jsonl"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("gates: none tripped (2 checked)"), "{}", r.stdout);
    let rep = report(&p);
    let em = metric(&rep, "exact_match");
    assert_eq!(em["delta"], 0.0);
    assert_eq!(strings(&em["pass_to_fail"]), ["case-05", "case-15"]);
    assert_eq!(strings(&em["fail_to_pass"]), ["case-39", "case-40"]);
    assert_eq!(metric(&rep, "judge")["significant_drop"], false);
}

#[test]
fn bootstrap_figures_are_seeded() {
    let p = project();
    let report_bytes = |p: &Project| {
        let id = p.latest_run("specs/.flow")["run_id"].as_str().unwrap().to_string();
        p.read(&format!("specs/.flow/runs/{id}/ab/report.json"))
    };
    let ci = |p: &Project| (metric(&report(p), "exact_match")["ci"].clone(), metric(&report(p), "judge")["ci"].clone());
    assert_eq!(p.flow(&["run", "specs/ab.yaml", "--no-cache"]).code, 1);
    let (first, ci0) = (report_bytes(&p), ci(&p));
    assert_eq!(p.flow(&["run", "specs/ab.yaml", "--no-cache"]).code, 1);
    assert_eq!(node(&p.latest_run("specs/.flow"), "ab")["status"], "ran");
    assert_eq!(report_bytes(&p), first, "a rerun gives identical figures");
    assert_eq!(p.flow(&["run", "specs/ab.yaml", "--set", "seed=7"]).code, 1);
    assert_ne!(ci(&p), ci0, "another seed draws other resamples");
    assert_eq!(metric(&report(&p), "exact_match")["delta"], -0.125, "the delta itself is not drawn");
}

#[test]
fn a_stored_run_is_a_baseline() {
    let p = project();
    // Nothing stored yet: a located error that says what to do, exit 2.
    let r = p.flow(&["plan", "specs/stored.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("node `ab`: no run is stored in specs/.flow yet, so none has an output for node `scores`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("stored.yaml:11:"), "{}", r.stderr);
    assert!(r.stderr.contains("hint: run the spec once, or name a run with `run: <id>`"), "{}", r.stderr);

    let base = p.run_ok(&["specs/scores.yaml"]);
    let base_id = base["run_id"].as_str().unwrap();
    let r = p.flow(&["run", "specs/stored.yaml"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let flipped: BTreeSet<String> = PASS_TO_FAIL.iter().chain(&FAIL_TO_PASS).map(|s| s.to_string()).collect();
    assert_eq!(case_ids(&r.stderr), flipped, "{}", r.stderr);
    let rep = report(&p);
    assert_eq!(rep["baseline"]["name"], format!("runs/{base_id}/scores"));
    assert_eq!(strings(&metric(&rep, "exact_match")["pass_to_fail"]), PASS_TO_FAIL);
    // Cached, and still failing.
    let r = p.flow(&["run", "specs/stored.yaml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(node(&p.latest_run("specs/.flow"), "ab")["status"], "cached");

    // A new baseline run with the same output changes nothing; one with
    // another output re-runs the comparison.
    p.run_ok(&["specs/scores.yaml", "--no-cache"]);
    let plan = p.flow(&["plan", "specs/stored.yaml"]);
    assert!(plan.stdout.contains("0 will run"), "{}", plan.stdout);
    let newer = p.run_ok(&["specs/scores.yaml", "--set", "data=noise.jsonl"]);
    let plan = p.flow(&["plan", "specs/stored.yaml"]);
    let newer_id = newer["run_id"].as_str().unwrap();
    assert!(plan.stdout.contains(&format!("runs/{newer_id}/scores")), "{}", plan.stdout);
    assert!(plan.stdout.contains("will run (input file changed"), "{}", plan.stdout);

    // A run named by a unique prefix of its id, as everywhere.
    let stored = p.read("specs/stored.yaml");
    let prefix = &base_id[..base_id.len() - 1];
    p.write("specs/stored.yaml", &stored.replace("run: latest", &format!("run: {prefix}")));
    let plan = p.flow(&["plan", "specs/stored.yaml"]);
    assert!(plan.stdout.contains(&format!("runs/{base_id}/scores")), "{}{}", plan.stdout, plan.stderr);
    // Mistyped: did-you-mean.
    let last = base_id.chars().last().unwrap();
    let typo = format!("{prefix}{}", if last == '0' { '1' } else { '0' });
    let spec = stored.replace("run: latest", &format!("run: {typo}"));
    p.write("specs/stored.yaml", &spec);
    let r = p.flow(&["validate", "specs/stored.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("node `ab`: no run `{typo}` in specs/.flow")), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("did you mean `{base_id}`?")), "{}", r.stderr);
}

#[test]
fn flow_compare_prints_the_figures_of_the_node() {
    let p = project();
    let a = p.run_ok(&["specs/scores.yaml"]);
    let b = p.run_ok(&["specs/scores.yaml", "--set", "data=regressed.jsonl"]);
    let (a, b) = (a["run_id"].as_str().unwrap(), b["run_id"].as_str().unwrap());
    let r = p.flow(&["compare", a, b]);
    assert_eq!(r.code, 0, "no gates here: {}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!("`runs/{b}/scores` (41 records) vs baseline `runs/{a}/scores`")),
        "{}",
        r.stdout
    );

    // The node over the same two outputs prints the same table.
    let node_run = p.flow(&["run", "specs/ab.yaml"]);
    assert_eq!(node_run.code, 1);
    let m = p.latest_run("specs/.flow");
    let report_md = p.read(&format!("specs/.flow/runs/{}/ab/report.md", m["run_id"].as_str().unwrap()));
    assert_eq!(table(&r.stdout), table(&report_md));
    assert_eq!(table(&r.stdout).len(), 4, "{}", r.stdout);
    assert_eq!(case_ids(&r.stdout), case_ids(&report_md));

    // The ab run has two scored nodes: ask which.
    let ab = m["run_id"].as_str().unwrap();
    let r = p.flow(&["compare", ab, ab]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("several nodes have scored records in both runs: baseline, candidate"), "{}", r.stderr);
    let r = p.flow(&["compare", ab, ab, "--node", "candidate"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("| exact_match | 41 | 0.780 | 0.780 | +0.000 |"), "{}", r.stdout);
    let r = p.flow(&["compare", a, "nope"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no run `nope`"), "{}", r.stderr);
}

#[test]
fn bad_compare_settings_are_located_errors() {
    let p = project();
    p.write(
        "specs/bad.yaml",
        "flow: 1\nnodes:\n  a: {kind: load, path: baseline.jsonl}\n  b: {kind: load, path: noise.jsonl}\n  ab:\n    kind: compare\n    input: a\n    metrics: [exact_match]\n    confidence: 95\n    resamples: 10\n    fail_if:\n      - {metric: exact_match, drop_more_than: 0.02, significant_drop: true}\n      - {metric: judge, significant_drop: true}\n",
    );
    let r = p.flow(&["validate", "specs/bad.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for want in [
        "node `ab` has nothing to compare its input with",
        "`confidence` must be between 0 and 1 (exclusive), not 95",
        "`resamples` must be at least 100, not 10",
        "`fail_if[0]` needs exactly one of `drop_more_than` and `significant_drop`",
        "`fail_if[1]` checks metric `judge`, which is not in `metrics`",
        "bad.yaml:13:",
    ] {
        assert!(r.stderr.contains(want), "missing {want:?} in:\n{}", r.stderr);
    }
    // A metric no record has is found when the records are read.
    p.write(
        "specs/typo.yaml",
        "flow: 1\nnodes:\n  a: {kind: load, path: baseline.jsonl}\n  b: {kind: load, path: noise.jsonl}\n  ab: {kind: compare, inputs: [a, b], metrics: [exact_mach]}\n",
    );
    let r = p.flow(&["run", "specs/typo.yaml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("metric `exact_mach` is not in the scores of `a`; did you mean `exact_match`? they have: exact_match, judge"),
        "{}",
        r.stderr
    );
}

/// `repeat:` on both sides: samples pair with samples (`id+sample`), and a
/// key can be a list; a single input of prompt variants compares them,
/// with `baseline_variant` picking the baseline by name.
#[test]
fn repeated_samples_and_variants_are_joined_with_their_own() {
    let p = Project::empty();
    let cases: String = (1..=12)
        .map(|i| {
            format!("{{\"id\": \"c{i}\", \"question\": \"What is {i} + {}?\", \"expected\": \"{}\"}}\n", i * 7, i * 8)
        })
        .collect();
    p.write("specs/data/cases.jsonl", &cases);
    let spec = |key: &str| {
        format!(
            "flow: 1\nname: rep\nbackends:\n  a: {{provider: sim, model: m-a, temperature: 0.7, sim: {{error_rate: 0.1}}}}\n  b: {{provider: sim, model: m-b, temperature: 0.7, sim: {{error_rate: 0.5}}}}\n\
             nodes:\n  cases: {{kind: load, path: data/cases.jsonl}}\n\
             \x20 ra: {{kind: run, input: cases, backend: a, prompt: \"{{{{question}}}}\", repeat: 3}}\n\
             \x20 rb: {{kind: run, input: cases, backend: b, prompt: \"{{{{question}}}}\", repeat: 3}}\n\
             \x20 sa: {{kind: evaluate, input: ra, metrics: [{{type: exact_match, expected: \"{{{{expected}}}}\"}}]}}\n\
             \x20 sb: {{kind: evaluate, input: rb, metrics: [{{type: exact_match, expected: \"{{{{expected}}}}\"}}]}}\n\
             \x20 ab: {{kind: compare, inputs: [sa, sb]{key}}}\n"
        )
    };
    p.write("specs/rep.yaml", &spec(""));
    p.run_ok(&["specs/rep.yaml"]);
    let rep = report(&p);
    assert_eq!(rep["key"], "id+sample", "{rep}");
    let em = metric(&rep, "exact_match");
    assert_eq!((rep["candidates"][0]["matched"].as_u64(), em["pairs"].as_u64()), (Some(36), Some(36)), "{em}");
    // The flips are the (id, sample) pairs whose verdicts differ.
    let scored = |node: &str| -> std::collections::BTreeMap<String, bool> {
        let show = p.flow(&["show", node, "--spec", "specs/rep.yaml"]);
        show.stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|r| {
                (format!("{}/{}", r["id"].as_str().unwrap(), r["sample"]), r["scores"]["exact_match"]["pass"] == true)
            })
            .collect()
    };
    let (a, b) = (scored("sa"), scored("sb"));
    let expected: Vec<String> = a.iter().filter(|(k, pass)| **pass && !b[*k]).map(|(k, _)| k.clone()).collect();
    let mut got = strings(&em["pass_to_fail"]);
    got.sort();
    assert!(!expected.is_empty(), "error rate 0.5 flips some samples");
    assert_eq!(got, expected);
    // The same key, listed.
    p.write("specs/rep.yaml", &spec(", key: [id, sample]"));
    p.run_ok(&["specs/rep.yaml"]);
    assert_eq!(metric(&report(&p), "exact_match")["pass_to_fail"], em["pass_to_fail"]);

    // One input of two variants; a misspelt baseline variant is named.
    let variants = "flow: 1\nname: var\nbackends:\n  a: {provider: sim}\nnodes:\n  cases: {kind: load, path: data/cases.jsonl}\n\
                    \x20 r: {kind: run, input: cases, backend: a, prompts: {plain: \"{{question}}\", steps: \"Explain step by step: {{question}}\"}}\n\
                    \x20 s: {kind: evaluate, input: r, metrics: [{type: exact_match, expected: \"{{expected}}\"}]}\n\
                    \x20 ab: {kind: compare, input: s, baseline_variant: step}\n";
    p.write("specs/var.yaml", variants);
    let r = p.flow(&["run", "specs/var.yaml"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(
            "`baseline_variant: step` is not a variant of `s`; did you mean `steps`? its variants: plain, steps"
        ),
        "{}",
        r.stderr
    );
    p.write("specs/var.yaml", &variants.replace("baseline_variant: step", "baseline_variant: steps"));
    p.run_ok(&["specs/var.yaml"]);
    let rep = report(&p);
    assert_eq!(
        (rep["baseline"]["name"].as_str(), rep["candidates"][0]["name"].as_str()),
        (Some("steps"), Some("plain")),
        "{rep}"
    );
    // `steps` answers in sentences, which fail an exact match: every case
    // `plain` passes flips fail → pass against it.
    let show = p.flow(&["show", "s", "--spec", "specs/var.yaml"]);
    let plain: Vec<String> = show
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["variant"] == "plain" && r["scores"]["exact_match"]["pass"] == true)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert!(plain.len() >= 9, "{plain:?}");
    assert_eq!(strings(&metric(&rep, "exact_match")["fail_to_pass"]), plain);
}
