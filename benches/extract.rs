//! Benchmarks of the barrier stages at scale: `extract` end to end, its
//! densities exact and approximate, and `compare` of two large inputs.
//!
//! Parts (all by default; `FLOW_BENCH_ONLY=e2e,density,million,compare`
//! picks some):
//!
//! - `e2e`: how long `flow run` takes to pick golden examples from N logs
//!   with 384-dimensional embeddings, and how much memory it needs, with
//!   `neighbours: exact` and with the default (`auto`). For each size N it
//!   writes a JSONL file of N logs whose embeddings (in the file, as real
//!   logs exported with their vectors carry them) are clustered: 64 random
//!   centres with every log at cosine ≈ 0.9 from its centre, a tenth of
//!   them FAIL, one in 200 a loner in a random direction. All logs are in
//!   one group (no `function`), the worst case. The spec is `load →
//!   extract` (`steady`, ε = 0.3, top_k = 50). It runs the real `flow`
//!   binary as a child, several times, each with a fresh workspace and
//!   `--no-cache`, and reports the medians of the wall time, the `extract`
//!   and `load` nodes' own times (from the run manifest), and the child's
//!   peak resident set size (`wait4`'s `ru_maxrss`).
//! - `density`: the same vectors in process, densities exact and
//!   approximate (`extract::ivf`) at 10k–100k logs: medians of the time,
//!   the neighbour recall of approximate against exact (all logs), and
//!   whether the `steady` picks are the same.
//! - `million`: approximate densities of 1,000,000 such logs in process,
//!   once, with the recall against exact counts on a sample of 300 logs.
//! - `compare`: `load → compare` of two inputs of 1,000,000 scored records
//!   each (two metrics, a tenth of them flipped), peak RSS and wall time.
//! - `postgres`: the same 100,000 logs in a real Postgres (pgvector
//!   `vector(384)`, from `scripts/fetch-postgres.sh`), read by `kind: query`
//!   into `extract`: wall time and peak RSS, then one row changed and what
//!   `flow plan` says (not in the default set: it needs `target/pg`).
//!
//! The figures are printed, never asserted: timings on shared machines are
//! noisy. Run it with:
//!
//! ```text
//! cargo bench --bench extract
//! FLOW_BENCH_SIZES=20000 FLOW_BENCH_ONLY=e2e cargo bench --bench extract
//! FLOW_BENCH_BIN=/path/to/old/flow cargo bench --bench extract   # before
//! ```
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it does a single
//! quick run on 1,000 logs, to check that the pipeline works, and exits.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "../tests/support/postgres.rs"]
mod postgres;

use flow_nodes::extract::{density, ivf, select};
use support::{flow_bin, format_secs, median, run_flow, sizes, thousands, SplitMix64, MIB};

/// Log counts measured by default.
const DEFAULT_SIZES: [usize; 2] = [10_000, 100_000];

/// Log count of the single smoke run done outside `cargo bench`.
const SMOKE_SIZE: usize = 1_000;

/// Dimension of the embeddings (all-MiniLM-L6-v2's, a common choice).
const DIMS: usize = 384;

/// Cluster centres in the data.
const CLUSTERS: usize = 64;

/// The pipeline under test, with `neighbours: {mode}`. Paths are relative
/// to the spec's folder.
fn spec(neighbours: &str) -> String {
    format!(
        "flow: 1
name: bench-extract
nodes:
  logs:
    kind: load
    path: logs.jsonl
  golden:
    kind: extract
    input: logs
    neighbours: {neighbours}
"
    )
}

/// Which parts run: [`ONLY_VAR`], else all.
const ONLY_VAR: &str = "FLOW_BENCH_ONLY";

fn part(name: &str) -> bool {
    std::env::var(ONLY_VAR).map_or(name != "postgres", |only| only.split(',').any(|p| p.trim() == name))
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs bench targets without it.
    let benching = std::env::args().any(|a| a == "--bench");
    println!("flow binary: {}", flow_bin());
    println!("threads available: {}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    if !benching {
        println!("{}", bench_size(SMOKE_SIZE, 1, "auto").line());
        density_table(&[SMOKE_SIZE], 1);
        return;
    }
    if part("e2e") {
        for &n in &sizes(&DEFAULT_SIZES, "log") {
            // Fewer runs where each is long: the median of 3 is enough there,
            // and a million logs (minutes, gigabytes of input) run once.
            let runs = if n >= 500_000 {
                1
            } else if n >= 50_000 {
                3
            } else {
                5
            };
            for mode in ["exact", "auto"] {
                if mode == "exact" && n > 200_000 {
                    continue; // n² work: most of an hour at 1M
                }
                println!("{}", bench_size(n, runs, mode).line());
            }
        }
        println!("target: peak RSS of load → extract at 100,000 logs × 384 ≤ 400 MB, in ≤ 60 s on 2 cores");
    }
    if part("density") {
        density_table(&[10_000, 20_000, 50_000, 100_000], 3);
    }
    if part("million") {
        million();
    }
    if part("compare") {
        compare(1_000_000, 3);
    }
    if part("postgres") {
        from_postgres(100_000, 3);
    }
}

/// `query → extract` over `n` logs in Postgres: medians of `runs` runs
/// (each with a fresh workspace), then a changed row and the plan.
fn from_postgres(n: usize, runs: usize) {
    let Some(pg) = postgres::Postgres::start("bench-pw") else { return };
    let dir = tempfile::tempdir().expect("create a temp dir");
    let csv = dir.path().join("logs.csv");
    {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&csv).expect("create logs.csv"));
        for (i, (cluster, v)) in Vectors::new().take(n).enumerate() {
            let status = if i % 10 == 3 { "FAIL" } else { "SUCCESS" };
            let vector: Vec<String> = v.iter().map(|x| format!("{x:.5}")).collect();
            writeln!(
                w,
                "log-{i:07},request {i} about topic {cluster},answer {i} on topic {cluster},{status},\"[{}]\"",
                vector.join(",")
            )
            .expect("write logs.csv");
        }
        w.flush().expect("flush logs.csv");
    }
    pg.sql(&format!(
        "create extension vector; create table logs (id text primary key, input text, output text, status text, embedding vector({DIMS}), updated_at timestamptz not null default now())"
    ));
    // A psql meta-command goes alone in its `-c`.
    pg.sql(&format!("\\copy logs (id, input, output, status, embedding) from '{}' with (format csv)", csv.display()));
    let spec = dir.path().join("bench.yaml");
    std::fs::write(
        &spec,
        "flow: 1\nname: bench-pg\nnodes:\n  logs:\n    kind: query\n    postgres:\n      url_env: DATABASE_URL\n      table: logs\n      fingerprint: select max(updated_at), count(*) from logs\n  golden:\n    kind: extract\n    input: logs\n",
    )
    .expect("write bench.yaml");
    let workspace = dir.path().join(".flow");
    let url = pg.url();
    let env = [("DATABASE_URL", url.as_str())];
    let (mut walls, mut rss) = (Vec::new(), Vec::new());
    let mut times = (Vec::new(), Vec::new());
    for _ in 0..runs {
        if workspace.exists() {
            std::fs::remove_dir_all(&workspace).expect("remove the previous workspace");
        }
        let (wall, max_rss_kib) = run_flow(&spec, &workspace, &env);
        walls.push(wall);
        rss.push(max_rss_kib as f64 / 1024.0);
        let m = latest_manifest(&workspace);
        let ms = |name: &str| {
            let node = m["nodes"].as_array().expect("nodes").iter().find(|x| x["name"] == name).expect("node").clone();
            Duration::from_millis(node["wall_ms"].as_u64().expect("wall_ms"))
        };
        times.0.push(ms("logs"));
        times.1.push(ms("golden"));
    }
    println!(
        "query→extract {n:>7} logs × {DIMS} from Postgres  median {:>8}  (query node {}, extract node {})  peak RSS {:>6.0} MiB  ({runs} runs)",
        format_secs(median(walls)),
        format_secs(median(times.0)),
        format_secs(median(times.1)),
        median(rss)
    );
    pg.sql("update logs set status = 'FAIL', updated_at = now() where id = 'log-0000007'");
    let plan = std::process::Command::new(flow_bin())
        .args(["plan"])
        .arg(&spec)
        .arg("--workspace")
        .arg(&workspace)
        .envs(env)
        .output()
        .expect("flow plan runs");
    let text = String::from_utf8_lossy(&plan.stdout);
    let said: Vec<&str> = text.lines().filter(|l| l.contains("postgres:") || l.contains("logs")).collect();
    println!("after one row changed, flow plan says:\n  {}", said.join("\n  "));
}

/// What was measured at one size: medians over its runs.
struct SizeResult {
    logs: usize,
    mode: &'static str,
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
            "load→extract  {:>7} logs × {DIMS}  neighbours: {:<5}  median {:>8}  (extract node {}, load {})  peak RSS {:>6.0} MiB  {} examples  ({runs}; {:.0} MiB input)",
            self.logs,
            self.mode,
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
fn bench_size(n: usize, runs: usize, mode: &'static str) -> SizeResult {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let data = dir.path().join("logs.jsonl");
    let spec = dir.path().join("bench.yaml");
    let workspace = dir.path().join(".flow");
    write_logs(&data, n);
    std::fs::write(&spec, self::spec(mode)).expect("write bench.yaml");
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
        mode,
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

/// The vectors of `n` deterministic logs, and each one's cluster: a cluster
/// centre plus noise of norm 0.5 (cosine ≈ 0.9 to the centre, ≈ 0.8
/// between two logs of a cluster), or every 200th a random direction.
struct Vectors {
    rng: SplitMix64,
    centres: Vec<Vec<f32>>,
    amplitude: f32,
    i: usize,
}

impl Vectors {
    fn new() -> Self {
        let mut rng = SplitMix64(0x5eed_10f5);
        let centres: Vec<Vec<f32>> = (0..CLUSTERS).map(|_| unit((0..DIMS).map(|_| rng.uniform()).collect())).collect();
        // Uniform noise in [-a, a) per component has norm √(DIMS · a² / 3).
        let amplitude = 0.5 * (3.0 / DIMS as f32).sqrt();
        Vectors { rng, centres, amplitude, i: 0 }
    }
}

impl Iterator for Vectors {
    type Item = (usize, Vec<f32>);

    fn next(&mut self) -> Option<Self::Item> {
        let (i, rng) = (self.i, &mut self.rng);
        self.i += 1;
        let cluster = (rng.next() % CLUSTERS as u64) as usize;
        let v = if i % 200 == 199 {
            unit((0..DIMS).map(|_| rng.uniform()).collect())
        } else {
            unit(self.centres[cluster].iter().map(|c| c + self.amplitude * rng.uniform()).collect())
        };
        Some((cluster, v))
    }
}

/// Writes `n` deterministic logs as JSONL, each with its embedding (see
/// [`Vectors`]). Every 10th log is a FAIL. Components are written with 5
/// decimals.
fn write_logs(path: &Path, n: usize) {
    let file = File::create(path).expect("create logs.jsonl");
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut line = String::with_capacity(DIMS * 10 + 200);
    for (i, (cluster, v)) in Vectors::new().take(n).enumerate() {
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

/// `n` unit vectors of [`Vectors`], as rows, rounded to 5 decimals as the
/// file has them, and which are successes.
fn vectors(n: usize) -> (Vec<f32>, Vec<bool>) {
    let mut x = Vec::with_capacity(n * DIMS);
    for (_, v) in Vectors::new().take(n) {
        let mut v: Vec<f32> = v.iter().map(|&c| (c as f64 * 1e5).round() as f32 / 1e5).collect();
        density::normalize(&mut v);
        x.extend(v);
    }
    (x, (0..n).map(|i| i % 10 != 3).collect())
}

/// ε = 0.3, as the spec's default.
const THRESHOLD: f32 = 0.7;

/// Densities exact and approximate in process, at each size: medians of
/// `runs` runs, recall and whether the `steady` picks agree.
fn density_table(sizes: &[usize], runs: usize) {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    for &n in sizes {
        let (x, success) = vectors(n);
        let weights = vec![1u32; n];
        let time = |f: &dyn Fn() -> density::Density| {
            let mut times = Vec::new();
            let mut d = None;
            for _ in 0..runs {
                let started = Instant::now();
                d = Some(f());
                times.push(started.elapsed());
            }
            (median(times), d.expect("runs > 0"))
        };
        let (t_exact, exact) = time(&|| density::density(&x, DIMS, &weights, THRESHOLD, threads, density::BLOCK));
        let (t_approx, approx) = time(&|| ivf::density(&x, DIMS, &weights, THRESHOLD, threads));
        let picks = |d: &density::Density| select::steady(&x, DIMS, d, &success, THRESHOLD, 50, 2);
        let (pe, pa) = (picks(&exact), picks(&approx));
        let same = pe.iter().filter(|p| pa.contains(p)).count();
        println!(
            "densities  {:>7} logs × {DIMS}  exact {:>8}  approximate {:>8}  ({:.1}× faster)  recall {:.4}  steady picks: {same} of {} the same{}  (median of {runs})",
            thousands(n as u64),
            format_secs(t_exact),
            format_secs(t_approx),
            t_exact.as_secs_f64() / t_approx.as_secs_f64(),
            ivf::recall(&approx.neighbours, &exact.neighbours),
            pe.len(),
            if pe == pa { ", in the same order" } else { "" },
        );
    }
}

/// Approximate densities of a million logs, once, and their recall on a
/// sample against counts made by comparing each sampled log with all.
fn million() {
    let n = 1_000_000;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let (x, success) = vectors(n);
    let weights = vec![1u32; n];
    let started = Instant::now();
    let approx = ivf::density(&x, DIMS, &weights, THRESHOLD, threads);
    let took = started.elapsed();
    let picks = select::steady(&x, DIMS, &approx, &success, THRESHOLD, 50, 2);
    let sample: Vec<usize> = (0..n).step_by(n / 300).collect();
    let exact = ivf::exact_neighbours(&x, DIMS, &weights, THRESHOLD, &sample);
    let found: Vec<u64> = sample.iter().map(|&i| approx.neighbours[i]).collect();
    println!(
        "densities  {} logs × {DIMS}  approximate {}  (1 run)  recall {:.4} on {} sampled logs  {} steady picks",
        thousands(n as u64),
        format_secs(took),
        ivf::recall(&found, &exact),
        sample.len(),
        picks.len(),
    );
    println!("target: extract on 1,000,000 logs ≤ 10 min on 2 cores, recall ≥ 0.95");
}

/// The compare pipeline: two stored scored runs.
const COMPARE_SPEC: &str = "flow: 1
name: bench-compare
nodes:
  baseline:
    kind: load
    path: baseline.jsonl
  candidate:
    kind: load
    path: candidate.jsonl
  diff:
    kind: compare
    inputs: [baseline, candidate]
";

/// `load → compare` of two inputs of `n` scored records: medians of `runs`.
fn compare(n: usize, runs: usize) {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let mut rng = SplitMix64(0xc0ffee);
    for (name, flip) in [("baseline.jsonl", 0), ("candidate.jsonl", 10)] {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(dir.path().join(name)).expect("create"));
        for i in 0..n {
            let pass = (i % 3 != 0) != (flip > 0 && rng.next().is_multiple_of(flip));
            let sim = (rng.next() % 1000) as f64 / 1000.0;
            writeln!(
                w,
                r#"{{"id": "case-{i:07}", "answer": "the answer to case {i}", "scores": {{"exact_match": {{"score": {}, "pass": {pass}}}, "similarity": {{"score": {sim}, "pass": {}}}}}}}"#,
                pass as u8,
                sim >= 0.5
            )
            .expect("write");
        }
        w.flush().expect("flush");
    }
    let spec = dir.path().join("compare.yaml");
    std::fs::write(&spec, COMPARE_SPEC).expect("write compare.yaml");
    let workspace = dir.path().join(".flow");
    let (mut walls, mut rss) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        if workspace.exists() {
            std::fs::remove_dir_all(&workspace).expect("remove the previous run's workspace");
        }
        let (wall, max_rss_kib) = run_flow(&spec, &workspace, &[]);
        walls.push(wall);
        rss.push(max_rss_kib as f64 / 1024.0);
    }
    println!(
        "load→compare  2 × {} records  median {:>8}  peak RSS {:>6.0} MiB  ({runs} runs)",
        thousands(n as u64),
        format_secs(median(walls)),
        median(rss)
    );
    println!("target: compare of two 1,000,000-record inputs ≤ 200 MB peak RSS");
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}
