//! End-to-end streaming benchmark: throughput and peak memory of `flow run`
//! on a `load → evaluate` pipeline, at several dataset sizes.
//!
//! For each size N the benchmark writes a JSONL file of N synthetic support
//! cases (about 150 bytes each, a third of them answered exactly right) and a
//! spec that loads them and scores every record with four metrics
//! (`exact_match`, `similarity`, `regex`, `contains`). It then runs the real
//! `flow` binary as a child process, several times, each time with a fresh
//! workspace and `--no-cache`, and measures per run:
//!
//! - wall time, from spawn to reap (process start, spec compilation, the
//!   stream itself and writing the output object);
//! - the child's peak resident set size, from `wait4`'s `ru_maxrss`.
//!
//! It prints the median of each, records per second, and how peak memory
//! grows from the smallest to the largest size. Streaming with backpressure
//! should keep memory flat, so that ratio should stay close to 1. The
//! figures are printed, never asserted: timings on shared machines are noisy.
//!
//! Run it with:
//!
//! ```text
//! cargo bench --bench stream
//! FLOW_BENCH_SIZES=10000,100000 cargo bench --bench stream   # other sizes
//! ```
//!
//! A second scenario, **noop**, measures what a re-run costs when nothing
//! changed: the same spec over a 200 MB JSONL input (about 1.4M records),
//! every node cached. Planning it must not read the input again (the stat
//! cache keeps its hash and field list). Then the same after a `touch` of
//! the input (a new modification time, the same bytes): the file is hashed
//! again, but its field list is kept and nothing re-runs. The input's time
//! is set an hour back first, as an input that has been there a while has
//! (a file written the instant before it was hashed is hashed again).
//!
//! ```text
//! FLOW_BENCH_ONLY=noop cargo bench --bench stream
//! ```
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it does a single
//! quick run on a small file, to check that the pipeline works, and exits.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

#[path = "support/mod.rs"]
mod support;

use support::{
    flow_bin, format_secs, latest_manifest, median, run_flow, run_flow_args, runs, selected, sizes, thousands,
    SplitMix64, MIB,
};

/// Records in the no-op scenario's input: about 200 MB.
const NOOP_RECORDS: usize = 1_400_000;

/// Dataset sizes measured by default.
const DEFAULT_SIZES: [usize; 2] = [10_000, 1_000_000];

/// Dataset size of the single smoke run done outside `cargo bench`.
const SMOKE_SIZE: usize = 1_000;

/// The pipeline under test. Paths are relative to the spec's folder.
const SPEC: &str = r#"flow: 1
name: bench
nodes:
  cases:
    kind: load
    path: data.jsonl
  scores:
    kind: evaluate
    input: cases
    metrics:
      - type: exact_match
        expected: "{{expected}}"
      - type: similarity
        expected: "{{expected}}"
        threshold: 0.8
      - type: regex
        pattern: "\\d+"
      - type: contains
        value: "{{expected}}"
"#;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs bench targets without it.
    let benching = std::env::args().any(|a| a == "--bench");
    println!("flow binary: {}", flow_bin());
    if selected("stream") {
        stream(benching);
    }
    if selected("noop") {
        noop(benching);
    }
}

/// `load → evaluate` at each size.
fn stream(benching: bool) {
    let sizes = if benching { sizes(&DEFAULT_SIZES, "record") } else { vec![SMOKE_SIZE] };
    let mut results = Vec::with_capacity(sizes.len());
    for &n in &sizes {
        // Fewer runs where each is long: the median of 3 is enough there.
        let runs = if !benching {
            1
        } else if n >= 1_000_000 {
            runs(3)
        } else {
            runs(5)
        };
        let result = bench_size(n, runs);
        println!("{}", result.line());
        results.push(result);
    }
    if !benching {
        return;
    }

    // Memory growth from the smallest to the largest dataset.
    let smallest = results.iter().min_by_key(|r| r.records);
    let largest = results.iter().max_by_key(|r| r.records);
    if let (Some(s), Some(l)) = (smallest, largest) {
        if l.records > s.records {
            println!("peak RSS ratio ({} vs {} records): {:.2}", l.records, s.records, l.rss_mib / s.rss_mib);
        }
    }
    println!("target: >= 200k records/s at 1M, RSS ratio <= 1.5");
}

/// A re-run with everything cached, then after a `touch` of the input.
fn noop(benching: bool) {
    let (n, runs) = if benching { (NOOP_RECORDS, runs(5)) } else { (SMOKE_SIZE, 1) };
    let dir = tempfile::tempdir().expect("create a temp dir");
    let data = dir.path().join("data.jsonl");
    let spec = dir.path().join("bench.yaml");
    let workspace = dir.path().join(".flow");
    write_dataset(&data, n);
    // On disk before anything is timed: the write-back of 200 MB just
    // written would otherwise stall every fsync of the runs measured.
    File::open(&data).and_then(|f| f.sync_all()).expect("sync data.jsonl");
    std::fs::write(&spec, SPEC).expect("write bench.yaml");
    let data_mib = std::fs::metadata(&data).expect("stat data.jsonl").len() as f64 / MIB;
    let set_mtime = |t: SystemTime| {
        let f = File::options().write(true).open(&data).expect("open data.jsonl");
        f.set_modified(t).expect("set the modification time of data.jsonl");
    };
    set_mtime(SystemTime::now() - Duration::from_secs(3600));
    // CPU time of each run (user + system), steadier than wall time on a
    // loaded machine.
    let cpus = std::cell::RefCell::new(Vec::new());
    let run = |what: &str| {
        let ran = run_flow_args(&spec, &workspace, &[], &[]);
        let (wall, code) = (ran.wall, ran.code);
        cpus.borrow_mut().push(ran.cpu);
        assert_eq!(code, 0, "{what}: `flow run {}` failed", spec.display());
        let m = latest_manifest(&workspace);
        let ran: Vec<String> = m["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter(|n| n["status"] != "cached")
            .map(|n| n["name"].to_string())
            .collect();
        (wall, ran)
    };
    // The first run computes; the second finds the workspace and records
    // the input's stat.
    run("first run");
    let (_, ran) = run("second run");
    assert!(ran.is_empty(), "nodes ran again with nothing changed: {ran:?}");
    let mut walls = Vec::with_capacity(runs);
    cpus.borrow_mut().clear();
    for _ in 0..runs {
        let (wall, ran) = run("no-op run");
        assert!(ran.is_empty(), "nodes ran again with nothing changed: {ran:?}");
        walls.push(wall);
    }
    let noop_cpu = median(cpus.borrow_mut().split_off(0));
    let mut touched = Vec::with_capacity(runs);
    for _ in 0..runs {
        set_mtime(SystemTime::now());
        let (wall, ran) = run("touched run");
        assert!(ran.is_empty(), "nodes ran again after a touch: {ran:?}");
        touched.push(wall);
    }
    let touched_cpu = median(cpus.borrow_mut().split_off(0));
    let spread = |w: &[Duration]| w.iter().map(|d| format_secs(*d)).collect::<Vec<_>>().join(", ");
    println!(
        "noop re-run    {n:>9} records  median {:>8}  cpu {:>8}  ({} runs: {}; {data_mib:.1} MiB input)   target: <= 0.05 s",
        format_secs(median(walls.clone())),
        format_secs(noop_cpu),
        walls.len(),
        spread(&walls)
    );
    println!(
        "touched input  {n:>9} records  median {:>8}  cpu {:>8}  ({} runs: {})   target: <= 0.5 s, cached",
        format_secs(median(touched.clone())),
        format_secs(touched_cpu),
        touched.len(),
        spread(&touched)
    );
}

/// What was measured at one size: medians over its runs.
struct SizeResult {
    records: usize,
    runs: usize,
    /// Median wall time.
    wall: Duration,
    /// Fastest and slowest run, to show the noise.
    wall_range: (Duration, Duration),
    /// Median peak RSS.
    rss_mib: f64,
    /// Size of the input file.
    data_mib: f64,
}

impl SizeResult {
    fn line(&self) -> String {
        let rate = self.records as f64 / self.wall.as_secs_f64();
        let runs = if self.runs == 1 {
            "1 run".to_string()
        } else {
            let (fastest, slowest) = self.wall_range;
            format!("{} runs: {}–{}", self.runs, format_secs(fastest), format_secs(slowest))
        };
        format!(
            "load→evaluate  {:>9} records  median {:>8}  {:>9} rec/s  peak RSS {:>6.1} MiB  ({runs}; {:.1} MiB input)",
            self.records,
            format_secs(self.wall),
            thousands(rate.round() as u64),
            self.rss_mib,
            self.data_mib,
        )
    }
}

/// Writes the dataset and spec for `n` records, runs `flow` `runs` times and
/// returns the medians.
fn bench_size(n: usize, runs: usize) -> SizeResult {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let data = dir.path().join("data.jsonl");
    let spec = dir.path().join("bench.yaml");
    let workspace = dir.path().join(".flow");
    write_dataset(&data, n);
    std::fs::write(&spec, SPEC).expect("write bench.yaml");
    let data_mib = std::fs::metadata(&data).expect("stat data.jsonl").len() as f64 / MIB;

    let mut walls = Vec::with_capacity(runs);
    let mut rss = Vec::with_capacity(runs);
    for _ in 0..runs {
        // A fresh workspace each time, so every run does the same work.
        if workspace.exists() {
            std::fs::remove_dir_all(&workspace).expect("remove the previous run's workspace");
        }
        let (wall, max_rss_kib) = run_flow(&spec, &workspace, &[]);
        walls.push(wall);
        rss.push(max_rss_kib as f64 / 1024.0);
    }
    let wall_range = (walls.iter().copied().min().expect("runs > 0"), walls.iter().copied().max().expect("runs > 0"));
    SizeResult { records: n, runs, wall: median(walls), wall_range, rss_mib: median(rss), data_mib }
}

/// Writes `n` deterministic support cases as JSONL.
///
/// Records average about 150 bytes. By `i % 3`, the output is the expected
/// answer verbatim, a near miss (the answer with a prefix, so `contains`
/// passes, or with a one-character typo, so `similarity` passes), or an
/// unrelated reply.
fn write_dataset(path: &Path, n: usize) {
    const ITEMS: [&str; 6] = ["laptops", "chargers", "monitors", "keyboards", "headsets", "cables"];
    const STATES: [&str; 5] = ["open", "resolved", "pending", "escalated", "closed"];
    const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

    let file = File::create(path).expect("create data.jsonl");
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut rng = SplitMix64(0x5eed_f10e);
    for i in 0..n {
        let r = rng.next();
        let pick = |list: &[&'static str], shift: u32| list[((r >> shift) % list.len() as u64) as usize];
        let order = 1000 + (r >> 8) % 9000;
        let count = 1 + (r >> 24) % 40;
        let (question, expected) = match i % 4 {
            0 => {
                let item = pick(&ITEMS, 32);
                (format!("How many {item} were shipped in order #{order}?"), format!("{count} {item}"))
            }
            1 => {
                let day = pick(&DAYS, 36);
                (format!("When will parcel {order} be delivered?"), format!("On {day}, before noon."))
            }
            2 => {
                let state = pick(&STATES, 40);
                (format!("What is the status of ticket #{order}?"), format!("Ticket {order} is {state}."))
            }
            _ => (format!("How much was refunded on invoice {order}?"), format!("{count}.{:02} EUR", (r >> 48) % 100)),
        };
        let output = match i % 3 {
            0 => expected.clone(),
            1 if r & 1 == 0 => format!("Sure: {expected}"),
            1 => typo(&expected),
            _ => format!("Sorry, I found nothing about order #{order}; please ask support."),
        };
        writeln!(
            w,
            r#"{{"id": "c{:07}", "question": {}, "expected": {}, "output": {}}}"#,
            i + 1,
            json_str(&question),
            json_str(&expected),
            json_str(&output)
        )
        .expect("write data.jsonl");
    }
    w.flush().expect("flush data.jsonl");
}

/// `s` with one character changed: its first digit shifted by one, else its
/// first letter lowercased. Never equal to `s` for the answers generated here.
fn typo(s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    if let Some(c) = chars.iter_mut().find(|c| c.is_ascii_digit()) {
        *c = char::from(b'0' + (*c as u8 - b'0' + 1) % 10);
    } else if let Some(c) = chars.first_mut() {
        *c = c.to_ascii_lowercase();
    }
    chars.into_iter().collect()
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}
