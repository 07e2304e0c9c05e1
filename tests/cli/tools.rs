//! `flow init`, `flow cache ls`/`gc` and `flow plan --explain`.

use crate::common::{node, run_in, statuses, Project};

#[test]
fn init_writes_a_spec_that_validates_and_runs_offline() {
    let p = Project::empty();
    for (template, spec) in [("eval", "eval.yaml"), ("ab", "ab.yaml"), ("demo", "demo.yaml")] {
        let dir = format!("new-{template}");
        let r = p.flow(&["init", "--template", template, &dir]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let path = format!("{dir}/{spec}");
        assert_eq!(p.flow(&["validate", &path]).code, 0);
        let run = p.flow(&["run", &path]);
        assert_eq!(run.code, 0, "flow run {path}: {}", run.stderr);
    }
    // It never overwrites.
    let again = p.flow(&["init", "new-eval"]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("not overwriting"), "{}", again.stderr);
}

#[test]
fn explain_names_the_key_fields_and_what_changed() {
    let p = Project::demo();
    p.run_ok(&["specs/demo.yaml"]);
    let r = p.flow(&["plan", "specs/demo.yaml", "--set", "similarity_threshold=0.9", "--explain", "scores"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("config changed: metrics[1].threshold"), "{}", r.stdout);
    assert!(r.stdout.contains("changed `metrics[1].threshold`: 0.8 → 0.9"), "{}", r.stdout);
    assert!(r.stdout.contains("input     node `answers`: output"), "{}", r.stdout);
    assert!(r.stdout.contains("(same)"), "{}", r.stdout);
    let same = p.flow(&["plan", "specs/demo.yaml", "--explain", "scores"]);
    assert!(same.stdout.contains("the same key: reused"), "{}", same.stdout);
    let bad = p.flow(&["plan", "specs/demo.yaml", "--explain", "score"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("did you mean `scores`?"), "{}", bad.stderr);
}

#[test]
fn gc_keeps_what_kept_runs_use_and_removes_the_rest() {
    let p = Project::demo();
    for t in ["0.5", "0.6", "0.7"] {
        p.run_ok(&["specs/demo.yaml", "--set", &format!("similarity_threshold={t}")]);
    }
    let ws = p.path("specs/.flow");
    // A temp object left by a killed run.
    std::fs::write(ws.join("tmp/obj-leftover"), b"partial").unwrap();
    let ls = run_in(p.dir.path(), &["cache", "ls", "--workspace", "specs/.flow"]);
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    assert!(ls.stdout.contains("4 entries (2 current)"), "{}", ls.stdout);
    assert!(ls.stdout.contains("1 temp files"), "{}", ls.stdout);

    // A run still going (its manifest says running, names no process that
    // could be looked up, and started just now) is kept even when it is not
    // among the newest.
    let runs = ws.join("runs");
    let mut ids: Vec<String> =
        std::fs::read_dir(&runs).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    ids.sort();
    let mut going: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(runs.join(&ids[1]).join("manifest.json")).unwrap()).unwrap();
    going["status"] = "running".into();
    going.as_object_mut().unwrap().remove("process");
    going["started"] = "2999-01-01T00:00:00Z".into();
    going["run_id"] = "00000000-000000-000-0000".into();
    std::fs::create_dir_all(runs.join("00000000-000000-000-0000")).unwrap();
    std::fs::write(runs.join("00000000-000000-000-0000/manifest.json"), going.to_string()).unwrap();

    let dry = run_in(
        p.dir.path(),
        &["cache", "gc", "--keep-runs", "1", "--min-age", "0s", "--dry-run", "--workspace", "specs/.flow"],
    );
    assert!(dry.stdout.starts_with("would remove 2 runs, 1 cache entries"), "{}", dry.stdout);
    assert_eq!(std::fs::read_dir(ws.join("runs")).unwrap().count(), 4, "a dry run removes nothing");

    let gc =
        run_in(p.dir.path(), &["cache", "gc", "--keep-runs", "1", "--min-age", "0s", "--workspace", "specs/.flow"]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert!(gc.stdout.starts_with("removed 2 runs, 1 cache entries"), "{}", gc.stdout);
    assert!(gc.stdout.contains("1 temp files"), "{}", gc.stdout);
    assert_eq!(std::fs::read_dir(ws.join("runs")).unwrap().count(), 2, "the newest run and the one still going");
    std::fs::remove_dir_all(runs.join("00000000-000000-000-0000")).unwrap();

    // What the kept run uses is intact: the same spec is all cached.
    let again = p.run_ok(&["specs/demo.yaml", "--set", "similarity_threshold=0.7"]);
    assert!(statuses(&again).iter().all(|(_, s)| s == "cached"), "{:?}", statuses(&again));
    let show = p.flow(&["show", "scores", "--workspace", "specs/.flow"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    // An entry no kept run used is gone: that threshold runs again.
    let old = p.run_ok(&["specs/demo.yaml", "--set", "similarity_threshold=0.5"]);
    assert_eq!(node(&old, "scores")["status"], "ran");
    assert_eq!(node(&old, "answers")["status"], "cached");

    // Files younger than --min-age (default 10 minutes) are spared.
    let young = run_in(p.dir.path(), &["cache", "gc", "--keep-runs", "0", "--workspace", "specs/.flow"]);
    assert!(young.stdout.starts_with("removed 0 runs, 0 cache entries, 0 objects"), "{}", young.stdout);
}

/// The committed schema is what `flow schema` prints: a spec type that
/// changes without regenerating it fails here.
#[test]
fn committed_schema_is_current() {
    let p = Project::empty();
    let r = p.flow(&["schema"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let printed: serde_json::Value = serde_json::from_str(&r.stdout).expect("the schema is JSON");
    let path = crate::common::repo().join("specs/flow.schema.json");
    // `UPDATE=1 cargo test schema` rewrites it, as for the kinds' docs.
    if std::env::var_os("UPDATE").is_some_and(|v| v == "1") {
        std::fs::write(&path, &r.stdout).unwrap();
    }
    let committed_text = std::fs::read_to_string(&path).unwrap();
    let committed: serde_json::Value = serde_json::from_str(&committed_text).unwrap();
    assert!(
        printed == committed,
        "specs/flow.schema.json is stale: regenerate it with `UPDATE=1 cargo test schema` (or `cargo run -- schema > specs/flow.schema.json`)"
    );
    // Every kind is in it, with its own fields.
    let defs = &printed["$defs"];
    for kind in ["load", "run", "evaluate", "generate", "compare"] {
        assert!(defs.get(format!("node:{kind}")).is_some(), "no schema for `{kind}`");
    }
    assert!(printed["properties"]["backends"]["additionalProperties"].is_object());
}

/// `flow <args>` in `dir` with its standard output a pipe whose reading end
/// is closed before it starts (`flow runs | head` after `head` exits): its
/// exit code and standard error.
fn with_closed_stdout(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned here alone.
    let (read, write) = unsafe { (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1])) };
    drop(read);
    let out = std::process::Command::new(crate::common::FLOW)
        .args(args)
        .current_dir(dir)
        .stdout(write)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Every command that prints ends quietly when its output is gone, and a
/// run still records itself and writes its report.
#[test]
fn a_closed_stdout_ends_output_quietly() {
    let p = Project::demo();
    let (code, err) = with_closed_stdout(p.dir.path(), &["run", "specs/demo.yaml", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let run = p.latest_run("specs/.flow");
    assert_eq!(run["status"], "succeeded");
    let report = p.path(&format!("specs/.flow/runs/{}/report.html", run["run_id"].as_str().unwrap()));
    assert!(report.is_file(), "the report is written");
    for args in [
        &["runs"][..],
        &["schema"],
        &["plan", "specs/demo.yaml", "--format", "json"],
        &["validate", "specs/demo.yaml"],
        &["cache", "ls"],
        &["show", "scores"],
    ] {
        let (code, err) = with_closed_stdout(p.dir.path(), args);
        assert!(!err.contains("panicked"), "flow {args:?}: {err}");
        assert_eq!(code, Some(0), "flow {args:?}: {err}");
    }
}

/// A bad spec whose errors go to a closed pipe (`flow validate bad.yaml
/// 2>&1 | head -1` after `head` exits) still exits 2, not 101: a failed
/// write to standard error is not a panic.
#[test]
fn a_closed_stderr_keeps_the_exit_code() {
    use std::os::fd::FromRawFd;
    let p = Project::empty();
    p.write("bad.yaml", &format!("name: x\nnodes:\n  a: {}{}\n", "[".repeat(300), "]".repeat(300)));
    for args in [&["validate", "bad.yaml"][..], &["plan", "bad.yaml"], &["validate", "missing.yaml"]] {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors were just created and are owned here alone.
        let (read, write) = unsafe { (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1])) };
        drop(read);
        let status =
            std::process::Command::new(crate::common::FLOW).args(args).current_dir(p.dir.path()).stderr(write).status();
        assert_eq!(status.unwrap().code(), Some(2), "flow {args:?}");
    }
}

/// A run whose report cannot be written (the disk refuses files past 32 KiB:
/// every output of the demo fits, its report does not) does not say it
/// succeeded: it fails naming the report and how to get it, its outputs are
/// cached, and `flow view` writes the report once there is room.
#[test]
fn a_run_without_its_report_is_not_a_success() {
    use std::os::unix::process::CommandExt;
    let p = Project::demo();
    let mut cmd = std::process::Command::new(crate::common::FLOW);
    cmd.args(["run", "specs/demo.yaml"]).current_dir(p.dir.path());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 32 * 1024, rlim_max: 32 * 1024 };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0
                || libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("its report could not be written") && stderr.contains("flow view"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("succeeded"), "{}", String::from_utf8_lossy(&out.stdout));
    let run = p.latest_run("specs/.flow");
    assert_eq!(run["status"], "failed");
    assert!(statuses(&run).iter().all(|(_, s)| s == "ran"), "{run}");
    let view = p.flow(&["view", "--no-open", "latest"]);
    assert_eq!(view.code, 0, "{}", view.stderr);
    assert!(p.dir.path().join(view.stdout.trim()).is_file(), "{}", view.stdout);
}
