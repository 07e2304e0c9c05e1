//! Throughput of the `local` backend's embedder (all-MiniLM-L6-v2 on the
//! CPU, in process): sentences per second by batch size, which is how
//! `local::DEFAULT_BATCH` was chosen, and with two calls at once (as
//! `extract` sends them) against one.
//!
//! The texts are the support requests of tests/support/paraphrase_logs.rs
//! (short: ~16 tokens), and the same with their answers on a second line
//! (~40 tokens, what `extract` embeds by default). Each figure is the best
//! of `FLOW_BENCH_REPEAT` (default 2) passes over `FLOW_BENCH_TEXTS`
//! (default 384) distinct texts, for the batch sizes `FLOW_BENCH_BATCHES`
//! (default 16,32,64,128,256). Printed, never asserted: timings on
//! shared machines are noisy. Needs the model (`scripts/fetch-minilm.sh`).
//!
//! ```text
//! cargo bench --bench embed
//! FLOW_BENCH_BATCHES=32,64 RAYON_NUM_THREADS=1 cargo bench --bench embed
//! ```

#[path = "../tests/support/paraphrase_logs.rs"]
#[allow(dead_code)]
mod paraphrase_logs;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use flow_nodes::backend::local::Model;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Sentences per second embedding `texts` in batches of `batch`, with
/// `calls` calls at once (each a share of the texts), best of `repeat`.
fn rate(model: &Arc<Model>, texts: &[String], batch: usize, calls: usize, repeat: usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..repeat {
        let started = Instant::now();
        std::thread::scope(|s| {
            for share in texts.chunks(texts.len().div_ceil(calls)) {
                let model = model.clone();
                s.spawn(move || model.embed(share, batch).expect("embeds"));
            }
        });
        best = best.min(started.elapsed().as_secs_f64());
    }
    texts.len() as f64 / best
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/models/all-MiniLM-L6-v2");
    if !dir.join("model.safetensors").is_file() {
        eprintln!("skipped: no model in {} (run scripts/fetch-minilm.sh)", dir.display());
        return;
    }
    let started = Instant::now();
    let model = Arc::new(Model::load(&dir).expect("the model loads"));
    println!("model loaded in {:.2?}", started.elapsed());
    let n = env_or("FLOW_BENCH_TEXTS", 384);
    let repeat = env_or("FLOW_BENCH_REPEAT", 2);
    let batches: Vec<usize> = std::env::var("FLOW_BENCH_BATCHES")
        .unwrap_or_else(|_| "16,32,64,128,256".into())
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .collect();
    let logs = paraphrase_logs::logs();
    let mut seen = std::collections::BTreeSet::new();
    let short: Vec<String> = logs.iter().map(|l| l.input.clone()).filter(|t| seen.insert(t.clone())).take(n).collect();
    let long: Vec<String> = logs.iter().map(|l| format!("{}\n{}", l.input, l.output)).take(short.len()).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{} texts, {threads} cores (RAYON_NUM_THREADS={}), best of {repeat}",
        short.len(),
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into())
    );
    println!("| batch | requests (~16 tokens), 1 call | 2 calls at once | request + answer (~40 tokens), 1 call |");
    println!("|---:|---:|---:|---:|");
    for batch in batches {
        let one = rate(&model, &short, batch, 1, repeat);
        let two = rate(&model, &short, batch, 2, repeat);
        let long = rate(&model, &long, batch, 1, repeat);
        println!("| {batch} | {one:.0}/s | {two:.0}/s | {long:.0}/s |");
    }
}
