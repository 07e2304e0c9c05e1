//! Every invalid spec under tests/fixtures/invalid is rejected with the
//! expected message (snapshotted), exit code 2, and nothing written.

use crate::common::{repo, run_in, Project};

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn invalid_specs_are_rejected_with_located_messages() {
    let project = Project::empty();
    copy_dir(&repo().join("tests/fixtures/invalid"), project.dir.path());
    let mut names: Vec<String> = std::fs::read_dir(project.dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 10, "fixtures missing: {names:?}");
    for name in &names {
        for cmd in ["validate", "plan", "run"] {
            let r = run_in(project.dir.path(), &[cmd, name]);
            assert_eq!(r.code, 2, "flow {cmd} {name}: exit {}\n{}", r.code, r.stderr);
            assert!(r.stdout.is_empty(), "flow {cmd} {name} printed to stdout: {}", r.stdout);
            assert!(!project.path(".flow").exists(), "flow {cmd} {name} created .flow/");
            if cmd == "run" {
                let stem = name.trim_end_matches(".yaml");
                insta::assert_snapshot!(format!("invalid_{stem}"), r.stderr);
            }
        }
    }
}

#[test]
fn bad_set_and_rerun_are_usage_errors() {
    let p = Project::demo();
    let r = p.flow(&["run", "specs/demo.yaml", "--set", "similarity_treshold=0.9"]);
    assert_eq!(r.code, 2);
    insta::assert_snapshot!("set_unknown_param", r.stderr);
    let r = p.flow(&["run", "specs/demo.yaml", "--set", "similarity_threshold=high"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("`high` is not a float"), "{}", r.stderr);
    let r = p.flow(&["run", "specs/demo.yaml", "--rerun", "score"]);
    assert_eq!(r.code, 2);
    insta::assert_snapshot!("rerun_unknown_node", r.stderr);
    assert!(!p.path("specs/.flow").exists());
    let r = p.flow(&["run", "specs/nope.yaml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("cannot read spec specs/nope.yaml"), "{}", r.stderr);
}

/// Inputs that would keep `flow validate` busy for a minute or for ever are
/// refused at once, where they are: a spec nested 100,000 deep, a `load`
/// of a device or a FIFO.
#[test]
fn endless_inputs_are_refused_at_once() {
    let p = Project::empty();
    p.write("deep.yaml", &format!("flow: 1\nnodes:\n  a: {}1{}\n", "[".repeat(100_000), "]".repeat(100_000)));
    let started = std::time::Instant::now();
    let r = p.flow(&["validate", "deep.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("the spec nests deeper than 200 levels") && r.stderr.contains("deep.yaml:3:"),
        "{}",
        r.stderr
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());

    let fifo = p.path("data/pipe.jsonl");
    std::fs::create_dir_all(fifo.parent().unwrap()).unwrap();
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for path in ["/dev/zero", "data/pipe.jsonl"] {
        p.write("load.yaml", &format!("flow: 1\nnodes:\n  a: {{kind: load, path: {path}, format: jsonl}}\n"));
        let r = p.flow(&["validate", "load.yaml"]);
        assert_eq!(r.code, 2, "{path}: {}", r.stderr);
        assert!(
            r.stderr.contains("is not a regular file") && r.stderr.contains("load.yaml:3:"),
            "{path}: {}",
            r.stderr
        );
    }
}

/// Bytes YAML cannot read are located at their line and column (a NUL was
/// placed at 1:1, invalid UTF-8 had no position), in a spec and in a
/// template it uses; an OS error is named once.
#[test]
fn a_nul_byte_and_invalid_utf8_are_located() {
    let p = Project::empty();
    p.write("nul.yaml", "flow: 1\nnodes:\n  cases: {kind: load, path: \"c\0.jsonl\"}\n");
    let r = p.flow(&["validate", "nul.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("control character U+0000 in the spec"), "{}", r.stderr);
    assert!(r.stderr.contains("--> nul.yaml:3:31"), "{}", r.stderr);

    std::fs::write(p.path("latin1.yaml"), b"flow: 1\nname: caf\xe9\nnodes: {}\n").unwrap();
    let r = p.flow(&["validate", "latin1.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("latin1.yaml is not UTF-8 text: byte 0xe9 at line 2, column 10"), "{}", r.stderr);
    assert!(r.stderr.contains("--> latin1.yaml:2:10"), "{}", r.stderr);

    std::fs::write(p.path("t.yaml"), b"flow: 1\nnodes:\n  x: {kind: load, path: \xff}\n").unwrap();
    p.write("uses.yaml", "flow: 1\nnodes:\n  a: {uses: t.yaml}\n");
    let r = p.flow(&["validate", "uses.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--> t.yaml:3:25"), "the template's own line: {}", r.stderr);

    p.write("ok.yaml", "flow: 1\nnodes:\n  cases: {kind: load, path: c.jsonl}\n");
    p.write("c.jsonl", "{\"id\": \"a\"}\n");
    let r = p.flow(&["run", "ok.yaml", "--workspace", "/proc/flow-no-such-dir"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stderr.matches("No such file or directory").count(), 1, "{}", r.stderr);
    assert!(std::fs::read_dir(p.dir.path()).unwrap().all(|e| e.unwrap().file_name() != ".flow"), "nothing written");
}
