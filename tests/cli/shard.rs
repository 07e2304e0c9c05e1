//! `flow run --shard i/n`: four shard processes at once against the local
//! OpenAI-compatible server, each sending only its slice's calls, then a
//! plain run that merges: it sends nothing, its outputs are the shards'
//! records in the source's order, and the barrier runs on the whole. A
//! killed shard resumes from the shared memo; a shard started twice is
//! refused.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{node, FLOW};
use crate::llm_server::{LlmServer, ServerConfig};
use crate::openai::{assert_all_answered, calls, count, flow, project, run_ok, show, spec, KEY, SPEC};

const NODES: &str = r#"  answers:
    kind: run
    input: cases
    backend: bot
    prompt: "{{question}}"
  longer:
    kind: run
    input: cases
    backend: bot
    prompt: "Q: {{question}}"
  scores:
    kind: evaluate
    input: answers
    metrics: [{type: contains, value: "what is"}]
  scores_b:
    kind: evaluate
    input: longer
    metrics: [{type: contains, value: "what is"}]
  ab:
    kind: compare
    inputs: [scores, scores_b]
"#;

fn shard(p: &crate::common::Project, which: &str) -> std::process::Child {
    Command::new(FLOW)
        .args(["run", SPEC, "--shard", which, "--quiet"])
        .current_dir(p.dir.path())
        .env_remove("FLOW_LOG")
        .env("FLOW_TEST_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a shard")
}

/// The records a run stored for `node`.
fn records_of(p: &crate::common::Project, node: &str, run: &str) -> Vec<Value> {
    let r = flow(p, &["show", node, "--run", run], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn four_shards_then_a_merge_send_each_call_once() {
    let server = LlmServer::start(ServerConfig { latency: Duration::from_millis(20), ..Default::default() });
    let n = 80;
    let p = project(n, &spec(&server.base_url(), 4, NODES));
    let children: Vec<_> = (0..4).map(|i| shard(&p, &format!("{i}/4"))).collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "a shard failed: {stderr}");
        assert!(
            stderr.contains("5 nodes here; left to the merge (a plain `flow run` in this workspace): ab"),
            "{stderr}"
        );
    }
    assert_eq!(server.requests(), 2 * n as u64, "each case once per `run` node, over the four shards");
    let mut distinct: Vec<String> = server.bodies().iter().map(|b| b["messages"].to_string()).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 2 * n, "no call made twice");

    // The shards' runs, and their slices: disjoint, together every case.
    let runs = flow(&p, &["runs"], &[]).stdout;
    let ids: Vec<String> = runs
        .lines()
        .filter(|l| l.contains("(shard "))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 4, "{runs}");
    let mut by_id = std::collections::BTreeMap::new();
    for run in &ids {
        for r in records_of(&p, "answers", run) {
            assert!(
                by_id.insert(r["id"].as_str().unwrap().to_string(), r.clone()).is_none(),
                "a case in two shards: {r}"
            );
        }
    }
    assert_eq!(by_id.len(), n);

    // The merge: nothing sent, every record as its shard answered it, in
    // the cases' order; the comparison runs on all of them.
    server.reset_counters();
    let m = run_ok(&p, &[]);
    assert_eq!(server.requests(), 0);
    assert_eq!((count(&calls(&m, "answers"), "requests"), count(&calls(&m, "answers"), "memo_hits")), (0, n as u64));
    let merged = show(&p, "answers");
    assert_all_answered(&merged, n);
    for r in &merged {
        assert_eq!(r, &by_id[r["id"].as_str().unwrap()], "the merged record is the shard's, byte for byte");
    }
    assert_eq!(node(&m, "ab")["status"], "ran");
    assert_eq!(node(&m, "ab")["records_out"], 1);
    // A run of the whole in one process writes the same bytes.
    let again = run_ok(&p, &["--rerun", "answers", "--rerun", "scores"]);
    assert_eq!(node(&again, "answers")["output"], node(&m, "answers")["output"]);
    assert_eq!(node(&again, "scores")["output"], node(&m, "scores")["output"]);
}

#[test]
fn a_killed_shard_resumes_and_a_shard_runs_once_at_a_time() {
    let server = LlmServer::start(ServerConfig { latency: Duration::from_millis(80), ..Default::default() });
    let n = 60;
    let p = project(n, &spec(&server.base_url(), 2, crate::openai::ANSWERS));
    let mut first = shard(&p, "0/2");
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.successes() < 6 {
        assert!(Instant::now() < deadline, "only {} calls in 20 s", server.successes());
        assert!(first.try_wait().unwrap().is_none(), "the shard ended before it was killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The same shard again while it runs: refused, nothing sent.
    let twice = flow(&p, &["run", SPEC, "--shard", "0/2"], &[]);
    assert_eq!(twice.code, 1, "{}", twice.stderr);
    assert!(twice.stderr.contains("is already being run"), "{}", twice.stderr);
    std::thread::sleep(Duration::from_millis(300));
    first.kill().unwrap();
    first.wait().unwrap();
    let before = server.successes();
    server.reset_counters();
    let r = flow(&p, &["run", SPEC, "--shard", "0/2"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let resumed = server.requests();
    let slice = records_of(&p, "answers", "latest").len() as u64;
    assert!(slice > 0 && slice < n as u64, "{slice}");
    // What was answered 0.3 s before the kill is not asked again.
    assert!(
        resumed <= slice - before.min(slice) + 2 + 2 * 4,
        "{resumed} calls to finish a slice of {slice} after {before} answered"
    );
    server.reset_counters();
    assert_eq!(flow(&p, &["run", SPEC, "--shard", "1/2"], &[]).code, 0);
    assert_eq!(server.requests(), n as u64 - slice, "the other shard sends the rest");
    server.reset_counters();
    run_ok(&p, &[]);
    assert_eq!(server.requests(), 0, "the merge sends nothing");
    // A shard that is not one: bad input.
    let bad = flow(&p, &["run", SPEC, "--shard", "2/2"], &[]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("`2/2` is not a shard; write `i/n` with 0 ≤ i < n"), "{}", bad.stderr);
}

/// Shards that ran on other machines, each in a workspace of its own (a CI
/// matrix job's, uploaded as an artifact): `flow cache import` adds their
/// memos to the merge's workspace, and the merge sends nothing.
#[test]
fn shards_from_other_workspaces_merge_after_an_import() {
    let server = LlmServer::start(ServerConfig::default());
    let n = 30;
    let p = project(n, &spec(&server.base_url(), 4, crate::openai::ANSWERS));
    for i in 0..3 {
        let ws = format!("shard-{i}/.flow");
        let r = flow(&p, &["run", SPEC, "--shard", &format!("{i}/3"), "--workspace", &ws], &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    assert_eq!(server.requests(), n as u64);
    let r = flow(
        &p,
        &["cache", "import", "shard-0/.flow", "shard-1/.flow", "shard-2/.flow", "--workspace", "specs/.flow"],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let added: u64 =
        r.stdout.lines().filter_map(|l| l.split(", ").nth(1)?.split(' ').next()?.parse::<u64>().ok()).sum();
    assert_eq!(added, n as u64, "{}", r.stdout);
    server.reset_counters();
    let m = run_ok(&p, &[]);
    assert_eq!(server.requests(), 0, "the merge sends nothing");
    assert_eq!(count(&calls(&m, "answers"), "memo_hits"), n as u64);
    let shown = flow(&p, &["show", "answers", "--spec", SPEC], &[]);
    let records: Vec<Value> = shown.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_all_answered(&records, n);
    // Again: nothing new; a folder without a memo is bad input.
    let r = flow(&p, &["cache", "import", "shard-0/.flow", "--workspace", "specs/.flow"], &[]);
    assert!(r.stdout.contains(", 0 new here"), "{}", r.stdout);
    let r = flow(&p, &["cache", "import", "nowhere", "--workspace", "specs/.flow"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no call memo at nowhere"), "{}", r.stderr);
}
