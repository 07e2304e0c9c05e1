//! `flow show` and `flow runs`.

use crate::common::Project;

#[test]
fn show_finds_the_workspace_and_limits_output() {
    let p = Project::demo();
    let none = p.flow(&["show", "scores"]);
    assert_eq!(none.code, 2);
    assert!(none.stderr.contains("no .flow workspace found here"), "{}", none.stderr);
    p.run_ok(&["specs/demo.yaml"]);
    let r = p.flow(&["show", "answers", "--limit", "3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 3);
    let typo = p.flow(&["show", "score"]);
    assert_eq!(typo.code, 2);
    assert!(typo.stderr.contains("did you mean `scores`?"), "{}", typo.stderr);
}

#[test]
fn show_by_run_and_runs_lists_history() {
    let p = Project::demo();
    let first = p.run_ok(&["specs/demo.yaml"]);
    let spec = p.read("specs/demo.yaml");
    p.write(
        "specs/demo.yaml",
        &spec.replace(
            "case_sensitive: false\n      - type: similarity",
            "case_sensitive: true\n      - type: similarity",
        ),
    );
    p.run_ok(&["specs/demo.yaml"]);
    let id = first["run_id"].as_str().unwrap();
    let old = p.flow(&["show", "scores", "--run", id, "--workspace", "specs/.flow"]);
    let new = p.flow(&["show", "scores", "--workspace", "specs/.flow"]);
    assert_eq!(old.code, 0, "{}", old.stderr);
    assert_ne!(old.stdout, new.stdout, "the older run's output differs (case-insensitive match)");
    let c05 = |s: &str| -> serde_json::Value {
        serde_json::from_str(s.lines().find(|l| l.contains("\"c05\"")).unwrap()).unwrap()
    };
    assert_eq!(c05(&old.stdout)["scores"]["exact_match"]["pass"], true);
    assert_eq!(c05(&new.stdout)["scores"]["exact_match"]["pass"], false);
    let runs = p.flow(&["runs"]);
    assert_eq!(runs.code, 0);
    assert!(runs.stdout.contains(id), "{}", runs.stdout);
    assert_eq!(runs.stdout.matches("succeeded").count(), 2, "{}", runs.stdout);
}
