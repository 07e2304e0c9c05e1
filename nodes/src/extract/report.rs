//! From logs with vectors to the node's output: per group, the densities,
//! the picks, and each pick as a chat example; then `train.jsonl` (the
//! examples as a fine-tuning API reads them), the map of the logs
//! (`projection.json`), the summary and the counts.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Map, Value};

use flow_engine::cache::SpillError;
use flow_engine::template::RenderError;
use flow_engine::{Artifact, Record, Spool, META_JSON, SUMMARY_MD};

use super::density::{self, Density};
use super::ivf;
use super::logs::{self, Log, Logs};
use super::map::LogMap;
use super::{select, Embedded, ExtractConfig, Strategy, Templates, TRAIN_JSONL};

/// Why the logs, their vectors all there, give no output: a vector that is
/// missing, of another dimension, or all zeros, or a `system` template a
/// pick cannot fill.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("log `{id}` has no embedding (the backend returned none for it)")]
    NoEmbedding { id: String },
    #[error(
        "log `{id}` has a {dims}-dimensional embedding, but log `{first}` a {first_dims}-dimensional one; \
         hint: embed every log with the same model (and `dimensions`)"
    )]
    Dimensions { id: String, dims: usize, first: String, first_dims: usize },
    #[error("log `{id}` has an all-zero embedding, which has no direction")]
    ZeroVector { id: String },
    #[error("log `{id}`: `system`: {source}")]
    System { id: String, source: RenderError },
    /// Writing `train.jsonl`.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The input could not be read back from disk.
    #[error(transparent)]
    Spill(#[from] SpillError),
}

/// What one group held and gave.
#[derive(Debug, Clone, Serialize)]
struct GroupReport {
    function: Option<String>,
    /// Input records, copies included.
    records: u64,
    /// Distinct logs.
    logs: usize,
    successful: usize,
    picked: usize,
    /// The densities of the picks, first and last.
    densities: Option<(f64, f64)>,
    /// Whether its neighbours came from the index (`neighbours`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    approximate: bool,
}

/// Densities, picks, examples and artifacts for `logs`, whose vectors are
/// all there: in their records in `input`, or embedded.
pub fn extract(
    c: &ExtractConfig,
    templates: &Templates,
    mut logs: Logs,
    input: &Spool,
    embedded: Embedded,
) -> Result<(Vec<Record>, Vec<Artifact>), ExtractError> {
    let dims = dimension(&logs)?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut out = Vec::new();
    let mut groups = Vec::new();
    let started = std::time::Instant::now();
    let (x, usable) = unit_vectors(&mut logs, input, dims)?;
    tracing::debug!(seconds = started.elapsed().as_secs_f64(), "extract: the vectors read");
    let started = std::time::Instant::now();
    let mut map = LogMap::fit(&x, &usable, dims);
    tracing::debug!(seconds = started.elapsed().as_secs_f64(), "extract: the plane of the map");
    let mut first = 0;
    for (function, group) in std::mem::take(&mut logs.groups) {
        let rows = first..first + group.len();
        first = rows.end;
        if let Some(i) = usable[rows.clone()].iter().position(|&u| !u) {
            return Err(ExtractError::ZeroVector { id: group[i].id.clone() });
        }
        let x = &x[rows.start * dims..rows.end * dims];
        let at = x.chunks_exact(dims.max(1)).map(|v| map.plane().project(v)).collect();
        let weights: Vec<u32> = group.iter().map(|l| 1 + l.duplicates).collect();
        let started = std::time::Instant::now();
        let approximate = c.neighbours.approximate(group.len());
        let d = if approximate {
            ivf::density(x, dims, &weights, c.threshold(), threads)
        } else {
            density::density(x, dims, &weights, c.threshold(), threads, density::BLOCK)
        };
        tracing::debug!(
            logs = group.len(),
            approximate,
            seconds = started.elapsed().as_secs_f64(),
            "extract: densities"
        );
        // A success without an answer teaches nothing.
        let success: Vec<bool> = group.iter().map(|l| l.success && l.answered).collect();
        let top_k = c.top_k as usize;
        let picks = match c.strategy {
            Strategy::Steady => select::steady(x, dims, &d, &success, c.threshold(), top_k, c.min_neighbours),
            Strategy::Anomaly => select::anomaly(&d, &success, top_k),
        };
        for (rank, &i) in picks.iter().enumerate() {
            let record = input.get(group[i].at)?;
            out.push(example(c, templates, &group[i], &record, &d, i, rank + 1)?);
        }
        groups.push(GroupReport {
            records: weights.iter().map(|&w| w as u64).sum(),
            logs: group.len(),
            successful: success.iter().filter(|&&s| s).count(),
            picked: picks.len(),
            densities: picks.first().zip(picks.last()).map(|(&a, &b)| (round(d.density[a]), round(d.density[b]))),
            approximate,
            function,
        });
        map.add(&group, at, &d, &success, &picks);
    }
    let mut artifacts = artifacts(c, &out, &groups, logs.records, embedded, dims)?;
    let started = std::time::Instant::now();
    artifacts.push(map.artifact(c.strategy, dims));
    tracing::debug!(seconds = started.elapsed().as_secs_f64(), "extract: the map of the logs");
    Ok((out, artifacts))
}

/// The length of a log's vector: its embedding's, or the one a backend gave.
fn vector_len(log: &Log) -> Option<usize> {
    log.dims.or(log.embedded.as_ref().map(Vec::len))
}

/// The one dimension of every vector (0 without logs); an error naming two
/// logs that differ.
fn dimension(logs: &Logs) -> Result<usize, ExtractError> {
    let mut first: Option<(&str, usize)> = None;
    for log in logs.groups.values().flatten() {
        let Some(len) = vector_len(log) else {
            return Err(ExtractError::NoEmbedding { id: log.id.clone() });
        };
        match first {
            None => first = Some((&log.id, len)),
            Some((id, n)) if n != len => {
                return Err(ExtractError::Dimensions {
                    id: log.id.clone(),
                    dims: len,
                    first: id.to_string(),
                    first_dims: n,
                })
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|(_, n)| n).unwrap_or(0))
}

/// Every log's vector as a unit row, in the order of groups and ids, read
/// from its record in one pass over `input` (or taken from what a backend
/// gave); and whether each has a direction (an all-zero vector has none).
fn unit_vectors(logs: &mut Logs, input: &Spool, dims: usize) -> Result<(Vec<f32>, Vec<bool>), ExtractError> {
    let n: usize = logs.groups.values().map(Vec::len).sum();
    let mut x = vec![0f32; n * dims];
    // The row of each record that stands for a log, to read the vectors in
    // the input's order.
    let mut row_of = vec![u32::MAX; if dims > 0 { input.len() } else { 0 }];
    for (row, log) in logs.groups.values_mut().flatten().enumerate() {
        match log.embedded.take() {
            Some(v) => x[row * dims..(row + 1) * dims].copy_from_slice(&v),
            None => row_of[log.at] = row as u32,
        }
    }
    if row_of.iter().any(|&r| r != u32::MAX) {
        for (at, r) in input.records()?.enumerate() {
            let row = row_of[at];
            if row != u32::MAX {
                let row = row as usize;
                logs::read_embedding(&r?, &mut x[row * dims..(row + 1) * dims]);
            }
        }
    }
    let usable = x.chunks_exact_mut(dims.max(1)).map(density::normalize).collect();
    Ok((x, usable))
}

fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Pick `i` of a group as a chat example.
fn example(
    c: &ExtractConfig,
    templates: &Templates,
    log: &Log,
    record: &Record,
    d: &Density,
    i: usize,
    rank: usize,
) -> Result<Record, ExtractError> {
    let mut messages = Vec::new();
    if let Some(t) = &templates.system {
        let system = t.render(record).map_err(|source| ExtractError::System { id: log.id.clone(), source })?;
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": logs::text(record, "input")}));
    messages.push(json!({"role": "assistant", "content": logs::text(record, "output")}));
    let Value::Object(fields) = json!({
        "id": log.id,
        "function": log.group,
        "strategy": c.strategy.name(),
        "rank": rank,
        "density": round(d.density[i]),
        "neighbours": d.neighbours[i],
        "duplicates": log.duplicates,
        "messages": messages,
    }) else {
        unreachable!("an object")
    };
    Ok(Arc::new(fields))
}

fn artifacts(
    c: &ExtractConfig,
    examples: &[Record],
    groups: &[GroupReport],
    records: usize,
    embedded: Embedded,
    dims: usize,
) -> Result<Vec<Artifact>, ExtractError> {
    let mut train = Vec::new();
    for e in examples {
        let line = Map::from_iter([("messages".to_string(), e["messages"].clone())]);
        serde_json::to_writer(&mut train, &line)?;
        train.push(b'\n');
    }
    let distinct: usize = groups.iter().map(|g| g.logs).sum();
    let successful: usize = groups.iter().map(|g| g.successful).sum();
    let meta = json!({
        "strategy": c.strategy.name(),
        "epsilon": c.epsilon,
        "top_k": c.top_k,
        "records": records,
        "logs": distinct,
        "duplicates": records - distinct,
        "successful": successful,
        "examples": examples.len(),
        "dimensions": (dims > 0).then_some(dims),
        "embedded": {"texts": embedded.texts, "calls": embedded.calls},
        "groups": groups,
    });
    let mut meta_bytes = serde_json::to_vec_pretty(&meta).expect("json");
    meta_bytes.push(b'\n');
    let md = markdown(c, groups, records, distinct, successful, examples.len(), embedded, dims);
    Ok(vec![
        Artifact { name: TRAIN_JSONL.into(), bytes: train },
        Artifact { name: META_JSON.into(), bytes: meta_bytes },
        Artifact { name: SUMMARY_MD.into(), bytes: md.into_bytes() },
    ])
}

#[allow(clippy::too_many_arguments)]
fn markdown(
    c: &ExtractConfig,
    groups: &[GroupReport],
    records: usize,
    distinct: usize,
    successful: usize,
    examples: usize,
    embedded: Embedded,
    dims: usize,
) -> String {
    let mut md = format!(
        "extract ({}, ε = {}, top_k = {}): {examples} examples from {records} logs ({distinct} distinct, {successful} successful) in {} groups",
        c.strategy.name(),
        c.epsilon,
        c.top_k,
        groups.len(),
    );
    if dims > 0 {
        let _ = write!(md, "; {dims}-dimensional embeddings");
    }
    if embedded.texts > 0 {
        let calls = if embedded.calls == 1 { "call" } else { "calls" };
        let _ = write!(md, ", {} embedded in {} {calls}", embedded.texts, embedded.calls);
    }
    let approximate = groups.iter().filter(|g| g.approximate).count();
    if approximate > 0 {
        let _ = write!(md, "; approximate neighbours (an IVF index) in {approximate} of {} groups", groups.len());
    }
    md.push_str("; written to train.jsonl\n\n");
    let by = c.group_by.as_deref().unwrap_or("group");
    let _ = writeln!(md, "| {by} | logs | distinct | successful | examples | density of examples |");
    md.push_str("|---|---:|---:|---:|---:|---|\n");
    for g in groups {
        let densities = match g.densities {
            Some((a, b)) if a == b => format!("{a:.3}"),
            Some((a, b)) => format!("{a:.3} … {b:.3}"),
            None => "—".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {densities} |",
            g.function.as_deref().unwrap_or("(none)"),
            g.records,
            g.logs,
            g.successful,
            g.picked
        );
    }
    md
}
