//! Throughput under API weather, checked from the server's side: a record
//! waiting out a long `Retry-After` holds back no other, a server that
//! refuses calls past a concurrency limit gets about that many, and an
//! input file whose bytes did not change is not read again to plan a run.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::common::{node, Project};
use crate::llm_server::{LlmServer, ServerConfig};
use crate::openai::{self, assert_all_answered, project, run_ok, show, ANSWERS};

/// The question of case `i`, as [`openai::cases`] writes it.
fn question(i: usize) -> String {
    format!("what is {i}+1?")
}

/// `load → run` against `url`: at most `cap` calls in flight, `retry` as
/// the backend's retry settings.
fn spec(url: &str, cap: u32, retry: &str) -> String {
    openai::spec_with_retry(url, cap, ANSWERS, retry)
}

/// One record is refused with `Retry-After: 3`; every other record's call
/// reaches the server before that one is tried again, and the output is
/// in input order all the same.
#[test]
fn a_record_waiting_out_a_long_retry_after_holds_back_no_other() {
    let n = 60;
    let stalled = question(2);
    let server = LlmServer::start(ServerConfig {
        latency: Duration::from_millis(5),
        stall: Some((stalled.clone(), "3")),
        ..Default::default()
    });
    let p = project(n, &spec(&server.base_url(), 4, "{max_retries: 2, initial_delay: 10ms, max_delay: 1s}"));
    let m = run_ok(&p, &[]);
    assert_all_answered(&show(&p, "answers"), n);

    let arrived = server.arrived();
    let at: Vec<usize> = arrived.iter().enumerate().filter(|(_, q)| **q == stalled).map(|(i, _)| i).collect();
    assert_eq!(at.len(), 2, "the stalled record is sent twice: {arrived:?}");
    let late: Vec<&String> = arrived[at[1]..].iter().filter(|q| **q != stalled).collect();
    assert!(
        late.is_empty(),
        "{} records were sent only after the stalled one's retry, held back by it: {late:?}",
        late.len()
    );
    let calls = &node(&m, "answers")["calls"];
    assert_eq!((calls["requests"].as_u64(), calls["retries"].as_u64()), (Some(n as u64), Some(1)), "{calls}");
    // One 429 in 60 is no reason to send fewer calls.
    assert!(calls.get("concurrency").is_none(), "the cap moved for a single 429: {calls}");
}

/// A server refusing (429, no `Retry-After`) every request past 4 in
/// flight, against `max_concurrency: 32`: flow settles at about 4, and no
/// record fails.
#[test]
fn a_servers_concurrency_limit_is_found_and_no_record_fails() {
    let (n, limit) = (400, 4u32);
    let server = LlmServer::start(ServerConfig {
        latency: Duration::from_millis(10),
        max_concurrent: Some(u64::from(limit)),
        throttle_headers: vec![],
        ..Default::default()
    });
    let p = project(n, &spec(&server.base_url(), 32, "{max_retries: 10, initial_delay: 10ms, max_delay: 100ms}"));
    let m = run_ok(&p, &[]);
    assert_all_answered(&show(&p, "answers"), n);

    let arrivals = server.arrivals();
    let late = &arrivals[arrivals.len() / 2..];
    let over = late.iter().filter(|&&k| k > limit + 2).count();
    let most = late.iter().max().copied().unwrap_or(0);
    assert!(
        most <= limit * 2 && over * 20 <= late.len(),
        "over the second half of the run, up to {most} requests were in flight, {over} of {} arrivals beyond {}",
        late.len(),
        limit + 2
    );
    let refused = server.throttled();
    assert!(
        refused * 4 < server.requests(),
        "{refused} of {} requests refused: the calls did not adapt to the limit",
        server.requests()
    );
    let c = &node(&m, "answers")["calls"]["concurrency"];
    assert_eq!(c["max"], 32, "{c}");
    let low = c["low"].as_u64().unwrap_or_else(|| panic!("no concurrency low point in the manifest: {c}"));
    assert!(low <= u64::from(limit), "the cap never went down to the limit of {limit}: {c}");
    assert!(c["throttled_ms"].as_u64().is_some_and(|ms| ms > 0), "{c}");
}

/// Sets `path`'s modification time to `ago` before now, as a file that has
/// been there a while has (a fresh one is re-hashed: its time may not yet
/// tell a later write apart).
fn age(path: &std::path::Path, ago: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

/// A touched input (same bytes, new time) keeps the node cached; changed
/// bytes of the same size do not, even with the time put back.
#[test]
fn a_touched_input_stays_cached_and_a_changed_one_does_not() {
    let p = Project::empty();
    let data = p.path("specs/data/cases.jsonl");
    p.write("specs/data/cases.jsonl", "{\"id\": \"a\", \"x\": 1}\n{\"id\": \"b\", \"x\": 2}\n");
    p.write(
        "specs/t.yaml",
        "flow: 1\nname: t\nnodes:\n  cases: {kind: load, path: data/cases.jsonl}\n  scores:\n    kind: evaluate\n    input: cases\n    metrics: [{type: exact_match, field: x, expected: \"1\"}]\n",
    );
    age(&data, Duration::from_secs(3600));
    let status = |m: &Value| node(m, "cases")["status"].as_str().unwrap().to_string();
    let m = p.run_ok(&["specs/t.yaml"]);
    assert_eq!(status(&m), "ran");
    // The second run records the file's stat (the workspace exists now).
    assert_eq!(status(&p.run_ok(&["specs/t.yaml"])), "cached");
    let stats = p.path("specs/.flow/stat-cache.json");
    assert!(stats.is_file(), "no stat cache written");

    // Same bytes, a new time.
    age(&data, Duration::from_secs(60));
    assert_eq!(status(&p.run_ok(&["specs/t.yaml"])), "cached", "a touched file re-ran its node");

    // Other bytes of the same size, the old time put back: the change of
    // ctime gives it away.
    p.write("specs/data/cases.jsonl", "{\"id\": \"a\", \"x\": 3}\n{\"id\": \"b\", \"x\": 2}\n");
    age(&data, Duration::from_secs(60));
    let m = p.run_ok(&["specs/t.yaml"]);
    assert_eq!(status(&m), "ran", "changed bytes were taken for the old ones");
    assert_eq!(node(&m, "scores")["status"], "ran");

    // A damaged stat cache is ignored and written anew.
    std::fs::write(&stats, "{not json").unwrap();
    assert_eq!(status(&p.run_ok(&["specs/t.yaml"])), "cached");
    let text = std::fs::read_to_string(&stats).unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_ok(), "the damaged stat cache was not rewritten: {text}");
}
