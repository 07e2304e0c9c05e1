//! `generate` against a real HTTP backend that answers some calls with
//! invalid JSON, some with cases that break the schema and some with
//! duplicates: the node still yields exactly `count` valid unique cases,
//! counts what it dropped, and repeats no call on a rerun or a larger count.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::common::{node, run_in_env, Project};
use crate::llm_server::{LlmServer, ReplyFn, ServerConfig};

const KEY: &str = "sk-test-generate";

/// The batch number a generate prompt names: `(batch 7)`.
fn batch(body: &Value) -> u64 {
    let prompt =
        body["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect::<String>();
    let after = prompt.split("(batch ").nth(1).expect("a batch number");
    after.split(')').next().unwrap().parse().unwrap()
}

/// Answers by batch: every 5th (from 1) is not JSON, every 5th (from 2)
/// has one case missing `expected` and one with a number for `question`,
/// every 5th (from 3) repeats batch 0's cases; the others are new cases.
fn reply(body: &Value) -> String {
    let n = batch(body);
    let case = |b: u64, i: u64| json!({"question": format!("question {b}-{i}: what is {b} times {i}?"), "expected": format!("{}", b * i)});
    match n % 5 {
        1 => "Sure! Here are some cases: question, answer".to_string(),
        2 => json!({"cases": [case(n, 0), {"question": "no answer here"}, {"question": 42, "expected": "x"}]})
            .to_string(),
        3 => json!({"cases": [case(0, 0), case(0, 1)]}).to_string(),
        _ => json!({"cases": [case(n, 0), case(n, 1), case(n, 2)]}).to_string(),
    }
}

fn server() -> LlmServer {
    LlmServer::start(ServerConfig {
        api_key: Some(KEY.into()),
        reply: Some(ReplyFn(Arc::new(reply))),
        ..ServerConfig::default()
    })
}

fn spec(url: &str, count: u64) -> String {
    format!(
        "flow: 1
name: g
backends:
  writer:
    provider: openai
    base_url: {url}
    model: writer-model
    api_key_env: FLOW_TEST_KEY
    temperature: 0.8
    max_concurrency: 4
    retry: {{max_retries: 2, initial_delay: 10ms, max_delay: 50ms}}
nodes:
  seeds: {{kind: load, path: data/seeds.jsonl}}
  cases:
    kind: generate
    input: seeds
    backend: writer
    count: {count}
    per_call: 3
    instructions: Questions for a calculator bot.
    schema:
      question: {{type: string, description: the question}}
      expected: {{type: string, description: the exact answer}}
    dedup: {{fields: [question], threshold: 0.99}}
"
    )
}

fn project(url: &str, count: u64) -> Project {
    let p = Project::empty();
    p.write("specs/data/seeds.jsonl", "{\"id\": \"s1\", \"question\": \"what is 2 times 3?\", \"expected\": \"6\"}\n");
    p.write("specs/g.yaml", &spec(url, count));
    p
}

fn run(p: &Project) -> serde_json::Value {
    let r = run_in_env(p.dir.path(), &["run", "specs/g.yaml"], &[("FLOW_TEST_KEY", KEY)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    p.latest_run("specs/.flow")
}

fn cases(p: &Project) -> Vec<Value> {
    let r = run_in_env(p.dir.path(), &["show", "cases", "--workspace", "specs/.flow"], &[]);
    r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn yields_exactly_count_valid_unique_cases_and_counts_the_rest() {
    let s = server();
    let p = project(&s.base_url(), 20);
    let m = run(&p);
    let out = cases(&p);
    assert_eq!(out.len(), 20);
    let questions: BTreeSet<&str> = out.iter().map(|c| c["question"].as_str().unwrap()).collect();
    assert_eq!(questions.len(), 20, "duplicates passed through");
    for c in &out {
        assert!(c["question"].is_string() && c["expected"].is_string(), "invalid case passed: {c}");
        assert!(c["id"].as_str().unwrap().starts_with("gen-"));
        assert_eq!(c["provenance"]["model"], "writer-model");
        assert_eq!(c["provenance"]["seeds"], json!(["s1"]));
    }
    let meta = &node(&m, "cases")["meta"];
    assert_eq!(meta["cases"], 20);
    assert!(meta["unparsable"].as_u64().unwrap() >= 1, "{meta}");
    assert!(meta["invalid"].as_u64().unwrap() >= 2, "{meta}");
    assert!(meta["duplicates"].as_u64().unwrap() >= 2, "{meta}");
    // Every call is a request; an unparsable answer was asked twice more.
    let calls = &node(&m, "cases")["calls"];
    assert_eq!(calls["requests"].as_u64().unwrap(), s.successes());
    // The seed is shown to the model.
    assert!(s.bodies().iter().all(|b| b.to_string().contains("what is 2 times 3?")));
}

#[test]
fn a_rerun_sends_nothing_and_a_larger_count_only_new_calls() {
    let s = server();
    let p = project(&s.base_url(), 12);
    run(&p);
    let first: BTreeSet<String> = s.bodies().iter().map(Value::to_string).collect();
    let first_cases = cases(&p);
    assert!(!first.is_empty());

    s.reset_counters();
    let m = run(&p);
    assert_eq!(s.requests(), 0, "a second run sent requests");
    assert_eq!(node(&m, "cases")["status"], "cached");

    s.reset_counters();
    p.write("specs/g.yaml", &spec(&s.base_url(), 30));
    let plan = run_in_env(p.dir.path(), &["plan", "specs/g.yaml"], &[]);
    assert!(plan.stdout.contains("config changed: count"), "{}", plan.stdout);
    // The plan knows the first calls are memoized.
    assert!(plan.stdout.contains("memoized)"), "{}", plan.stdout);
    let m = run(&p);
    let second: Vec<String> = s.bodies().iter().map(Value::to_string).collect();
    assert!(!second.is_empty(), "more cases need more calls");
    assert!(second.iter().all(|b| !first.contains(b)), "a call of the first run was sent again");
    let more = cases(&p);
    assert_eq!(more.len(), 30);
    assert_eq!(&more[..12], &first_cases[..], "the first 12 cases are the same, in the same order");
    assert!(node(&m, "cases")["calls"]["memo_hits"].as_u64().unwrap() > 0);
}

#[test]
fn a_spent_budget_says_how_far_it_got() {
    let s = server();
    let p = project(&s.base_url(), 40);
    p.write(
        "specs/g.yaml",
        &spec(&s.base_url(), 40).replace("    per_call: 3\n", "    per_call: 3\n    max_calls: 4\n"),
    );
    let r = run_in_env(p.dir.path(), &["run", "specs/g.yaml"], &[("FLOW_TEST_KEY", KEY)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("valid unique cases in 4 calls (`max_calls` 4)"), "{}", r.stderr);
    assert!(r.stderr.contains("raise `max_calls`"), "{}", r.stderr);
}
