//! The shipped `specs/eval.yaml` runs offline on `sim`, as the README's
//! first command does: every metric scores, the judge and the Python metric
//! included, and a second run is all cached and sends nothing.

use crate::common::{node, repo, statuses, Project};

fn eval_project() -> Project {
    let p = Project::empty();
    for f in ["specs/eval.yaml", "specs/data/cases.jsonl", "specs/metrics/brevity.py"] {
        p.write(f, &std::fs::read_to_string(repo().join(f)).unwrap());
    }
    p
}

#[test]
fn eval_spec_runs_offline_and_reruns_from_cache() {
    let p = eval_project();
    let r = p.flow(&["run", "specs/eval.yaml"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let m = p.latest_run("specs/.flow");
    assert_eq!(node(&m, "answers")["calls"]["requests"], 24);
    // One judge call per record, on the evaluate node.
    assert_eq!(node(&m, "scores")["calls"]["requests"], 24);
    assert_eq!(m["calls"]["requests"], 48);
    assert_eq!(m["calls"]["cost_usd"], 0.0, "sim is free");

    let out = p.flow(&["show", "scores", "--workspace", "specs/.flow"]);
    let records: Vec<serde_json::Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 24);
    for r in &records {
        let scores = &r["scores"];
        for metric in ["exact_match", "judge", "latency", "cost", "brevity"] {
            assert!(scores[metric]["error"].is_null(), "{metric} failed on {}: {}", r["id"], scores[metric]);
        }
        assert!(scores["judge"]["reason"].as_str().is_some_and(|s| !s.is_empty()));
        // The judge agrees with exact match on sim's answers.
        assert_eq!(scores["judge"]["pass"], scores["exact_match"]["pass"], "{r}");
        assert!(scores["brevity"]["reason"].as_str().unwrap().ends_with("words"));
    }
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let input: Vec<String> = p
        .read("specs/data/cases.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, input, "records come out in input order");
    assert!(r.stdout.contains("| judge |"), "{}", r.stdout);
    assert!(r.stdout.contains("calls: 48 sent"), "{}", r.stdout);

    let again = p.flow(&["run", "specs/eval.yaml"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let m2 = p.latest_run("specs/.flow");
    assert!(statuses(&m2).iter().all(|(_, s)| s == "cached"), "{:?}", statuses(&m2));
    assert!(m2["calls"].is_null(), "a cached run makes no call: {}", m2["calls"]);

    // Editing the metric script re-runs only `scores`, and its judge calls
    // come from the memo.
    let script = p.read("specs/metrics/brevity.py").replace("MAX_WORDS = 12", "MAX_WORDS = 1");
    p.write("specs/metrics/brevity.py", &script);
    let plan = p.flow(&["plan", "specs/eval.yaml"]);
    assert!(plan.stdout.contains("input file changed: metrics/brevity.py"), "{}", plan.stdout);
    // The judge's calls are all memoized: the plan counts them as such.
    assert!(plan.stdout.contains("0 (24 memoized)"), "{}", plan.stdout);
    let third = p.flow(&["run", "specs/eval.yaml"]);
    assert_eq!(third.code, 0, "{}", third.stderr);
    let m3 = p.latest_run("specs/.flow");
    assert_eq!(node(&m3, "answers")["status"], "cached");
    assert_eq!(node(&m3, "scores")["status"], "ran");
    assert_eq!(node(&m3, "scores")["calls"]["requests"], 0);
    assert_eq!(node(&m3, "scores")["calls"]["memo_hits"], 24);
}

#[test]
fn a_broken_exec_metric_fails_the_node_naming_the_command() {
    let p = eval_project();
    p.write("specs/metrics/brevity.py", "import sys\nfor line in sys.stdin:\n    print('great answer')\n");
    let r = p.flow(&["run", "specs/eval.yaml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "metric `brevity` (`python3 metrics/brevity.py`): line 1 of its output: `great answer` is not JSON"
        ),
        "{}",
        r.stderr
    );
    let m = p.latest_run("specs/.flow");
    assert_eq!(node(&m, "scores")["status"], "failed");
}

#[test]
fn a_missing_key_stops_the_run_before_anything_is_written() {
    let p = eval_project();
    let r = crate::common::run_in_env(
        p.dir.path(),
        &["run", "specs/eval.yaml", "--set", "provider=openai", "--set", "model=gpt-4o-mini"],
        &[("OPENAI_API_KEY", "")],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("environment variable `OPENAI_API_KEY` (its `api_key_env`) is not set"), "{}", r.stderr);
    assert!(r.stderr.contains("hint: export OPENAI_API_KEY="), "{}", r.stderr);
    assert!(!p.path("specs/.flow").exists(), "flow wrote a workspace");
}
