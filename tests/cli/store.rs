//! `--store s3://...`: a shared store in a real S3-compatible server (moto)
//! behind each workspace. Four shards on four workspaces (four machines, as
//! far as flow can tell) and a merge on a fifth: every call is made once
//! (the LLM server's count), the merge sends nothing and writes what one
//! process writes (the shards' answers, byte for byte: tests/cli/shard.rs); shards started twice at once both succeed from the
//! bucket; no credential reaches a file, the bucket or an output.

use std::process::{Command, Stdio};

use crate::common::{assert_in_no_file, files_under, holds, node, Project, FLOW};
use crate::llm_server::{LlmServer, ServerConfig};
use crate::openai::{project, spec, ANSWERS, KEY, SPEC};
use crate::s3::{BUCKET, S3, SECRET_KEY};

const STORE: &str = "s3://flow-test/team/evals";

/// `flow run SPEC` in its own workspace `ws` against the bucket, started.
fn start(p: &Project, s3: &S3, ws: &str, extra: &[&str]) -> std::process::Child {
    let mut c = Command::new(FLOW);
    c.args(["run", SPEC, "--quiet", "--workspace", ws, "--store", STORE])
        .args(extra)
        .current_dir(p.dir.path())
        .env_remove("FLOW_LOG")
        .env("FLOW_TEST_KEY", KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in s3.env() {
        c.env(k, v);
    }
    c.spawn().expect("spawn flow")
}

fn finish(child: std::process::Child) -> String {
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "a run failed: {text}");
    text
}

/// The records `node` stored in workspace `ws`, as written.
fn output(p: &Project, ws: &str, name: &str) -> String {
    let r = crate::common::run_in(p.dir.path(), &["show", name, "--workspace", ws, "--limit", "100000"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout
}

#[test]
fn shards_on_four_workspaces_share_one_bucket_and_a_fifth_merges() {
    let Some(s3) = S3::start() else { return };
    let server = LlmServer::start(ServerConfig::default());
    let n = 40;
    let nodes = format!("{ANSWERS}  scores:\n    kind: evaluate\n    input: answers\n    metrics: [{{type: contains, value: \"what is\"}}]\n");
    let p = project(n, &spec(&server.base_url(), 4, &nodes));

    let shards: Vec<_> = (0..4).map(|i| start(&p, &s3, &format!("ws{i}"), &["--shard", &format!("{i}/4")])).collect();
    let mut printed = String::new();
    for child in shards {
        printed.push_str(&finish(child));
    }
    assert_eq!(server.requests(), n as u64, "each case once over the four shards");

    // The merge, on a machine of its own: answered from the bucket.
    printed.push_str(&finish(start(&p, &s3, "merge", &[])));
    assert_eq!(server.requests(), n as u64, "the merge sent nothing");
    let m = p.latest_run("merge");
    assert_eq!(node(&m, "answers")["calls"]["memo_hits"], n as u64, "{m}");

    // A second merge elsewhere finds the merged nodes in the bucket.
    printed.push_str(&finish(start(&p, &s3, "again", &[])));
    let again = p.latest_run("again");
    assert_eq!(node(&again, "scores")["status"], "cached", "{again}");
    assert_eq!(output(&p, "again", "scores"), output(&p, "merge", "scores"));

    // One process, no bucket, its own server: the same records, but for
    // the latency each server measured.
    let alone = LlmServer::start(ServerConfig::default());
    let q = project(n, &spec(&alone.base_url(), 4, &nodes));
    let r = crate::common::run_in_env(q.dir.path(), &["run", SPEC, "--workspace", "merge"], &[("FLOW_TEST_KEY", KEY)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let timeless = |text: String| -> Vec<serde_json::Value> {
        let mut records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        for r in &mut records {
            r.as_object_mut().unwrap().remove("latency_ms");
        }
        records
    };
    for name in ["answers", "scores"] {
        let (one, merged) = (timeless(output(&q, "merge", name)), timeless(output(&p, "merge", name)));
        assert_eq!(one.len(), n);
        assert!(one == merged, "`{name}` differs from one process's");
    }

    // The same shard twice at once, on two fresh machines: both end well,
    // from the bucket, and send nothing.
    let twins: Vec<_> = ["twin-a", "twin-b"].iter().map(|ws| start(&p, &s3, ws, &["--shard", "1/4"])).collect();
    for child in twins {
        printed.push_str(&finish(child));
    }
    assert_eq!(server.requests(), n as u64);

    // No credential anywhere: workspaces, bucket, what was printed.
    let all = files_under(p.dir.path());
    let objects = s3.objects();
    for secret in [SECRET_KEY, KEY] {
        assert!(!printed.contains(secret), "printed: {secret}");
        assert_in_no_file(&all, secret);
        for (key, bytes) in &objects {
            assert!(!holds(bytes, secret), "{BUCKET}/{key} holds {secret}");
        }
    }
    assert!(objects.iter().any(|(k, _)| k.starts_with("team/evals/memo/")), "no memo segment in the bucket");
}

#[test]
fn a_store_that_is_not_s3_is_a_usage_error() {
    let p = project(2, &spec("http://127.0.0.1:9/v1", 1, ANSWERS));
    let r = crate::common::run_in(p.dir.path(), &["run", SPEC, "--store", "gs://bucket/x"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("only s3:// stores are supported"), "{}", r.stderr);
    assert!(!p.path("specs/.flow").exists(), "something was written");
}

/// An output past a part's size goes up to the bucket in parts and comes
/// back whole, checked against its hash, on another machine.
#[test]
fn a_large_output_goes_up_in_parts_and_comes_back_whole() {
    let Some(s3) = S3::start() else { return };
    let p = Project::empty();
    // About 12 MiB of records: more than one 8 MiB part.
    let filler = "x".repeat(500);
    let cases: String = (0..24_000).map(|i| format!("{{\"id\": \"c{i}\", \"text\": \"{i} {filler}\"}}\n")).collect();
    assert!(cases.len() > 8 * 1024 * 1024 + 1024 * 1024, "{}", cases.len());
    p.write("specs/data/cases.jsonl", &cases);
    p.write(SPEC, "flow: 1\nname: big\nnodes:\n  cases: {kind: load, path: data/cases.jsonl}\n");
    finish(start(&p, &s3, "first", &[]));
    let written = output(&p, "first", "cases");
    assert!(written.len() > 8 * 1024 * 1024, "{}", written.len());
    assert!(
        s3.objects().iter().any(|(_, bytes)| *bytes == written.as_bytes()),
        "the output is not in the bucket whole"
    );

    // Another machine: the node is cached from the bucket, whole.
    finish(start(&p, &s3, "second", &[]));
    let m = p.latest_run("second");
    assert_eq!(node(&m, "cases")["status"], "cached", "{m}");
    assert!(output(&p, "second", "cases") == written, "the output came back different");
}
