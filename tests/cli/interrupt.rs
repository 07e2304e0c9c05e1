//! A run stopped mid-way, by SIGKILL or by Ctrl-C, loses nothing that had
//! finished and leaves no manifest for what had not.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{node, Project, FLOW};

/// A spec with a small branch that finishes at once and a big branch that
/// takes a while, so the run can be stopped with one done and one mid-way.
fn two_branches(records: usize) -> Project {
    let p = Project::empty();
    p.write("specs/data/small.jsonl", "{\"id\": \"s1\", \"output\": \"a\", \"expected\": \"a\"}\n");
    let mut big = String::with_capacity(records * 90);
    for i in 0..records {
        big.push_str(&format!(
            "{{\"id\": \"b{i}\", \"output\": \"answer number {i} is here\", \"expected\": \"answer number {} is here\"}}\n",
            i % 7
        ));
    }
    p.write("specs/data/big.jsonl", &big);
    let branch = |name: &str| {
        format!(
            "  {name}:\n    kind: load\n    path: data/{name}.jsonl\n  {name}_scores:\n    kind: evaluate\n    input: {name}\n    metrics:\n      - {{type: similarity, expected: \"{{{{expected}}}}\"}}\n      - {{type: regex, pattern: \"number \\\\d+\"}}\n"
        )
    };
    p.write("specs/two.yaml", &format!("flow: 1\nname: two\nnodes:\n{}{}", branch("small"), branch("big")));
    p
}

/// Node names that have a manifest in the workspace.
fn finished_nodes(ws: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(ws.join("nodes")) else { return Vec::new() };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        // Only filed manifests: a temp file being written in the same folder
        // (before its atomic rename) is not one.
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map(|m| m["node"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Starts `flow run` and waits until the small branch has finished while
/// the big one is still streaming; returns the running child.
fn start_and_wait_for_small(p: &Project) -> std::process::Child {
    let mut child = Command::new(FLOW)
        .args(["run", "specs/two.yaml"])
        .current_dir(p.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ws = p.path("specs/.flow");
    let deadline = Instant::now() + Duration::from_secs(60);
    let problem = loop {
        let done = finished_nodes(&ws);
        if done == ["small", "small_scores"] {
            return child;
        }
        if !done.iter().all(|n| n.starts_with("small")) {
            break format!("big branch finished too early: {done:?}");
        }
        if Instant::now() > deadline {
            break "small branch never finished".to_string();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = child.kill();
    let _ = child.wait();
    panic!("{problem}");
}

#[test]
fn killed_run_redoes_only_the_unfinished_nodes() {
    let p = two_branches(400_000);
    let mut child = start_and_wait_for_small(&p);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(finished_nodes(&p.path("specs/.flow")), ["small", "small_scores"], "no manifest for the big branch");

    let plan = p.flow(&["plan", "specs/two.yaml"]).stdout;
    let run = p.run_ok(&["specs/two.yaml"]);
    assert_eq!(node(&run, "small")["status"], "cached", "{plan}");
    assert_eq!(node(&run, "small_scores")["status"], "cached", "{plan}");
    assert_eq!(node(&run, "big")["status"], "ran");
    assert_eq!(node(&run, "big_scores")["status"], "ran");
    assert_eq!(node(&run, "big_scores")["records_out"], 400_000);
}

#[test]
fn ctrl_c_stops_cleanly_and_records_the_run_as_interrupted() {
    let p = two_branches(400_000);
    let mut child = start_and_wait_for_small(&p);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "exit code after Ctrl-C");
    let run = p.latest_run("specs/.flow");
    assert_eq!(run["status"], "interrupted");
    assert_eq!(node(&run, "small_scores")["status"], "ran");
    assert_eq!(node(&run, "big_scores")["status"], "cancelled");
    assert_eq!(finished_nodes(&p.path("specs/.flow")), ["small", "small_scores"]);
    assert_eq!(std::fs::read_dir(p.path("specs/.flow/tmp")).unwrap().count(), 0, "temp objects removed");
}

/// SIGTERM stops a run as Ctrl-C does, with the shell's code for it.
#[test]
fn sigterm_stops_a_run_like_ctrl_c() {
    let p = two_branches(400_000);
    let mut child = start_and_wait_for_small(&p);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "exit code after SIGTERM");
    let run = p.latest_run("specs/.flow");
    assert_eq!(run["status"], "interrupted");
    assert_eq!(node(&run, "small_scores")["status"], "ran");
    assert_eq!(node(&run, "big_scores")["status"], "cancelled");
    let report = p.path(&format!("specs/.flow/runs/{}/report.html", run["run_id"].as_str().unwrap()));
    assert!(report.is_file(), "an interrupted run writes its report");
}

/// Calls made before Ctrl-C are accounted for, and answers received are in
/// the memo: the next run repeats none of them.
#[test]
fn ctrl_c_keeps_the_calls_made_so_far() {
    let p = Project::empty();
    let cases: String =
        (0..400).map(|i| format!("{{\"id\": \"c{i}\", \"question\": \"what is {i} + 1?\"}}\n")).collect();
    p.write("specs/data/cases.jsonl", &cases);
    p.write(
        "specs/slow.yaml",
        "flow: 1\nname: slow\nbackends:\n  bot: {provider: sim, max_concurrency: 8, sim: {latency: 20ms}}\nnodes:\n  cases: {kind: load, path: data/cases.jsonl}\n  answers: {kind: run, input: cases, backend: bot, prompt: \"{{question}}\"}\n",
    );
    let mut child = Command::new(FLOW)
        .args(["run", "specs/slow.yaml"])
        .current_dir(p.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Once the run has started (its folder is there; a loaded machine may
    // take a while to get there), a few hundred ms of its 1 s of calls.
    let runs = p.path("specs/.flow/runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_dir(&runs).is_ok_and(|mut d| d.next().is_some()) {
        assert!(std::time::Instant::now() < deadline, "the run did not start in 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let run = p.latest_run("specs/.flow");
    assert_eq!(node(&run, "answers")["status"], "cancelled");
    let made = node(&run, "answers")["calls"]["requests"].as_u64().expect("the cancelled node's calls are recorded");
    assert!(made > 0 && made < 400, "{made} calls");
    assert_eq!(run["calls"]["requests"], made);

    let again = p.run_ok(&["specs/slow.yaml"]);
    assert_eq!(node(&again, "answers")["calls"]["memo_hits"], made, "every answered call is reused");
    assert_eq!(node(&again, "answers")["calls"]["requests"], 400 - made);
}

/// A run killed with SIGKILL cannot record its end. Its manifest names the
/// process that ran it, so readers see that process is gone and call the
/// run died: listed as such, its report written from what finished, and
/// collected by gc like any ended run. While it runs, it is running.
#[test]
fn a_killed_run_reads_as_died_not_running_forever() {
    let p = two_branches(400_000);
    let mut child = start_and_wait_for_small(&p);
    let flow = |args: &[&str]| p.flow(&[args, &["--workspace", "specs/.flow"]].concat());
    let status_in_runs = || {
        let r = flow(&["runs"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let row = r.stdout.lines().find(|l| l.contains(" two ")).unwrap_or_else(|| panic!("{}", r.stdout)).to_string();
        ["running", "died", "succeeded"].into_iter().find(|s| row.contains(&format!(" {s} "))).unwrap_or("?")
    };

    assert_eq!(status_in_runs(), "running", "a live run is not taken for dead");
    let view = flow(&["view", "--no-open", "latest"]);
    assert_eq!(view.code, 2, "{}", view.stderr);
    assert!(view.stderr.contains("is still running"), "{}", view.stderr);
    let gc = flow(&["cache", "gc", "--keep-runs", "0", "--min-age", "0s", "--dry-run"]);
    assert!(gc.stdout.starts_with("would remove 0 runs"), "a run in progress is kept: {}", gc.stdout);

    child.kill().unwrap(); // SIGKILL: nothing recorded after this
    child.wait().unwrap();
    assert_eq!(p.latest_run("specs/.flow")["status"], "running", "the manifest on disk still says running");
    assert_eq!(status_in_runs(), "died");

    let view = flow(&["view", "--no-open", "latest"]);
    assert_eq!(view.code, 0, "{}", view.stderr);
    let report = p.path(view.stdout.trim());
    assert!(report.ends_with("report.html"), "{}", view.stdout);
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains(r#""status":"died""#), "the report says how the run ended");
    let show = flow(&["show", "small_scores"]);
    assert_eq!(show.code, 0, "what finished is there: {}", show.stderr);
    assert_eq!(show.stdout.lines().count(), 1);

    let gc = flow(&["cache", "gc", "--keep-runs", "0", "--min-age", "0s"]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert!(gc.stdout.starts_with("removed 1 runs"), "a died run is not in progress: {}", gc.stdout);
    assert_eq!(std::fs::read_dir(p.path("specs/.flow/runs")).unwrap().count(), 0);
}
