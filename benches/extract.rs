//! End-to-end benchmark of `extract`: how long `flow run` takes to pick
//! golden examples from N logs with 384-dimensional embeddings, and how
//! much memory it needs.
//!
//! For each size N it writes a JSONL file of N logs whose embeddings (in
//! the file, as real logs exported with their vectors carry them) are
//! clustered: 64 random centres with every log at cosine ≈ 0.9 from its
//! centre, a tenth of them FAIL, one in 200 a loner in a random direction.
//! All logs are in one group (no `function`), the worst case: the whole
//! N × N similarity matrix is covered. The spec is `load → extract`
//! (`steady`, the defaults: ε = 0.3, top_k = 50). It runs the real `flow`
//! binary as a child, several times, each with a fresh workspace and
//! `--no-cache`, and reports the medians of:
//!
//! - wall time from spawn to reap (parsing the file, the densities over
//!   every pair, the picks, storing the output);
//! - the `extract` node's own time and the `load` node's, from the run
//!   manifest;
//! - the child's peak resident set size, from `wait4`'s `ru_maxrss`.
//!
//! The figures are printed, never asserted: timings on shared machines are
//! noisy. Run it with:
//!
//! ```text
//! cargo bench --bench extract
//! FLOW_BENCH_SIZES=20000 cargo bench --bench extract   # other sizes
//! ```
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it does a single
//! quick run on 1,000 logs, to check that the pipeline works, and exits.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

#[path = "support/mod.rs"]
mod support;

use support::{format_secs, median, run_flow, sizes, SplitMix64, MIB};

/// Log counts measured by default.
const DEFAULT_SIZES: [usize; 2] = [10_000, 100_000];

/// Log count of the single smoke run done outside `cargo bench`.
const SMOKE_SIZE: usize = 1_000;

/// Dimension of the embeddings (all-MiniLM-L6-v2's, a common choice).
const DIMS: usize = 384;

/// Cluster centres in the data.
const CLUSTERS: usize = 64;

/// The pipeline under test. Paths are relative to the spec's folder.
const SPEC: &str = "flow: 1
name: bench-extract
nodes:
  logs:
    kind: load
    path: logs.jsonl
  golden:
    kind: extract
    input: logs
";

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs bench targets without it.
    let benching = std::env::args().any(|a| a == "--bench");
    let sizes = if benching { sizes(&DEFAULT_SIZES, "log") } else { vec![SMOKE_SIZE] };
    println!("flow binary: {}", env!("CARGO_BIN_EXE_flow"));
    println!("threads available: {}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    for &n in &sizes {
        // Fewer runs where each is long: the median of 3 is enough there.
        let runs = if !benching {
            1
        } else if n >= 50_000 {
            3
        } else {
            5
        };
        println!("{}", bench_size(n, runs).line());
    }
    if benching {
        println!("target: 100,000 logs × 384 in ≤ 60 s on 2 cores");
    }
}

/// What was measured at one size: medians over its runs.
struct SizeResult {
    logs: usize,
    runs: usize,
    wall: Duration,
    /// Fastest and slowest run, to show the noise.
    wall_range: (Duration, Duration),
    /// The `extract` node's and the `load` node's time, from the manifest.
    extract: Duration,
    load: Duration,
    rss_mib: f64,
    data_mib: f64,
    examples: u64,
}

impl SizeResult {
    fn line(&self) -> String {
        let runs = if self.runs == 1 {
            "1 run".to_string()
        } else {
            let (fastest, slowest) = self.wall_range;
            format!("{} runs: {}–{}", self.runs, format_secs(fastest), format_secs(slowest))
        };
        format!(
            "load→extract  {:>7} logs × {DIMS}  median {:>8}  (extract node {}, load {})  peak RSS {:>6.0} MiB  {} examples  ({runs}; {:.0} MiB input)",
            self.logs,
            format_secs(self.wall),
            format_secs(self.extract),
            format_secs(self.load),
            self.rss_mib,
            self.examples,
            self.data_mib,
        )
    }
}

/// Writes the logs and spec for `n` logs, runs `flow` `runs` times and
/// returns the medians.
fn bench_size(n: usize, runs: usize) -> SizeResult {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let data = dir.path().join("logs.jsonl");
    let spec = dir.path().join("bench.yaml");
    let workspace = dir.path().join(".flow");
    write_logs(&data, n);
    std::fs::write(&spec, SPEC).expect("write bench.yaml");
    let data_mib = std::fs::metadata(&data).expect("stat logs.jsonl").len() as f64 / MIB;

    let (mut walls, mut rss, mut extract, mut load) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut examples = 0;
    for _ in 0..runs {
        // A fresh workspace each time, so every run does the same work.
        if workspace.exists() {
            std::fs::remove_dir_all(&workspace).expect("remove the previous run's workspace");
        }
        let (wall, max_rss_kib) = run_flow(&spec, &workspace, &[]);
        walls.push(wall);
        rss.push(max_rss_kib as f64 / 1024.0);
        let manifest = latest_manifest(&workspace);
        let node = |name: &str| {
            manifest["nodes"].as_array().expect("nodes").iter().find(|x| x["name"] == name).expect("node").clone()
        };
        extract.push(Duration::from_millis(node("golden")["wall_ms"].as_u64().expect("wall_ms")));
        load.push(Duration::from_millis(node("logs")["wall_ms"].as_u64().expect("wall_ms")));
        examples = node("golden")["records_out"].as_u64().expect("records_out");
    }
    let wall_range = (*walls.iter().min().expect("runs > 0"), *walls.iter().max().expect("runs > 0"));
    SizeResult {
        logs: n,
        runs,
        wall: median(walls),
        wall_range,
        extract: median(extract),
        load: median(load),
        rss_mib: median(rss),
        data_mib,
        examples,
    }
}

/// The run manifest of the only run in `workspace`.
fn latest_manifest(workspace: &Path) -> serde_json::Value {
    let runs = workspace.join("runs");
    let mut ids: Vec<_> = std::fs::read_dir(&runs).expect("runs folder").map(|e| e.expect("entry").path()).collect();
    ids.sort();
    let path = ids.last().expect("a run").join("manifest.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read the manifest")).expect("a JSON manifest")
}

/// Writes `n` deterministic logs as JSONL, each with its embedding: a
/// cluster centre plus noise of norm 0.5 (cosine ≈ 0.9 to the centre,
/// ≈ 0.8 between two logs of a cluster), or every 200th a random direction.
/// Every 10th log is a FAIL. Components are written with 5 decimals.
fn write_logs(path: &Path, n: usize) {
    let mut rng = SplitMix64(0x5eed_10f5);
    let centres: Vec<Vec<f32>> = (0..CLUSTERS).map(|_| unit((0..DIMS).map(|_| rng.uniform()).collect())).collect();
    // Uniform noise in [-a, a) per component has norm √(DIMS · a² / 3).
    let amplitude = 0.5 * (3.0 / DIMS as f32).sqrt();
    let file = File::create(path).expect("create logs.jsonl");
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut line = String::with_capacity(DIMS * 10 + 200);
    for i in 0..n {
        let cluster = (rng.next() % CLUSTERS as u64) as usize;
        let v = if i % 200 == 199 {
            unit((0..DIMS).map(|_| rng.uniform()).collect())
        } else {
            unit(centres[cluster].iter().map(|c| c + amplitude * rng.uniform()).collect())
        };
        let status = if i % 10 == 3 { "FAIL" } else { "SUCCESS" };
        line.clear();
        use std::fmt::Write as _;
        let _ = write!(
            line,
            r#"{{"id": "log-{i:07}", "input": "request {i} about topic {cluster}", "output": "answer {i} on topic {cluster}", "status": "{status}", "embedding": ["#
        );
        for (k, x) in v.iter().enumerate() {
            if k > 0 {
                line.push(',');
            }
            let _ = write!(line, "{x:.5}");
        }
        line.push_str("]}\n");
        w.write_all(line.as_bytes()).expect("write logs.jsonl");
    }
    w.flush().expect("flush logs.jsonl");
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}
