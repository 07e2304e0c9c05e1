//! Barrier input past its memory bound (`FLOW_BARRIER_MEMORY`) spills to
//! `.flow/tmp/` and is read back: each barrier kind's output and reports
//! are byte for byte those of the same run held in memory, and no spill
//! file outlives its run, whether the run succeeds or fails.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{repo, run_in_env, Project};

/// A project with the fixtures of each of `fixtures` under `specs/`.
fn project(fixtures: &[&str]) -> Project {
    let p = Project::empty();
    for dir in fixtures {
        for entry in std::fs::read_dir(repo().join("tests/fixtures").join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            p.write(&format!("specs/{name}"), &std::fs::read_to_string(&path).unwrap());
        }
    }
    p
}

/// Runs `spec` with `envs`; returns the exit code, stderr, and every file of
/// the run's folder (outputs' reports) with the nodes' outputs (`flow show`).
fn run(p: &Project, spec: &str, nodes: &[&str], envs: &[(&str, &str)]) -> (i32, String, BTreeMap<String, Vec<u8>>) {
    let r = run_in_env(&p.path(""), &["run", spec, "--no-cache"], envs);
    let mut files = BTreeMap::new();
    if r.code == 0 {
        let m = p.latest_run("specs/.flow");
        let run_dir = p.path("specs/.flow/runs").join(m["run_id"].as_str().unwrap());
        for node in nodes {
            for entry in std::fs::read_dir(run_dir.join(node)).unwrap() {
                let path = entry.unwrap().path();
                let name = format!("{node}/{}", path.file_name().unwrap().to_str().unwrap());
                files.insert(name, std::fs::read(&path).unwrap());
            }
            let shown = p.flow(&["show", node, "--workspace", "specs/.flow"]);
            assert_eq!(shown.code, 0, "{}", shown.stderr);
            files.insert(format!("{node} output"), shown.stdout.into_bytes());
        }
    }
    (r.code, r.stderr, files)
}

fn tmp_files(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

/// A bound of 1 KiB: a few records in memory, the rest on disk.
const SMALL: (&str, &str) = ("FLOW_BARRIER_MEMORY", "1KiB");
/// The engine says at debug level what it spilled.
const DEBUG: (&str, &str) = ("FLOW_LOG", "flow_engine=debug");

#[test]
fn every_barrier_kind_gives_the_same_output_from_disk_as_from_memory() {
    let cases: [(&[&str], &str, &[&str]); 4] = [
        (&["extract"], "specs/extract.yaml", &["steady", "rare"]),
        (&["compare"], "specs/ab.yaml", &["ab"]),
        (&["synthesize"], "specs/synthesize.yaml", &["rules"]),
        (&["train"], "specs/export.yaml", &["trl"]),
    ];
    for (fixtures, spec, nodes) in cases {
        let p = project(fixtures);
        if spec == "specs/export.yaml" {
            p.write(
                spec,
                "flow: 1\nname: export\nnodes:\n  examples: {kind: load, path: examples.jsonl}\n  \
                 trl: {kind: train, input: examples, export: trl, model: Qwen/Qwen2.5-0.5B-Instruct}\n",
            );
        }
        // A compare gate trips by design (exit 1): its reports are still
        // written, so compare what the run folder holds either way.
        let (code, _, in_memory) = run(&p, spec, nodes, &[]);
        let (spilled_code, stderr, spilled) = run(&p, spec, nodes, &[SMALL, DEBUG]);
        assert_eq!(code, spilled_code, "{spec}: {stderr}");
        assert!(stderr.contains("barrier input spilled to disk"), "{spec} did not spill: {stderr}");
        if code == 0 {
            assert!(!in_memory.is_empty());
            assert_eq!(spilled.keys().collect::<Vec<_>>(), in_memory.keys().collect::<Vec<_>>(), "{spec}");
            for (name, bytes) in &in_memory {
                assert!(spilled[name] == *bytes, "{spec}: {name} differs when spilled");
            }
        }
        assert_eq!(tmp_files(&p.path("specs/.flow/tmp")), Vec::<String>::new(), "{spec}: a spill file was left");
    }
}

#[test]
fn a_compare_whose_gate_trips_reports_the_same_from_disk() {
    let p = project(&["compare"]);
    let report = |envs: &[(&str, &str)]| {
        let r = run_in_env(&p.path(""), &["run", "specs/ab.yaml", "--no-cache"], envs);
        assert_eq!(r.code, 1, "the gate trips: {}", r.stderr);
        let m = p.latest_run("specs/.flow");
        let run_dir = p.path("specs/.flow/runs").join(m["run_id"].as_str().unwrap());
        (std::fs::read(run_dir.join("ab/report.json")).unwrap(), r.stderr)
    };
    let (in_memory, _) = report(&[]);
    let (spilled, stderr) = report(&[SMALL, DEBUG]);
    assert!(stderr.contains("barrier input spilled to disk"), "{stderr}");
    assert!(spilled == in_memory, "report.json differs when spilled");
    assert_eq!(tmp_files(&p.path("specs/.flow/tmp")), Vec::<String>::new());
}

#[test]
fn a_failed_run_leaves_no_spill_file() {
    let p = project(&["extract"]);
    // A log without `input` at the end: read back from disk, then refused.
    let mut logs = p.read("specs/logs.jsonl");
    logs.push_str("{\"id\": \"zz-broken\", \"output\": \"no question\", \"status\": \"SUCCESS\", \"embedding\": [1, 0, 0, 0, 0, 0, 0, 0]}\n");
    p.write("specs/logs.jsonl", &logs);
    let r = run_in_env(&p.path(""), &["run", "specs/extract.yaml"], &[("FLOW_BARRIER_MEMORY", "0"), DEBUG]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("barrier input spilled to disk"), "{}", r.stderr);
    assert!(r.stderr.contains("log `zz-broken` has no `input`"), "{}", r.stderr);
    assert_eq!(tmp_files(&p.path("specs/.flow/tmp")), Vec::<String>::new());
}

#[test]
fn a_bound_that_is_not_a_size_is_named() {
    let p = project(&["extract"]);
    let r = run_in_env(&p.path(""), &["run", "specs/extract.yaml"], &[("FLOW_BARRIER_MEMORY", "lots")]);
    assert_eq!(r.code, 2, "bad input: {}", r.stderr);
    assert!(
        r.stderr.contains("FLOW_BARRIER_MEMORY=`lots` is not a size; hint: write bytes or a size such as `64MiB`"),
        "{}",
        r.stderr
    );
    // Refused before the run starts: nothing is written.
    assert!(!p.path("specs/.flow").exists(), "a workspace was made");
}
