//! What the tests against the local OpenAI-compatible server share: a
//! project with `n` cases and a spec whose `bot` backend is that server,
//! `flow` run with the test key, and readers of what a run stored.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{node, run_in_env, Project, Run, FLOW};

/// The key every test hands `flow` through `FLOW_TEST_KEY`.
pub(crate) const KEY: &str = "sk-test-key-0001";

/// The spec's path inside a test project.
pub(crate) const SPEC: &str = "specs/t.yaml";

/// The default `run` node: one call per case.
pub(crate) const ANSWERS: &str =
    "  answers:\n    kind: run\n    input: cases\n    backend: bot\n    prompt: \"{{question}}\"\n";

/// A spec with the `bot` backend at `url` (at most `cap` calls in flight),
/// a `cases` load node, and `nodes` (YAML indented by two spaces).
pub(crate) fn spec(url: &str, cap: u32, nodes: &str) -> String {
    spec_with_retry(url, cap, nodes, "{max_retries: 8, initial_delay: 10ms, max_delay: 200ms}")
}

/// [`spec`] with the backend's `retry:` settings.
pub(crate) fn spec_with_retry(url: &str, cap: u32, nodes: &str, retry: &str) -> String {
    format!(
        "flow: 1
name: t
backends:
  bot:
    provider: openai
    base_url: {url}
    model: test-model
    api_key_env: FLOW_TEST_KEY
    temperature: 0
    max_tokens: 64
    max_concurrency: {cap}
    timeout: 10s
    retry: {retry}
nodes:
  cases: {{kind: load, path: data/cases.jsonl}}
{nodes}"
    )
}

/// JSONL cases `c{from}` .. `c{to - 1}`.
pub(crate) fn cases(from: usize, to: usize) -> String {
    (from..to)
        .map(|i| format!("{{\"id\": \"c{i}\", \"question\": \"what is {i}+1?\", \"expected\": \"{}\"}}\n", i + 1))
        .collect()
}

/// A project with `n` cases and `spec` at [`SPEC`].
pub(crate) fn project(n: usize, spec: &str) -> Project {
    let p = Project::empty();
    p.write("specs/data/cases.jsonl", &cases(0, n));
    p.write(SPEC, spec);
    p
}

/// Runs `flow` in `p` with the test key (and `extra` variables).
pub(crate) fn flow(p: &Project, args: &[&str], extra: &[(&str, &str)]) -> Run {
    let mut envs = vec![("FLOW_TEST_KEY", KEY)];
    envs.extend_from_slice(extra);
    run_in_env(p.dir.path(), args, &envs)
}

/// `flow run SPEC` started in `p` with the test key, its output dropped and
/// its standard error to `stderr`: for tests that kill it or wait on it.
pub(crate) fn spawn_run(p: &Project, stderr: Stdio) -> std::process::Child {
    Command::new(FLOW)
        .args(["run", SPEC])
        .current_dir(p.dir.path())
        .env_remove("FLOW_LOG")
        .env("FLOW_TEST_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn flow")
}

/// `flow run SPEC args..` that must succeed; returns its run manifest.
pub(crate) fn run_ok(p: &Project, args: &[&str]) -> Value {
    let mut all = vec!["run", SPEC];
    all.extend_from_slice(args);
    let r = flow(p, &all, &[]);
    assert_eq!(r.code, 0, "flow {all:?} failed:\n{}{}", r.stdout, r.stderr);
    p.latest_run("specs/.flow")
}

/// A node's latest output records, through `flow show`.
pub(crate) fn show(p: &Project, name: &str) -> Vec<Value> {
    let r = flow(p, &["show", name], &[]);
    assert_eq!(r.code, 0, "flow show {name}: {}", r.stderr);
    r.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// A node's `calls` in a run manifest, as integers, for the counters named.
pub(crate) fn calls(manifest: &Value, name: &str) -> Value {
    let c = &node(manifest, name)["calls"];
    assert!(c.is_object(), "node {name} has no `calls` in the manifest: {}", node(manifest, name));
    c.clone()
}

pub(crate) fn count(calls: &Value, field: &str) -> u64 {
    calls[field].as_u64().unwrap_or_else(|| panic!("calls.{field} is not a count: {calls}"))
}

/// Every record answered, in input order `c0, c1, ..`, with no error.
pub(crate) fn assert_all_answered(records: &[Value], n: usize) {
    assert_eq!(records.len(), n, "record count");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["id"], format!("c{i}"), "records out of input order at {i}: {r}");
        assert!(r["error"].is_null(), "record {i} has an error: {r}");
        assert_eq!(r["output"], format!("echo: what is {i}+1?"), "record {i}: {r}");
    }
}
