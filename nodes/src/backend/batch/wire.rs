//! What a batch looks like on each provider's wire: OpenAI's files and
//! batches endpoints, Anthropic's message batches, and the offline `sim`,
//! which plays a batch in memory (validating, then in progress, then
//! completed after two polls). Each function is one step the batcher takes
//! (create, poll, read the results), each HTTP request with the backend's
//! retries on 429, 5xx and connection errors.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use backon::{ExponentialBuilder, Retryable};
use serde_json::{json, Value};

use flow_engine::spec::backend::RetrySpec;

use super::super::{anthropic, openai, sim, CallError, Endpoint, Upload};
use super::Queued;

/// The path a batch's requests are for (OpenAI's `url` and `endpoint`):
/// every request of a batch goes to the same one.
fn openai_endpoint(endpoint: Endpoint) -> String {
    format!("/v1/{}", endpoint.path())
}

/// The provider side of a batch backend.
pub(in crate::backend) enum Wire {
    Openai(openai::Client),
    Anthropic(openai::Client),
    Sim(SimBatches),
}

/// A batch just created.
pub(in crate::backend) struct Created {
    pub id: String,
    pub state: String,
    /// What else to keep (the input file's id).
    pub info: Value,
}

/// A batch's status as polled.
#[derive(Debug, Clone, Default)]
pub(in crate::backend) struct Status {
    /// The provider's word (`validating`, `in_progress`, `finalizing`,
    /// `completed`, `expired`, `failed`; Anthropic's `in_progress`,
    /// `canceling`, `ended`).
    pub state: String,
    /// No more answers will come.
    pub ended: bool,
    /// Where the answers are: OpenAI's output and error file ids,
    /// Anthropic's `results_url`.
    pub results: Vec<String>,
    /// The provider's error for the whole batch (a failed validation).
    pub error: Option<String>,
}

/// One request's outcome in a results file, by `custom_id`.
pub(in crate::backend) type Outcome = (String, Result<Value, CallError>);

impl Wire {
    /// Submits `batch`: OpenAI: uploads the JSONL then creates the batch;
    /// Anthropic: one create with the requests inline.
    pub async fn create(&self, endpoint: Endpoint, batch: &[Queued], retry: &RetrySpec) -> Result<Created, CallError> {
        let path = openai_endpoint(endpoint);
        match self {
            Wire::Openai(c) => {
                let mut jsonl = Vec::new();
                for q in batch {
                    let line = json!({"custom_id": q.key.hex(), "method": "POST", "url": path, "body": q.body});
                    serde_json::to_writer(&mut jsonl, &line).expect("json");
                    jsonl.push(b'\n');
                }
                let file = Upload { filename: "flow-batch.jsonl", bytes: &jsonl, purpose: "batch" };
                let uploaded = retrying(retry, || c.upload("files", &file)).await?;
                let file_id = id_of(&uploaded)?;
                let body = json!({"input_file_id": file_id, "endpoint": path, "completion_window": "24h"});
                // OpenAI takes no idempotency key for a batch: a create
                // whose answer was lost (a timeout, a 5xx from a gateway)
                // may have made one. This attempt's input file is its own,
                // so before trying again, a batch made from it is adopted.
                let tried = AtomicU64::new(0);
                let created = retrying(retry, || async {
                    if tried.fetch_add(1, Ordering::SeqCst) > 0 {
                        if let Some(made) = openai_batch_of_file(c, &file_id).await? {
                            return Ok(made);
                        }
                    }
                    c.post("batches", &body).await
                })
                .await?;
                Ok(Created {
                    id: id_of(&created)?,
                    state: created["status"].as_str().unwrap_or("validating").to_string(),
                    info: json!({"input_file_id": file_id}),
                })
            }
            Wire::Anthropic(c) => {
                let requests: Vec<Value> =
                    batch.iter().map(|q| json!({"custom_id": q.key.hex(), "params": q.body})).collect();
                let body = json!({"requests": requests});
                let created = retrying(retry, || c.post("v1/messages/batches", &body)).await?;
                Ok(Created {
                    id: id_of(&created)?,
                    state: created["processing_status"].as_str().unwrap_or("in_progress").to_string(),
                    info: json!({}),
                })
            }
            Wire::Sim(s) => Ok(s.create(endpoint, batch)),
        }
    }

    pub async fn status(&self, id: &str, retry: &RetrySpec) -> Result<Status, CallError> {
        match self {
            Wire::Openai(c) => {
                let path = format!("batches/{id}");
                let b = retrying(retry, || c.get(&path)).await?;
                let state = b["status"].as_str().unwrap_or_default().to_string();
                let ended = matches!(state.as_str(), "completed" | "failed" | "expired" | "cancelled");
                let results =
                    ["output_file_id", "error_file_id"].iter().filter_map(|f| b[*f].as_str().map(str::to_string));
                let errors: Vec<&str> = b["errors"]["data"]
                    .as_array()
                    .map(|d| d.iter().filter_map(|e| e["message"].as_str()).collect())
                    .unwrap_or_default();
                let error = (!errors.is_empty()).then(|| errors.join("; "));
                Ok(Status { state, ended, results: results.collect(), error })
            }
            Wire::Anthropic(c) => {
                let path = format!("v1/messages/batches/{id}");
                let b = retrying(retry, || c.get(&path)).await?;
                let state = b["processing_status"].as_str().unwrap_or_default().to_string();
                let ended = state == "ended";
                let results = b["results_url"].as_str().map(str::to_string).into_iter().collect();
                Ok(Status { state, ended, results, error: None })
            }
            Wire::Sim(s) => Ok(s.status(id)),
        }
    }

    /// The outcome of each request of an ended batch.
    pub async fn results(&self, id: &str, status: &Status, retry: &RetrySpec) -> Result<Vec<Outcome>, CallError> {
        let mut out = Vec::new();
        match self {
            Wire::Openai(c) => {
                for file in &status.results {
                    let path = format!("files/{file}/content");
                    let bytes = retrying(retry, || c.get_bytes(&path)).await?;
                    out.extend(lines(&bytes).map(openai_outcome));
                }
            }
            Wire::Anthropic(c) => {
                for url in &status.results {
                    let bytes = retrying(retry, || c.get_bytes(url)).await?;
                    out.extend(lines(&bytes).map(anthropic_outcome));
                }
            }
            Wire::Sim(s) => out = s.results(id),
        }
        Ok(out)
    }
}

/// One attempt after another while the failure is worth retrying.
async fn retrying<T, Fut>(retry: &RetrySpec, f: impl FnMut() -> Fut) -> Result<T, CallError>
where
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(retry.initial_delay)
        .with_max_delay(retry.max_delay)
        .with_max_times(retry.max_retries as usize)
        .with_jitter();
    f.retry(backoff).when(|e: &CallError| e.retryable).await
}

/// The batch made from input file `file_id`, if one was: the newest
/// batches are listed (one a create just made is among them).
async fn openai_batch_of_file(c: &openai::Client, file_id: &str) -> Result<Option<Value>, CallError> {
    let listed = c.get("batches?limit=100").await?;
    let made = listed["data"].as_array().and_then(|all| all.iter().find(|b| b["input_file_id"] == file_id));
    Ok(made.cloned())
}

fn id_of(v: &Value) -> Result<String, CallError> {
    v["id"].as_str().map(str::to_string).ok_or_else(|| {
        let shown: String = v.to_string().chars().take(200).collect();
        CallError::fatal(format!("the batch API's answer has no `id`: {shown}"))
    })
}

/// The JSON lines of a results file (blank or broken lines skipped: a
/// request they would have answered counts as unanswered).
fn lines(bytes: &[u8]) -> impl Iterator<Item = Value> + '_ {
    bytes.split(|b| *b == b'\n').filter_map(|l| serde_json::from_slice::<Value>(l).ok())
}

/// A line of OpenAI's output or error file: `{custom_id, response:
/// {status_code, body}, error}`.
fn openai_outcome(line: Value) -> Outcome {
    let id = line["custom_id"].as_str().unwrap_or_default().to_string();
    let e = &line["error"];
    if !e.is_null() {
        let code = e["code"].as_str().unwrap_or("error");
        let message = e["message"].as_str().unwrap_or_default();
        // An expired request was never run: the next run sends it again.
        let retryable = code == "batch_expired" || code == "batch_cancelled";
        let mut err = CallError::fatal(format!("the batch request failed ({code}): {message}"));
        err.retryable = retryable;
        return (id, Err(err));
    }
    let status = line["response"]["status_code"].as_u64().unwrap_or(0) as u16;
    let body = line["response"]["body"].clone();
    if status == 200 {
        return (id, Ok(body));
    }
    let message = body["error"]["message"].as_str().map(str::to_string).unwrap_or_else(|| body.to_string());
    let err = CallError {
        message: format!("HTTP {status} in the batch's results: {message}"),
        status: Some(status),
        retryable: status == 429 || status >= 500,
        retry_after: None,
    };
    (id, Err(err))
}

/// A line of Anthropic's results: `{custom_id, result: {type: succeeded,
/// message} | {type: errored, error} | {type: expired} | {type: canceled}}`.
fn anthropic_outcome(line: Value) -> Outcome {
    let id = line["custom_id"].as_str().unwrap_or_default().to_string();
    let r = &line["result"];
    let outcome = match r["type"].as_str() {
        Some("succeeded") => Ok(anthropic::normalize(r["message"].clone())),
        Some("errored") => {
            // `error` is the API's error object: `{type: error, error: {type, message}}`.
            let inner = if r["error"]["error"].is_object() { &r["error"]["error"] } else { &r["error"] };
            let kind = inner["type"].as_str().unwrap_or("error");
            let message = inner["message"].as_str().unwrap_or_default();
            let mut err = CallError::fatal(format!("the batch request failed ({kind}): {message}"));
            err.retryable = matches!(kind, "api_error" | "overloaded_error" | "rate_limit_error");
            Err(err)
        }
        Some(other @ ("expired" | "canceled")) => {
            let mut err = CallError::fatal(format!("the batch request was {other} before it ran"));
            err.retryable = true;
            Err(err)
        }
        _ => Err(CallError::fatal(format!("a batch result of an unknown type: {}", r["type"]))),
    };
    (id, outcome)
}

/// The offline backend's batches: kept in memory, answered by the sim.
pub(in crate::backend) struct SimBatches {
    sim: sim::Sim,
    batches: Mutex<HashMap<String, SimBatch>>,
    next: AtomicU64,
}

struct SimBatch {
    endpoint: Endpoint,
    requests: Vec<(String, Value, u32)>,
    polls: u32,
}

/// Polls before a sim batch is `completed`: the first answers
/// `in_progress`.
const SIM_POLLS: u32 = 2;

impl SimBatches {
    pub fn new(sim: sim::Sim) -> Self {
        Self { sim, batches: Mutex::default(), next: AtomicU64::new(1) }
    }

    fn create(&self, endpoint: Endpoint, batch: &[Queued]) -> Created {
        // Unique across processes: a batch an earlier (killed) run left
        // pending must not be taken for this one.
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut h = blake3::Hasher::new();
        h.update(&n.to_le_bytes());
        h.update(format!("{:?}{}", std::time::SystemTime::now(), std::process::id()).as_bytes());
        let id = format!("batch_sim_{}", &h.finalize().to_hex()[..16]);
        let requests = batch.iter().map(|q| (q.key.hex(), q.body.clone(), q.sample)).collect();
        self.batches.lock().expect("sim batches").insert(id.clone(), SimBatch { endpoint, requests, polls: 0 });
        Created { id, state: "validating".into(), info: json!({}) }
    }

    fn status(&self, id: &str) -> Status {
        let mut all = self.batches.lock().expect("sim batches");
        let Some(b) = all.get_mut(id) else {
            return Status {
                state: "expired".into(),
                ended: true,
                results: Vec::new(),
                error: Some("the offline sim keeps its batches in memory: this one, an earlier run's, is gone".into()),
            };
        };
        b.polls += 1;
        let done = b.polls >= SIM_POLLS;
        Status { state: if done { "completed" } else { "in_progress" }.into(), ended: done, ..Status::default() }
    }

    fn results(&self, id: &str) -> Vec<Outcome> {
        let all = self.batches.lock().expect("sim batches");
        let Some(b) = all.get(id) else { return Vec::new() };
        b.requests.iter().map(|(cid, body, sample)| (cid.clone(), self.sim.answer(b.endpoint, body, *sample))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_lines_become_answers_or_errors() {
        let ok = json!({"custom_id": "a", "response": {"status_code": 200, "body": {"choices": []}}, "error": null});
        assert!(openai_outcome(ok).1.is_ok());
        let bad = json!({"custom_id": "b", "response": {"status_code": 400, "body": {"error": {"message": "bad model"}}}, "error": null});
        let e = openai_outcome(bad).1.unwrap_err();
        assert!(e.message.contains("bad model") && !e.retryable, "{e:?}");
        let expired =
            json!({"custom_id": "c", "response": null, "error": {"code": "batch_expired", "message": "too late"}});
        assert!(openai_outcome(expired).1.unwrap_err().retryable);
        let msg = json!({"custom_id": "d", "result": {"type": "succeeded", "message": {
            "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}}}});
        let (id, a) = anthropic_outcome(msg);
        assert_eq!((id.as_str(), a.unwrap()["choices"][0]["message"]["content"].as_str()), ("d", Some("hi")));
        let errored = json!({"custom_id": "e", "result": {"type": "errored", "error": {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too big"}}}});
        let e = anthropic_outcome(errored).1.unwrap_err();
        assert!(e.message.contains("max_tokens: too big") && !e.retryable, "{e:?}");
        assert!(anthropic_outcome(json!({"custom_id": "f", "result": {"type": "expired"}})).1.unwrap_err().retryable);
    }
}
