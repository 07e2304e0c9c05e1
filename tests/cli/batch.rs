//! `batch:` backends against the test server's batch APIs (OpenAI's files
//! and batches, Anthropic's message batches): what the server counted — one
//! upload and one batch for a whole node, the same batch after a SIGKILL,
//! exactly the unanswered requests after an expiry — and what the records
//! and the manifest say (errors, batch prices).

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::Project;
use crate::llm_server::{BatchScript, LlmServer, ReplyFn, ServerConfig};
use crate::openai::{assert_all_answered, calls, cases, count, flow, project, run_ok, show, spawn_run, SPEC};

/// A spec whose `bot` backend is the server's OpenAI API with `batch:`
/// (polled every 20 ms), priced at $2/$8 per million tokens live.
fn batch_spec(url: &str, provider: &str, max_errors: &str) -> String {
    let base = if provider == "anthropic" { url.trim_end_matches("/v1").to_string() } else { url.to_string() };
    format!(
        "flow: 1
name: t
prices:
  test-model: {{input: 2.0, output: 8.0}}
backends:
  bot:
    provider: {provider}
    base_url: {base}
    model: test-model
    api_key_env: FLOW_TEST_KEY
    temperature: 0
    max_tokens: 64
    retry: {{max_retries: 3, initial_delay: 10ms, max_delay: 100ms}}
    batch: {{poll: 20ms}}
nodes:
  cases: {{kind: load, path: data/cases.jsonl}}
  answers:
    kind: run
    input: cases
    backend: bot
    prompt: \"{{{{question}}}}\"
    max_errors: {max_errors}
"
    )
}

fn server(batch: BatchScript) -> LlmServer {
    LlmServer::start(ServerConfig { batch, ..Default::default() })
}

/// The lines a run printed for each batch it created.
pub(crate) fn batches_created(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(" created with ")).collect()
}

/// Half of $2/$8 per million: what a record's tokens cost in a batch.
fn batch_cost(r: &Value) -> f64 {
    let u = &r["usage"];
    (u["prompt_tokens"].as_f64().unwrap() * 1.0 + u["completion_tokens"].as_f64().unwrap() * 4.0) / 1e6
}

#[test]
fn a_node_of_500_cases_is_one_upload_and_one_batch_at_batch_prices() {
    let s = server(BatchScript::default());
    let p = project(500, &batch_spec(&s.base_url(), "openai", "0"));
    let plan = flow(&p, &["plan", SPEC], &[]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains("batch API: $1/$4 per million input/output tokens (half the live price)"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("results within 24 h"), "{}", plan.stdout);
    assert!(plan.stdout.contains("batch requests expected: 500"), "{}", plan.stdout);

    let r = flow(&p, &["run", SPEC], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for state in ["created with 500 requests", "in_progress", "finalizing", "completed: 500 answered"] {
        assert!(r.stderr.contains(state), "no `{state}` in:\n{}", r.stderr);
    }
    assert_eq!(s.route_count("POST /v1/files"), 1);
    assert_eq!(s.route_count("POST /v1/batches"), 1);
    assert_eq!(s.route_count("POST /v1/chat/completions"), 0);
    assert_eq!(s.batches()[0].requests.len(), 500);
    // Each custom_id is a memo key in hex.
    assert!(s.batches()[0].requests.iter().all(|(id, _)| id.len() == 64));
    let records = show(&p, "answers");
    assert_all_answered(&records, 500);
    assert_eq!(records[7]["output"], "echo: what is 7+1?");
    let mut total = 0.0;
    for r in &records {
        let cost = r["cost_usd"].as_f64().unwrap();
        assert!((cost - batch_cost(r)).abs() < 1e-12, "{r}");
        total += cost;
    }
    let m = p.latest_run("specs/.flow");
    let c = calls(&m, "answers");
    assert_eq!((count(&c, "requests"), count(&c, "memo_hits")), (500, 0), "{c}");
    let manifest_cost = c["cost_usd"].as_f64().unwrap();
    assert!((manifest_cost - total).abs() < 1e-6, "manifest ${manifest_cost}, records ${total}");

    // Again: nothing sent; rerun, every call is a memo hit.
    s.reset_counters();
    run_ok(&p, &[]);
    let m = run_ok(&p, &["--rerun", "answers"]);
    let c = calls(&m, "answers");
    assert_eq!((count(&c, "requests"), count(&c, "memo_hits")), (0, 500), "{c}");
    assert_eq!(s.requests(), 0, "a second run sends nothing");
    assert_eq!(s.batches().len(), 1);
}

#[test]
fn a_run_killed_while_it_polls_resumes_the_same_batch() {
    let s = server(BatchScript::default());
    s.hold_batches(true);
    let p = project(200, &batch_spec(&s.base_url(), "openai", "0"));
    let mut child = spawn_run(&p, Stdio::null());
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.route_count("GET /v1/batches/{id}") < 3 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("flow exited ({status}) before it polled");
        }
        assert!(Instant::now() < deadline, "no polls after 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(s.route_count("POST /v1/batches"), 1);
    s.hold_batches(false);
    let r = flow(&p, &["run", SPEC], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("was created by an earlier run"), "{}", r.stderr);
    assert_eq!(s.route_count("POST /v1/batches"), 1, "one batch in all: the killed run's");
    assert_eq!(s.route_count("POST /v1/files"), 1);
    assert_all_answered(&show(&p, "answers"), 200);
    let c = calls(&p.latest_run("specs/.flow"), "answers");
    assert_eq!(count(&c, "requests"), 200, "{c}");
}

#[test]
fn detach_leaves_the_batch_and_the_next_run_collects_it() {
    let s = server(BatchScript::default());
    s.hold_batches(true);
    let p = project(50, &batch_spec(&s.base_url(), "openai", "0"));
    let r = flow(&p, &["run", SPEC, "--detach"], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("is left at the provider (--detach)"), "{}", r.stderr);
    assert!(r.stderr.contains("note: 1 batch left at the provider"), "{}", r.stderr);
    assert_eq!(s.route_count("POST /v1/batches"), 1);
    let m = p.latest_run("specs/.flow");
    assert_eq!(m["status"], "interrupted", "{m}");
    assert!(m["error"].as_str().unwrap().contains("left with --detach"), "{m}");

    // Detached again while the batch is under way: one look, no new batch.
    let r = flow(&p, &["run", SPEC, "--detach"], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("was created by an earlier run"), "{}", r.stderr);
    assert_eq!(s.route_count("POST /v1/batches"), 1);

    // Done at the provider: a plain run collects it.
    s.hold_batches(false);
    let r = flow(&p, &["run", SPEC], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(s.route_count("POST /v1/batches"), 1, "one batch in all");
    assert_eq!(s.route_count("POST /v1/chat/completions"), 0);
    assert_all_answered(&show(&p, "answers"), 50);
}

/// A create whose answer is lost after the batch was made (a gateway's
/// 502): the retry finds the batch its input file made rather than
/// creating a second one (OpenAI takes no idempotency key for batches).
#[test]
fn a_lost_create_answer_adopts_the_batch_it_made() {
    let s = server(BatchScript { lose_first_create: true, ..BatchScript::default() });
    let p = project(50, &batch_spec(&s.base_url(), "openai", "0"));
    let r = flow(&p, &["run", SPEC], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(s.route_count("POST /v1/batches"), 1, "no second create");
    assert_eq!(s.route_count("GET /v1/batches"), 1, "the retry looked first");
    assert_eq!(s.batches().len(), 1);
    assert_all_answered(&show(&p, "answers"), 50);
}

#[test]
fn per_request_errors_become_record_errors() {
    let fail: Vec<String> = [3, 17, 42].iter().map(|i| format!("what is {i}+1?")).collect();
    let s = server(BatchScript { fail_texts: fail.clone(), ..Default::default() });
    let p = project(60, &batch_spec(&s.base_url(), "openai", "5"));
    let m = run_ok(&p, &[]);
    let records = show(&p, "answers");
    let failed: Vec<&Value> = records.iter().filter(|r| !r["error"].is_null()).collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    for r in &failed {
        let e = r["error"].as_str().unwrap();
        assert!(e.contains("HTTP 400") && e.contains("refused (injected)"), "{e}");
        assert!(fail.contains(&r["question"].as_str().unwrap().to_string()), "{r}");
    }
    let c = calls(&m, "answers");
    assert_eq!((count(&c, "requests"), count(&c, "errors")), (57, 3), "{c}");
    assert_eq!(s.route_count("POST /v1/batches"), 1);
}

#[test]
fn an_expired_batch_resubmits_exactly_its_unanswered_requests() {
    let s = server(BatchScript { expire_first: Some(120), ..Default::default() });
    let p = project(200, &batch_spec(&s.base_url(), "openai", "100%"));
    let r = flow(&p, &["run", SPEC], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("expired: 120 answered, 80 failed"), "{}", r.stderr);
    let errors = show(&p, "answers").iter().filter(|r| !r["error"].is_null()).count();
    assert_eq!(errors, 80);
    let r = flow(&p, &["run", SPEC], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let batches = s.batches();
    assert_eq!(batches.len(), 2);
    let first: Vec<&String> = batches[0].requests[120..].iter().map(|(id, _)| id).collect();
    let second: Vec<&String> = batches[1].requests.iter().map(|(id, _)| id).collect();
    assert_eq!(second, first, "the second batch holds exactly the 80 the first left unanswered");
    assert_all_answered(&show(&p, "answers"), 200);
    let c = calls(&p.latest_run("specs/.flow"), "answers");
    assert_eq!((count(&c, "requests"), count(&c, "memo_hits")), (80, 120), "{c}");
}

#[test]
fn anthropic_message_batches() {
    let s = server(BatchScript { fail_texts: vec!["what is 5+1?".into()], ..Default::default() });
    let p = project(40, &batch_spec(&s.base_url(), "anthropic", "1"));
    let m = run_ok(&p, &[]);
    assert_eq!(s.route_count("POST /v1/messages/batches"), 1);
    assert_eq!(s.route_count("POST /v1/messages"), 0);
    assert_eq!(s.route_count("GET /v1/messages/batches/{id}/results"), 1);
    let b = &s.batches()[0];
    assert_eq!(b.requests.len(), 40);
    assert_eq!(b.requests[0].1["max_tokens"], 64, "params are a Messages API body: {}", b.requests[0].1);
    let records = show(&p, "answers");
    assert_eq!(records[9]["output"], "echo: what is 9+1?");
    assert!(records[5]["error"].as_str().unwrap().contains("refused (injected)"), "{}", records[5]);
    for r in records.iter().filter(|r| r["error"].is_null()) {
        assert!((r["cost_usd"].as_f64().unwrap() - batch_cost(r)).abs() < 1e-12, "{r}");
    }
    let c = calls(&m, "answers");
    assert_eq!((count(&c, "requests"), count(&c, "errors")), (39, 1), "{c}");
}

#[test]
fn batch_on_another_provider_is_a_located_error() {
    let p = Project::empty();
    p.write("specs/data/cases.jsonl", &cases(0, 2));
    let spec = "flow: 1\nname: t\nbackends:\n  bot:\n    provider: azure\n    base_url: https://r.openai.azure.com\n    model: gpt-4o\n    batch: true\nnodes:\n  cases: {kind: load, path: data/cases.jsonl}\n";
    p.write(SPEC, spec);
    let r = flow(&p, &["validate", SPEC], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("specs/t.yaml:8:5"), "{}", r.stderr);
    assert!(r.stderr.contains("`batch` is for `provider: openai`, `anthropic` or `sim`, not `azure`"), "{}", r.stderr);
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
}

/// The shipped eval spec plays a batch offline; the plan's batch price is
/// the one the run's costs are figured at.
#[test]
fn the_eval_spec_batches_offline_on_sim() {
    let p = Project::empty();
    for f in ["specs/eval.yaml", "specs/data/cases.jsonl", "specs/metrics/brevity.py"] {
        p.write(f, &std::fs::read_to_string(crate::common::repo().join(f)).unwrap());
    }
    let plan = p.flow(&["plan", "specs/eval.yaml", "--set", "batch=true"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(plan.stdout.contains("batch API"), "{}", plan.stdout);
    let r = p.flow(&["run", "specs/eval.yaml", "--set", "batch=true"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("backend `bot`: batch batch_sim_"), "{}", r.stderr);
    assert!(r.stderr.contains("completed"), "{}", r.stderr);
}

/// With `prices:` on the sim, the plan's estimate is the run's cost, to
/// the token: the plan works out the sim's answers before it is asked,
/// batch or live.
#[test]
fn the_plans_estimate_is_the_runs_cost_on_sim() {
    for batch in [true, false] {
        let p = Project::empty();
        p.write("specs/data/cases.jsonl", &cases(0, 30));
        let spec = format!("flow: 1\nname: t\nprices:\n  sim-1: {{input: 2.0, output: 8.0}}\nbackends:\n  bot: {{provider: sim, batch: {batch}}}\nnodes:\n  cases: {{kind: load, path: data/cases.jsonl}}\n  answers: {{kind: run, input: cases, backend: bot, prompt: \"{{{{question}}}}\", repeat: 2}}\n");
        p.write(SPEC, &spec);
        let plan = p.flow(&["plan", SPEC]);
        assert_eq!(plan.code, 0, "{}", plan.stderr);
        let what = if batch { "batch requests" } else { "requests" };
        assert!(plan.stdout.contains(&format!("{what} expected: 60")), "{}", plan.stdout);
        if batch {
            assert!(plan.stdout.contains("batch API: $1/$4 per million"), "{}", plan.stdout);
        }
        let json = p.flow(&["plan", SPEC, "--format", "json"]);
        let json: Value = serde_json::from_str(&json.stdout).unwrap();
        let bot = &json["backends"]["bot"];
        assert_eq!(bot["requests"], 60, "{bot}");
        let cost = &bot["cost_usd"];
        assert_eq!(cost["exact"], true, "{bot}");
        let planned = cost["low"].as_f64().unwrap();
        assert_eq!(cost["high"].as_f64(), Some(planned), "{bot}");

        let m = p.run_ok(&[SPEC]);
        let c = calls(&m, "answers");
        let run = c["cost_usd"].as_f64().unwrap();
        assert!(run > 0.0, "{c}");
        assert!((planned - run).abs() < 1e-12, "batch: {batch}: planned ${planned}, the run ${run}");
        assert_eq!(count(&c, "prompt_tokens"), bot["tokens"]["prompt"].as_u64().unwrap(), "{c} {bot}");
        assert_eq!(count(&c, "completion_tokens"), bot["tokens"]["completion"].as_u64().unwrap(), "{c} {bot}");
        assert!(plan.stdout.contains("(the sim's own token counts)"), "{}", plan.stdout);
    }
}

/// Embeddings on a batch backend go through its batch API too, as one
/// batch at half the price: the run's cost is the plan's.
#[test]
fn embeddings_on_a_batch_backend_go_as_one_batch_at_the_batch_price() {
    let p = Project::empty();
    p.write("specs/data/cases.jsonl", &cases(0, 20));
    p.write(SPEC, "flow: 1\nname: t\nprices:\n  emb-1: {input: 2.0, output: 0.0}\nbackends:\n  emb: {provider: sim, model: emb-1, batch: true}\nnodes:\n  cases: {kind: load, path: data/cases.jsonl}\n  scores:\n    kind: evaluate\n    input: cases\n    metrics: [{type: embedding_similarity, backend: emb, field: question, expected: '{{expected}}'}]\n");
    let json = p.flow(&["plan", SPEC, "--format", "json"]);
    let json: Value = serde_json::from_str(&json.stdout).unwrap();
    let planned = json["backends"]["emb"]["cost_usd"]["low"].as_f64().unwrap();
    let r = p.flow(&["run", SPEC]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let created = batches_created(&r.stderr);
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(created[0].contains("created with 20 requests"), "{created:?}");
    let c = calls(&p.latest_run("specs/.flow"), "scores");
    let half = count(&c, "prompt_tokens") as f64 * 1.0 / 1e6;
    assert!(half > 0.0, "{c}");
    assert!((c["cost_usd"].as_f64().unwrap() - half).abs() < 1e-12, "the run: {c}");
    assert!((planned - half).abs() < 1e-12, "the plan: ${planned}, the batch price ${half}");
}

/// Against OpenAI's batch API: an `embedding_similarity` metric's calls go
/// as one batch to `/v1/embeddings`, none live.
#[test]
fn openai_embeddings_go_as_one_batch() {
    let s = server(BatchScript::default());
    let spec = format!(
        "flow: 1\nname: t\nbackends:\n  emb:\n    provider: openai\n    base_url: {}\n    model: embed-model\n    api_key_env: FLOW_TEST_KEY\n    batch: {{poll: 20ms}}\nnodes:\n  cases: {{kind: load, path: data/cases.jsonl}}\n  scores:\n    kind: evaluate\n    input: cases\n    metrics: [{{type: embedding_similarity, backend: emb, field: question, expected: '{{{{expected}}}}'}}]\n",
        s.base_url()
    );
    let p = project(300, &spec);
    let r = flow(&p, &["run", SPEC], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(s.route_count("POST /v1/embeddings"), 0, "no live call");
    let batches = s.batches();
    assert_eq!(batches.len(), 1);
    assert_eq!((batches[0].endpoint.as_str(), batches[0].requests.len()), ("/v1/embeddings", 300));
    let scored = show(&p, "scores");
    assert_eq!(scored.len(), 300);
    assert!(scored.iter().all(|r| r["scores"]["embedding_similarity"]["score"].is_number()), "{}", scored[0]);
}

/// A batch's news goes where the run's display goes: lines on standard
/// error, `note` events with `--json` (and in the run's event log), nothing
/// with `--quiet`.
#[test]
fn batch_news_follows_the_display() {
    let p = Project::empty();
    p.write("specs/data/cases.jsonl", &cases(0, 10));
    p.write(SPEC, "flow: 1\nname: t\nbackends:\n  bot: {provider: sim, batch: true}\nnodes:\n  cases: {kind: load, path: data/cases.jsonl}\n  answers: {kind: run, input: cases, backend: bot, prompt: \"{{question}}\"}\n");
    let plain = p.flow(&["run", SPEC]);
    assert!(plain.stderr.contains("created with 10 requests"), "{}", plain.stderr);
    let json = p.flow(&["run", SPEC, "--json", "--no-cache"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    assert!(!json.stderr.contains("batch"), "{}", json.stderr);
    let notes: Vec<Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "note")
        .collect();
    assert!(notes.iter().any(|n| n["text"].as_str().unwrap().contains("created with 10 requests")), "{notes:?}");
    let m = p.latest_run("specs/.flow");
    let log = std::fs::read_to_string(
        p.dir.path().join("specs/.flow/runs").join(m["run_id"].as_str().unwrap()).join("events.jsonl"),
    )
    .unwrap();
    assert!(log.contains("\"event\":\"note\""), "{log}");
    let quiet = p.flow(&["run", SPEC, "--quiet", "--no-cache"]);
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    assert!(!quiet.stderr.contains("batch"), "{}", quiet.stderr);
}

/// On `sim` the plan works out the answers a `run` will make, so it
/// prices the judge that grades them too: the whole run's cost, to the
/// token, before it runs (a repeated judge prompt counted once, as the
/// memo answers it).
#[test]
fn the_plan_prices_a_judge_after_a_run_on_sim() {
    let p = Project::empty();
    p.write("specs/data/cases.jsonl", &cases(0, 30));
    p.write(SPEC, "flow: 1\nname: t\nprices:\n  bot-1: {input: 2.0, output: 8.0}\n  judge-1: {input: 1.0, output: 4.0}\nbackends:\n  bot: {provider: sim, model: bot-1, temperature: 0}\n  judge: {provider: sim, model: judge-1, batch: true}\nnodes:\n  cases: {kind: load, path: data/cases.jsonl}\n  answers: {kind: run, input: cases, backend: bot, prompt: \"{{question}}\", repeat: 2}\n  scores:\n    kind: evaluate\n    input: answers\n    metrics: [{type: judge, backend: judge, rubric: 'The answer is {{expected}}'}]\n");
    let text = p.flow(&["plan", SPEC]);
    assert!(text.stdout.contains("cost of the run: $"), "{}", text.stdout);
    assert!(!text.stdout.contains("not priced"), "{}", text.stdout);
    let json: Value = serde_json::from_str(&p.flow(&["plan", SPEC, "--format", "json"]).stdout).unwrap();
    let m = p.run_ok(&[SPEC]);
    for (backend, node) in [("bot", "answers"), ("judge", "scores")] {
        let planned = &json["backends"][backend];
        let c = calls(&m, node);
        assert_eq!(planned["cost_usd"]["exact"], true, "{planned}");
        assert_eq!(planned["requests"].as_u64(), Some(count(&c, "requests")), "{backend}: {planned} {c}");
        let (plan, run) = (planned["cost_usd"]["low"].as_f64().unwrap(), c["cost_usd"].as_f64().unwrap());
        assert!(run > 0.0 && (plan - run).abs() < 1e-12, "{backend}: planned ${plan}, the run ${run}");
    }
}

/// Judges on a batch backend grade every record in one batch, however
/// many chunks the records come in and however many judges there are, and
/// the plan bounds their requests.
#[test]
fn a_batch_judge_grades_every_record_in_one_batch() {
    let s = server(BatchScript::default());
    let mut spec = batch_spec(&s.base_url(), "openai", "0");
    spec = spec.replace(
        "nodes:",
        &format!("  judge:\n    provider: openai\n    base_url: {}\n    model: judge-model\n    api_key_env: FLOW_TEST_KEY\n    max_tokens: 100\n    batch: {{poll: 20ms}}\nnodes:", s.base_url()),
    );
    spec.push_str("  scores:\n    kind: evaluate\n    input: answers\n    metrics:\n      - {type: judge, backend: judge, rubric: 'The answer is {{expected}}'}\n      - {type: judge, name: strict, backend: judge, rubric: 'The answer is exactly {{expected}}'}\n");
    let p = project(600, &spec);
    let plan = flow(&p, &["plan", SPEC], &[]);
    assert!(plan.stdout.contains("batch requests expected: up to 1,200"), "{}", plan.stdout);
    assert!(plan.stdout.contains("not priced: the calls of `scores`"), "{}", plan.stdout);
    let r = flow(&p, &["run", SPEC], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let batches = s.batches();
    let sizes: Vec<(String, usize)> =
        batches.iter().map(|b| (b.requests[0].1["model"].as_str().unwrap().to_string(), b.requests.len())).collect();
    assert_eq!(sizes, [("test-model".to_string(), 600), ("judge-model".to_string(), 1200)]);
    assert_eq!(s.route_count("POST /v1/chat/completions"), 0);
    let scored = show(&p, "scores");
    assert_eq!(scored.len(), 600);
    for judge in ["judge", "strict"] {
        assert!(scored.iter().all(|r| r["scores"][judge]["score"] == 1.0), "{}", scored[0]);
    }
}

/// With a batch judge, `evaluate` keeps many chunks in flight; an `exec`
/// metric beside it still runs at most a process per core at once.
#[test]
fn an_exec_metric_beside_a_batch_judge_runs_a_process_per_core_at_most() {
    let p = Project::empty();
    p.write("specs/data/cases.jsonl", &cases(0, 2000));
    p.write(
        "specs/metrics/slow.py",
        "import json, sys, time, os\nlog = os.environ['RUNS_LOG']\ndef mark(what):\n    with open(log, 'a') as f:\n        f.write(f'{what} {time.monotonic_ns()}\\n')\nmark('start')\nlines = sys.stdin.readlines()\ntime.sleep(0.3)\nfor _ in lines:\n    print(1)\nmark('end')\n",
    );
    p.write(SPEC, "flow: 1\nname: t\nbackends:\n  bot: {provider: sim}\n  judge: {provider: sim, model: judge-1, batch: true}\nnodes:\n  cases: {kind: load, path: data/cases.jsonl}\n  answers: {kind: run, input: cases, backend: bot, prompt: \"{{question}}\"}\n  scores:\n    kind: evaluate\n    input: answers\n    metrics:\n      - {type: judge, backend: judge, rubric: 'The answer is {{expected}}'}\n      - {type: exec, name: slow, command: [python3, metrics/slow.py]}\n");
    let log = p.dir.path().join("runs.log");
    let r = crate::common::run_in_env(p.dir.path(), &["run", SPEC], &[("RUNS_LOG", log.to_str().unwrap())]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let mut marks: Vec<(u64, i32)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let (what, at) = l.split_once(' ').unwrap();
            (at.parse().unwrap(), if what == "start" { 1 } else { -1 })
        })
        .collect();
    // A run a chunk of at most 256 records, each started and ended.
    assert!(marks.len() >= 2 * 2000usize.div_ceil(256), "{} marks", marks.len());
    assert_eq!(marks.iter().map(|m| m.1).sum::<i32>(), 0, "a run did not end");
    marks.sort();
    let (mut now, mut most) = (0, 0);
    for (_, step) in marks {
        now += step;
        most = most.max(now);
    }
    let cores = std::thread::available_parallelism().unwrap().get() as i32;
    assert!(most <= cores, "{most} runs of the command at once on {cores} cores");
}

/// However the records come in (a `run` answered a few at a time sends
/// them on in small pieces), a batch judge holds a whole batch's worth:
/// 5,000 records, one batch.
#[test]
fn a_batch_judge_fills_its_batches_however_the_records_come() {
    let p = Project::empty();
    p.write("specs/data/cases.jsonl", &cases(0, 5_000));
    p.write(SPEC, "flow: 1\nname: t\nbackends:\n  bot: {provider: sim, sim: {latency: 1ms}, max_concurrency: 8}\n  judge: {provider: sim, model: judge-1, batch: {max_requests: 5000}}\nnodes:\n  cases: {kind: load, path: data/cases.jsonl}\n  answers: {kind: run, input: cases, backend: bot, prompt: \"{{question}}\"}\n  scores:\n    kind: evaluate\n    input: answers\n    metrics: [{type: judge, backend: judge, rubric: 'The answer is {{expected}}'}]\n");
    let r = p.flow(&["run", SPEC]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let created = batches_created(&r.stderr);
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(created[0].contains("created with 5000 requests"), "{created:?}");
}

/// `generate` on a batch backend sends its first calls as one batch.
#[test]
fn generate_sends_its_first_calls_as_one_batch() {
    let reply = |body: &Value| {
        let prompt: String =
            body["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
        let n: u64 = prompt.split("(batch ").nth(1).and_then(|a| a.split(')').next()).unwrap().parse().unwrap();
        let case = |i: u64| serde_json::json!({"question": format!("question {n}-{i}: what is {n} times {i}?"), "expected": format!("{}", n * i)});
        serde_json::json!({"cases": [case(1), case(2), case(3)]}).to_string()
    };
    let s = LlmServer::start(ServerConfig { reply: Some(ReplyFn(Arc::new(reply))), ..Default::default() });
    let spec = format!(
        "flow: 1\nname: g\nbackends:\n  writer:\n    provider: openai\n    base_url: {}\n    model: writer-model\n    api_key_env: FLOW_TEST_KEY\n    temperature: 0.8\n    max_concurrency: 4\n    batch: {{poll: 20ms}}\nnodes:\n  seeds: {{kind: load, path: data/cases.jsonl}}\n  cases:\n    kind: generate\n    input: seeds\n    backend: writer\n    count: 30\n    per_call: 3\n    instructions: Questions for a calculator bot.\n    schema:\n      question: {{type: string}}\n      expected: {{type: string}}\n    dedup: {{fields: [question], threshold: 0.99}}\n",
        s.base_url()
    );
    let p = project(2, &spec);
    let r = flow(&p, &["run", SPEC], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let sizes: Vec<usize> = s.batches().iter().map(|b| b.requests.len()).collect();
    assert_eq!(sizes, [10], "30 cases, 3 a call: 10 calls in one batch");
    assert_eq!(show(&p, "cases").len(), 30);
}

/// The run view of a batch node lists its batches.
#[cfg(target_os = "linux")]
#[test]
fn the_report_shows_the_batches_of_a_run() {
    use crate::browser::Browser;
    use crate::report::in_chromium::{browser_or_skip, file_url, out_dir};
    use crate::report::report_path;

    let Some(bin) = browser_or_skip("the_report_shows_the_batches_of_a_run") else { return };
    let s = server(BatchScript::default());
    let p = project(30, &batch_spec(&s.base_url(), "openai", "0"));
    let r = flow(&p, &["run", SPEC], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let id = s.batches()[0].id.clone();
    let m = p.latest_run("specs/.flow");
    let out = out_dir("batch-run");
    let mut b = Browser::launch(&bin, &out.join("chromium.log"));
    b.open(&file_url(&report_path(&p, &m)), 1400, 1000);
    let rows = b.eval(
        "(() => { const p = flowReport.show('answers').panel;
           return [...p.querySelectorAll('table.batches tr.batch')].map(tr => [...tr.children].map(td => td.textContent)); })()",
    );
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], Value::String(id));
    assert_eq!(rows[0][1], "30");
    assert_eq!(rows[0][2], "completed");
    assert_eq!(rows[0][4], "this run");
    b.screenshot(&out.join("batches.png"));
    assert_eq!(b.errors(), Vec::<String>::new(), "console errors");
}
