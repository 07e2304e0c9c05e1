//! Any bytes as a spec: `flow validate` either accepts them or reports
//! problems, and never panics (the process would abort under libFuzzer).
//! The spec is written to a file in a fresh folder, as a user's would be,
//! so relative paths, templates and data files resolve as in a real run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile_dir();
    let path = dir.join("spec.yaml");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let registry = flow_nodes::registry();
    // No environment: a spec's `${env.X}` reads nothing from the fuzzer's.
    let _ = flow_engine::compile_with_env(&path, &[], &registry, &|_| None);
});

/// One folder per process, reused by every input it runs.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("flow-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}
