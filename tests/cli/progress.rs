//! What a run shows while it goes, against a slow local server: under a
//! real terminal (a tmux pane of fixed size) the bars show done/total and
//! an ETA, colour unless `NO_COLOR`, and a 429's retry wait as "backing off
//! (429, retry in N s)"; piped, a plain line per node at least every five
//! seconds; `--json` events carry totals and the end's figures; `--quiet`
//! says nothing. Assertions are on content and counts, not on timing.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{run_in_env, Project, FLOW};
use crate::llm_server::{LlmServer, ServerConfig};

const KEY: &str = "sk-test-key-0002";

/// A project whose `answers` node asks the server at `url` one case at a
/// time, for `n` cases, then scores them.
fn slow_project(url: &str, n: usize, retry: &str) -> Project {
    let p = Project::empty();
    let cases: String =
        (0..n).map(|i| format!("{{\"id\": \"c{i}\", \"question\": \"q{i}\", \"expected\": \"x\"}}\n")).collect();
    p.write("specs/data/cases.jsonl", &cases);
    p.write(
        "specs/t.yaml",
        &format!(
            "flow: 1
name: t
backends:
  bot:
    provider: openai
    base_url: {url}
    model: test-model
    api_key_env: FLOW_TEST_KEY
    max_concurrency: 1
    timeout: 10s
    retry: {retry}
nodes:
  cases: {{kind: load, path: data/cases.jsonl}}
  answers: {{kind: run, input: cases, backend: bot, prompt: \"{{{{question}}}}\"}}
  scores:
    kind: evaluate
    input: answers
    metrics: [{{type: exact_match, expected: \"{{{{expected}}}}\"}}]
"
        ),
    );
    p
}

/// A tmux server of its own (its own socket), one pane of 160×30 running
/// a command; killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` in `dir` with `envs`, under a real terminal. The
    /// pane stays open after the command ends, so its last screen can be read.
    fn start(dir: &Path, command: &str, envs: &[(&str, &str)]) -> Option<Tmux> {
        static N: AtomicU32 = AtomicU32::new(0);
        if Command::new("tmux").arg("-V").output().is_err() {
            assert!(std::env::var_os("CI").is_none(), "tmux is required in CI: .ci/run installs it");
            eprintln!("skipping: no tmux");
            return None;
        }
        let socket = format!("flow-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let exports: String = envs.iter().map(|(k, v)| format!("export {k}='{v}'; ")).collect();
        let script = format!("cd '{}' && unset FLOW_LOG; {exports}{command}; sleep 600", dir.display());
        let ok = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "30", &script])
            .env_remove("TMUX")
            .status()
            .expect("tmux runs")
            .success();
        assert!(ok, "tmux new-session failed");
        Some(Tmux { socket })
    }

    /// The pane's screen; with `escapes`, its colours as escape sequences.
    fn screen(&self, escapes: bool) -> String {
        let mut args = vec!["-L", &self.socket, "capture-pane", "-p", "-t", "0"];
        if escapes {
            args.push("-e");
        }
        let out = Command::new("tmux").args(&args).output().expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the screen until `found` holds (true) or `limit` passes.
    fn wait_for(&self, limit: Duration, escapes: bool, found: impl Fn(&str) -> bool) -> (bool, String) {
        let start = Instant::now();
        loop {
            let s = self.screen(escapes);
            if found(&s) || start.elapsed() > limit {
                return (found(&s), s);
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

#[test]
fn a_terminal_shows_bars_with_totals_eta_and_colour() {
    let server = LlmServer::start(ServerConfig { latency: Duration::from_millis(400), ..ServerConfig::default() });
    let p = slow_project(&server.base_url(), 20, "{max_retries: 2}");
    let Some(tmux) = Tmux::start(p.dir.path(), &format!("{FLOW} run specs/t.yaml"), &[("FLOW_TEST_KEY", KEY)]) else {
        return;
    };
    let eta = regex::Regex::new(r"answers\s+\[[=> ]+\] \d+/20 records \(\d+%\) · [\d.]+/s · ETA \d+ s").unwrap();
    let (seen, screen) = tmux.wait_for(Duration::from_secs(30), false, |s| eta.is_match(s));
    assert!(seen, "no bar with a total and an ETA:\n{screen}");
    assert!(screen.contains("scores"), "a bar per node:\n{screen}");
    let coloured = tmux.screen(true);
    assert!(coloured.contains("\x1b[36m") || coloured.contains("\x1b[38;5;6m"), "the bar is cyan: {coloured:?}");
    let (done, screen) = tmux.wait_for(Duration::from_secs(60), false, |s| s.contains("succeeded"));
    assert!(done, "the run did not end:\n{screen}");
}

#[test]
fn a_terminal_shows_a_429s_retry_wait_and_no_colour_with_no_color() {
    let server = LlmServer::start(ServerConfig {
        fail_every: Some(2),
        throttle_headers: vec![("retry-after", "6")],
        ..ServerConfig::default()
    });
    let p = slow_project(&server.base_url(), 6, "{max_retries: 4, initial_delay: 10ms, max_delay: 2s}");
    let cmd = format!("{FLOW} run specs/t.yaml");
    let Some(tmux) = Tmux::start(p.dir.path(), &cmd, &[("FLOW_TEST_KEY", KEY), ("NO_COLOR", "1")]) else { return };
    let waiting = regex::Regex::new(r"answers .*backing off \(429, retry in \d+ s\)").unwrap();
    let (seen, screen) = tmux.wait_for(Duration::from_secs(30), false, |s| waiting.is_match(s));
    assert!(seen, "no backing-off state shown:\n{screen}");
    let raw = tmux.screen(true);
    let sgr = regex::Regex::new(r"\x1b\[(3|4|9)\d(;|m)|\x1b\[38;").unwrap();
    assert!(!sgr.is_match(&raw), "colour despite NO_COLOR: {raw:?}");
}

#[test]
fn piped_a_plain_line_appears_at_least_every_five_seconds() {
    let server = LlmServer::start(ServerConfig { latency: Duration::from_millis(600), ..ServerConfig::default() });
    let p = slow_project(&server.base_url(), 24, "{max_retries: 2}");
    let started = Instant::now();
    let r = run_in_env(p.dir.path(), &["run", "specs/t.yaml"], &[("FLOW_TEST_KEY", KEY)]);
    let took = started.elapsed();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains('\x1b'), "no escape codes off a terminal: {:?}", r.stderr);
    assert!(r.stderr.contains("[answers] run: started (24 records expected)"), "{}", r.stderr);
    let line = regex::Regex::new(r"^\[answers\] run: (\d+)/24 records \(\d+%\), [\d.]+/s, ETA \d+ s$").unwrap();
    let done: Vec<u64> = r.stderr.lines().filter_map(|l| line.captures(l)).map(|c| c[1].parse().unwrap()).collect();
    // 24 calls of 0.6 s one at a time: at least 14 s, a line every 5 s.
    assert!(done.len() >= 2, "{} progress lines in {took:?}:\n{}", done.len(), r.stderr);
    assert!(done.len() as u64 <= took.as_secs() / 5 + 1, "more than one line per 5 s:\n{}", r.stderr);
    assert!(done.windows(2).all(|w| w[0] < w[1]), "the count goes up: {done:?}");
    assert!(r.stderr.lines().any(|l| l.starts_with("[answers] ran: 24 records in ")), "{}", r.stderr);
}

#[test]
fn json_events_carry_totals_and_the_end_its_figures_and_report() {
    let p = Project::demo();
    let r = p.flow(&["run", "specs/demo.yaml", "--json", "-o", "r.csv"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let events: Vec<Value> = r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let started: Vec<&Value> = events.iter().filter(|e| e["event"] == "node_started").collect();
    assert_eq!(started.len(), 2);
    assert!(started.iter().all(|e| e["total"] == 8), "the load counted its file: {started:?}");
    let end = events.last().unwrap();
    assert_eq!(end["event"], "run_finished");
    assert_eq!(end["status"], "succeeded");
    assert_eq!(end["nodes"]["ran"], 2);
    assert_eq!(end["records"]["scores"], 8);
    assert_eq!(end["outputs"], serde_json::json!(["r.csv"]));
    let report = p.dir.path().join(end["report"].as_str().unwrap());
    assert!(report.is_file(), "{end}");
}

#[test]
fn quiet_says_nothing_and_help_documents_logs_and_colour() {
    let p = Project::demo();
    let r = p.flow(&["run", "specs/demo.yaml", "--quiet"]);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    let v = p.flow(&["run", "specs/demo.yaml", "-v", "--quiet"]);
    assert_eq!(v.code, 0);
    assert!(v.stderr.contains("DEBUG") && v.stderr.contains("assessed"), "-v logs at debug: {}", v.stderr);
    let help = p.flow(&["--help"]);
    for s in ["FLOW_LOG", "NO_COLOR", "-v, --verbose"] {
        assert!(help.stdout.contains(s), "{s}: {}", help.stdout);
    }
    let help = p.flow(&["run", "--help"]);
    for s in ["-q, --quiet", "-o, --output <FILE>", ".xml (JUnit), .csv, .jsonl, .json"] {
        assert!(help.stdout.contains(s), "{s}: {}", help.stdout);
    }
}

/// Under bars, a batch's news is printed above them, each line whole.
#[test]
fn a_terminal_shows_batch_news_above_the_bars() {
    let p = Project::empty();
    let cases: String = (0..10).map(|i| format!("{{\"id\": \"c{i}\", \"question\": \"what is {i}+1?\"}}\n")).collect();
    p.write("specs/data/cases.jsonl", &cases);
    p.write(
        "specs/t.yaml",
        "flow: 1\nname: t\nbackends:\n  bot: {provider: sim, batch: {poll: 300ms}}\nnodes:\n  cases: {kind: load, path: data/cases.jsonl}\n  answers: {kind: run, input: cases, backend: bot, prompt: \"{{question}}\"}\n",
    );
    let Some(tmux) = Tmux::start(p.dir.path(), &format!("{FLOW} run specs/t.yaml"), &[]) else { return };
    let (done, screen) = tmux.wait_for(Duration::from_secs(60), false, |s| s.contains("succeeded"));
    assert!(done, "the run did not end:\n{screen}");
    let created = regex::Regex::new(r"(?m)^backend `bot`: batch batch_sim_\S+ created with 10 requests").unwrap();
    assert!(created.is_match(&screen), "no whole line for the batch:\n{screen}");
    assert!(screen.contains("completed: 10 answered, 0 failed"), "{screen}");
}
