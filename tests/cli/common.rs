//! A throwaway project folder with the shipped demo spec, and a way to run
//! `flow` in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const FLOW: &str = env!("CARGO_BIN_EXE_flow");

/// The repository root (where `specs/` and `tests/fixtures/` are).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// An empty project folder.
    pub fn empty() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    /// A project holding a copy of `specs/demo.yaml` and its data.
    pub fn demo() -> Self {
        let p = Self::empty();
        p.write("specs/demo.yaml", &std::fs::read_to_string(repo().join("specs/demo.yaml")).unwrap());
        p.write("specs/data/answers.jsonl", &std::fs::read_to_string(repo().join("specs/data/answers.jsonl")).unwrap());
        p
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// Runs `flow` with `args` in the project folder.
    pub fn flow(&self, args: &[&str]) -> Run {
        run_in(self.dir.path(), args)
    }

    /// `flow run` that must succeed; returns its run manifest.
    pub fn run_ok(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        let r = self.flow(&all);
        assert_eq!(r.code, 0, "flow {all:?} failed:\n{}{}", r.stdout, r.stderr);
        self.latest_run("specs/.flow")
    }

    /// The newest run manifest in a workspace.
    pub fn latest_run(&self, workspace: &str) -> serde_json::Value {
        let runs = self.path(workspace).join("runs");
        let mut ids: Vec<String> =
            std::fs::read_dir(&runs).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        ids.sort();
        let id = ids.last().expect("a run");
        serde_json::from_str(&std::fs::read_to_string(runs.join(id).join("manifest.json")).unwrap()).unwrap()
    }
}

/// What a `flow` process did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    let out: Output =
        Command::new(FLOW).args(args).current_dir(dir).env_remove("FLOW_LOG").output().expect("flow runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `node name -> status` from a run manifest.
pub fn statuses(manifest: &serde_json::Value) -> Vec<(String, String)> {
    manifest["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap().to_string(), n["status"].as_str().unwrap().to_string()))
        .collect()
}

/// The record of one node in a run manifest.
pub fn node<'a>(manifest: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    manifest["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).unwrap_or_else(|| panic!("no node {name}"))
}

pub fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// Like [`run_in`], with extra environment variables for the child
/// (`FLOW_LOG` is cleared first, so `envs` may set it).
pub fn run_in_env(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let out: Output = Command::new(FLOW)
        .args(args)
        .current_dir(dir)
        .env_remove("FLOW_LOG")
        .envs(envs.iter().copied())
        .output()
        .expect("flow runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// SplitMix64: tiny and seedable, for tests that pick mutations or moments
/// (the fuzzer, the kill suite) reproducibly.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Every file under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Whether `bytes` hold `secret` anywhere.
pub fn holds(bytes: &[u8], secret: &str) -> bool {
    bytes.windows(secret.len()).any(|w| w == secret.as_bytes())
}

/// Fails naming the first file among `files` that holds `secret`.
pub fn assert_in_no_file<'a>(files: impl IntoIterator<Item = &'a PathBuf>, secret: &str) {
    for f in files {
        assert!(!holds(&std::fs::read(f).unwrap(), secret), "{} holds a secret", f.display());
    }
}
