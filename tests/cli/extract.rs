//! `extract` with the real binary: golden examples from logs by embedding
//! density. `tests/fixtures/extract/logs.jsonl` has planted clusters with
//! precomputed 8-dimensional embeddings (see `extract.yaml` for the map of
//! them); `sim.yaml` runs on the demo logs (`specs/data/logs.jsonl`), which
//! have none, so the offline `sim` backend embeds them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::common::{node, repo, Project};

/// A project with the extract fixtures under `specs/` and the demo logs
/// under `specs/data/`.
fn project() -> Project {
    let p = Project::empty();
    for entry in std::fs::read_dir(repo().join("tests/fixtures/extract")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        p.write(&format!("specs/{name}"), &std::fs::read_to_string(&path).unwrap());
    }
    p.write("specs/data/logs.jsonl", &std::fs::read_to_string(repo().join("specs/data/logs.jsonl")).unwrap());
    p
}

/// The latest output of `node`, as JSONL text.
fn show_text(p: &Project, node: &str) -> String {
    let r = p.flow(&["show", node, "--workspace", "specs/.flow"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout
}

fn show(p: &Project, node: &str) -> Vec<Value> {
    show_text(p, node).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn ids(records: &[Value]) -> Vec<&str> {
    records.iter().map(|r| r["id"].as_str().unwrap()).collect()
}

/// `id → status` of a log file.
fn statuses(p: &Project, file: &str) -> BTreeMap<String, String> {
    p.read(file)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|r| (r["id"].as_str().unwrap().to_string(), r["status"].as_str().unwrap().to_string()))
        .collect()
}

/// The text of a message of an example, by role.
fn message<'a>(example: &'a Value, role: &str) -> Option<&'a str> {
    example["messages"].as_array().unwrap().iter().find(|m| m["role"] == role).map(|m| m["content"].as_str().unwrap())
}

#[test]
fn steady_takes_one_centre_per_cluster_and_anomaly_the_rare_successes() {
    let p = project();
    let r = p.flow(&["run", "specs/extract.yaml"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(
            "extract (steady, ε = 0.3, top_k = 50): 3 examples from 58 logs (56 distinct, 36 successful) in 2 groups; \
             8-dimensional embeddings; written to train.jsonl"
        ),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("| billing | 45 | 43 | 24 | 2 | 11.494 … 9.663 |"), "{}", r.stdout);

    // One centre per dense cluster: not the tighter FAIL cluster, not the
    // rare successes (no neighbours), not a near-copy of a pick.
    let steady = show(&p, "steady");
    assert_eq!(ids(&steady), ["b1-07", "b2-03", "s1-04"]);
    let functions: Vec<&str> = steady.iter().map(|e| e["function"].as_str().unwrap()).collect();
    assert_eq!(functions, ["billing", "billing", "shipping"]);
    let ranks: Vec<u64> = steady.iter().map(|e| e["rank"].as_u64().unwrap()).collect();
    assert_eq!(ranks, [1, 2, 1]);
    assert_eq!(steady[0]["neighbours"], 12);
    assert_eq!(steady[0]["strategy"], "steady");
    // b2-03 has two exact copies: collapsed onto it and counted.
    assert_eq!((&steady[1]["duplicates"], &steady[1]["neighbours"]), (&2.into(), &10.into()));
    assert_eq!(steady[0]["messages"].as_array().unwrap().len(), 2, "no `system`, no system message");
    assert_eq!(message(&steady[0], "user"), Some("Why was I charged twice? (case b1-07)"));
    assert_eq!(message(&steady[0], "assistant"), Some("Answer about why was i charged twice? for case b1-07."));

    // The sparsest successes: the planted rare ones, never the lone FAILs.
    let rare = show(&p, "rare");
    assert_eq!(&ids(&rare)[..3], ["b-rare-1", "b-rare-2", "s-rare-1"]);
    assert_eq!(rare.len(), 4, "top_k: 2 per group");
    assert!(rare[..3].iter().all(|e| e["density"] == 0.0 && e["neighbours"] == 0));
    assert_eq!(message(&rare[0], "system"), Some("You are the billing assistant."));
    assert_eq!(message(&rare[2], "system"), Some("You are the shipping assistant."));

    let status = statuses(&p, "specs/logs.jsonl");
    for e in steady.iter().chain(&rare) {
        assert_eq!(status[e["id"].as_str().unwrap()], "SUCCESS", "a FAIL log was picked: {e}");
    }

    // The examples, ready for fine-tuning, in the run folder.
    let m = p.latest_run("specs/.flow");
    let run = m["run_id"].as_str().unwrap();
    let train = p.read(&format!("specs/.flow/runs/{run}/rare/train.jsonl"));
    let lines: Vec<Value> = train.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), rare.len());
    for (line, example) in lines.iter().zip(&rare) {
        assert_eq!(line.as_object().unwrap().keys().collect::<Vec<_>>(), ["messages"]);
        assert_eq!(line["messages"], example["messages"]);
    }
    let meta = &node(&m, "steady")["meta"];
    assert_eq!((&meta["records"], &meta["logs"], &meta["duplicates"]), (&58.into(), &56.into(), &2.into()));
    assert_eq!((&meta["examples"], &meta["dimensions"], &meta["successful"]), (&3.into(), &8.into(), &36.into()));
    let calls = &node(&m, "steady")["calls"];
    assert_eq!(calls["requests"].as_u64().unwrap_or(0), 0, "no backend, no call: {calls}");
}

#[test]
fn results_are_identical_across_runs_and_input_orders() {
    let p = project();
    assert_eq!(p.flow(&["run", "specs/extract.yaml"]).code, 0);
    let (steady, rare) = (show_text(&p, "steady"), show_text(&p, "rare"));
    let again = p.flow(&["run", "specs/extract.yaml", "--no-cache"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(node(&p.latest_run("specs/.flow"), "steady")["status"], "ran");
    assert_eq!((show_text(&p, "steady"), show_text(&p, "rare")), (steady.clone(), rare.clone()));

    // The same logs in reverse order give the same examples.
    let q = project();
    let logs = p.read("specs/logs.jsonl");
    let reversed: Vec<&str> = logs.lines().rev().collect();
    q.write("specs/logs.jsonl", &(reversed.join("\n") + "\n"));
    assert_eq!(q.flow(&["run", "specs/extract.yaml"]).code, 0);
    assert_eq!((show_text(&q, "steady"), show_text(&q, "rare")), (steady, rare));
}

/// The first line of `flow plan`: `...; N backend calls (M memoized)`:
/// the calls it expects sent, and answered by the memo.
fn planned_calls(p: &Project, args: &[&str]) -> (u64, u64) {
    let mut all = vec!["plan", "specs/sim.yaml"];
    all.extend_from_slice(args);
    let r = p.flow(&all);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = r.stdout.lines().next().unwrap().to_string();
    let calls = first.rsplit("; ").next().unwrap();
    let number = |s: &str| s.parse().unwrap_or_else(|_| panic!("no call count in {first}"));
    let sent = number(calls.split(' ').next().unwrap());
    let memoized = calls.split_once(" (").map_or(0, |(_, m)| number(m.split(' ').next().unwrap()));
    (sent, memoized)
}

#[test]
fn missing_embeddings_come_from_the_backend_and_are_memoized() {
    let p = project();
    // Both extract nodes embed the same 143 distinct logs: the second
    // node's calls are the first's, answered by the memo.
    let (planned, memoized) = planned_calls(&p, &[]);
    assert!(planned >= 1 && memoized == planned, "{planned} sent, {memoized} memoized");
    let m = p.run_ok(&["specs/sim.yaml"]);
    let count =
        |field: &str| -> u64 { ["steady", "rare"].iter().map(|n| node(&m, n)["calls"][field].as_u64().unwrap()).sum() };
    assert_eq!(count("requests"), planned, "the plan named the calls the run sent");
    assert_eq!(count("memo_hits"), memoized, "and those the memo answered");

    // The demo logs have visible clusters: one or two everyday request
    // types per function, each its own steady example.
    let steady = show(&p, "steady");
    let per_function: BTreeMap<&str, usize> = steady.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e["function"].as_str().unwrap()).or_default() += 1;
        m
    });
    assert_eq!(per_function.len(), 5, "{per_function:?}");
    assert!(per_function.values().all(|&n| (1..=2).contains(&n)), "{per_function:?}");
    // And one planted rare success per function.
    let rare = show(&p, "rare");
    let planted = ["box was empty", "authenticator app", "twice with two different cards", "VAT number", "passed away"];
    let found: BTreeSet<&str> =
        rare.iter().filter_map(|e| planted.iter().copied().find(|t| message(e, "user").unwrap().contains(t))).collect();
    assert_eq!(found.len(), planted.len(), "{rare:#?}");
    let status = statuses(&p, "specs/data/logs.jsonl");
    for e in steady.iter().chain(&rare) {
        assert_eq!(status[e["id"].as_str().unwrap()], "SUCCESS", "a FAIL log was picked: {e}");
    }

    // Fewer examples: the node runs again, the embeddings come from the memo.
    assert_eq!(planned_calls(&p, &["--set", "top_k=1"]).0, 0);
    let m = p.run_ok(&["specs/sim.yaml", "--set", "top_k=1"]);
    let calls = &node(&m, "steady")["calls"];
    assert_eq!((&node(&m, "steady")["status"], &calls["requests"]), (&"ran".into(), &0.into()), "{calls}");
    assert!(calls["memo_hits"].as_u64().unwrap() >= 1, "{calls}");
    let top: Vec<Value> = show(&p, "steady");
    assert_eq!(top.len(), 5);
    for e in &top {
        let before = steady.iter().find(|s| s["function"] == e["function"] && s["rank"] == 1).unwrap();
        assert_eq!(e, before, "the densest pick of each function stays");
    }
}

#[test]
fn embeddings_of_different_dimensions_fail_the_node_naming_the_logs() {
    let p = project();
    let mut logs = p.read("specs/logs.jsonl");
    logs.push_str(r#"{"id": "z-new", "function": "billing", "input": "new", "output": "log", "status": "SUCCESS"}"#);
    logs.push('\n');
    p.write("specs/logs.jsonl", &logs);
    p.write(
        "specs/mixed.yaml",
        "flow: 1\nbackends: {embedder: {provider: sim}}\nnodes:\n  logs: {kind: load, path: logs.jsonl}\n  \
         steady: {kind: extract, input: logs, backend: embedder, dimensions: 16}\n",
    );
    let r = p.flow(&["run", "specs/mixed.yaml"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("log `z-new` has a 16-dimensional embedding, but log `b-lone-fail-1` a 8-dimensional one"),
        "{}",
        r.stderr
    );
}

#[test]
fn logs_without_embeddings_need_a_backend() {
    let p = project();
    p.write(
        "specs/bad.yaml",
        "flow: 1\nnodes:\n  logs: {kind: load, path: data/logs.jsonl}\n  \
         steady: {kind: extract, input: logs, epsilon: 3}\n",
    );
    let r = p.flow(&["validate", "specs/bad.yaml"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("node `steady` has no `backend` to embed logs with, and records from `logs` have no `embedding`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint: name a backend with an embeddings endpoint"), "{}", r.stderr);
    assert!(r.stderr.contains("`epsilon` must be in (0, 2], not 3"), "{}", r.stderr);
}

/// On a batch backend the logs' embeddings calls go as one batch (the
/// offline sim plays it), sent once the last is queued.
#[test]
fn logs_are_embedded_in_one_batch_on_a_batch_backend() {
    let p = Project::empty();
    // The demo logs have no `embedding`: each is embedded.
    p.write("specs/logs.jsonl", &std::fs::read_to_string(repo().join("specs/data/logs.jsonl")).unwrap());
    p.write(
        "specs/batch.yaml",
        "flow: 1\nbackends: {embedder: {provider: sim, batch: true}}\nnodes:\n  logs: {kind: load, path: logs.jsonl}\n  \
         steady: {kind: extract, input: logs, backend: embedder}\n",
    );
    let r = p.flow(&["run", "specs/batch.yaml"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let created = crate::batch::batches_created(&r.stderr);
    assert_eq!(created.len(), 1, "{created:?}");
}
