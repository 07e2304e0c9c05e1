//! `run` nodes against a real HTTP backend: an in-process OpenAI-compatible
//! server that counts what it receives. What is checked here is what the
//! server saw — concurrency, retries, calls a memo saved, the API key — not
//! only what `flow` reports about itself.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{assert_in_no_file, files_under, node, pairs, run_in_env, statuses, Rng};
use crate::llm_server::{LlmServer, ReplyFn, ServerConfig};
use crate::openai::{
    assert_all_answered, calls, cases, count, flow, project, run_ok, show, spawn_run, spec, ANSWERS, SPEC,
};

#[test]
fn concurrency_cap_holds_per_backend_across_nodes() {
    let server = LlmServer::start(ServerConfig { latency: Duration::from_millis(50), ..Default::default() });
    let p = project(40, &spec(&server.base_url(), 4, ANSWERS));
    let started = Instant::now();
    let m = run_ok(&p, &[]);
    let wall = started.elapsed();
    assert_eq!(server.requests(), 40);
    let max = server.max_in_flight();
    assert!(max <= 4, "{max} requests in flight at once, cap 4");
    assert!(max >= 2, "the calls never overlapped (max in flight {max}); took {wall:?}");
    assert_eq!(count(&calls(&m, "answers"), "requests"), 40);
    assert_all_answered(&show(&p, "answers"), 40);

    // Two nodes on one backend share its cap.
    server.reset_counters();
    let two = "  a:\n    kind: run\n    input: cases\n    backend: bot\n    prompt: \"{{question}}\"\n  \
               b:\n    kind: run\n    input: cases\n    backend: bot\n    prompt: \"once more: {{question}}\"\n";
    let p = project(40, &spec(&server.base_url(), 4, two));
    let m = run_ok(&p, &[]);
    assert_eq!(server.requests(), 80);
    let max = server.max_in_flight();
    assert!(max <= 4, "{max} requests in flight at once over two nodes, cap 4 for their backend");
    assert_eq!(count(&calls(&m, "a"), "requests"), 40);
    assert_eq!(count(&calls(&m, "b"), "requests"), 40);
    assert_eq!(count(&m["calls"], "requests"), 80, "top-level calls: {}", m["calls"]);
    assert_eq!(show(&p, "b")[7]["output"], "echo: once more: what is 7+1?");
}

#[test]
fn injected_failures_are_retried_and_counted() {
    let server = LlmServer::start(ServerConfig { fail_every: Some(5), ..Default::default() });
    let n = 20;
    let p = project(n, &spec(&server.base_url(), 4, ANSWERS));
    let m = run_ok(&p, &[]);
    let (sent, ok) = (server.requests(), server.successes());
    assert_eq!(ok, n as u64, "one successful call per case");
    assert!(sent - ok >= 4, "the server fails every 5th request, yet only {} of {sent} failed", sent - ok);
    let records = show(&p, "answers");
    assert_all_answered(&records, n);

    let c = calls(&m, "answers");
    assert_eq!(count(&c, "retries"), sent - ok, "retries must be the failed requests: {c}");
    assert_eq!(count(&c, "requests"), n as u64, "{c}");
    assert_eq!(count(&c, "errors"), 0, "{c}");
    assert_eq!(count(&c, "memo_hits"), 0, "{c}");
    // Tokens as the server counted them, once per successful call.
    let words = |s: &str| s.split_whitespace().count() as u64;
    let prompt: u64 = server
        .bodies()
        .iter()
        .map(|b| b["messages"].as_array().unwrap().iter().map(|m| words(m["content"].as_str().unwrap())).sum::<u64>())
        .sum();
    assert_eq!(count(&c, "prompt_tokens"), prompt, "{c}");
    assert_eq!(count(&c, "completion_tokens"), 4 * n as u64, "`echo: what is i+1?` is 4 words: {c}");
    assert_eq!(m["calls"], c, "the run's calls are the one node's");

    let r = &records[3];
    assert_eq!(r["question"], "what is 3+1?", "input fields are kept: {r}");
    assert_eq!(r["usage"]["prompt_tokens"], 3, "{r}");
    assert_eq!(r["usage"]["completion_tokens"], 4, "{r}");
    assert_eq!(r["model"], "test-model", "{r}");
    assert!(r["latency_ms"].is_u64(), "{r}");
    assert!(r["cost_usd"].is_null() || r["cost_usd"].is_f64(), "{r}");
    // What the server received is the spec's request.
    let body = &server.bodies()[0];
    assert_eq!(body["model"], "test-model", "{body}");
    assert_eq!(body["temperature"].as_f64(), Some(0.0), "{body}");
    assert_eq!(body["max_tokens"], 64, "{body}");
}

#[test]
fn sigkilled_run_resumes_from_the_call_memo() {
    let server = LlmServer::start(ServerConfig { latency: Duration::from_millis(100), ..Default::default() });
    let n = 60u64;
    let p = project(n as usize, &spec(&server.base_url(), 4, ANSWERS));
    let mut child = spawn_run(&p, Stdio::null());
    let deadline = Instant::now() + Duration::from_secs(20);
    let problem = loop {
        if server.successes() >= 12 {
            break None;
        }
        if let Some(status) = child.try_wait().unwrap() {
            break Some(format!("flow exited ({status}) after {} calls", server.successes()));
        }
        if Instant::now() > deadline {
            break Some(format!("only {} calls after 20 s", server.successes()));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if let Some(problem) = problem {
        let _ = child.kill();
        panic!("{problem}");
    }
    // Answers are committed in groups a few milliseconds (and an fsync)
    // after they arrive, so what a SIGKILL may lose is the last moment's;
    // everything answered half a second before it must survive.
    let early = server.successes();
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    child.wait().unwrap();
    // Read at once: the requests in flight at the kill may still be answered
    // (to nobody) a latency later, and those were never the client's.
    let done = server.successes();
    assert!(done < n, "the run finished before it was killed");

    server.reset_counters();
    let m = run_ok(&p, &[]);
    let again = server.requests();
    println!("killed after {done} answered calls; the second run sent {again}");
    // Answers the server sent but the killed client had not yet committed
    // are asked again; none answered well before the kill.
    assert!(again >= n - done, "only {again} calls for the {} never answered", n - done);
    assert!(
        again <= n - early,
        "{again} calls after {early} of {n} were answered 0.5 s before the kill: the memo lost calls"
    );
    let c = calls(&m, "answers");
    assert_eq!(count(&c, "requests"), again, "{c}");
    assert_eq!(count(&c, "memo_hits"), n - again, "{c}");
    assert_all_answered(&show(&p, "answers"), n as usize);
}

#[test]
fn cached_node_memo_and_no_cache() {
    let server = LlmServer::start(ServerConfig::default());
    let n = 20;
    let p = project(n, &spec(&server.base_url(), 4, ANSWERS));
    run_ok(&p, &[]);
    assert_eq!(server.requests(), n as u64);

    server.reset_counters();
    let m = run_ok(&p, &[]);
    assert_eq!(server.requests(), 0, "a cached node sends nothing");
    assert_eq!(statuses(&m), pairs(&[("cases", "cached"), ("answers", "cached")]));

    server.reset_counters();
    let m = run_ok(&p, &["--no-cache"]);
    assert_eq!(server.requests(), n as u64, "--no-cache bypasses the call memo too");
    let c = calls(&m, "answers");
    assert_eq!((count(&c, "requests"), count(&c, "memo_hits")), (n as u64, 0), "{c}");

    // Ten more cases: ten more calls; the first twenty come from the memo.
    server.reset_counters();
    let mut data = p.read("specs/data/cases.jsonl");
    data.push_str(&cases(n, n + 10));
    p.write("specs/data/cases.jsonl", &data);
    let m = run_ok(&p, &[]);
    assert_eq!(server.requests(), 10);
    let c = calls(&m, "answers");
    assert_eq!((count(&c, "requests"), count(&c, "memo_hits")), (10, n as u64), "{c}");
    assert_all_answered(&show(&p, "answers"), n + 10);
}

#[test]
fn repeat_samples_are_separate_calls() {
    let server = LlmServer::start(ServerConfig::default());
    let with_repeat = |k: u32| spec(&server.base_url(), 4, &format!("{ANSWERS}    repeat: {k}\n"));
    let p = project(5, &with_repeat(3));
    let m = run_ok(&p, &[]);
    // The bodies may be identical (temperature 0); the memo keys are not.
    assert_eq!(server.requests(), 15);
    assert_eq!(count(&calls(&m, "answers"), "requests"), 15);
    println!("repeat 3 on 5 cases: {} records", show(&p, "answers").len());

    server.reset_counters();
    p.write(SPEC, &with_repeat(4));
    let m = run_ok(&p, &[]);
    assert_eq!(server.requests(), 5, "one more sample per case");
    let c = calls(&m, "answers");
    assert_eq!((count(&c, "requests"), count(&c, "memo_hits")), (5, 15), "{c}");
}

#[test]
fn api_key_is_sent_and_never_written() {
    let key = "sk-test-SECRET-123456";
    let server = LlmServer::start(ServerConfig { api_key: Some(key.into()), ..Default::default() });
    let p = project(5, &spec(&server.base_url(), 4, ANSWERS));
    let env = [("FLOW_TEST_KEY", key), ("FLOW_LOG", "debug")];
    let mut printed = String::new();
    for args in [&["run", SPEC][..], &["run", SPEC, "--no-cache"], &["plan", SPEC], &["show", "answers"], &["runs"]] {
        let r = run_in_env(p.dir.path(), args, &env);
        assert_eq!(r.code, 0, "flow {args:?}:\n{}{}", r.stdout, r.stderr);
        printed.push_str(&r.stdout);
        printed.push_str(&r.stderr);
    }
    assert_eq!(server.authorizations(), [format!("Bearer {key}")]);
    assert_eq!(server.successes(), 10);
    assert!(!printed.contains(key), "flow printed the API key:\n{printed}");

    let all = files_under(p.dir.path());
    assert!(all.iter().any(|f| f.ends_with("memo.sqlite")), "no call memo in {all:?}");
    assert_in_no_file(&all, key);
}

/// Runs `flow validate` and `flow run` on `spec`; both must reject it with
/// exit 2, a located message and nothing written. Returns the message.
fn rejected(spec: &str) -> String {
    let p = project(3, spec);
    let located = regex::Regex::new(r"t\.yaml:\d+:\d+").unwrap();
    let mut message = String::new();
    for cmd in ["validate", "run"] {
        let r = flow(&p, &[cmd, SPEC], &[]);
        assert_eq!(r.code, 2, "flow {cmd} accepted:\n{spec}\n{}{}", r.stdout, r.stderr);
        assert!(located.is_match(&r.stderr), "no file:line:col in:\n{}", r.stderr);
        assert!(!p.path("specs/.flow").exists() && !p.path(".flow").exists(), "flow {cmd} wrote a workspace");
        message = r.stderr;
    }
    message
}

/// A 501 (the server cannot do this) is not retried, unlike a 500; the
/// node's error says why its calls failed.
#[test]
fn a_501_is_not_retried() {
    let server = LlmServer::start(ServerConfig { fail_every: Some(1), fail_status: Some(501), ..Default::default() });
    let p = project(3, &spec(&server.base_url(), 1, ANSWERS));
    let r = flow(&p, &["run", SPEC], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(server.requests(), 3, "one request per case, none repeated");
    assert!(r.stderr.contains("the last: HTTP 501"), "the cause is in the node's error: {}", r.stderr);
}

/// A hostile server: a body past `max_response_bytes` fails its call (not
/// retried, not read whole), and token counts no model produces are not
/// summed into the cost, and are said to be so.
#[test]
fn hostile_bodies_and_usage_are_bounded() {
    let big = "x".repeat(300_000);
    let reply = ReplyFn(std::sync::Arc::new(move |_| big.clone()));
    let server = LlmServer::start(ServerConfig { reply: Some(reply), ..Default::default() });
    let capped = spec(&server.base_url(), 1, ANSWERS)
        .replace("max_tokens: 64", "max_tokens: 64\n    max_response_bytes: 100000");
    let p = project(3, &capped);
    let r = flow(&p, &["run", SPEC], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("larger than 100000 bytes (`max_response_bytes`)"), "{}", r.stderr);
    assert_eq!(server.requests(), 3, "not retried");

    let server = LlmServer::start(ServerConfig { usage: Some(u64::MAX), ..Default::default() });
    let priced = format!("{}prices:\n  test-model: {{input: 2.5, output: 10}}\n", spec(&server.base_url(), 1, ANSWERS));
    let p = project(3, &priced);
    let r = flow(&p, &["run", SPEC], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("warning: 3 answers reported more than 100000000 tokens"), "{}", r.stderr);
    let m = p.latest_run("specs/.flow");
    let c = calls(&m, "answers");
    assert_eq!((count(&c, "prompt_tokens"), count(&c, "implausible_usage")), (0, 3), "{c}");
}

/// An endpoint that fails every call (a wrong key) stops the node at the
/// 20th failure, whatever is in flight, and its error names the cause.
#[test]
fn an_endpoint_that_fails_every_call_stops_at_the_twentieth() {
    let server = LlmServer::start(ServerConfig { fail_every: Some(1), fail_status: Some(401), ..Default::default() });
    let p = project(200, &spec(&server.base_url(), 8, ANSWERS));
    let r = flow(&p, &["run", SPEC], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("the first 20 calls all failed; the last: HTTP 401"), "{}", r.stderr);
    // What was already in flight or queued still goes out; the rest does not.
    assert!(server.requests() < 120, "{} of 200 calls sent", server.requests());
    // The records it wrote before it failed are kept, and say why.
    let shown = flow(&p, &["show", "answers", "--workspace", "specs/.flow"], &[]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(shown.stderr.contains("note: node `answers` failed in run "), "{}", shown.stderr);
    let records: Vec<Value> = shown.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // Those in input order before the 20th failure (none when that one came
    // back before the first: calls finish in any order).
    assert!(records.len() < 20, "{} records", records.len());
    assert!(records.iter().all(|r| r["error"].as_str().is_some_and(|e| e.contains("HTTP 401"))), "{records:?}");
    // A failed node's records are never a cache entry: the next run runs it.
    let again = flow(&p, &["plan", SPEC], &[]);
    assert!(again.stdout.lines().any(|l| l.starts_with("answers ") && l.contains("will run")), "{}", again.stdout);
}

/// A server that dies mid-run: once 20 calls in a row have spent their
/// retries, the node stops, saying the endpoint looks down, instead of
/// retrying every remaining record.
#[test]
fn a_server_that_dies_mid_run_stops_the_node() {
    let server = LlmServer::start(ServerConfig { latency: Duration::from_millis(5), ..Default::default() });
    let p = project(2000, &spec(&server.base_url(), 4, ANSWERS));
    let child = spawn_run(&p, Stdio::piped());
    while server.successes() < 40 {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(server);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the last 20 calls failed in a row after their retries: the endpoint looks down"), "{err}");
}

/// A key in the URL's query (`?api-key=`, Azure's and Google's habit)
/// reaches the server but no file, no output and no error message; a key in
/// the URL's user information is refused at validate.
#[test]
fn keys_in_a_base_url_are_never_written() {
    let secret = "qs-SECRET-98765";
    let server = LlmServer::start(ServerConfig::default());
    let url = format!("{}?api-version=1&api-key={secret}", server.base_url());
    let p = project(3, &spec(&url, 2, ANSWERS));
    let mut printed = String::new();
    for args in [&["run", SPEC][..], &["plan", SPEC], &["runs"]] {
        let r = flow(&p, args, &[("FLOW_LOG", "debug")]);
        assert_eq!(r.code, 0, "flow {args:?}:\n{}{}", r.stdout, r.stderr);
        printed.push_str(&r.stdout);
        printed.push_str(&r.stderr);
    }
    assert_eq!(server.successes(), 3, "the calls went to the URL's path, its query kept");
    // A server that is not there: the error names the URL, not the key.
    p.write(SPEC, &spec(&format!("http://127.0.0.1:9/v1?api-key={secret}"), 2, ANSWERS));
    let r = flow(&p, &["run", SPEC], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("api-key=REDACTED"), "{}", r.stderr);
    printed.push_str(&r.stderr);
    assert!(!printed.contains(secret), "flow printed the key:\n{printed}");
    assert_in_no_file(files_under(p.dir.path()).iter().filter(|f| !f.ends_with(SPEC)), secret);

    let e = rejected(&spec("http://user:sk-in-url-42@127.0.0.1:9/v1", 2, ANSWERS));
    assert!(e.contains("holds credentials") && e.contains("api_key_env"), "{e}");
    assert!(!e.contains("sk-in-url-42"), "the diagnostic shows the key: {e}");
}

/// The kill suite: ten SIGKILLs of one run at seeded moments, each followed
/// by a restart, then a last run to the end. No call answered before a kill
/// is sent again beyond those in flight at that kill (4 slots), the output is
/// the one an uninterrupted run writes, and no temp file is left behind.
#[test]
fn ten_sigkills_lose_no_answered_call_and_change_no_output() {
    let server = LlmServer::start(ServerConfig { latency: Duration::from_millis(20), ..Default::default() });
    let n = 300u64;
    let p = project(n as usize, &spec(&server.base_url(), 4, ANSWERS));
    let mut rng = Rng(0x5eed);
    let mut kills = 0;
    for _ in 0..10 {
        // A kill after 2 to 17 more answers.
        let target = server.successes() + 2 + rng.below(16) as u64;
        let mut child = spawn_run(&p, Stdio::null());
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.successes() < target && child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 8, "only {kills} of 10 runs were killed before they finished");
    let m = run_ok(&p, &[]);
    assert_eq!(m["status"], "succeeded");
    let sent = server.successes();
    assert!(sent >= n && sent <= n + 4 * kills, "{sent} answered calls for {n} cases over {kills} kills");
    let records = show(&p, "answers");
    assert_all_answered(&records, n as usize);
    // The same output as one uninterrupted run, against a fresh server.
    let fresh = LlmServer::start(ServerConfig::default());
    let q = project(n as usize, &spec(&fresh.base_url(), 4, ANSWERS));
    run_ok(&q, &[]);
    let strip = |rs: Vec<Value>| -> Vec<Value> {
        rs.into_iter()
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("latency_ms");
                r
            })
            .collect()
    };
    assert_eq!(strip(records), strip(show(&q, "answers")), "the killed run's output differs");
    let tmp = p.path("specs/.flow/tmp");
    let left = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "temp files left in {}", tmp.display());
}

/// A server's `Retry-After` may be anything: a wait past the clock's range,
/// not a number, a date. Each is capped or ignored (never a panic that
/// leaves the node cancelled and the run "succeeded"), and every case is
/// answered after its retry.
#[test]
fn hostile_retry_after_values_are_survived() {
    for headers in [
        vec![("retry-after", "1e300")],
        vec![("retry-after-ms", "inf")],
        vec![("retry-after", "NaN"), ("retry-after-ms", "-1")],
        vec![("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")],
    ] {
        let server = LlmServer::start(ServerConfig {
            fail_every: Some(3),
            throttle_headers: headers.clone(),
            ..Default::default()
        });
        let p = project(6, &spec(&server.base_url(), 2, ANSWERS));
        let m = run_ok(&p, &[]);
        assert_eq!(m["status"], "succeeded", "{headers:?}");
        let c = calls(&m, "answers");
        assert!(count(&c, "retries") >= 1, "{headers:?}: {c}");
        assert_all_answered(&show(&p, "answers"), 6);
    }
}

#[test]
fn validate_rejects_bad_backend_specs() {
    let url = "http://127.0.0.1:9/v1";
    let good = spec(url, 4, ANSWERS);

    let literal = good.replace("api_key_env: FLOW_TEST_KEY", "api_key: sk-literal-0042");
    let e = rejected(&literal);
    assert!(e.contains("api_key_env"), "{e}");
    assert!(!e.contains("sk-literal-0042"), "the diagnostic shows the key: {e}");

    let e = rejected(&good.replace("backend: bot", "backend: bto"));
    assert!(e.contains("did you mean `bot`"), "{e}");

    let e = rejected(&good.replace("max_tokens: 64", "max_tokens: 64\n    params: {stream: true}"));
    assert!(e.contains("flow reads whole answers, not streams"), "{e}");
    // Durations that read as durations but cannot work.
    let e = rejected(&good.replace("timeout: 10s", "timeout: 0s"));
    assert!(e.contains("`timeout: 0s` would fail every call"), "{e}");
    let e = rejected(&good.replace("max_delay: 200ms", "max_delay: 5000000000000000000s"));
    assert!(e.contains("`retry.max_delay: ") && e.contains("is longer than a day"), "{e}");
    let e = rejected(&good.replace("initial_delay: 10ms", "initial_delay: 2s"));
    assert!(e.contains("`retry.initial_delay: 2s` is longer than `retry.max_delay: 200ms`"), "{e}");

    let e = rejected(&good.replace("{{question}}", "{{questoin}}"));
    assert!(e.contains("questoin") && e.contains("question"), "{e}");
    assert!(e.contains("did you mean `question`"), "{e}");
}

#[test]
fn rejected_key_fails_the_node_or_every_record() {
    let wrong = "sk-wrong-key-0099";
    let server = LlmServer::start(ServerConfig { api_key: Some("sk-right-key".into()), ..Default::default() });
    let n = 5;
    let with_max_errors = |m: &str| spec(&server.base_url(), 4, &format!("{ANSWERS}    max_errors: {m}\n"));

    let p = project(n, &with_max_errors("0"));
    let r = run_in_env(p.dir.path(), &["run", SPEC], &[("FLOW_TEST_KEY", wrong)]);
    assert_eq!(r.code, 1, "max_errors 0 with every call refused:\n{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
    assert!(!r.stderr.contains(wrong) && !r.stdout.contains(wrong), "the key was printed:\n{}", r.stderr);

    server.reset_counters();
    let p = project(n, &with_max_errors("\"100%\""));
    let r = run_in_env(p.dir.path(), &["run", SPEC], &[("FLOW_TEST_KEY", wrong)]);
    assert_eq!(r.code, 0, "max_errors 100%:\n{}{}", r.stdout, r.stderr);
    assert_eq!(server.requests(), n as u64, "a 401 is not worth retrying");
    let records = show(&p, "answers");
    assert_eq!(records.len(), n);
    for r in &records {
        assert!(r["output"].is_null(), "{r}");
        assert!(r["error"].as_str().is_some_and(|e| e.contains("401")), "{r}");
    }
    let m = p.latest_run("specs/.flow");
    assert_eq!(count(&calls(&m, "answers"), "errors"), n as u64);
}

/// A call that failed on a 500 after its retries is not frozen into the
/// cache: `flow plan` says so, and the next run, against a server that
/// recovered, sends exactly the failed calls (the memo answers the rest).
#[test]
fn calls_that_failed_after_retries_are_sent_again_and_only_they() {
    let server = LlmServer::start(ServerConfig { fail_every: Some(4), fail_status: Some(500), ..Default::default() });
    let n = 20;
    let no_retries = spec(&server.base_url(), 2, &format!("{ANSWERS}    max_errors: 10\n"))
        .replace("retry: {max_retries: 8,", "retry: {max_retries: 0,");
    let p = project(n, &no_retries);
    let first = run_ok(&p, &[]);
    assert_eq!(server.requests(), n as u64, "no retries: one request per case");
    let failed = count(&calls(&first, "answers"), "errors");
    assert_eq!(failed, 5, "every 4th request fails: {first}");
    assert_eq!(count(&calls(&first, "answers"), "retryable_errors"), 5, "{first}");
    let errored = show(&p, "answers").iter().filter(|r| !r["error"].is_null()).count();
    assert_eq!(errored, 5);

    let plan = flow(&p, &["plan", SPEC], &[]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let line = plan.stdout.lines().find(|l| l.starts_with("answers ")).unwrap();
    assert!(line.contains("will run (5 calls failed last time"), "{}", plan.stdout);

    server.recover();
    server.reset_counters();
    let second = run_ok(&p, &[]);
    assert_eq!(server.requests(), 5, "only the failed calls are sent again");
    assert_eq!(count(&calls(&second, "answers"), "memo_hits"), 15, "{second}");
    assert_all_answered(&show(&p, "answers"), n);

    server.reset_counters();
    let third = run_ok(&p, &[]);
    assert!(statuses(&third).iter().all(|(_, s)| s == "cached"), "{:?}", statuses(&third));
    assert_eq!(server.requests(), 0);
}

/// `--limit 5` runs the first five cases of every source; the full run
/// after it sends only the calls the subset did not make, and the subset's
/// entries never pass for the whole.
#[test]
fn a_limited_run_then_the_full_run_sends_each_call_once() {
    let server = LlmServer::start(ServerConfig::default());
    let n = 12;
    let p = project(n, &spec(&server.base_url(), 2, ANSWERS));
    let plan = flow(&p, &["plan", SPEC, "--limit", "5"], &[]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let line = plan.stdout.lines().find(|l| l.starts_with("answers ")).unwrap();
    assert!(line.split_whitespace().any(|w| w == "5"), "the plan counts 5 calls: {}", plan.stdout);

    let subset = run_ok(&p, &["--limit", "5"]);
    assert_eq!(server.requests(), 5);
    assert_eq!(node(&subset, "answers")["records_out"], 5);
    assert_eq!(show(&p, "answers").len(), 5);

    server.reset_counters();
    let plan = flow(&p, &["plan", SPEC], &[]);
    assert!(plan.stdout.contains("limit changed (--limit 5 → all records)"), "{}", plan.stdout);
    let full = run_ok(&p, &[]);
    assert_eq!(server.requests(), (n - 5) as u64, "only the calls the subset did not make");
    assert_eq!(count(&calls(&full, "answers"), "memo_hits"), 5, "{full}");
    assert_all_answered(&show(&p, "answers"), n);

    // The subset again: cached, nothing sent.
    server.reset_counters();
    let again = run_ok(&p, &["--limit", "5"]);
    assert!(statuses(&again).iter().all(|(_, s)| s == "cached"), "{:?}", statuses(&again));
    assert_eq!(server.requests(), 0);
    let r = flow(&p, &["run", SPEC, "--limit", "0"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// `prompts:` sends every case once per named variant, one of them from a
/// file; each answer carries its `variant`, in input order then variant
/// order. Editing the prompt file re-sends only that variant's calls.
#[test]
fn prompt_variants_fan_out_and_a_prompt_file_is_part_of_the_key() {
    let server = LlmServer::start(ServerConfig::default());
    let n = 4;
    let variants = "  answers:\n    kind: run\n    input: cases\n    backend: bot\n    prompts:\n      short: \"{{question}}\"\n      detailed: file:prompts/detailed.txt\n";
    let p = project(n, &spec(&server.base_url(), 2, variants));
    p.write("specs/prompts/detailed.txt", "Think, then answer: {{question}}\n");
    let plan = flow(&p, &["plan", SPEC], &[]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(plan.stdout.contains("8 backend calls"), "{}", plan.stdout);

    let first = run_ok(&p, &[]);
    assert_eq!(server.requests(), 8);
    let sent: Vec<String> =
        server.bodies().iter().map(|b| b["messages"][0]["content"].as_str().unwrap().to_string()).collect();
    for i in 0..n {
        assert!(sent.contains(&format!("what is {i}+1?")), "{sent:?}");
        assert!(sent.contains(&format!("Think, then answer: what is {i}+1?\n")), "{sent:?}");
    }
    let records = show(&p, "answers");
    let tags: Vec<(String, String)> =
        records.iter().map(|r| (r["id"].as_str().unwrap().into(), r["variant"].as_str().unwrap().into())).collect();
    let want: Vec<(String, String)> =
        (0..n).flat_map(|i| [(format!("c{i}"), "short".into()), (format!("c{i}"), "detailed".into())]).collect();
    assert_eq!(tags, want);
    assert_eq!(records[1]["output"], "echo: Think, then answer: what is 0+1?\n");
    assert_eq!(node(&first, "answers")["records_out"], 8);

    p.write("specs/prompts/detailed.txt", "Answer: {{question}}\n");
    let plan = flow(&p, &["plan", SPEC], &[]);
    assert!(plan.stdout.contains("input file changed: prompts/detailed.txt"), "{}", plan.stdout);
    server.reset_counters();
    run_ok(&p, &[]);
    assert_eq!(server.requests(), n as u64, "only the edited variant's calls");

    let both = spec(&server.base_url(), 2, &format!("{variants}    prompt: \"{{{{question}}}}\"\n"));
    p.write(SPEC, &both);
    let r = flow(&p, &["validate", SPEC], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("node `answers` has both `prompt` and `prompts`"), "{}", r.stderr);
    assert!(r.stderr.contains("specs/t.yaml:"), "a location: {}", r.stderr);
}
