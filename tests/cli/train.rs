//! `train` against a local server that plays OpenAI's fine-tuning API: what
//! is checked is what the server saw — uploads, job creations, polls — so
//! "a re-run starts no second job" and "a bad dataset sends nothing" are
//! the server's counts, not `flow`'s word. Plus the offline `sim` job and
//! `export`, which calls nothing.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{node, repo, run_in_env, statuses, Project, Run, FLOW};
use crate::llm_server::{FineTuneScript, LlmServer, ServerConfig};

const KEY: &str = "sk-test-train";
const SPEC: &str = "specs/train.yaml";

const CREATE: &str = "POST /v1/fine_tuning/jobs";
const UPLOAD: &str = "POST /v1/files";
const POLL: &str = "GET /v1/fine_tuning/jobs/{id}";
const EVENTS: &str = "GET /v1/fine_tuning/jobs/{id}/events";

/// A spec that fine-tunes on `data` through the server at `url`.
fn spec(url: &str, data: &str) -> String {
    format!(
        "flow: 1
name: train
backends:
  ft:
    provider: openai
    base_url: {url}
    model: test-base
    api_key_env: FLOW_TEST_KEY
    retry: {{max_retries: 3, initial_delay: 10ms, max_delay: 50ms}}
nodes:
  examples: {{kind: load, path: data/{data}}}
  tuned:
    kind: train
    input: examples
    backend: ft
    suffix: golden
    seed: 7
    hyperparameters: {{n_epochs: 2, learning_rate_multiplier: auto}}
    poll_interval: 10ms
"
    )
}

/// A project with the fixtures' data and `spec`.
fn project(spec: &str) -> Project {
    let p = Project::empty();
    for f in ["examples.jsonl", "bad.jsonl"] {
        p.write(&format!("specs/data/{f}"), &std::fs::read_to_string(fixture(f)).unwrap());
    }
    p.write(SPEC, spec);
    p
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/train").join(name)
}

fn flow(p: &Project, args: &[&str]) -> Run {
    run_in_env(p.dir.path(), args, &[("FLOW_TEST_KEY", KEY), ("FLOW_LOG", "info")])
}

fn run_ok(p: &Project, args: &[&str]) -> (Value, Run) {
    let mut all = vec!["run", SPEC];
    all.extend_from_slice(args);
    let r = flow(p, &all);
    assert_eq!(r.code, 0, "flow {all:?} failed:\n{}{}", r.stdout, r.stderr);
    (p.latest_run("specs/.flow"), r)
}

/// The train node's one output record.
fn trained(p: &Project) -> Value {
    let r = flow(p, &["show", "tuned"]);
    assert_eq!(r.code, 0, "flow show: {}", r.stderr);
    let records: Vec<Value> = r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 1, "{}", r.stdout);
    records.into_iter().next().unwrap()
}

/// The training file as `flow` should upload it: the fixture's messages,
/// one `{"messages": [...]}` a line.
fn expected_jsonl(name: &str) -> String {
    std::fs::read_to_string(fixture(name))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            format!("{}\n", serde_json::json!({"messages": v["messages"]}))
        })
        .collect()
}

#[test]
fn a_job_succeeds_over_polls_and_a_rerun_starts_no_second_job() {
    let server = LlmServer::start(ServerConfig { api_key: Some(KEY.into()), ..Default::default() });
    let p = project(&spec(&server.base_url(), "examples.jsonl"));
    let (m, r) = run_ok(&p, &[]);

    // What the server saw: one upload, one job, polls until it succeeded.
    assert_eq!((server.route_count(UPLOAD), server.route_count(CREATE)), (1, 1));
    assert_eq!(server.route_count(POLL), 4, "validating_files, running, running, succeeded");
    assert_eq!(server.route_count(EVENTS), 4);
    let files = server.files();
    let file = &files["file-1"];
    assert_eq!((file.filename.as_str(), file.purpose.as_str()), ("train.jsonl", "fine-tune"));
    assert_eq!(String::from_utf8(file.bytes.clone()).unwrap(), expected_jsonl("examples.jsonl"));
    let job = &server.jobs()[0];
    assert_eq!(job["model"], "test-base");
    assert_eq!(job["training_file"], "file-1");
    assert_eq!(job["suffix"], "golden");
    assert_eq!(job["seed"], 7);
    assert_eq!(job["method"]["type"], "supervised");
    assert_eq!(
        job["method"]["supervised"]["hyperparameters"],
        serde_json::json!({"n_epochs": 2, "learning_rate_multiplier": "auto"})
    );

    let out = trained(&p);
    assert_eq!(out["job_id"], "ftjob-1");
    assert_eq!(out["status"], "succeeded");
    assert_eq!(out["fine_tuned_model"], "ft:test-base:test-org:golden:1");
    // 12 examples × (9 + 5 + 1) words × 2 epochs, as the server counts.
    assert_eq!(out["trained_tokens"], 12 * 15 * 2);
    assert_eq!(out["examples"], 12);
    let events: Vec<&str> = out["events"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(events.first(), Some(&"Created fine-tuning job: ftjob-1"));
    assert_eq!(events.last(), Some(&"The job has successfully completed"));
    assert!(events.contains(&"Step 2/2: training loss=0.333"), "{events:?}");

    let meta = &node(&m, "tuned")["meta"];
    assert_eq!(meta["polls"], 4, "{meta}");
    assert_eq!(meta["resumed"], false, "{meta}");
    let calls = &node(&m, "tuned")["calls"];
    assert_eq!(calls["requests"], 1 + 1 + 4 + 4, "{calls}");
    assert_eq!(calls["memo_hits"], 0, "{calls}");
    assert!(calls["cost_usd"].is_null(), "a fine-tuning job is not priced here: {calls}");
    // Progress, at FLOW_LOG=info.
    assert!(r.stderr.contains("created job ftjob-1"), "{}", r.stderr);
    assert!(r.stderr.contains("job ftjob-1 validating_files (poll 1"), "{}", r.stderr);
    assert!(r.stderr.contains("job ftjob-1 running (poll 3"), "{}", r.stderr);
    assert!(r.stdout.contains("fine-tuned model `ft:test-base:test-org:golden:1`"), "the summary: {}", r.stdout);

    // The same spec again: a cached node, not a request.
    server.reset_counters();
    let (m, _) = run_ok(&p, &[]);
    assert_eq!(statuses(&m)[1], ("tuned".to_string(), "cached".to_string()));
    assert_eq!(server.requests(), 0);

    // Forced to run: the memo replays the upload and the creation, so the
    // node follows the job it made (done already) instead of a new one.
    server.reset_counters();
    let (m, _) = run_ok(&p, &["--rerun", "tuned"]);
    assert_eq!((server.route_count(UPLOAD), server.route_count(CREATE)), (0, 0));
    assert_eq!(server.route_count(POLL), 1);
    assert_eq!(node(&m, "tuned")["meta"]["resumed"], true);
    assert_eq!(trained(&p)["fine_tuned_model"], "ft:test-base:test-org:golden:1");
    assert_eq!(server.jobs().len(), 1, "one job in all");
}

#[test]
fn a_failing_job_fails_the_node_with_the_providers_message() {
    let why = "Training file has 3 examples that exceed the 65536 token limit";
    let script = FineTuneScript { fail_with: Some(why.into()), ..Default::default() };
    let server = LlmServer::start(ServerConfig { fine_tune: script, ..Default::default() });
    let p = project(&spec(&server.base_url(), "examples.jsonl"));
    let r = flow(&p, &["run", SPEC]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&format!("fine-tuning job ftjob-1 failed: {why} (code `job_failed`)")), "{}", r.stderr);
    assert!(r.stderr.contains("set `attempt: 2` (or the next number) on the node to start a new job"), "{}", r.stderr);
    assert_eq!(server.route_count(CREATE), 1);
    let m = p.latest_run("specs/.flow");
    assert_eq!(node(&m, "tuned")["status"], "failed");
}

#[test]
fn a_server_without_a_fine_tuning_api_points_at_export() {
    // llama.cpp's server, vLLM and Ollama have chat and embeddings but no
    // files or fine-tuning endpoints: every other path is a 404.
    let server = LlmServer::start(ServerConfig::default());
    let p = project(&spec(&format!("{}/no-fine-tuning/v1", server.root_url()), "examples.jsonl"));
    let r = flow(&p, &["run", SPEC]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("uploading the training file"), "{}", r.stderr);
    assert!(r.stderr.contains("hint: this server has no fine-tuning API; `export: trl`"), "{}", r.stderr);
    assert_eq!(server.route_count(UPLOAD), 0);
}

#[test]
fn an_invalid_dataset_is_rejected_before_any_request() {
    let server = LlmServer::start(ServerConfig::default());
    let p = project(&spec(&server.base_url(), "bad.jsonl"));
    let r = flow(&p, &["run", SPEC]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_eq!(server.requests(), 0, "the server saw a request");
    let e = &r.stderr;
    assert!(e.contains("the training data has 4 problems (nothing was sent):"), "{e}");
    assert!(e.contains("record `no-answer`: the last message is from the user;"), "{e}");
    assert!(e.contains("record `bot-role`: message 2 has role `bot`; the roles are system, user, assistant"), "{e}");
    assert!(e.contains(": message 2 (assistant) has no content"), "{e}");
    assert!(e.contains("9 examples; fine-tuning needs at least 10 (`min_examples`)"), "{e}");
}

/// Ctrl-C while polling, then a new run: the job's creation is replayed
/// from the memo and the same job is followed to the end.
#[test]
fn ctrl_c_while_polling_then_a_new_run_follows_the_same_job() {
    let server = LlmServer::start(ServerConfig::default());
    server.hold_jobs(true);
    let p = project(&spec(&server.base_url(), "examples.jsonl"));
    let mut child = Command::new(FLOW)
        .args(["run", SPEC])
        .current_dir(p.dir.path())
        .env_remove("FLOW_LOG")
        .env("FLOW_TEST_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn flow");
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.route_count(POLL) < 5 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("flow exited ({status}) before polling a few times");
        }
        assert!(Instant::now() < deadline, "only {} polls after 30 s", server.route_count(POLL));
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130), "exit code after Ctrl-C");
    let m = p.latest_run("specs/.flow");
    assert_eq!(node(&m, "tuned")["status"], "cancelled");
    assert_eq!(server.route_count(CREATE), 1);
    // The plan knows the upload and the creation are memoized.
    let plan = flow(&p, &["plan", SPEC]);
    assert!(plan.stdout.contains("0 (2 memoized)"), "{}", plan.stdout);

    server.hold_jobs(false);
    let (m, _) = run_ok(&p, &[]);
    assert_eq!(server.route_count(CREATE), 1, "the second run created a job");
    assert_eq!(server.route_count(UPLOAD), 1, "the second run uploaded again");
    assert_eq!(node(&m, "tuned")["meta"]["resumed"], true);
    assert_eq!(node(&m, "tuned")["calls"]["memo_hits"], 2, "the upload and the creation");
    let out = trained(&p);
    assert_eq!(out["job_id"], "ftjob-1");
    assert_eq!(out["fine_tuned_model"], "ft:test-base:test-org:golden:1");
}

#[test]
fn sim_plays_a_job_offline() {
    let p = project(
        "flow: 1
name: train
backends:
  ft: {provider: sim, model: sim-base}
nodes:
  examples: {kind: load, path: data/examples.jsonl}
  tuned: {kind: train, input: examples, backend: ft, suffix: golden}
",
    );
    let (m, _) = run_ok(&p, &[]);
    let out = trained(&p);
    assert_eq!(out["status"], "succeeded");
    let model = out["fine_tuned_model"].as_str().unwrap();
    assert!(model.starts_with("ft:sim-base:golden:") && model.len() == "ft:sim-base:golden:".len() + 8, "{model}");
    assert_eq!(out["trained_tokens"], 12 * 15 * 3, "sim tokens are words, 3 epochs by default");
    assert_eq!(node(&m, "tuned")["meta"]["polls"], 4);
    assert_eq!(node(&m, "tuned")["calls"]["cost_usd"], 0.0, "the sim is free");
    // Deterministic: the same job and model from a fresh workspace.
    std::fs::remove_dir_all(p.path("specs/.flow")).unwrap();
    run_ok(&p, &[]);
    assert_eq!(trained(&p), out);
}

#[test]
fn export_writes_the_dataset_and_trainer_configs_and_calls_nothing() {
    let p = project(
        "flow: 1
name: train
nodes:
  examples: {kind: load, path: data/examples.jsonl}
  trl: {kind: train, input: examples, export: trl, model: Qwen/Qwen2.5-0.5B-Instruct, hyperparameters: {n_epochs: 2}}
  axolotl: {kind: train, input: examples, export: axolotl, model: Qwen/Qwen2.5-0.5B-Instruct, seed: 1}
",
    );
    let (m, r) = run_ok(&p, &[]);
    assert!(r.stdout.contains("exported 12 examples for trl"), "{}", r.stdout);
    let run_dir = p.path("specs/.flow/runs").join(m["run_id"].as_str().unwrap());
    let read = |rel: &str| std::fs::read_to_string(run_dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    for name in ["trl", "axolotl"] {
        assert_eq!(read(&format!("{name}/train.jsonl")), expected_jsonl("examples.jsonl"));
        assert!(node(&m, name)["calls"].is_null(), "{name} made calls");
        assert_eq!(node(&m, name)["meta"]["examples"], 12);
    }
    let script = read("trl/train_sft.py");
    assert!(
        script.contains("SFTTrainer(model=\"Qwen/Qwen2.5-0.5B-Instruct\"") && script.contains("num_train_epochs=2,")
    );
    let yaml: serde_json::Value = serde_json::to_value(
        read("axolotl/axolotl.yaml").lines().filter(|l| l.starts_with("base_model:")).collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(yaml[0], "base_model: \"Qwen/Qwen2.5-0.5B-Instruct\"");
    assert!(read("axolotl/axolotl.yaml").contains("  - path: train.jsonl\n"));
    // The script is Python, where Python is there to say so.
    let parsed = Command::new("python3")
        .args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())"])
        .arg(run_dir.join("trl/train_sft.py"))
        .output();
    if let Ok(out) = parsed {
        assert!(out.status.success(), "train_sft.py does not parse: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn invalid_train_nodes_are_rejected_with_located_messages() {
    let p = Project::empty();
    for f in ["invalid.yaml", "examples.jsonl", "plain.jsonl"] {
        p.write(f, &std::fs::read_to_string(fixture(f)).unwrap());
    }
    let r = run_in_env(p.dir.path(), &["validate", "invalid.yaml"], &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    insta::assert_snapshot!("invalid_train_nodes", r.stderr);
}
