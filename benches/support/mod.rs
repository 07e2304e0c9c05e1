//! What the benchmarks share: running the real `flow` binary (or another
//! build of it, `FLOW_BENCH_BIN`, for before/after figures) and reading its
//! peak memory and manifests, medians, a seeded PRNG for datasets, and
//! number formatting. `FLOW_BENCH_RUNS` sets the runs per scenario and
//! `FLOW_BENCH_ONLY` picks scenarios by their first word.
//! Included by each bench with `#[path = "support/mod.rs"] mod support;`.

#![allow(dead_code)] // each bench uses part of it

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bytes in a mebibyte.
pub const MIB: f64 = 1024.0 * 1024.0;

/// Environment variable overriding a bench's sizes: comma-separated counts.
pub const SIZES_VAR: &str = "FLOW_BENCH_SIZES";

/// The sizes to measure: [`SIZES_VAR`] if set, else `default`. `what` names
/// a size in messages (`record`, `log`).
pub fn sizes(default: &[usize], what: &str) -> Vec<usize> {
    let Ok(raw) = std::env::var(SIZES_VAR) else {
        return default.to_vec();
    };
    let sizes: Vec<usize> = raw
        .split(',')
        .map(|s| s.trim().replace('_', ""))
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse().ok().filter(|&n| n > 0).unwrap_or_else(|| {
                panic!("{SIZES_VAR}: `{s}` is not a positive {what} count (expected e.g. {SIZES_VAR}=10000,100000)")
            })
        })
        .collect();
    assert!(!sizes.is_empty(), "{SIZES_VAR} is set but names no sizes");
    sizes
}

/// The `flow` binary measured: `FLOW_BENCH_BIN` if set (a build of another
/// commit, for before/after figures from the same bench), else this one.
pub fn flow_bin() -> String {
    std::env::var("FLOW_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_flow").to_string())
}

/// Runs per scenario: `FLOW_BENCH_RUNS` if set, else `default`.
pub fn runs(default: usize) -> usize {
    std::env::var("FLOW_BENCH_RUNS").ok().and_then(|r| r.parse().ok()).filter(|&n| n > 0).unwrap_or(default)
}

/// Whether the scenario `label` is to run: `FLOW_BENCH_ONLY` lists the
/// labels' first words (`FLOW_BENCH_ONLY=A,D`); unset, all run.
pub fn selected(label: &str) -> bool {
    let Ok(only) = std::env::var("FLOW_BENCH_ONLY") else { return true };
    let first = label.split_whitespace().next().unwrap_or(label);
    only.split(',').any(|o| o.trim().eq_ignore_ascii_case(first))
}

/// Runs `flow run --no-cache` once with `envs` added; returns its wall time
/// and peak RSS in KiB. Panics unless it succeeded.
pub fn run_flow(spec: &Path, workspace: &Path, envs: &[(&str, &str)]) -> (Duration, i64) {
    let r = run_flow_args(spec, workspace, envs, &["--no-cache"]);
    assert!(
        r.code == 0,
        "`flow run {}` exited with status {}; rerun it by hand to see its output",
        spec.display(),
        r.code
    );
    (r.wall, r.max_rss_kib)
}

/// One run of `flow`, as measured.
pub struct Ran {
    pub wall: Duration,
    /// CPU time, user and system: steadier than wall time on a loaded
    /// machine.
    pub cpu: Duration,
    pub max_rss_kib: i64,
    pub code: i32,
}

/// Runs `flow run ARGS SPEC` once with `envs` added.
///
/// The child is reaped with `wait4` rather than `Child::wait` because only
/// `wait4` reports the child's resource usage.
pub fn run_flow_args(spec: &Path, workspace: &Path, envs: &[(&str, &str)], args: &[&str]) -> Ran {
    let started = Instant::now();
    let child = Command::new(flow_bin())
        .arg("run")
        .args(args)
        .arg("--workspace")
        .arg(workspace)
        .arg(spec)
        .env_remove("FLOW_LOG")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the flow binary");
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits in pid_t");

    let mut status: libc::c_int = 0;
    // SAFETY: all-zero bytes are a valid `rusage` (plain integers and timevals).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child; `status` and `usage` are
        // valid, exclusively borrowed out-parameters for the call.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            panic!("wait4 on flow (pid {pid}) failed: {err}");
        }
    }
    let wall = started.elapsed();
    // Reaped already: dropping `child` neither waits nor kills.
    drop(child);

    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        panic!("`flow run {}` was killed by signal {}", spec.display(), libc::WTERMSIG(status));
    } else {
        panic!("`flow run {}` ended with unexpected wait status {status:#x}", spec.display());
    };
    let secs = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    // `ru_maxrss` is in KiB on Linux.
    Ran { wall, cpu: secs(usage.ru_utime) + secs(usage.ru_stime), max_rss_kib: usage.ru_maxrss, code }
}

/// The newest run manifest in `workspace`.
pub fn latest_manifest(workspace: &Path) -> serde_json::Value {
    let runs = workspace.join("runs");
    let mut ids: Vec<String> = std::fs::read_dir(&runs)
        .expect("a runs folder")
        .map(|e| e.expect("a run").file_name().into_string().expect("a utf-8 run id"))
        .collect();
    ids.sort();
    let id = ids.last().expect("a run");
    let text = std::fs::read_to_string(runs.join(id).join("manifest.json")).expect("a run manifest");
    serde_json::from_str(&text).expect("a JSON run manifest")
}

/// A node's latest output records, through `flow show`.
pub fn show(workspace: &Path, node: &str) -> Vec<serde_json::Value> {
    let out = Command::new(flow_bin())
        .args(["show", node, "--workspace"])
        .arg(workspace)
        .env_remove("FLOW_LOG")
        .output()
        .expect("run flow show");
    assert!(out.status.success(), "flow show {node}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON record")).collect()
}

/// The median (the mean of the middle two for an even count).
pub fn median<T: PartialOrd + Copy + Mean>(mut values: Vec<T>) -> T {
    assert!(!values.is_empty(), "median of no values");
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        T::mean(values[mid - 1], values[mid])
    }
}

/// Averaging two values, for even-sized medians.
pub trait Mean {
    fn mean(a: Self, b: Self) -> Self;
}

impl Mean for Duration {
    fn mean(a: Self, b: Self) -> Self {
        (a + b) / 2
    }
}

impl Mean for f64 {
    fn mean(a: Self, b: Self) -> Self {
        (a + b) / 2.0
    }
}

/// A tiny deterministic PRNG (SplitMix64), so datasets are identical across
/// runs and machines without a `rand` dependency.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// The `q` quantile (0..=1) of `values`, by rank.
pub fn quantile<T: PartialOrd + Copy>(mut values: Vec<T>, q: f64) -> T {
    assert!(!values.is_empty(), "quantile of no values");
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// `812.3 ms` below a second, else `3.21 s`.
pub fn format_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

/// `311000` as `311,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    // The leading group has 1 to 3 digits; every later group has exactly 3.
    let first = (digits.len() - 1) % 3 + 1;
    let mut out = digits[..first].to_string();
    for start in (first..digits.len()).step_by(3) {
        out.push(',');
        out.push_str(&digits[start..start + 3]);
    }
    out
}
