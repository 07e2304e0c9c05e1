//! The call memo as the real `flow` sees it, in real files: damaged on
//! disk, on a disk that refuses writes, read by `flow plan` while a run
//! records into it, shared by two runs at once. What is checked is what the
//! local server received and what the memo holds afterwards, not only what
//! flow says.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flow_engine::cache::CallMemo;

use crate::common::{node, run_in_env, Project, Run, FLOW};
use crate::llm_server::{LlmServer, ServerConfig};

const KEY: &str = "sk-test-key-0002";

/// A spec named `name` whose `answers` node asks the backend at `url` one
/// question per case of `data/<name>.jsonl`, `cap` calls at a time.
fn spec(name: &str, url: &str, cap: u32) -> String {
    format!(
        "flow: 1
name: {name}
backends:
  bot:
    provider: openai
    base_url: {url}
    model: test-model
    api_key_env: FLOW_TEST_KEY
    temperature: 0
    max_concurrency: {cap}
    timeout: 10s
    retry: {{max_retries: 2, initial_delay: 10ms, max_delay: 50ms}}
nodes:
  cases: {{kind: load, path: data/{name}.jsonl}}
  answers:
    kind: run
    input: cases
    backend: bot
    prompt: \"{{{{question}}}}\"
"
    )
}

/// A project with spec `specs/<name>.yaml` and `n` cases for it.
fn add_spec(p: &Project, name: &str, url: &str, cap: u32, n: usize) {
    let cases: String =
        (0..n).map(|i| format!("{{\"id\": \"c{i}\", \"question\": \"{name}: what is {i}+1?\"}}\n")).collect();
    p.write(&format!("specs/data/{name}.jsonl"), &cases);
    p.write(&format!("specs/{name}.yaml"), &spec(name, url, cap));
}

fn flow(p: &Project, args: &[&str]) -> Run {
    run_in_env(p.dir.path(), args, &[("FLOW_TEST_KEY", KEY)])
}

fn assert_ok(r: &Run, what: &str) {
    assert_eq!(r.code, 0, "{what} failed:\n{}{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("panicked"), "{what} panicked:\n{}", r.stderr);
}

/// `flow run` in the background.
fn spawn(p: &Project, args: &[&str]) -> Child {
    Command::new(FLOW)
        .args(args)
        .current_dir(p.dir.path())
        .env_remove("FLOW_LOG")
        .env("FLOW_TEST_KEY", KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn flow")
}

fn finish(child: Child) -> Run {
    let out = child.wait_with_output().expect("flow ends");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Calls in the memo at `path`, read as `flow plan` reads it.
fn memo_len(path: &Path) -> u64 {
    CallMemo::open_read_only(path).and_then(|m| m.len()).unwrap_or(0)
}

/// Waits until the server has answered `n` calls while `child` runs.
fn wait_for_answers(server: &LlmServer, n: u64, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.successes() < n {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("flow exited ({status}) after {} calls", server.successes());
        }
        assert!(Instant::now() < deadline, "only {} calls after 30 s", server.successes());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The memo damaged three ways: each time `flow plan` still works, the run
/// sets the file aside with a warning, makes the calls again into a fresh
/// memo and succeeds; the fresh memo then answers the next run.
#[test]
fn a_damaged_memo_is_set_aside_and_the_run_succeeds() {
    let server = LlmServer::start(ServerConfig::default());
    let p = Project::empty();
    let n = 300;
    add_spec(&p, "t", &server.base_url(), 8, n);
    assert_ok(&flow(&p, &["run", "specs/t.yaml"]), "the first run");
    assert_eq!(server.requests(), n as u64);
    let memo = p.path("specs/.flow/memo.sqlite");
    assert_eq!(memo_len(&memo), n as u64);

    type Damage = fn(&Path);
    let damages: [(&str, Damage); 3] = [
        ("cut to 4 KB", |f| std::fs::OpenOptions::new().write(true).open(f).unwrap().set_len(4096).unwrap()),
        ("cut to half", |f| {
            let len = std::fs::metadata(f).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(f).unwrap().set_len(len / 2).unwrap()
        }),
        ("garbage", |f| std::fs::write(f, b"\x00garbage, not a database\xff".repeat(4000)).unwrap()),
    ];
    for (how, damage) in damages {
        damage(&memo);
        server.reset_counters();
        let plan = flow(&p, &["plan", "specs/t.yaml", "--rerun", "answers"]);
        assert_ok(&plan, &format!("plan on a memo {how}"));

        let r = flow(&p, &["run", "specs/t.yaml", "--rerun", "answers"]);
        assert_ok(&r, &format!("the run on a memo {how}"));
        assert!(
            r.stderr.contains("warning: the call memo specs/.flow/memo.sqlite was damaged (")
                && r.stderr.contains("it is set aside as specs/.flow/memo.sqlite.damaged-"),
            "{how}: no set-aside warning:\n{}",
            r.stderr
        );
        assert_eq!(server.requests(), n as u64, "{how}: the calls of the lost memo are made again");
        assert_eq!(memo_len(&memo), n as u64, "{how}: the fresh memo holds them");

        server.reset_counters();
        let again = flow(&p, &["run", "specs/t.yaml", "--rerun", "answers"]);
        assert_ok(&again, &format!("the run after the memo {how}"));
        assert!(!again.stderr.contains("warning"), "{how}: {}", again.stderr);
        assert_eq!(server.requests(), 0, "{how}: the fresh memo answers every call");
    }
    let kept = std::fs::read_dir(p.path("specs/.flow"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("memo.sqlite.damaged-"))
        .filter(|e| !e.file_name().to_string_lossy().ends_with("-wal"))
        .count();
    assert_eq!(kept, 3, "each damaged memo is kept aside");
}

/// A disk that refuses the memo's writes: the child `flow` may write no file
/// past 96 KiB (RLIMIT_FSIZE, with SIGXFSZ ignored so the write fails with
/// EFBIG instead of killing it), which the memo's log reaches after a few
/// dozen answers. The run stops sending calls, fails with exit 1 naming the
/// memo and the fix, and the answers committed before are kept: the next run
/// sends only the rest.
#[test]
fn a_memo_write_that_fails_stops_the_calls_and_fails_the_run() {
    let server = LlmServer::start(ServerConfig { latency: Duration::from_millis(5), ..Default::default() });
    let p = Project::empty();
    let (n, cap) = (400u64, 2u32);
    add_spec(&p, "t", &server.base_url(), cap, n as usize);
    let mut cmd = Command::new(FLOW);
    cmd.args(["run", "specs/t.yaml"]).current_dir(p.dir.path()).env_remove("FLOW_LOG").env("FLOW_TEST_KEY", KEY);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 96 * 1024, rlim_max: 96 * 1024 };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0
                || libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("flow runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let said = regex::Regex::new(
        r"could not record answers: call memo specs/\.flow/memo\.sqlite: [^;]+; no more calls are sent \((\d+) answers? received (?:was|were) not recorded\); hint: free space and run again \(answers recorded before are kept\)",
    )
    .unwrap();
    let lost: u64 = said
        .captures(&stderr)
        .unwrap_or_else(|| panic!("no memo error:\n{stderr}"))
        .get(1)
        .unwrap()
        .as_str()
        .parse()
        .unwrap();

    let committed = memo_len(&p.path("specs/.flow/memo.sqlite"));
    let sent = server.requests();
    assert!(committed > 0, "nothing was committed before the limit:\n{stderr}");
    // Every answer received is either kept or counted as lost. Lost are the
    // batch whose commit failed (what arrived during one commit: a few, more
    // on a busy machine) and the calls in flight then (at most `cap`); no
    // call starts after it. Before, every remaining call (~380) was sent and
    // its answer lost.
    // The calls still in flight when the node stopped (at most `cap`) are
    // dropped unread: the server may have answered them (or seen the
    // connection close first), flow never received them.
    let answered = server.successes();
    assert!(sent - answered <= cap as u64, "{answered} of {sent} requests answered");
    let unread = answered - (committed + lost).min(answered);
    assert!(
        committed + lost <= answered && unread <= cap as u64,
        "{committed} kept + {lost} lost, {answered} answered"
    );
    assert!(lost <= 40, "{lost} answers lost ({committed} kept): calls went on after the failed commit");

    server.reset_counters();
    let again = flow(&p, &["run", "specs/t.yaml"]);
    assert_ok(&again, "the run after space was freed");
    assert_eq!(server.requests(), n - committed, "the answers kept are not paid for again");
    let m = p.latest_run("specs/.flow");
    assert_eq!(node(&m, "answers")["calls"]["memo_hits"], committed);
}

/// `flow plan` reads the memo while a run records into it: it counts the
/// answers already in, and the run is not disturbed.
#[test]
fn plan_reads_the_memo_while_a_run_records() {
    let server = LlmServer::start(ServerConfig { latency: Duration::from_millis(100), ..Default::default() });
    let p = Project::empty();
    let n = 40;
    add_spec(&p, "t", &server.base_url(), 2, n);
    let mut run = spawn(&p, &["run", "specs/t.yaml"]);
    wait_for_answers(&server, 6, &mut run);
    let memo = p.path("specs/.flow/memo.sqlite");
    let deadline = Instant::now() + Duration::from_secs(10);
    while memo_len(&memo) == 0 {
        assert!(Instant::now() < deadline, "no answer committed");
        std::thread::sleep(Duration::from_millis(5));
    }
    for _ in 0..3 {
        let plan = flow(&p, &["plan", "specs/t.yaml"]);
        assert_ok(&plan, "plan during the run");
        let line = plan.stdout.lines().find(|l| l.contains("answers")).unwrap_or_default().to_string();
        assert!(line.contains(" memoized)"), "plan counts no memo hits during the run:\n{}", plan.stdout);
    }
    assert!(run.try_wait().unwrap().is_none(), "the run ended early");
    let r = finish(run);
    assert_ok(&r, "the run beside plan");
    assert_eq!(server.requests(), n as u64);
    assert_eq!(memo_len(&memo), n as u64);
}

/// Two runs of different specs in one workspace go on at once, both
/// recording into the one memo; a second run of the same spec is refused
/// with a hint while the first goes on.
#[test]
fn runs_of_different_specs_share_the_workspace_and_one_spec_runs_once() {
    let server = LlmServer::start(ServerConfig { latency: Duration::from_millis(50), ..Default::default() });
    let p = Project::empty();
    let n = 30;
    add_spec(&p, "a", &server.base_url(), 2, n);
    add_spec(&p, "b", &server.base_url(), 2, n);
    let mut a = spawn(&p, &["run", "specs/a.yaml"]);
    wait_for_answers(&server, 2, &mut a);
    let b = spawn(&p, &["run", "specs/b.yaml"]);

    let twice = flow(&p, &["run", "specs/a.yaml"]);
    assert_eq!(twice.code, 1, "a second run of `a`:\n{}{}", twice.stdout, twice.stderr);
    assert!(
        twice.stderr.contains("error: spec `a` is already being run in specs/.flow by another flow process (pid ")
            && twice.stderr.contains("hint: wait for it to finish and run again"),
        "{}",
        twice.stderr
    );
    assert!(a.try_wait().unwrap().is_none(), "run `a` ended early: the overlap was not tested");

    let (ra, rb) = (finish(a), finish(b));
    assert_ok(&ra, "run `a`");
    assert_ok(&rb, "run `b` beside `a`");
    assert_eq!(server.requests(), 2 * n as u64);
    assert_eq!(memo_len(&p.path("specs/.flow/memo.sqlite")), 2 * n as u64);
}
