//! Run ids as users type them: `latest` and unique prefixes wherever a
//! run is named (`flow show --run`, `flow compare`, `flow view`), an
//! ambiguous prefix listing its candidates; and `flow show` reading the
//! runs of one spec (`--spec`, or the one spec in the current folder), not
//! the newest run of any spec that has a node of that name.

use crate::common::{repo, Project};

/// A project with the demo spec twice in one workspace: `specs/demo.yaml`
/// and `specs/other.yaml` (named `other`, answers flipped), both with a
/// node `scores`.
fn two_specs() -> Project {
    let p = Project::demo();
    let demo = std::fs::read_to_string(repo().join("specs/demo.yaml")).unwrap();
    p.write(
        "specs/other.yaml",
        &demo.replace("name: demo", "name: other").replace("data/answers.jsonl", "data/other.jsonl"),
    );
    let flipped: String = p
        .read("specs/data/answers.jsonl")
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["output"] = "nothing like it".into();
            format!("{v}\n")
        })
        .collect();
    p.write("specs/data/other.jsonl", &flipped);
    p
}

#[test]
fn run_ids_take_latest_and_unique_prefixes_everywhere() {
    let p = Project::demo();
    let first = p.run_ok(&["specs/demo.yaml"])["run_id"].as_str().unwrap().to_string();
    let second = p.run_ok(&["specs/demo.yaml", "--no-cache"])["run_id"].as_str().unwrap().to_string();
    let ws = ["--workspace", "specs/.flow"];

    let latest = p.flow(&[&["show", "scores", "--run", "latest"][..], &ws].concat());
    let by_id = p.flow(&[&["show", "scores", "--run", &second][..], &ws].concat());
    assert_eq!(latest.code, 0, "{}", latest.stderr);
    assert_eq!(latest.stdout, by_id.stdout);

    // The shortest prefix that tells the two apart, and one that does not.
    let common = first.chars().zip(second.chars()).take_while(|(a, b)| a == b).count();
    let unique = &second[..common + 1];
    let r = p.flow(&[&["view", unique, "--no-open"][..], &ws].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.trim_end().ends_with(&format!("{second}/report.html")), "{}", r.stdout);
    let shared = &second[..common];
    let r = p.flow(&[&["show", "scores", "--run", shared][..], &ws].concat());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("error: run id `{shared}` is ambiguous: 2 runs start with it")), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("hint: give more of the id: {second}, {first}")), "{}", r.stderr);

    let r = p.flow(&[&["compare", &first[..common + 1], "latest"][..], &ws].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("| exact_match |"), "{}", r.stdout);

    let r = p.flow(&[&["view", "nope", "--no-open"][..], &ws].concat());
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("error: no run `nope`"), "{}", r.stderr);
}

#[test]
fn show_reads_the_runs_of_one_spec() {
    let p = two_specs();
    p.run_ok(&["specs/demo.yaml"]);
    // `other` runs last, into the same workspace, with a node of the same name.
    let r = p.flow(&["run", "specs/other.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ws = ["--workspace", "specs/.flow"];

    let r = p.flow(&[&["show", "scores"][..], &ws].concat());
    assert_eq!(r.code, 2, "two specs' runs have `scores`: {}", r.stdout);
    assert!(r.stderr.contains("error: node `scores` has output in the runs of 2 specs: other, demo"), "{}", r.stderr);
    assert!(r.stderr.contains("hint: name the spec: flow show NODE --spec"), "{}", r.stderr);

    let passed = |out: &str| out.lines().filter(|l| l.contains(r#""pass":true"#)).count();
    let demo = p.flow(&["show", "scores", "--spec", "specs/demo.yaml"]);
    assert_eq!(demo.code, 0, "{}", demo.stderr);
    assert!(passed(&demo.stdout) > 0, "demo's answers pass: {}", demo.stdout);
    let other = p.flow(&["show", "scores", "--spec", "specs/other.yaml"]);
    assert_eq!(passed(&other.stdout), 0, "other's answers all fail: {}", other.stdout);

    // The one spec in the current folder is the default.
    std::fs::remove_file(p.path("specs/other.yaml")).unwrap();
    let here = crate::common::run_in(&p.path("specs"), &["show", "scores"]);
    assert_eq!(here.code, 0, "{}", here.stderr);
    assert_eq!(here.stdout, demo.stdout, "the spec in the current folder picks its runs");

    let bad = p.flow(&["show", "scores", "--spec", "specs/missing.yaml"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}
