//! A fine-tuning job through an OpenAI-compatible API: upload, create,
//! then poll the job and its events until it ends.
//!
//! The upload and the creation go through the call memo (keyed by the
//! dataset's content and the job's parameters), so a run that was stopped
//! while polling replays both and polls the same job: the provider sees one
//! job however often the run is restarted. Polls are never memoized. With
//! `FLOW_LOG=info` the job id, each poll's status and each new event are
//! logged as they come.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::{json, Value};

use flow_engine::{
    Artifact, BarrierOutput, BarrierStage, Meter, NodeError, Provider, Record, Spool, META_JSON, SUMMARY_MD,
};

use super::{upload, Dataset, TrainConfig, TRAIN_JSONL};
use crate::backend::{Backend, CallOpts, Unusable};

/// A job's status, as the node's `statuses` classify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Succeeded,
    Failed,
    Cancelled,
    /// Still on its way (`validating_files`, `queued`, `running`, ...).
    Pending,
}

fn phase(c: &TrainConfig, status: &str) -> Phase {
    let s = &c.statuses;
    let has = |list: &[String]| list.iter().any(|x| x == status);
    if has(&s.succeeded) {
        Phase::Succeeded
    } else if has(&s.failed) {
        Phase::Failed
    } else if has(&s.cancelled) {
        Phase::Cancelled
    } else {
        Phase::Pending
    }
}

/// The barrier stage that runs one job.
pub struct JobRun {
    pub node: String,
    pub config: TrainConfig,
    /// The base model.
    pub model: String,
    pub backend: Arc<Backend>,
    pub meter: Arc<Meter>,
    pub memo_reads: bool,
}

impl BarrierStage for JobRun {
    fn run(self: Box<Self>, inputs: Vec<Vec<Record>>) -> BoxFuture<'static, BarrierOutput> {
        self.run_spooled(vec![Spool::in_memory(inputs.into_iter().flatten().collect())])
    }

    /// Reads the training data from the input as it goes: only its JSONL
    /// (what is uploaded) is held.
    fn run_spooled(self: Box<Self>, inputs: Vec<Spool>) -> BoxFuture<'static, BarrierOutput> {
        Box::pin(async move {
            let min = self.config.min_examples();
            let data = tokio::task::spawn_blocking(move || {
                let input = inputs.into_iter().next().unwrap_or_default();
                super::dataset::from_spool(&input, min)
            })
            .await
            .map_err(|e| NodeError::new(format!("reading the training data panicked: {e}")))??;
            self.follow(data).await
        })
    }
}

/// Whether an answer names what it made (a file, a job).
fn has_id(v: &Value) -> Result<(), Unusable> {
    match v["id"].as_str() {
        Some(id) if !id.is_empty() => Ok(()),
        _ => Err(Unusable::NoId { shown: shown(v) }),
    }
}

fn shown(v: &Value) -> String {
    v.to_string().chars().take(300).collect()
}

/// The events seen so far, oldest first, each once.
#[derive(Default)]
struct Events {
    seen: HashSet<String>,
    list: Vec<Value>,
    /// False once the provider said it has no events endpoint (404).
    off: bool,
}

impl Events {
    /// Adds the events of one answer (OpenAI lists the newest first).
    fn add(&mut self, node: &str, job: &str, body: &Value) {
        let Some(mut data) = body["data"].as_array().cloned() else { return };
        // Newest first unless the page says otherwise (ties: OpenAI's order).
        let time = |e: Option<&Value>| e.and_then(|e| e["created_at"].as_f64()).unwrap_or(0.0);
        if time(data.first()) >= time(data.last()) {
            data.reverse();
        }
        for e in data {
            let id = match e["id"].as_str() {
                Some(id) => id.to_string(),
                None => format!("{}\u{0}{}", e["created_at"], e["message"]),
            };
            if !self.seen.insert(id) {
                continue;
            }
            let level = e["level"].as_str().unwrap_or("info");
            let message = e["message"].as_str().unwrap_or_default();
            tracing::info!("train `{node}`: job {job}: [{level}] {message}");
            let mut kept = json!({"created_at": e["created_at"], "level": level, "message": message});
            // OpenAI's `metrics` events carry the step's figures in `data`
            // (`step`, `train_loss`...): the report draws the loss curve.
            if let Some(t) = e.get("type").filter(|t| !t.is_null()) {
                kept["type"] = t.clone();
            }
            if let Some(d) = e.get("data").filter(|d| !d.is_null()) {
                kept["data"] = d.clone();
            }
            self.list.push(kept);
        }
    }
}

/// The hint for a server without the fine-tuning endpoints (llama.cpp,
/// vLLM, Ollama answer 404 or 405): train elsewhere from an export.
fn no_fine_tuning_api(e: &crate::backend::CallError) -> &'static str {
    match e.status {
        Some(404 | 405 | 501) => {
            "\nhint: this server has no fine-tuning API; `export: trl` (or `axolotl`) writes the dataset and a \
             training config to train with elsewhere"
        }
        _ => "",
    }
}

impl JobRun {
    fn opts(&self) -> CallOpts<'_> {
        CallOpts { meter: &self.meter, memo_reads: self.memo_reads, sample: 0 }
    }

    async fn follow(self: Box<Self>, data: Dataset) -> BarrierOutput {
        let c = &self.config;
        let node = &self.node;
        let file = self
            .backend
            .upload(&c.paths.files, upload(&data), self.opts(), has_id)
            .await
            .map_err(|e| NodeError::new(format!("uploading the training file: {e}{}", no_fine_tuning_api(&e))))?;
        let file_id = file.body["id"].as_str().unwrap_or_default().to_string();
        tracing::info!(
            "train `{node}`: {} examples ({} bytes) {} as {file_id}",
            data.examples,
            data.jsonl.len(),
            if file.memo_hit { "uploaded by an earlier run" } else { "uploaded" }
        );
        let body = c.job_body(&self.model, json!(file_id));
        let created = self
            .backend
            .post_as(&c.paths.jobs, body, &c.job_key(&self.model, &data), self.opts(), has_id)
            .await
            .map_err(|e| NodeError::new(format!("creating the fine-tuning job: {e}{}", no_fine_tuning_api(&e))))?;
        let job_id = created.body["id"].as_str().unwrap_or_default().to_string();
        let resumed = created.memo_hit;
        if resumed {
            tracing::info!("train `{node}`: following job {job_id}, created by an earlier run");
        } else {
            tracing::info!("train `{node}`: created job {job_id}");
        }

        let (job, polls, events) = self.poll(&job_id).await?;
        let status = job["status"].as_str().unwrap_or_default().to_string();
        let fine_tuned = job["fine_tuned_model"].clone();
        let trained_tokens = job["trained_tokens"].clone();
        let name = fine_tuned.as_str().unwrap_or("(no model named)");
        tracing::info!("train `{node}`: job {job_id} {status} after {polls} polls: {name}");
        let record = json!({
            "id": job_id,
            "job_id": job_id,
            "status": "succeeded",
            "provider_status": status,
            "model": self.model,
            "fine_tuned_model": fine_tuned,
            "trained_tokens": trained_tokens,
            "training_file": file_id,
            "examples": data.examples,
            "events": events,
            "backend": self.backend.name,
        });
        let meta = json!({
            "job_id": job_id, "status": status, "fine_tuned_model": fine_tuned, "trained_tokens": trained_tokens,
            "polls": polls, "examples": data.examples, "training_file": file_id, "backend": self.backend.name,
            "model": self.model, "resumed": resumed,
        });
        let summary = format!(
            "job {job_id} {status} after {polls} poll{}{}: fine-tuned model `{}` ({} trained tokens, {} examples)\n",
            if polls == 1 { "" } else { "s" },
            if resumed { " (a job an earlier run created)" } else { "" },
            fine_tuned.as_str().unwrap_or("?"),
            trained_tokens.as_u64().map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
            data.examples,
        );
        let mut meta_bytes = serde_json::to_vec_pretty(&meta).expect("json");
        meta_bytes.push(b'\n');
        let artifacts = vec![
            Artifact { name: TRAIN_JSONL.into(), bytes: data.jsonl },
            Artifact { name: META_JSON.into(), bytes: meta_bytes },
            Artifact { name: SUMMARY_MD.into(), bytes: summary.into_bytes() },
        ];
        let Value::Object(fields) = record else { unreachable!("an object") };
        Ok((vec![Arc::new(fields)], artifacts))
    }

    /// Polls the job (and its events) until it ends: the job's last answer,
    /// the polls made and the events, or why it did not succeed.
    async fn poll(&self, job_id: &str) -> Result<(Value, u64, Vec<Value>), NodeError> {
        let c = &self.config;
        let node = &self.node;
        let job_path = c.paths.job.replace("{id}", job_id);
        let events_path = c.paths.events.replace("{id}", job_id);
        // The offline sim's job moves one step per poll: waiting shows nothing.
        let interval = if self.backend.spec.provider == Provider::Sim { Duration::ZERO } else { c.poll_interval() };
        let started = Instant::now();
        let mut events = Events::default();
        let mut polls = 0u64;
        loop {
            let reply = self
                .backend
                .get(&job_path, self.opts())
                .await
                .map_err(|e| NodeError::new(format!("polling job {job_id}: {e}")))?;
            polls += 1;
            let job = reply.body;
            let Some(status) = job["status"].as_str().map(str::to_string) else {
                return Err(NodeError::new(format!("job {job_id}: the answer has no `status`: {}", shown(&job))));
            };
            if !events.off {
                match self.backend.get(&events_path, self.opts()).await {
                    Ok(r) => events.add(node, job_id, &r.body),
                    Err(e) if e.status == Some(404) => {
                        tracing::warn!("train `{node}`: no events for job {job_id} ({e}); not asking again");
                        events.off = true;
                    }
                    Err(e) => tracing::warn!("train `{node}`: could not read the events of job {job_id}: {e}"),
                }
            }
            let waited = started.elapsed();
            match phase(c, &status) {
                Phase::Succeeded => return Ok((job, polls, events.list)),
                Phase::Failed => return Err(NodeError::new(failure(job_id, &status, &job, &events.list))),
                Phase::Cancelled => {
                    return Err(NodeError::new(format!(
                        "job {job_id} was cancelled (status `{status}`); the same data and parameters follow this \
                         job again: set `attempt: 2` (or the next number) on the node to start a new one (`--no-cache` would re-send every call of the spec)"
                    )))
                }
                Phase::Pending => {
                    tracing::info!("train `{node}`: job {job_id} {status} (poll {polls}, {}s)", waited.as_secs());
                }
            }
            if let Some(max) = c.max_wait.filter(|m| waited >= *m) {
                return Err(NodeError::new(format!(
                    "job {job_id} is still `{status}` after {}s (`max_wait`); it goes on at the provider: run \
                     again to follow it further",
                    max.as_secs()
                )));
            }
            if !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
        }
    }
}

/// Why a job failed, in the provider's words: its `error.message` (and
/// code), else the last error event.
fn failure(job_id: &str, status: &str, job: &Value, events: &[Value]) -> String {
    let err = &job["error"];
    let message = err["message"]
        .as_str()
        .or(err.as_str())
        .or_else(|| events.iter().rev().find(|e| e["level"] == "error").and_then(|e| e["message"].as_str()))
        .unwrap_or("the provider gave no reason");
    let code = err["code"].as_str().filter(|c| !c.is_empty()).map(|c| format!(" (code `{c}`)")).unwrap_or_default();
    format!(
        "fine-tuning job {job_id} {status}: {message}{code}; the same data and parameters follow this job again: fix \
         them, or set `attempt: 2` (or the next number) on the node to start a new job"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_phases() {
        let c: TrainConfig =
            serde_yaml::from_str("{backend: b, statuses: {succeeded: [COMPLETED, succeeded], failed: [ERROR]}}")
                .unwrap();
        assert_eq!(phase(&c, "COMPLETED"), Phase::Succeeded);
        assert_eq!(phase(&c, "ERROR"), Phase::Failed);
        assert_eq!(phase(&c, "failed"), Phase::Pending, "a list given replaces the default");
        assert_eq!(phase(&c, "cancelled"), Phase::Cancelled);
        assert_eq!(phase(&c, "running"), Phase::Pending);
    }

    #[test]
    fn a_failure_carries_the_providers_message() {
        let job = json!({"error": {"code": "invalid_training_file", "message": "line 3 has no messages"}});
        let m = failure("ftjob-1", "failed", &job, &[]);
        assert!(
            m.starts_with("fine-tuning job ftjob-1 failed: line 3 has no messages (code `invalid_training_file`)"),
            "{m}"
        );
        let events = [json!({"level": "error", "message": "out of quota"})];
        assert!(failure("j", "failed", &json!({"error": null}), &events).contains(": out of quota;"));
    }

    #[test]
    fn events_are_kept_once_oldest_first() {
        let mut ev = Events::default();
        let page = |n: u64| {
            let data: Vec<Value> = (0..n)
                .rev()
                .map(|i| json!({"id": format!("e{i}"), "created_at": i, "message": format!("m{i}")}))
                .collect();
            json!({ "data": data })
        };
        ev.add("t", "j", &page(2));
        ev.add("t", "j", &page(4));
        let messages: Vec<&str> = ev.list.iter().map(|e| e["message"].as_str().unwrap()).collect();
        assert_eq!(messages, ["m0", "m1", "m2", "m3"]);
        assert_eq!(ev.list[0], json!({"created_at": 0, "level": "info", "message": "m0"}));
    }

    #[test]
    fn metrics_events_keep_their_figures() {
        let mut ev = Events::default();
        let data = json!({"step": 3, "train_loss": 0.51});
        let page = json!({"data": [{"id": "e1", "created_at": 5, "level": "info", "message": "Step 3/9: training loss=0.510",
                                     "type": "metrics", "data": data}]});
        ev.add("t", "j", &page);
        assert_eq!((&ev.list[0]["type"], &ev.list[0]["data"]), (&json!("metrics"), &data));
    }
}
