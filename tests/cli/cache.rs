//! The cache as a user meets it: a second run reuses everything and writes
//! the same bytes; a changed field, file or forced node re-runs exactly what
//! it must; content, not mtime, decides.

use crate::common::{node, pairs, statuses, Project};

fn artifact(p: &Project, run: &serde_json::Value, node: &str, name: &str) -> String {
    p.read(&format!("specs/.flow/runs/{}/{node}/{name}", run["run_id"].as_str().unwrap()))
}

#[test]
fn second_run_is_all_cached_and_byte_identical() {
    let p = Project::demo();
    let first = p.run_ok(&["specs/demo.yaml"]);
    assert_eq!(statuses(&first), pairs(&[("answers", "ran"), ("scores", "ran")]));
    let second = p.run_ok(&["specs/demo.yaml"]);
    assert_eq!(statuses(&second), pairs(&[("answers", "cached"), ("scores", "cached")]));
    for n in ["answers", "scores"] {
        assert_eq!(node(&first, n)["output"], node(&second, n)["output"], "{n} output changed");
        assert_eq!(node(&first, n)["key"], node(&second, n)["key"]);
    }
    for a in ["summary.json", "summary.md"] {
        assert_eq!(artifact(&p, &first, "scores", a), artifact(&p, &second, "scores", a));
    }
    // The summary has the figures a user reads.
    let summary: serde_json::Value = serde_json::from_str(&artifact(&p, &second, "scores", "summary.json")).unwrap();
    assert_eq!(summary["records"], 8);
    assert_eq!(summary["metrics"]["exact_match"]["count"], 8);
    assert_eq!(summary["metrics"]["exact_match"]["pass_rate"], 0.375);
    // The output object is the scored JSONL, one record per case.
    let out = p.flow(&["show", "scores"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<serde_json::Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 8);
    assert_eq!(lines[0]["id"], "c01");
    assert_eq!(lines[0]["scores"]["exact_match"]["pass"], true);
    assert_eq!(lines[5]["scores"]["exact_match"]["pass"], false);
}

#[test]
fn changed_threshold_reruns_only_evaluate_and_says_why() {
    let p = Project::demo();
    p.run_ok(&["specs/demo.yaml"]);
    let spec = p.read("specs/demo.yaml");
    p.write("specs/demo.yaml", &spec.replace("threshold: ${params.similarity_threshold}", "threshold: 0.9"));
    let plan = p.flow(&["plan", "specs/demo.yaml"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let line = |n: &str| plan.stdout.lines().find(|l| l.starts_with(n)).unwrap().to_string();
    assert!(line("answers").ends_with("cached"), "{}", plan.stdout);
    assert!(line("scores").contains("will run (config changed: metrics[1].threshold)"), "{}", plan.stdout);
    let run = p.run_ok(&["specs/demo.yaml"]);
    assert_eq!(statuses(&run), pairs(&[("answers", "cached"), ("scores", "ran")]));
    // The same change through a param override is the same key: cached.
    p.write("specs/demo.yaml", &spec);
    let run = p.run_ok(&["specs/demo.yaml", "--set", "similarity_threshold=0.9"]);
    assert_eq!(statuses(&run), pairs(&[("answers", "cached"), ("scores", "cached")]));
}

#[test]
fn data_file_content_not_mtime_decides() {
    let p = Project::demo();
    p.run_ok(&["specs/demo.yaml"]);
    // Same bytes written again: everything stays cached.
    let data = p.read("specs/data/answers.jsonl");
    std::thread::sleep(std::time::Duration::from_millis(20));
    p.write("specs/data/answers.jsonl", &data);
    let plan = p.flow(&["plan", "specs/demo.yaml"]);
    assert!(plan.stdout.contains("2 cached, 0 will run, 0 unknown"), "{}", plan.stdout);
    // Edited: plan names the file; evaluate waits on its upstream.
    p.write("specs/data/answers.jsonl", &data.replace("\"output\": \"124\"", "\"output\": \"144\""));
    let plan = p.flow(&["plan", "specs/demo.yaml"]);
    let answers = plan.stdout.lines().find(|l| l.starts_with("answers")).unwrap();
    assert!(answers.contains("will run (input file changed: data/answers.jsonl)"), "{}", plan.stdout);
    let scores = plan.stdout.lines().find(|l| l.starts_with("scores")).unwrap();
    assert!(scores.contains("unknown (upstream will run: answers)"), "{}", plan.stdout);
    let run = p.run_ok(&["specs/demo.yaml"]);
    assert_eq!(statuses(&run), pairs(&[("answers", "ran"), ("scores", "ran")]));
}

#[test]
fn rerun_with_same_output_keeps_downstream_key() {
    let p = Project::demo();
    let first = p.run_ok(&["specs/demo.yaml"]);
    let plan = p.flow(&["plan", "specs/demo.yaml", "--rerun", "answers"]);
    assert!(plan.stdout.contains("will run (forced (--rerun answers))"), "{}", plan.stdout);
    let forced = p.run_ok(&["specs/demo.yaml", "--rerun", "answers"]);
    assert_eq!(node(&forced, "answers")["status"], "ran");
    // `scores` streams, so it runs alongside its upstream (a barrier would be
    // reused: see engine/tests/scheduler.rs) ...
    assert_eq!(node(&forced, "scores")["status"], "ran");
    // ... but the same bytes out of `answers` give `scores` the same key.
    assert_eq!(node(&forced, "answers")["output"], node(&first, "answers")["output"]);
    assert_eq!(node(&forced, "scores")["key"], node(&first, "scores")["key"]);
    let all = p.run_ok(&["specs/demo.yaml", "--no-cache"]);
    assert_eq!(statuses(&all), pairs(&[("answers", "ran"), ("scores", "ran")]));
    let again = p.run_ok(&["specs/demo.yaml"]);
    assert_eq!(statuses(&again), pairs(&[("answers", "cached"), ("scores", "cached")]));
}

#[test]
fn a_cache_entry_with_a_missing_object_is_redone() {
    let p = Project::demo();
    let first = p.run_ok(&["specs/demo.yaml"]);
    let hash = node(&first, "scores")["artifacts"]["summary.md"].as_str().unwrap().to_string();
    std::fs::remove_file(p.path(&format!("specs/.flow/objects/{}/{hash}", &hash[..2]))).unwrap();
    let plan = p.flow(&["plan", "specs/demo.yaml"]);
    let scores = plan.stdout.lines().find(|l| l.starts_with("scores")).unwrap();
    assert!(scores.contains("will run (cache entry missing)"), "{}", plan.stdout);
    let run = p.run_ok(&["specs/demo.yaml"]);
    assert_eq!(statuses(&run), pairs(&[("answers", "cached"), ("scores", "ran")]));
    assert_eq!(artifact(&p, &run, "scores", "summary.md"), artifact(&p, &first, "scores", "summary.md"));
}

#[test]
fn plan_writes_nothing_and_workspace_is_overridable() {
    let p = Project::demo();
    let plan = p.flow(&["plan", "specs/demo.yaml"]);
    assert_eq!(plan.code, 0);
    assert!(!p.path("specs/.flow").exists(), "plan created .flow");
    let r = p.flow(&["run", "specs/demo.yaml", "--workspace", "elsewhere"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(p.path("elsewhere/nodes").is_dir());
    assert!(!p.path("specs/.flow").exists());
}

#[test]
fn relative_paths_resolve_against_the_spec_folder() {
    let p = Project::demo();
    // Run from inside specs/ and from the project root: same cache entries.
    let r = crate::common::run_in(&p.path("specs"), &["run", "demo.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let again = p.run_ok(&["specs/demo.yaml"]);
    assert_eq!(statuses(&again), pairs(&[("answers", "cached"), ("scores", "cached")]));
}

#[test]
fn csv_and_json_inputs_with_id_column() {
    let p = Project::empty();
    p.write("specs/data/cases.csv", "case_id,output,expected\nk1,\"yes, sure\",\"yes, sure\"\nk2,no,yes\n");
    p.write(
        "specs/s.yaml",
        "flow: 1\nnodes:\n  cases:\n    kind: load\n    path: data/cases.csv\n    id_field: case_id\n  scores:\n    kind: evaluate\n    input: cases\n    metrics: [{type: exact_match, expected: \"{{expected}}\"}]\n",
    );
    let run = p.run_ok(&["specs/s.yaml"]);
    assert_eq!(node(&run, "scores")["records_out"], 2);
    let out = p.flow(&["show", "scores", "--workspace", "specs/.flow"]);
    let first: serde_json::Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], "k1");
    assert_eq!(first["pass"], true);
}

/// Ids that repeat in a `load` file are said (once per run, cached runs
/// too), without failing the run.
#[test]
fn repeated_ids_in_a_data_file_are_a_warning() {
    let p = Project::empty();
    p.write("s.yaml", "flow: 1\nnodes:\n  cases: {kind: load, path: d.jsonl}\n");
    p.write("d.jsonl", "{\"id\": \"a\"}\n{\"id\": \"b\"}\n{\"id\": \"a\"}\n{\"q\": 4}\n{\"q\": 4}\n");
    let want = "warning: node `cases`: 2 records of ./d.jsonl repeat an earlier record's id (the first: `a` on line 3)";
    for _ in 0..2 {
        let r = p.flow(&["run", "s.yaml"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stderr.matches(want).count(), 1, "{}", r.stderr);
    }
    p.write("d.jsonl", "{\"id\": \"a\"}\n{\"id\": \"b\"}\n");
    let r = p.flow(&["run", "s.yaml"]);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
}
