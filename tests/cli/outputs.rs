//! `flow run -o FILE`: JUnit XML read by a real parser (Python's
//! `junitparser`, in a venv under `target/py`, which `.ci/run` creates),
//! CSV read by Python's `csv`, the same files from a cached run, hostile
//! model output escaped, and an unknown format refused before anything runs.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::common::{repo, Project};

/// The venv's Python with `junitparser`, made on first use if `.ci/run`
/// did not; `None` only outside CI, where a machine without network may
/// lack it (in CI a missing parser fails the test).
fn python() -> Option<PathBuf> {
    static PY: OnceLock<Option<PathBuf>> = OnceLock::new();
    PY.get_or_init(|| {
        let py = repo().join("target/py/bin/python");
        let ready =
            |p: &PathBuf| Command::new(p).args(["-c", "import junitparser"]).status().is_ok_and(|s| s.success());
        if !ready(&py) {
            let venv = Command::new("python3").args(["-m", "venv"]).arg(repo().join("target/py")).status();
            let pip = repo().join("target/py/bin/pip");
            if venv.is_ok_and(|s| s.success()) {
                let _ = Command::new(pip).args(["install", "-q", "junitparser==5.0.3"]).status();
            }
        }
        if ready(&py) {
            return Some(py);
        }
        assert!(std::env::var_os("CI").is_none(), "junitparser is required in CI: .ci/run installs it in target/py");
        eprintln!("skipping the JUnit parser check: no target/py with junitparser (run .ci/run's venv step)");
        None
    })
    .clone()
}

/// What the parser and Python's `csv` read: per suite, its counts and
/// its cases (`name`, `failure`/`error` message and text), and the CSV rows.
const READ: &str = r#"
import csv, json, sys
from junitparser import JUnitXml, Failure, Error
xml = JUnitXml.fromfile(sys.argv[1])
suites = {}
for s in xml:
    cases = []
    for c in s:
        r = {"name": c.name, "classname": c.classname}
        for res in c.result:
            kind = "failure" if isinstance(res, Failure) else "error" if isinstance(res, Error) else "other"
            r[kind] = {"message": res.message, "text": res.text}
        cases.append(r)
    suites[s.name] = {"tests": s.tests, "failures": s.failures, "errors": s.errors, "cases": cases}
rows = list(csv.DictReader(open(sys.argv[2], newline=""))) if len(sys.argv) > 2 else []
print(json.dumps({"suites": suites, "rows": rows}))
"#;

fn read(py: &PathBuf, junit: &PathBuf, csv: Option<&PathBuf>) -> Value {
    let mut cmd = Command::new(py);
    cmd.args(["-c", READ]).arg(junit);
    if let Some(c) = csv {
        cmd.arg(c);
    }
    let out = cmd.output().expect("python runs");
    assert!(out.status.success(), "the parser rejected {}: {}", junit.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ab_project() -> Project {
    let p = Project::empty();
    for f in ["specs/ab.yaml", "specs/data/seeds.jsonl"] {
        p.write(f, &std::fs::read_to_string(repo().join(f)).unwrap());
    }
    p
}

#[test]
fn a_gated_run_writes_junit_csv_jsonl_and_json_and_a_cached_run_the_same() {
    let p = ab_project();
    let args = [
        "run",
        "specs/ab.yaml",
        "--set",
        "candidate_error_rate=0.4",
        "-o",
        "out/results.junit.xml",
        "-o",
        "out/results.csv",
        "-o",
        "out/results.jsonl",
        "-o",
        "out/results.json",
    ];
    std::fs::create_dir_all(p.path("out")).unwrap();
    let r = p.flow(&args);
    assert_eq!(r.code, 1, "the compare gate trips:\n{}{}", r.stdout, r.stderr);
    for f in ["results.junit.xml", "results.csv", "results.jsonl", "results.json"] {
        assert!(r.stdout.contains(&format!("wrote out/{f}")), "{}", r.stdout);
    }
    // The gate is said once, in the run's end, with its ids cut to ten.
    let all = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(all.matches("(fail_if[0]: drop_more_than)").count(), 1, "{all}");
    assert!(r.stderr.contains("and 14 more (flow show ab)"), "{}", r.stderr);

    // What the stored records say, for the figures the files must agree with.
    let show = p.flow(&["show", "candidate_scores", "--workspace", "specs/.flow"]);
    let records: Vec<Value> = show.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 60);
    let failed = records.iter().filter(|r| r["scores"]["exact_match"]["pass"] == false).count();
    assert!(failed > 0);

    let jsonl: Vec<Value> = p.read("out/results.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(jsonl.len(), 120, "two scored nodes × 60 records × one metric");
    let cand: Vec<&Value> = jsonl.iter().filter(|r| r["node"] == "candidate_scores").collect();
    assert_eq!(cand.iter().filter(|r| r["pass"] == false).count(), failed);
    let json: Value = serde_json::from_str(&p.read("out/results.json")).unwrap();
    assert_eq!(json["run"]["status"], "failed");
    let ab = json["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "ab").unwrap();
    assert!(ab["gate_failed"].as_str().unwrap().contains("fail_if[1]"));
    let scored = json["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "candidate_scores").unwrap();
    assert_eq!(scored["records"].as_array().unwrap().len(), 60);
    assert_eq!(scored["cases"]["failed"], failed);

    let Some(py) = python() else { return };
    let got = read(&py, &p.path("out/results.junit.xml"), Some(&p.path("out/results.csv")));
    let suite = &got["suites"]["ab.candidate_scores"];
    assert_eq!(suite["tests"], 60);
    assert_eq!(suite["failures"], failed);
    assert_eq!(suite["errors"], 0);
    let case = suite["cases"].as_array().unwrap().iter().find(|c| c.get("failure").is_some()).unwrap();
    assert!(case["name"].as_str().unwrap().ends_with(": exact_match"), "{case}");
    assert!(case["failure"]["text"].as_str().unwrap().contains("output: "), "{case}");
    // The compare node's rules are cases of their own: both tripped.
    let gates = &got["suites"]["ab.ab"];
    assert_eq!((gates["tests"].as_u64(), gates["failures"].as_u64()), (Some(2), Some(2)), "{gates}");
    let names: Vec<&str> = gates["cases"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "fail_if[0]: {metric: exact_match, drop_more_than: 0.02}",
            "fail_if[1]: {metric: exact_match, significant_drop: true}"
        ]
    );
    let rows = got["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 120);
    assert_eq!(rows.iter().filter(|r| r["node"] == "candidate_scores" && r["pass"] == "false").count(), failed);

    // All cached now: the same verdicts come from the stored records.
    let again = p.flow(&[&args[..4], &["-o", "out/again.junit.xml", "-o", "out/again.csv"]].concat());
    assert_eq!(again.code, 1, "a cached gate trips again: {}", again.stderr);
    let m = p.latest_run("specs/.flow");
    assert!(m["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "cached"), "{m}");
    assert_eq!(p.read("out/again.csv"), p.read("out/results.csv"));
    let cached = read(&py, &p.path("out/again.junit.xml"), None);
    for (name, s) in got["suites"].as_object().unwrap() {
        assert_eq!(cached["suites"][name]["cases"], s["cases"], "{name}");
    }
}

#[test]
fn model_output_with_control_characters_and_markup_is_escaped() {
    let p = Project::demo();
    let hostile = [
        r#"{"id": "x\"<1>&", "expected": "ok", "output": "\u0001\u001b[31mred\u001b[0m </failure> ]]> & \"q\" \u0000 end"}"#,
        r#"{"id": "x2", "expected": "ok", "output": "ok"}"#,
    ];
    p.write("specs/data/answers.jsonl", &(hostile.join("\n") + "\n"));
    let r = p.flow(&["run", "specs/demo.yaml", "-o", "r.xml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let xml = p.read("r.xml");
    assert!(!xml.chars().any(|c| (c as u32) < 0x20 && !"\t\n\r".contains(c)), "a raw control character: {xml}");
    let Some(py) = python() else { return };
    let got = read(&py, &p.path("r.xml"), None);
    let suite = &got["suites"]["demo.scores"];
    assert_eq!(suite["tests"], 6, "two records × three metrics");
    let case = suite["cases"].as_array().unwrap().iter().find(|c| c["name"] == "x\"<1>&: exact_match").unwrap();
    let text = case["failure"]["text"].as_str().unwrap();
    assert!(text.contains(r#"output: \u{1}\u{1b}[31mred\u{1b}[0m </failure> ]]> & "q" \u{0} end"#), "{text}");
}

#[test]
fn an_unknown_output_format_is_refused_before_anything_runs() {
    let p = Project::demo();
    let r = p.flow(&["run", "specs/demo.yaml", "-o", "results.xml", "-o", "results.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("error: -o results.yaml: unknown output format `.yaml`"), "{}", r.stderr);
    assert!(r.stderr.contains("hint: name the file with one of: .xml (JUnit XML"), "{}", r.stderr);
    assert!(r.stderr.contains(".csv") && r.stderr.contains(".jsonl") && r.stderr.contains(".json "), "{}", r.stderr);
    assert!(!p.path("specs/.flow").exists(), "nothing ran");
    assert!(!p.path("results.xml").exists());
}

/// The README's walkthrough for a promptfoo user: `specs/prompts.yaml`, two
/// prompt variants from files, three metrics and an absolute gate, on
/// `sim`: the gate trips on the worse variant only, the variants are
/// compared case by case, and the JUnit file says so to a real parser.
#[test]
fn prompt_variants_are_gated_and_compared_each_on_its_own() {
    let p = Project::empty();
    for f in ["specs/prompts.yaml", "specs/prompts/terse.txt", "specs/prompts/reasoned.txt", "specs/data/cases.jsonl"] {
        p.write(f, &std::fs::read_to_string(repo().join(f)).unwrap());
    }
    let r = p.flow(&["run", "specs/prompts.yaml", "-o", "results.junit.xml", "-o", "results.json"]);
    assert_eq!(r.code, 1, "the gate trips on `reasoned`:\n{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("fail_if[0] (variant `reasoned`): exact_match pass rate 0.000 is below 0.6"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("variant `terse`"), "`terse` holds the gate:\n{}", r.stderr);

    let json: Value = serde_json::from_str(&p.read("results.json")).unwrap();
    let node = |name: &str| json["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).unwrap().clone();
    let summary = &node("scores")["summary"];
    let records: Vec<Value> = p
        .flow(&["show", "scores", "--spec", "specs/prompts.yaml"])
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 48, "24 cases × 2 variants");
    // Each variant's figures are its own records' figures.
    for variant in ["terse", "reasoned"] {
        let mine: Vec<&Value> = records.iter().filter(|r| r["variant"] == variant).collect();
        let passed = mine.iter().filter(|r| r["scores"]["exact_match"]["pass"] == true).count();
        let figures = &summary["variants"][variant];
        assert_eq!(figures["records"], 24, "{summary}");
        let rate = figures["metrics"]["exact_match"]["pass_rate"].as_f64().unwrap();
        assert!((rate - passed as f64 / 24.0).abs() < 1e-6, "{variant}: {summary}");
    }
    let terse = summary["variants"]["terse"]["metrics"]["exact_match"]["pass_rate"].as_f64().unwrap();
    assert!(terse >= 0.6, "sim answers `terse` right on the arithmetic: {terse}");
    assert_eq!(summary["variants"]["reasoned"]["metrics"]["exact_match"]["pass_rate"].as_f64(), Some(0.0));
    assert_eq!(
        summary["variants"]["reasoned"]["metrics"]["icontains"]["pass_rate"].as_f64().map(|r| r > 0.5),
        Some(true)
    );

    // One compare node, one input: `reasoned` against the baseline `terse`.
    let versus: Vec<Value> = p
        .flow(&["show", "versus", "--spec", "specs/prompts.yaml"])
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let em = versus.iter().find(|r| r["metric"] == "exact_match").unwrap();
    assert_eq!(
        (em["baseline"].as_str(), em["candidate"].as_str(), em["pairs"].as_u64()),
        (Some("terse"), Some("reasoned"), Some(24)),
        "{em}"
    );
    let flipped: Vec<&str> = em["pass_to_fail"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let terse_passed: Vec<&str> = records
        .iter()
        .filter(|r| r["variant"] == "terse" && r["scores"]["exact_match"]["pass"] == true)
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(flipped, terse_passed, "every case `terse` passed, `reasoned` fails");

    let Some(py) = python() else { return };
    let got = read(&py, &p.path("results.junit.xml"), None);
    let suite = &got["suites"]["prompts.scores"];
    let cases = suite["cases"].as_array().unwrap();
    let gate = cases.iter().find(|c| c["name"].as_str().unwrap().starts_with("fail_if[0]")).unwrap();
    assert!(gate["failure"]["text"].as_str().unwrap().contains("variant `reasoned`"), "{gate}");
    let failed = |variant: &str| {
        cases
            .iter()
            .filter(|c| {
                c["name"].as_str().unwrap().contains(&format!("[{variant}]: exact_match")) && c.get("failure").is_some()
            })
            .count()
    };
    assert_eq!(failed("reasoned"), 24);
    assert_eq!(failed("terse"), 24 - terse_passed.len());
}
