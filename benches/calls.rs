//! End-to-end benchmark of backend calls: `flow run` on a `load → run`
//! pipeline against an in-process OpenAI-compatible server.
//!
//! One question per scenario:
//!
//! - **A overhead**: 10,000 cases answered at once (0 ms latency). How fast
//!   does the engine itself issue, memoize and write calls, and how much
//!   memory does that take? Wall time and peak RSS.
//! - **B concurrency**: 1,000 cases at 200 ms latency with
//!   `max_concurrency: 64`. Ideally the run takes 1000 / 64 × 0.2 s =
//!   3.125 s; the ratio to that shows how well the 64 slots are kept busy.
//! - **C faults**: 200 cases at concurrency 16 and 30 ms latency, every
//!   10th case failing once (429 and 500 in turn; its retry succeeds), the
//!   429 with `Retry-After: 1` (C1) or none (C2). The work is 0.375 s; a
//!   run can do no better than the work plus one wait, since the last
//!   failed record waits its second.
//! - **D weather**: 10,000 cases at concurrency 64 and 20 ms latency, 2% of
//!   cases answered 429 with `Retry-After: 2` once, against the same run
//!   without faults (D0): a throttled record should cost its own wait, not
//!   the node's. The outputs of both must be the same records.
//! - **E limit**: 1,000 cases at 20 ms against a server that refuses (429,
//!   no `Retry-After`) every request past 8 in flight, `max_concurrency:
//!   64`: the cap should settle near 8, no record failing. Printed: the
//!   requests in flight at the server as the second half of them arrived,
//!   the share refused, the cap's low point and end from the manifest.
//!
//! - **F shards**: 2,000 cases at 200 ms latency, concurrency 16 per
//!   process, on 1, 2 and 4 shard processes at once (`--shard i/n` on one
//!   workspace), then the merge (a plain run, answered by the memo): wall
//!   time of the shards and the speed-up over one process, and the merge's.
//!
//! Each run is the real `flow` binary as a child process, with a fresh
//! workspace and `--no-cache`, so every call reaches the server; the server
//! counts them, and a run that did not answer one call per case fails the
//! benchmark. Wall time is from spawn to reap; peak RSS is the child's, from
//! `wait4`'s `ru_maxrss`. Medians are printed beside the targets, never
//! asserted: timings on shared machines are noisy.
//!
//! ```text
//! cargo bench --bench calls
//! FLOW_BENCH_ONLY=C,D FLOW_BENCH_RUNS=5 cargo bench --bench calls
//! FLOW_BENCH_BIN=/path/to/an/older/flow cargo bench --bench calls   # before/after
//! ```
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it does one
//! small run of each scenario, to check that the pipeline works, and exits.

#[path = "../tests/support/llm_server/mod.rs"]
mod llm_server;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

#[path = "support/mod.rs"]
mod support;

use support::{
    flow_bin, format_secs, latest_manifest, median, quantile, run_flow_args, runs, selected, show, thousands,
};

use llm_server::{LlmServer, ServerConfig};

/// Runs per scenario when benchmarking; the median is reported.
const RUNS: usize = 3;

/// The environment variable the spec names for the API key.
const KEY_VAR: &str = "FLOW_BENCH_KEY";

/// Retries for the scenarios without faults, and with them: long enough a
/// `max_delay` that a `Retry-After` of 2 s is honoured (the backend waits
/// at most 4 × `max_delay`).
const QUICK_RETRY: &str = "{max_retries: 2, initial_delay: 10ms, max_delay: 100ms}";
const PATIENT_RETRY: &str = "{max_retries: 4, initial_delay: 100ms, max_delay: 1s}";

/// One measured setup.
struct Scenario {
    label: &'static str,
    cases: usize,
    concurrency: u32,
    retry: &'static str,
    server: ServerConfig,
}

impl Scenario {
    fn new(label: &'static str, cases: usize, concurrency: u32, latency_ms: u64) -> Self {
        let server =
            ServerConfig { latency: Duration::from_millis(latency_ms), record_bodies: false, ..Default::default() };
        Self { label, cases, concurrency, retry: QUICK_RETRY, server }
    }

    /// Every `every`-th request fails: 429 and 500 in turn, or `status`.
    fn failing(mut self, every: u32, status: Option<u16>, throttle: Vec<(&'static str, &'static str)>) -> Self {
        self.server.fail_every = Some(every);
        self.server.fail_status = status;
        self.server.throttle_headers = throttle;
        self.server.fail_once = true;
        self.retry = PATIENT_RETRY;
        self
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs bench targets without it.
    let benching = std::env::args().any(|a| a == "--bench");
    println!("flow binary: {}", flow_bin());
    let (scale, runs) = if benching { (1, runs(RUNS)) } else { (10, 1) };
    let smoke = if benching { "" } else { " (smoke)" };
    let label = |l: &str| format!("{l}{smoke}");

    if selected("A") {
        let s = Scenario::new("A overhead", 10_000 / scale, 64, 0);
        let a = bench(&s, runs);
        println!(
            "{:<24} {:>6} cases  median {:>9}  cpu {:>9}  {:>9} rec/s  peak RSS {:>6.1} MiB  (the node: {} ms; {})   target: <= 0.6 s, <= 45 MB",
            label(s.label),
            s.cases,
            format_secs(a.wall),
            format_secs(a.cpu),
            thousands((s.cases as f64 / a.wall.as_secs_f64()).round() as u64),
            a.rss_mib,
            a.node_ms,
            a.spread(),
        );
    }

    if selected("B") {
        let s = Scenario::new("B concurrency", 1_000 / scale, 64, if benching { 200 } else { 50 });
        let b = bench(&s, runs);
        // The fluid ideal, cases / slots × latency: 3.125 s for 1,000 cases.
        // Whole rounds of 64 take 3.2 s, so 1.024× is the best a run can score.
        let ideal = s.cases as f64 / f64::from(s.concurrency) * s.server.latency.as_secs_f64();
        println!(
            "{:<24} {:>6} cases  median {:>9}  ideal {:>8}  ratio {:.3}x  peak RSS {:>6.1} MiB  ({})   target: ratio <= 1.05",
            label(s.label),
            s.cases,
            format_secs(b.wall),
            format_secs(Duration::from_secs_f64(ideal)),
            b.wall.as_secs_f64() / ideal,
            b.rss_mib,
            b.spread(),
        );
    }

    if selected("C") {
        for (name, headers) in
            [("C1 faults, Retry-After: 1", vec![("retry-after", "1")]), ("C2 faults, no Retry-After", vec![])]
        {
            let s = Scenario::new(name, 200, 16, 30).failing(10, None, headers);
            let c = bench(&s, runs);
            println!(
                "{:<24} {:>6} cases  median {:>9}  {} retries  ({})   target: <= 1.5 s",
                label(s.label),
                s.cases,
                format_secs(c.wall),
                c.retries,
                c.spread(),
            );
        }
    }

    if selected("D") {
        let cases = 10_000 / scale;
        let clean = Scenario::new("D0 clean", cases, 64, 20);
        let faulty =
            Scenario::new("D weather, 2% 429", cases, 64, 20).failing(50, Some(429), vec![("retry-after", "2")]);
        let d0 = bench(&clean, runs);
        let d = bench(&faulty, runs);
        let same = d0.outputs == d.outputs;
        let target = d0.wall.as_secs_f64() * 1.3 + 2.0;
        for (s, m) in [(&clean, &d0), (&faulty, &d)] {
            println!(
                "{:<24} {:>6} cases  median {:>9}  {} retries  ({})",
                label(s.label),
                s.cases,
                format_secs(m.wall),
                m.retries,
                m.spread()
            );
        }
        println!(
            "{:<24} {:.2}x clean{}; outputs identical: {same}   target: <= 1.3 × clean + 2 s = {}",
            label("D ratio"),
            d.wall.as_secs_f64() / d0.wall.as_secs_f64(),
            d.concurrency.as_deref().map(|c| format!(", cap {c}")).unwrap_or_default(),
            format_secs(Duration::from_secs_f64(target)),
        );
    }

    if selected("F") {
        shards(if benching { 2_000 } else { 100 }, runs, smoke);
    }

    if selected("E") {
        let mut s = Scenario::new("E limit 8", 1_000 / scale, 64, 20);
        s.server.max_concurrent = Some(8);
        s.server.throttle_headers = vec![];
        s.retry = "{max_retries: 10, initial_delay: 20ms, max_delay: 200ms}";
        let e = bench(&s, runs);
        let ideal = s.cases as f64 / 8.0 * s.server.latency.as_secs_f64();
        println!(
            "{:<24} {:>6} cases  median {:>9}  ideal {:>8}  in flight (2nd half) p50 {} p95 {} max {}  refused {:.1}%  failed {}  cap {}  ({})   target: ~8 in flight, none failed",
            label(s.label),
            s.cases,
            format_secs(e.wall),
            format_secs(Duration::from_secs_f64(ideal)),
            e.in_flight.0,
            e.in_flight.1,
            e.in_flight.2,
            e.refused_pct,
            e.failed,
            e.concurrency.as_deref().unwrap_or("-"),
            e.spread(),
        );
    }
}

/// F: the shards at once, then the merge, for each process count.
fn shards(cases: usize, runs: usize, smoke: &str) {
    let mut s = Scenario::new("F shards", cases, 16, 200);
    s.server.record_bodies = false;
    let mut one = None;
    for n in [1u32, 2, 4] {
        let (mut walls, mut merges) = (Vec::new(), Vec::new());
        let mut requests = 0;
        for _ in 0..runs {
            let server = LlmServer::start(s.server.clone());
            let dir = tempfile::tempdir().expect("create a temp dir");
            let spec = dir.path().join("bench.yaml");
            let workspace = dir.path().join(".flow");
            write_cases(&dir.path().join("cases.jsonl"), s.cases);
            std::fs::write(&spec, spec_text(&server.base_url(), &s)).expect("write bench.yaml");
            let started = std::time::Instant::now();
            let children: Vec<_> = (0..n)
                .map(|i| {
                    std::process::Command::new(flow_bin())
                        .args(["run", "--quiet", "--shard", &format!("{i}/{n}"), "--workspace"])
                        .arg(&workspace)
                        .arg(&spec)
                        .env(KEY_VAR, "bench-key")
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .expect("spawn a shard")
                })
                .collect();
            for mut c in children {
                assert!(c.wait().expect("a shard ends").success(), "a shard failed");
            }
            walls.push(started.elapsed());
            requests = server.requests();
            let merge = run_flow_args(&spec, &workspace, &[(KEY_VAR, "bench-key")], &[]);
            assert_eq!(merge.code, 0, "the merge failed");
            assert_eq!(server.requests(), requests, "the merge sent calls");
            merges.push(merge.wall);
        }
        let wall = median(walls.clone());
        let speedup = one.map_or(1.0, |w: Duration| w.as_secs_f64() / wall.as_secs_f64());
        one.get_or_insert(wall);
        let all: Vec<String> = walls.iter().map(|w| format_secs(*w)).collect();
        println!(
            "{:<24} {:>6} cases  {n} process{}  median {:>9}  speed-up {speedup:.2}x  {requests} requests  merge {:>8}  ({} runs: {})   target: >= 3.2x at 4",
            format!("F shards{smoke}"),
            s.cases,
            if n == 1 { "  " } else { "es" },
            format_secs(wall),
            format_secs(median(merges)),
            all.len(),
            all.join(", ")
        );
    }
}

/// Medians over the runs of one scenario, and what the last run showed.
struct Measured {
    wall: Duration,
    /// Median CPU time of `flow` (user + system).
    cpu: Duration,
    rss_mib: f64,
    walls: Vec<Duration>,
    /// Retried attempts, per the last run's manifest.
    retries: u64,
    /// Records that failed in the last run (its node's `errors`, or all of
    /// them when the node failed).
    failed: u64,
    /// The cap as the last run's manifest has it: `low..end of max`.
    concurrency: Option<String>,
    /// Requests in flight at the server as the second half arrived, in the
    /// last run: p50, p95, max.
    in_flight: (u32, u32, u32),
    /// 429s among the requests of the last run, in percent.
    refused_pct: f64,
    /// The last run's records without `latency_ms` (which no two runs share).
    outputs: Vec<Value>,
    /// The `answers` node's own wall time in the last run, from its manifest.
    node_ms: u64,
}

impl Measured {
    /// The individual wall times, to show the noise.
    fn spread(&self) -> String {
        let all: Vec<String> = self.walls.iter().map(|w| format_secs(*w)).collect();
        format!("{} run{}: {}", all.len(), if all.len() == 1 { "" } else { "s" }, all.join(", "))
    }
}

/// Starts a server, writes the cases and the spec, runs `flow` `runs` times.
fn bench(s: &Scenario, runs: usize) -> Measured {
    let server = LlmServer::start(s.server.clone());
    let dir = tempfile::tempdir().expect("create a temp dir");
    let spec = dir.path().join("bench.yaml");
    let workspace = dir.path().join(".flow");
    write_cases(&dir.path().join("cases.jsonl"), s.cases);
    std::fs::write(&spec, spec_text(&server.base_url(), s)).expect("write bench.yaml");

    let mut walls = Vec::with_capacity(runs);
    let mut rss = Vec::with_capacity(runs);
    let mut cpus = Vec::with_capacity(runs);
    let mut failed = 0;
    for _ in 0..runs {
        // A fresh workspace each time, so every run does the same work.
        if workspace.exists() {
            std::fs::remove_dir_all(&workspace).expect("remove the previous run's workspace");
        }
        server.reset_counters();
        let ran = run_flow_args(&spec, &workspace, &[(KEY_VAR, "sk-bench-0000")], &["--no-cache"]);
        let (wall, max_rss_kib, code) = (ran.wall, ran.max_rss_kib, ran.code);
        cpus.push(ran.cpu);
        let answers = node_calls(&latest_manifest(&workspace));
        failed = if code == 0 { answers["errors"].as_u64().unwrap_or(0) } else { s.cases as u64 };
        let answered = server.successes();
        assert!(
            code != 0 || answered == s.cases as u64,
            "{}: the server answered {answered} requests, expected {} calls",
            s.label,
            s.cases
        );
        walls.push(wall);
        rss.push(max_rss_kib as f64 / 1024.0);
    }
    let manifest = latest_manifest(&workspace);
    let calls = node_calls(&manifest);
    let node_ms = manifest["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["name"] == "answers"))
        .and_then(|n| n["wall_ms"].as_u64())
        .unwrap_or(0);
    let concurrency = calls.get("concurrency").map(|c| format!("{}..{} of {}", c["low"], c["cap"], c["max"]));
    let arrivals = server.arrivals();
    let late = arrivals[arrivals.len() / 2..].to_vec();
    let in_flight = if late.is_empty() {
        (0, 0, 0)
    } else {
        (quantile(late.clone(), 0.5), quantile(late.clone(), 0.95), quantile(late, 1.0))
    };
    let refused_pct = 100.0 * server.throttled() as f64 / server.requests().max(1) as f64;
    let outputs = if failed == s.cases as u64 {
        Vec::new()
    } else {
        show(&workspace, "answers")
            .into_iter()
            .map(|mut r| {
                r.as_object_mut().map(|o| o.remove("latency_ms"));
                r
            })
            .collect()
    };
    Measured {
        cpu: median(cpus),
        wall: median(walls.clone()),
        rss_mib: median(rss),
        walls,
        retries: calls["retries"].as_u64().unwrap_or(0),
        failed,
        concurrency,
        in_flight,
        refused_pct,
        outputs,
        node_ms,
    }
}

/// The `answers` node's call stats in a run manifest.
fn node_calls(manifest: &Value) -> Value {
    manifest["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["name"] == "answers"))
        .map(|n| n["calls"].clone())
        .unwrap_or(Value::Null)
}

/// `load → run` against the server at `url`.
fn spec_text(url: &str, s: &Scenario) -> String {
    format!(
        r#"flow: 1
name: calls
backends:
  bot:
    provider: openai
    base_url: {url}
    model: bench-model
    api_key_env: {KEY_VAR}
    temperature: 0
    max_tokens: 64
    max_concurrency: {}
    timeout: 30s
    retry: {}
nodes:
  cases:
    kind: load
    path: cases.jsonl
  answers:
    kind: run
    input: cases
    backend: bot
    prompt: "{{{{question}}}}"
    max_errors: 100%
"#,
        s.concurrency, s.retry
    )
}

/// Writes `n` distinct cases as JSONL.
fn write_cases(path: &Path, n: usize) {
    let mut text = String::with_capacity(n * 80);
    for i in 0..n {
        text.push_str(&format!(
            "{{\"id\": \"c{i:06}\", \"question\": \"How many parcels left depot {} on day {}?\"}}\n",
            i % 97,
            i
        ));
    }
    std::fs::write(path, text).expect("write cases.jsonl");
}
