//! The running `evaluate` stage: scores each record with every metric,
//! adds `scores`, `pass` and the weighted `score`, and counts. Without a
//! metric that calls a backend or a command it is a plain streaming map;
//! with one it scores chunks of records as they arrive, the calls of a
//! chunk in flight together and each `exec` command run once per chunk.
//! When the input ends it checks `max_errors`, then writes the summary and,
//! when a `fail_if` gate tripped, the gate's text.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::{join_all, try_join_all};
use futures::StreamExt;
use serde_json::{json, Value};

use flow_engine::node::SUMMARY_JSON;
use flow_engine::{
    Artifact, BatchStream, MapStage, Meter, NodeError, Record, RecordStream, StreamStage, BATCH_SIZE, GATE_FAILED,
    SUMMARY_MD,
};

use super::config::GateConfig;
use super::gate;
use super::metric::{round6, Check, Metric, Verdict};
use super::summary::{self, Counted, Totals};
use crate::backend::{Backend, CallOpts};
use crate::run::ErrorLimit;

/// After this many records on which a metric errored every time, a node
/// with a share limit stops: the judge is down, or every record lacks the
/// field, and the rest would only wait for their retries too.
const EARLY_FAILURE_RECORDS: u64 = 20;

pub struct Scorer {
    pub metrics: Vec<Metric>,
    pub gates: Vec<GateConfig>,
    pub limit: ErrorLimit,
    /// The node's name, for `flow show` in gate texts.
    pub node: String,
    pub meter: Arc<Meter>,
    pub memo_reads: bool,
    totals: Mutex<Totals>,
    /// The input position of the next record (chunks may finish out of
    /// order; positions keep the listed ids the first ones).
    next: AtomicU64,
}

/// How a record is named in gate texts and errors: its `id` (with its
/// `variant` and `sample` when it has them), else its position.
fn record_id(r: &Record, position: u64) -> String {
    let id = match r.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Number(_)) => v.to_string(),
        _ => format!("record {}", position + 1),
    };
    let id = match r.get("variant").and_then(Value::as_str) {
        Some(v) => format!("{v}/{id}"),
        None => id,
    };
    match r.get("sample").and_then(Value::as_u64) {
        Some(s) => format!("{id} (sample {s})"),
        None => id,
    }
}

impl Scorer {
    pub fn new(
        metrics: Vec<Metric>,
        gates: Vec<GateConfig>,
        limit: ErrorLimit,
        node: String,
        meter: Arc<Meter>,
        memo_reads: bool,
    ) -> Self {
        let totals = Mutex::new(Totals::new(metrics.len()));
        Self { metrics, gates, limit, node, meter, memo_reads, totals, next: AtomicU64::new(0) }
    }

    /// Whether any metric scores by the chunk.
    pub fn by_chunk(&self) -> bool {
        self.metrics.iter().any(Metric::by_chunk)
    }

    /// Scores one record at input `position`; `external(i)` holds the
    /// verdict of metric `i` when it was computed for the whole chunk.
    fn scored(
        &self,
        record: &Record,
        position: u64,
        mut external: impl FnMut(usize) -> Option<Verdict>,
    ) -> Result<Record, NodeError> {
        let mut scores = serde_json::Map::new();
        let mut counted = Vec::with_capacity(self.metrics.len());
        let (mut weighted, mut weights) = (0.0, 0.0);
        for (i, m) in self.metrics.iter().enumerate() {
            let verdict = external(i).unwrap_or_else(|| m.score(record));
            let entry = match verdict.map(|s| if m.negate { s.negated() } else { s }) {
                Ok(s) => {
                    weighted += m.weight * s.score;
                    weights += m.weight;
                    counted.push(Counted::Scored { score: s.score, pass: s.pass });
                    let mut e = json!({"score": round6(s.score), "pass": s.pass});
                    if let Some(v) = s.value {
                        e["value"] = json!(v);
                    }
                    if let Some(r) = s.reason {
                        e["reason"] = json!(r);
                    }
                    e
                }
                Err(e) => {
                    let text = e.to_string();
                    let entry = json!({"score": null, "pass": false, "error": text});
                    counted.push(Counted::Errored(text));
                    entry
                }
            };
            scores.insert(m.name.clone(), entry);
        }
        let all = counted.iter().all(|c| matches!(c, Counted::Scored { pass: true, .. }));
        let score = (weights > 0.0).then(|| weighted / weights);
        let variant = record.get("variant").and_then(Value::as_str);
        let mut totals = self.totals.lock().expect("totals lock");
        totals.add(position, &|| record_id(record, position), variant, &counted, score);
        self.over_limit(&totals)?;
        drop(totals);
        let mut fields = (**record).clone();
        fields.insert("scores".into(), Value::Object(scores));
        fields.insert("pass".into(), Value::Bool(all));
        fields.insert("score".into(), json!(score.map(round6)));
        Ok(Arc::new(fields))
    }

    /// Stops the node as soon as `max_errors` cannot hold for a metric: a
    /// count passed, or it errored on each of the first records.
    fn over_limit(&self, t: &Totals) -> Result<(), NodeError> {
        for (m, st) in self.metrics.iter().zip(&t.metrics) {
            match self.limit {
                ErrorLimit::Count(max) if st.errors > max => {
                    return Err(NodeError::new(format!(
                        "metric `{}` errored on {} records, more than `max_errors: {max}`; the first {}",
                        m.name,
                        st.errors,
                        st.first()
                    )))
                }
                ErrorLimit::Share(max) if max < 1.0 && t.records == EARLY_FAILURE_RECORDS && st.scored == 0 => {
                    return Err(NodeError::new(format!(
                        "metric `{}` errored on each of the first {} records; the first {}",
                        m.name,
                        t.records,
                        st.first()
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Scores a chunk whose first record is at input `base`: each `exec`
    /// command once for the chunk, the backend calls of the chunk in flight
    /// together (every metric's at once: two judges on one batch backend
    /// share a batch, not one after the other), then every record.
    async fn chunk(self: Arc<Self>, chunk: Vec<Record>, base: u64) -> Result<Vec<Record>, NodeError> {
        let opts = CallOpts { meter: &self.meter, memo_reads: self.memo_reads, sample: 0 };
        let chunk = &chunk;
        let per_metric = self.metrics.iter().map(|m| async move {
            Ok::<_, NodeError>(match &m.check {
                Check::Exec(x) => Some(x.run(chunk).await.map_err(|e| NodeError::new(e.to_string()))?),
                Check::Judge(j) => {
                    let v = join_all(chunk.iter().map(|r| async move { j.grade(r, &m.text(r)?, opts).await })).await;
                    // The memo can keep no more answers: the node stops, not these records.
                    if let Some(halted) = j.halted() {
                        return Err(NodeError::new(halted.to_string()));
                    }
                    Some(v)
                }
                Check::Embedding(e) => {
                    let v = join_all(chunk.iter().map(|r| async move { e.score(r, &m.text(r)?, opts).await })).await;
                    if let Some(halted) = e.halted() {
                        return Err(NodeError::new(halted.to_string()));
                    }
                    Some(v)
                }
                _ => None,
            })
        });
        // Per metric scored by the chunk: each record's verdict, taken out
        // as the record is assembled.
        let mut external: Vec<Option<Vec<Option<Verdict>>>> = try_join_all(per_metric)
            .await?
            .into_iter()
            .map(|verdicts| verdicts.map(|v| v.into_iter().map(Some).collect()))
            .collect();
        chunk
            .iter()
            .enumerate()
            .map(|(k, r)| self.scored(r, base + k as u64, |i| external[i].as_mut().and_then(|v| v[k].take())))
            .collect()
    }

    /// The end of the input: `max_errors` as a share, then the summary and
    /// the gates.
    fn summary(&self) -> Result<Vec<Artifact>, NodeError> {
        let totals = self.totals.lock().expect("totals lock");
        if let ErrorLimit::Share(max) = self.limit {
            for (m, st) in self.metrics.iter().zip(&totals.metrics) {
                if st.count() > 0 && st.errors as f64 / st.count() as f64 > max {
                    return Err(NodeError::new(format!(
                        "metric `{}` errored on {} of {} records, more than `max_errors: {}%`; the first {}",
                        m.name,
                        st.errors,
                        st.count(),
                        round6(max * 100.0),
                        st.first()
                    )));
                }
            }
        }
        let gates = gate::check(&self.gates, &self.metrics, &totals, &self.node);
        let mut json_bytes =
            serde_json::to_vec_pretty(&summary::json(&self.metrics, &totals, &gates)).expect("summary serializes");
        json_bytes.push(b'\n');
        let mut artifacts = vec![
            Artifact { name: SUMMARY_JSON.into(), bytes: json_bytes },
            Artifact { name: SUMMARY_MD.into(), bytes: summary::markdown(&self.metrics, &totals, &gates).into_bytes() },
        ];
        if let Some(text) = gate::text(&gates) {
            artifacts.push(Artifact { name: GATE_FAILED.into(), bytes: format!("{text}\n").into_bytes() });
        }
        Ok(artifacts)
    }
}

impl MapStage for Scorer {
    fn map(&self, record: &Record, out: &mut Vec<Record>) -> Result<(), NodeError> {
        let position = self.next.fetch_add(1, Ordering::Relaxed);
        out.push(self.scored(record, position, |_| None)?);
        Ok(())
    }

    fn finish(&self) -> Result<Vec<Artifact>, NodeError> {
        self.summary()
    }
}

impl StreamStage for Scorer {
    fn run(self: Arc<Self>, input: RecordStream) -> BatchStream {
        // A judge or embeddings on a batch backend: every chunk's calls
        // wait on one batch together (up to a batch's requests), and the
        // end of the input sends what is queued, rather than a batch a
        // chunk, one after the other, each taking up to a day.
        let batched: Vec<Arc<Backend>> = self
            .metrics
            .iter()
            .filter_map(|m| match &m.check {
                Check::Judge(j) if j.backend().batch_window().is_some() => Some(j.backend().clone()),
                Check::Embedding(e) if e.backend().batch_window().is_some() => Some(e.backend().clone()),
                _ => None,
            })
            .collect();
        let batch = batched.iter().filter_map(|b| b.batch_window()).max();
        let window = batch.map_or(2, |n| n.div_ceil(BATCH_SIZE).max(2));
        let end = futures::stream::once(async move {
            for b in &batched {
                b.flush_batch();
            }
            None
        });
        // Live, a chunk goes as soon as records are there; for a batch,
        // chunks are full, so the window holds a batch's worth of records.
        let chunks =
            if batch.is_none() { input.ready_chunks(BATCH_SIZE).boxed() } else { input.chunks(BATCH_SIZE).boxed() };
        chunks
            .map(Some)
            .chain(end)
            .filter_map(futures::future::ready)
            .map(move |chunk| {
                // Taken in input order, as the chunks arrive.
                let base = self.next.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                self.clone().chunk(chunk, base)
            })
            // The next chunk's calls start while this one finishes.
            .buffered(window)
            .boxed()
    }

    fn finish(&self) -> Result<Vec<Artifact>, NodeError> {
        self.summary()
    }
}
