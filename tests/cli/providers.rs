//! The native providers (`anthropic`, `azure`) against the local server's
//! Anthropic and Azure routes: what `flow` sends is asserted server-side
//! (headers, the request body's shape, Azure's `api-version`), what it
//! records is read back (text, usage, cost), throttling (429/529 with
//! `retry-after`) is retried, and one spec runs unchanged on every provider
//! with one `--set provider=...`.

use serde_json::Value;

use crate::common::{assert_in_no_file, node, run_in_env};
use crate::llm_server::{LlmServer, ServerConfig, ToolCallFn};
use crate::openai::{project, show, SPEC};

const KEY: &str = "sk-ant-test-SECRET-0042";

/// One spec for every provider: all it differs in are params.
const SPEC_TEXT: &str = "flow: 1
name: t
params:
  provider: {type: string, default: sim}
  base_url: {type: string, default: 'sim:'}
  model: {type: string, default: sim-1}
  key_env: {type: string, default: FLOW_TEST_KEY}
prices:
  claude-3-5-haiku: {input: 0.8, output: 4.0}
  test-model: {input: 1.0, output: 2.0}
backends:
  bot:
    provider: ${params.provider}
    base_url: ${params.base_url}
    model: ${params.model}
    api_key_env: ${params.key_env}
    temperature: 0
    max_tokens: 64
    timeout: 10s
    retry: {max_retries: 6, initial_delay: 10ms, max_delay: 200ms}
nodes:
  cases: {kind: load, path: data/cases.jsonl}
  answers:
    kind: run
    input: cases
    backend: bot
    system: Answer briefly.
    prompt: \"{{question}}\"
";

fn flow(p: &crate::common::Project, args: &[&str]) -> crate::common::Run {
    run_in_env(p.dir.path(), args, &[("FLOW_TEST_KEY", KEY), ("FLOW_LOG", "debug")])
}

fn run_with(p: &crate::common::Project, sets: &[String]) -> (Value, String) {
    let mut args = vec!["run".to_string(), SPEC.to_string()];
    for s in sets {
        args.extend(["--set".to_string(), s.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = flow(p, &args);
    assert_eq!(r.code, 0, "flow {args:?}:\n{}{}", r.stdout, r.stderr);
    (p.latest_run("specs/.flow"), format!("{}{}", r.stdout, r.stderr))
}

fn sets(provider: &str, base_url: &str, model: &str) -> Vec<String> {
    vec![format!("provider={provider}"), format!("base_url={base_url}"), format!("model={model}")]
}

#[test]
fn anthropic_messages_get_its_headers_system_and_max_tokens_and_are_priced() {
    let server = LlmServer::start(ServerConfig { api_key: Some(KEY.into()), ..Default::default() });
    let p = project(3, SPEC_TEXT);
    let (m, printed) = run_with(&p, &sets("anthropic", &server.root_url(), "claude-3-5-haiku-latest"));
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for s in &seen {
        assert_eq!(s.route, "POST /v1/messages");
        assert_eq!(s.header("x-api-key"), Some(KEY));
        assert_eq!(s.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(s.header("authorization"), None, "the key goes in x-api-key only");
        assert_eq!(s.body["system"], "Answer briefly.");
        assert_eq!(s.body["max_tokens"], 64);
        assert_eq!(s.body["messages"][0]["role"], "user");
        assert_eq!(s.body["messages"][0]["content"][0]["type"], "text");
        assert!(s.body["messages"].as_array().unwrap().iter().all(|m| m["role"] != "system"));
    }
    let records = show(&p, "answers");
    for (i, r) in records.iter().enumerate() {
        assert!(r["error"].is_null(), "{r}");
        assert_eq!(r["output"], format!("echo: what is {i}+1?"), "{r}");
    }
    let calls = &node(&m, "answers")["calls"];
    // Input: "Answer briefly." (2 words) + "what is i+1?" (3); output 4 words.
    assert_eq!(calls["prompt_tokens"], 15, "{calls}");
    assert_eq!(calls["completion_tokens"], 12, "{calls}");
    let cost = calls["cost_usd"].as_f64().unwrap_or_else(|| panic!("not priced: {calls}"));
    assert!((cost - (15.0 * 0.8 + 12.0 * 4.0) / 1e6).abs() < 1e-12, "{cost}");
    assert!(!printed.contains(KEY), "the key was printed");
}

#[test]
fn anthropic_529_and_429_with_retry_after_are_retried() {
    for status in [529, 429] {
        let server = LlmServer::start(ServerConfig {
            api_key: Some(KEY.into()),
            fail_every: Some(2),
            fail_status: Some(status),
            fail_once: true,
            throttle_headers: vec![("retry-after", "0")],
            ..Default::default()
        });
        let p = project(4, SPEC_TEXT);
        let (m, _) = run_with(&p, &sets("anthropic", &server.root_url(), "claude-3-5-haiku-latest"));
        let calls = &node(&m, "answers")["calls"];
        assert!(calls["retries"].as_u64().unwrap() >= 1, "{status}: no retry: {calls}");
        assert!(show(&p, "answers").iter().all(|r| r["error"].is_null()), "{status}");
        assert!(server.seen().len() > 4, "{status}: the failed calls were not sent again");
    }
}

#[test]
fn azure_sends_api_version_and_api_key_to_the_deployment() {
    let server = LlmServer::start(ServerConfig {
        api_key: Some(KEY.into()),
        azure_model: "test-model-2024".into(),
        ..Default::default()
    });
    let p = project(2, SPEC_TEXT);
    let (m, _) = run_with(&p, &sets("azure", &server.root_url(), "test-model"));
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for s in &seen {
        assert_eq!(s.route, "POST /openai/deployments/test-model/chat/completions");
        assert_eq!(s.query.as_deref(), Some("api-version=2024-10-21"));
        assert_eq!(s.header("api-key"), Some(KEY));
        assert_eq!(s.header("authorization"), None);
        assert_eq!(s.body["messages"][0]["role"], "system");
    }
    let records = show(&p, "answers");
    assert!(records.iter().all(|r| r["error"].is_null()), "{records:?}");
    // Priced under the model the deployment reports (`test-model-2024`
    // takes `test-model`'s price).
    let calls = &node(&m, "answers")["calls"];
    assert!(calls["cost_usd"].as_f64().is_some_and(|c| c > 0.0), "{calls}");

    // The v1 path style: the deployment is the request's model, no version.
    let p = project(
        1,
        &SPEC_TEXT
            .replace("    temperature: 0\n", "    temperature: 0\n    api_version: v1\n    deployment: prod\n")
            .replace("provider: ${params.provider}", "provider: azure"),
    );
    run_with(&p, &[format!("base_url={}", server.root_url()), "model=test-model".into()]);
    let last = server.seen().pop().unwrap();
    assert_eq!(last.route, "POST /openai/v1/chat/completions");
    assert_eq!(last.query, None);
    assert_eq!(last.body["model"], "prod");
}

#[test]
fn one_spec_runs_on_every_provider_and_plan_shows_identity_and_price() {
    let server = LlmServer::start(ServerConfig { api_key: Some(KEY.into()), ..Default::default() });
    let runs = [
        ("sim", "sim:".to_string(), "sim-1"),
        ("openai", server.base_url(), "test-model"),
        ("anthropic", server.root_url(), "claude-3-5-haiku-latest"),
        ("azure", server.root_url(), "test-model"),
    ];
    let p = project(2, SPEC_TEXT);
    let mut printed = String::new();
    for (provider, url, model) in &runs {
        let s = sets(provider, url, model);
        let mut args = vec!["plan", SPEC];
        for x in &s {
            args.extend(["--set", x.as_str()]);
        }
        let plan = flow(&p, &args);
        assert_eq!(plan.code, 0, "{provider}: {}", plan.stderr);
        if *provider != "sim" {
            let line = plan
                .stdout
                .lines()
                .find(|l| l.starts_with("backend `bot`"))
                .unwrap_or_else(|| panic!("{provider}: plan shows no backend line:\n{}", plan.stdout));
            assert!(line.contains(&format!("{provider} `{model}` at {url}")), "{line}");
            assert!(line.contains("per million input/output tokens (from `prices:`)"), "{line}");
        }
        printed.push_str(&plan.stdout);
        let (m, out) = run_with(&p, &s);
        printed.push_str(&out);
        let records = show(&p, "answers");
        assert_eq!(records.len(), 2, "{provider}");
        assert!(records.iter().all(|r| r["error"].is_null() && r["output"].is_string()), "{provider}: {records:?}");
        assert_eq!(node(&m, "answers")["status"], "ran", "{provider}: each provider is its own key");
    }
    assert_eq!(server.seen().len(), 4, "anthropic and azure: two calls each");
    assert!(!printed.contains(KEY), "the key was printed");
    assert_in_no_file(&crate::common::files_under(p.dir.path()), KEY);
}

#[test]
fn a_local_server_is_not_billed_at_built_in_prices() {
    let server = LlmServer::start(ServerConfig { api_key: Some(KEY.into()), ..Default::default() });
    let p = project(1, SPEC_TEXT);
    let s = sets("openai", &server.base_url(), "gpt-4o-mini");
    let (m, _) = run_with(&p, &s);
    assert!(node(&m, "answers")["calls"]["cost_usd"].is_null(), "{}", node(&m, "answers")["calls"]);
    let mut args = vec!["plan", SPEC];
    for x in &s {
        args.extend(["--set", x.as_str()]);
    }
    let plan = flow(&p, &args);
    assert!(plan.stdout.contains("not the provider's own API, so no built-in price: cost null"), "{}", plan.stdout);
}

/// A tool-calling spec: `get_weather` offered, and checked by `tool_call`.
const TOOLS_SPEC: &str = "flow: 1
name: t
params:
  provider: {type: string, default: openai}
  base_url: {type: string}
  model: {type: string, default: test-model}
backends:
  bot:
    provider: ${params.provider}
    base_url: ${params.base_url}
    model: ${params.model}
    api_key_env: FLOW_TEST_KEY
    max_tokens: 64
    retry: {max_retries: 1, initial_delay: 10ms, max_delay: 100ms}
nodes:
  cases: {kind: load, path: data/weather.jsonl}
  answers:
    kind: run
    input: cases
    backend: bot
    prompt: \"{{question}}\"
    tools:
      - name: get_weather
        description: The weather in a city now.
        parameters: {type: object, required: [city], properties: {city: {type: string}}}
  scores:
    kind: evaluate
    input: answers
    max_errors: 100%
    metrics:
      - {type: tool_call, name: paris, tool: get_weather, arguments: {city: Paris}}
      - {type: tool_call, name: shaped, tool: get_weather, schema: {type: object, required: [city]}}
";

/// The server calls `get_weather` for a question about the weather (its
/// last word the city), and answers anything else with text.
fn weather_calls() -> ToolCallFn {
    ToolCallFn(std::sync::Arc::new(|req: &Value| {
        let text = req["messages"]
            .as_array()
            .and_then(|m| m.last())
            .map(|m| match &m["content"] {
                Value::String(s) => s.clone(),
                blocks => blocks[0]["text"].as_str().unwrap_or_default().to_string(),
            })
            .unwrap_or_default();
        match text.strip_prefix("weather in ") {
            Some(city) => vec![("get_weather".to_string(), serde_json::json!({"city": city}))],
            None => Vec::new(),
        }
    }))
}

#[test]
fn tool_calls_are_kept_on_the_record_and_checked_by_tool_call() {
    let server = LlmServer::start(ServerConfig {
        api_key: Some(KEY.into()),
        tool_calls: Some(weather_calls()),
        ..Default::default()
    });
    for (provider, url) in [("openai", server.base_url()), ("anthropic", server.root_url())] {
        let p = crate::common::Project::empty();
        p.write(
            "specs/data/weather.jsonl",
            "{\"question\": \"weather in Paris\"}\n{\"question\": \"weather in Rome\"}\n{\"question\": \"hello\"}\n",
        );
        p.write(SPEC, TOOLS_SPEC);
        run_with(&p, &[format!("provider={provider}"), format!("base_url={url}")]);
        let answers = show(&p, "answers");
        assert!(answers.iter().all(|r| r["error"].is_null()), "{provider}: {answers:?}");
        assert_eq!(
            answers[0]["tool_calls"],
            serde_json::json!([{"name": "get_weather", "arguments": {"city": "Paris"}}])
        );
        assert_eq!(answers[0]["output"], "", "{provider}: a call and no text");
        assert_eq!(answers[0]["finish_reason"], "tool_calls", "{provider}");
        assert_eq!(answers[2]["tool_calls"], serde_json::json!([]), "{provider}");
        assert_eq!(answers[2]["output"], "echo: hello", "{provider}");
        let scores = show(&p, "scores");
        let pass = |i: usize, m: &str| scores[i]["scores"][m]["pass"].clone();
        assert_eq!(
            (pass(0, "paris"), pass(0, "shaped")),
            (Value::Bool(true), Value::Bool(true)),
            "{provider}: {:?}",
            scores[0]
        );
        assert_eq!(
            (pass(1, "paris"), pass(1, "shaped")),
            (Value::Bool(false), Value::Bool(true)),
            "{provider}: {:?}",
            scores[1]
        );
        assert_eq!(pass(2, "paris"), Value::Bool(false), "{provider}: {:?}", scores[2]);
        let why = scores[2]["scores"]["paris"]["reason"].as_str().unwrap_or_default();
        assert!(why.contains("no tool was called"), "{provider}: {why}");
    }
    let bodies = server.bodies();
    let openai = bodies.iter().find(|b| b.get("system").is_none() && b["tools"][0]["type"] == "function");
    assert!(openai.is_some_and(|b| b["tools"][0]["function"]["name"] == "get_weather"), "{bodies:?}");
    let anthropic = server.seen().into_iter().map(|s| s.body).next().unwrap();
    assert_eq!(anthropic["tools"][0]["name"], "get_weather");
    assert_eq!(anthropic["tools"][0]["input_schema"]["required"], serde_json::json!(["city"]));
}

#[test]
fn an_answer_cut_at_max_tokens_is_marked_truncated_and_counted() {
    let server = LlmServer::start(ServerConfig {
        api_key: Some(KEY.into()),
        reply: Some(crate::llm_server::ReplyFn(std::sync::Arc::new(|_| "one two three four five six seven".into()))),
        ..Default::default()
    });
    for (provider, url) in [("openai", server.base_url()), ("anthropic", server.root_url())] {
        let p = project(2, &SPEC_TEXT.replace("max_tokens: 64", "max_tokens: 3"));
        let (m, _) = run_with(&p, &sets(provider, &url, "test-model"));
        let records = show(&p, "answers");
        for r in &records {
            assert_eq!(r["output"], "one two three", "{provider}: {r}");
            assert_eq!((r["finish_reason"].as_str(), r["truncated"].as_bool()), (Some("length"), Some(true)), "{r}");
        }
        let run = m["run_id"].as_str().unwrap();
        let summary: Value =
            serde_json::from_str(&p.read(&format!("specs/.flow/runs/{run}/answers/summary.json"))).unwrap();
        assert_eq!(summary["truncated"], 2, "{provider}: {summary}");
        let text = p.read(&format!("specs/.flow/runs/{run}/answers/summary.md"));
        assert!(text.contains("truncated: 2 answers"), "{provider}: {text}");
    }
}

/// A judge that sends its verdict's schema, and one whose verdict is cut.
#[test]
fn a_judge_sends_its_json_schema_and_a_cut_verdict_says_truncated() {
    let server = LlmServer::start(ServerConfig { api_key: Some(KEY.into()), ..Default::default() });
    let spec = |max: u32| {
        let judge = format!(
            "backends:\n  judge:\n    provider: openai\n    base_url: {}\n    model: judge-model\n    api_key_env: FLOW_TEST_KEY\n    json_schema: true\n    max_tokens: {max}\n    retry: {{max_retries: 0}}\n",
            server.base_url()
        );
        SPEC_TEXT.replace("backends:\n", &judge)
            + "  scores:
    kind: evaluate
    input: answers
    max_errors: 100%
    metrics:
      - {type: judge, backend: judge, rubric: 'The answer is {{expected}}'}
"
    };
    let p = project(2, &spec(64));
    run_with(&p, &[]);
    let judged: Vec<Value> = server.bodies().into_iter().filter(|b| b["model"] == "judge-model").collect();
    assert_eq!(judged.len(), 2);
    for b in &judged {
        assert_eq!(b["response_format"]["type"], "json_schema", "{b}");
        assert_eq!(b["response_format"]["json_schema"]["schema"]["required"], serde_json::json!(["score", "reason"]));
    }
    assert!(show(&p, "scores").iter().all(|r| r["scores"]["judge"]["pass"] == true));
    // `flow plan` computes the judge's keys as the run files them.
    let plan = flow(&p, &["plan", SPEC]);
    assert!(plan.stdout.contains("0 will run"), "{}", plan.stdout);

    // Two tokens cannot hold a verdict: the error says why.
    let p = project(1, &spec(2));
    run_with(&p, &[]);
    let scored = show(&p, "scores");
    let error = scored[0]["scores"]["judge"]["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("truncated at max_tokens (2)"), "{:?}", scored[0]);
}

/// A server that ignores `dimensions` (it always sends 8) fails the call,
/// naming the backend, instead of storing vectors of another size.
#[test]
fn embeddings_of_another_size_than_asked_name_the_backend() {
    let server = LlmServer::start(ServerConfig { api_key: Some(KEY.into()), ..Default::default() });
    let p = crate::common::Project::empty();
    let logs = std::fs::read_to_string(crate::common::repo().join("specs/data/logs.jsonl")).unwrap();
    p.write("specs/data/logs.jsonl", &logs);
    let spec = format!(
        "flow: 1\nbackends:\n  embedder: {{provider: openai, base_url: '{}', model: emb, api_key_env: FLOW_TEST_KEY}}\n\
         nodes:\n  logs: {{kind: load, path: data/logs.jsonl}}\n  \
         steady: {{kind: extract, input: logs, backend: embedder, dimensions: 64}}\n",
        server.base_url()
    );
    p.write(SPEC, &spec);
    let r = flow(&p, &["run", SPEC]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("backend `embedder` was asked for 64-dimensional embeddings and returned 8 dimensions"),
        "{}",
        r.stderr
    );
    // Not memoized: a run after the fix asks again.
    p.write(SPEC, &spec.replace(", dimensions: 64", ""));
    let r = flow(&p, &["run", SPEC]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

/// Two nodes asking the same questions at once: each question is sent once.
#[test]
fn identical_calls_in_flight_at_once_are_made_once() {
    let server = LlmServer::start(ServerConfig {
        api_key: Some(KEY.into()),
        latency: std::time::Duration::from_millis(500),
        ..Default::default()
    });
    let nodes = "  a: {kind: run, input: cases, backend: bot, prompt: \"{{question}}\"}\n  \
                 b: {kind: run, input: cases, backend: bot, prompt: \"{{question}}\"}\n";
    let p = project(4, &crate::openai::spec(&server.base_url(), 16, nodes));
    let r = flow(&p, &["run", SPEC]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(server.requests(), 4, "each question once, not once per node");
    assert_eq!(
        show(&p, "a").iter().map(|r| r["output"].clone()).collect::<Vec<_>>(),
        show(&p, "b").iter().map(|r| r["output"].clone()).collect::<Vec<_>>()
    );
}

#[test]
fn a_providers_own_key_goes_only_to_its_host_unless_the_spec_says_so() {
    let server = LlmServer::start(ServerConfig::default());
    let p = project(2, SPEC_TEXT);
    let mut s = sets("openai", &server.base_url(), "test-model");
    s.push("key_env=OPENAI_API_KEY".into());
    let mut args = vec!["plan", SPEC];
    for x in &s {
        args.extend(["--set", x.as_str()]);
    }
    let env = [("OPENAI_API_KEY", KEY)];
    let plan = run_in_env(p.dir.path(), &args, &env);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains("key `OPENAI_API_KEY` is not sent to 127.0.0.1: it is for openai's own API"),
        "{}",
        plan.stdout
    );
    args[0] = "run";
    let r = run_in_env(p.dir.path(), &args, &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.requests(), 2);
    assert!(server.authorizations().is_empty(), "the OpenAI key reached a local server: {:?}", server.authorizations());

    // Unset, it is not required either: a local server that needs no key just works.
    let r = run_in_env(
        p.dir.path(),
        &["run", SPEC, "--no-cache", "--set", &s[0], "--set", &s[1], "--set", &s[2], "--set", &s[3]],
        &[("OPENAI_API_KEY", "")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);

    // Said so in the spec, it is sent.
    let text = SPEC_TEXT.replace("    temperature: 0\n", "    temperature: 0\n    send_key_anywhere: true\n");
    std::fs::write(p.dir.path().join(SPEC), text).unwrap();
    args.push("--no-cache");
    let r = run_in_env(p.dir.path(), &args, &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.authorizations(), vec![format!("Bearer {KEY}")]);
}
