//! `provider: sim`: a built-in, offline backend. Every answer is a pure
//! function of the request (and the sample number), so runs are
//! reproducible and tests need no network, and the answers are shaped like
//! an OpenAI server's, so every stage treats both alike.
//!
//! - Chat: an arithmetic question (`what is 17 * 3?`) is answered with the
//!   result, wrong by one for a share `error_rate` of questions (default
//!   0.1, chosen by hashing the question with the model, so two sim models
//!   differ on known questions), and in a sentence when the prompt asks
//!   for reasoning ("step by step", "explain"); anything else gets a short deterministic
//!   sentence. In JSON mode the answer is a JSON object: a grade
//!   (`score`, `reason`) for a judge prompt, else fields named by a
//!   `json_schema` response format, else `{"answer": ...}`.
//!   A `synthesize` rewording prompt gets its rules back, each with its
//!   support appended.
//! - Embeddings: hashed bag-of-words vectors (`dimensions`, default 64),
//!   L2-normalized, so texts sharing words are close.
//! - Fine-tuning: an upload answers a file id, a job creation a job that goes
//!   `validating_files` → `running` → `succeeded` over four polls, with events
//!   (among them `metrics` events, as OpenAI's, whose `data` carries the
//!   `step` and a `train_loss` falling along a fixed curve) and a model
//!   named `ft:<model>:<suffix>:<hash8>`. Files and jobs are the
//!   sim's state, like a server's; a call the memo answers never reaches the
//!   sim, so the backend hands it the replayed request and answer
//!   ([`Sim::replayed`]), and a resumed run polls the job an earlier run made.
//!
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};

use flow_engine::node::Tokens;
use flow_engine::BackendSpec;

use super::{CallError, Endpoint, Request, Upload};

/// An answer a kind gives, offline, to a prompt it writes (a judge's, a
/// `generate` call's): when the last user message of a JSON-mode chat holds
/// `marker`, the sim answers `answer(the text before it, the text after it,
/// a number in [0, 1) drawn from the request)`. The kinds bring their own
/// ([`crate::Face::SIM_ANSWERS`]), so the sim knows no stage.
#[derive(Clone, Copy)]
pub struct Answer {
    pub marker: &'static str,
    pub answer: fn(&str, &str, f64) -> Value,
}

pub(super) struct Sim {
    model: String,
    answers: Arc<[Answer]>,
    error_rate: f64,
    latency: Option<Duration>,
    /// Uploaded files: id → tokens (words of the messages).
    files: Mutex<HashMap<String, u64>>,
    /// Fine-tuning jobs by id.
    jobs: Mutex<HashMap<String, SimJob>>,
}

/// Polls a sim job answers `validating_files`, then `running`, before it
/// succeeds.
const VALIDATING_POLLS: u32 = 1;
const RUNNING_POLLS: u32 = 2;

/// Training steps of a sim job, shown as `metrics` events: half of them by
/// each `running` poll.
const STEPS: u32 = 12;

impl Sim {
    pub fn new(spec: &BackendSpec, answers: Arc<[Answer]>) -> Self {
        let sim = spec.sim.as_ref();
        Self {
            model: spec.model().to_string(),
            answers,
            error_rate: sim.and_then(|s| s.error_rate).unwrap_or(0.1).clamp(0.0, 1.0),
            latency: sim.and_then(|s| s.latency),
            files: Mutex::default(),
            jobs: Mutex::default(),
        }
    }

    pub async fn send(&self, endpoint: Endpoint, body: &Value, sample: u32) -> Result<Value, CallError> {
        if let Some(d) = self.latency {
            tokio::time::sleep(d).await;
        }
        self.answer(endpoint, body, sample)
    }

    pub(super) fn answer(&self, endpoint: Endpoint, body: &Value, sample: u32) -> Result<Value, CallError> {
        match endpoint {
            Endpoint::Chat => self.chat(body, sample),
            Endpoint::Embeddings => Ok(embeddings(body, &self.model)),
        }
    }

    /// Files and jobs: an upload, a job's creation (a POST with a
    /// `training_file`), and GETs of a job or its events, wherever the
    /// spec's paths put them (the job id is a segment of the path).
    pub async fn fine_tuning(&self, request: Request<'_>) -> Result<Value, CallError> {
        if let Some(d) = self.latency {
            tokio::time::sleep(d).await;
        }
        match request {
            Request::Endpoint(endpoint, body, sample) => self.answer(endpoint, body, sample),
            Request::Upload(_, file) => Ok(self.upload(&file)),
            Request::Post(_, body) if body.get("training_file").is_some() => self.create_job(body),
            Request::Post(path, body) => match path.trim_matches('/') {
                "chat/completions" => self.chat(body, 0),
                "embeddings" => Ok(embeddings(body, &self.model)),
                other => Err(CallError::fatal(format!("sim: no endpoint `{other}`"))),
            },
            Request::Get(path) => self.get(path),
        }
    }

    /// A request the call memo answered instead of the sim: what its answer
    /// made (a file, a job) becomes part of the sim's state, as it was on
    /// the server that first answered it.
    pub fn replayed(&self, request: Request<'_>, answer: &Value) {
        let Some(id) = answer["id"].as_str() else { return };
        match request {
            Request::Upload(_, file) => {
                self.files.lock().expect("sim files lock").insert(id.to_string(), file_tokens(&file));
            }
            Request::Post(_, body) if body.get("training_file").is_some() => {
                let job = self.job_of(body);
                self.jobs.lock().expect("sim jobs lock").entry(id.to_string()).or_insert(job);
            }
            _ => {}
        }
    }

    fn upload(&self, file: &Upload<'_>) -> Value {
        let id = format!("file-{}", &blake3::hash(file.bytes).to_hex()[..12]);
        self.files.lock().expect("sim files lock").insert(id.clone(), file_tokens(file));
        json!({
            "object": "file",
            "id": id,
            "bytes": file.bytes.len(),
            "created_at": 0,
            "filename": file.filename,
            "purpose": file.purpose,
            "status": "processed",
        })
    }

    fn job_of(&self, body: &Value) -> SimJob {
        let file = body["training_file"].as_str().unwrap_or_default();
        let tokens = self.files.lock().expect("sim files lock").get(file).copied().unwrap_or(0);
        let epochs = body["method"]["supervised"]["hyperparameters"]["n_epochs"].as_u64().unwrap_or(3);
        let hash = blake3::hash(body.to_string().as_bytes()).to_hex();
        SimJob {
            id: format!("ftjob-{}", &hash[..12]),
            hash8: hash[..8].to_string(),
            trained_tokens: tokens * epochs,
            model: body["model"].as_str().unwrap_or(&self.model).to_string(),
            suffix: body["suffix"].as_str().unwrap_or_default().to_string(),
            polls: 0,
        }
    }

    fn create_job(&self, body: &Value) -> Result<Value, CallError> {
        let file = body["training_file"].as_str().unwrap_or_default();
        if !self.files.lock().expect("sim files lock").contains_key(file) {
            return Err(not_found(format!("sim: no file `{file}` was uploaded")));
        }
        let job = self.job_of(body);
        let answer = job.object("validating_files");
        self.jobs.lock().expect("sim jobs lock").insert(job.id.clone(), job);
        Ok(answer)
    }

    fn get(&self, path: &str) -> Result<Value, CallError> {
        let path = path.split('?').next().unwrap_or(path);
        let mut jobs = self.jobs.lock().expect("sim jobs lock");
        let id = path.split('/').find(|segment| jobs.contains_key(*segment)).unwrap_or_default().to_string();
        let job = jobs.get_mut(&id).ok_or_else(|| not_found(format!("sim: no fine-tuning job in `{path}`")))?;
        if path.trim_end_matches('/').ends_with("/events") {
            return Ok(job.events());
        }
        job.polls += 1;
        let status = match job.polls {
            n if n <= VALIDATING_POLLS => "validating_files",
            n if n <= VALIDATING_POLLS + RUNNING_POLLS => "running",
            _ => "succeeded",
        };
        Ok(job.object(status))
    }

    fn chat(&self, body: &Value, sample: u32) -> Result<Value, CallError> {
        let messages =
            body["messages"].as_array().ok_or_else(|| CallError::fatal("sim: the request has no messages"))?;
        let text_of = |m: &Value| m["content"].as_str().unwrap_or("").to_string();
        let user = messages.iter().rev().find(|m| m["role"] == "user").map(text_of).unwrap_or_default();
        let model = body["model"].as_str().unwrap_or(&self.model).to_string();
        // At temperature 0 every sample is the same draw, as with a real model.
        let greedy = body["temperature"].as_f64() == Some(0.0);
        let draw = if greedy { 0 } else { sample };
        let seed = unit(&format!("{model}\u{0}{}\u{0}{draw}\u{0}{user}", body["seed"]));
        let format = body["response_format"]["type"].as_str().unwrap_or("text");
        let content = match format {
            "json_object" | "json_schema" => {
                let schema = &body["response_format"]["json_schema"]["schema"];
                self.json_answer(&user, schema, seed).to_string()
            }
            _ => self.text_answer(&user, seed),
        };
        let prompt_tokens: usize = messages.iter().map(|m| words(&text_of(m))).sum();
        // `logprobs: true`: a log probability per word, drawn from the word
        // and the draw (a sure model: between −0.02 and −0.5).
        let logprobs = (body["logprobs"] == json!(true)).then(|| {
            let content: Vec<Value> = content
                .split_whitespace()
                .map(|w| json!({"token": w, "logprob": -0.02 - 0.48 * unit(&format!("{seed}\u{0}{w}")), "top_logprobs": []}))
                .collect();
            json!({"content": content})
        });
        Ok(json!({
            "id": format!("sim-{}", &blake3::hash(user.as_bytes()).to_hex()[..12]),
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": logprobs, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": words(&content), "total_tokens": prompt_tokens + words(&content)},
        }))
    }

    fn text_answer(&self, question: &str, seed: f64) -> String {
        if let Some(result) = arithmetic(question) {
            let wrong = seed < self.error_rate;
            let v = if wrong { result + if seed < self.error_rate / 2.0 { -1.0 } else { 1.0 } } else { result };
            let lower = question.to_lowercase();
            if REASONING.iter().any(|w| lower.contains(w)) {
                return format!("Let me work through it step by step. The result is {}.", format_number(v));
            }
            return format_number(v);
        }
        const OPENERS: [&str; 4] = ["In short", "Briefly", "The answer", "Simply put"];
        let opener = OPENERS[(seed * OPENERS.len() as f64) as usize % OPENERS.len()];
        let topic: Vec<&str> = question.split_whitespace().take(8).collect();
        format!("{opener}: {}.", topic.join(" ").trim_end_matches(['?', '.', '!']))
    }

    fn json_answer(&self, prompt: &str, schema: &Value, seed: f64) -> Value {
        // The marker that comes first: a prompt's own structure comes before
        // the data it quotes (a graded response may quote anything).
        let first =
            self.answers.iter().filter_map(|a| prompt.find(a.marker).map(|at| (at, a))).min_by_key(|(at, _)| *at);
        if let Some((at, a)) = first {
            return (a.answer)(&prompt[..at], &prompt[at + a.marker.len()..], seed);
        }
        if let Some(props) = schema["properties"].as_object() {
            let mut out = serde_json::Map::new();
            for (i, (name, p)) in props.iter().enumerate() {
                let s = unit(&format!("{seed}\u{0}{name}\u{0}{i}"));
                let v = match p["type"].as_str().unwrap_or("string") {
                    "number" => json!((s * 1000.0).round() / 1000.0),
                    "integer" => json!((s * 100.0) as i64),
                    "boolean" => json!(s < 0.5),
                    "array" => json!([]),
                    "object" => json!({}),
                    _ => json!(format!("{name} {}", &format!("{:x}", (s * 1e9) as u64))),
                };
                out.insert(name.clone(), v);
            }
            return Value::Object(out);
        }
        json!({"answer": self.text_answer(prompt, seed)})
    }
}

/// The sim's answer to this request, as `flow plan` asks before the run:
/// its answers are pure functions of the request, so the plan computes
/// them itself (with the kinds' own answers).
pub fn planned_answer(spec: &BackendSpec, endpoint: Endpoint, body: &Value, sample: u32) -> Option<Value> {
    static ANSWERS: OnceLock<Arc<[Answer]>> = OnceLock::new();
    let answers = ANSWERS.get_or_init(|| crate::sim_answers().into());
    Sim::new(spec, answers.clone()).answer(endpoint, body, sample).ok()
}

/// The tokens the sim will count answering this request ([`planned_answer`]).
pub(super) fn planned_tokens(spec: &BackendSpec, endpoint: Endpoint, body: &Value, sample: u32) -> Option<Tokens> {
    let answer = planned_answer(spec, endpoint, body, sample)?;
    let usage = &answer["usage"];
    Some(Tokens {
        prompt: usage["prompt_tokens"].as_u64()?,
        completion: Some(usage["completion_tokens"].as_u64().unwrap_or(0)),
        exact: true,
    })
}

fn not_found(message: String) -> CallError {
    CallError { message, status: Some(404), retryable: false, retry_after: None }
}

/// A file's size in sim tokens: the words of its messages.
fn file_tokens(file: &Upload<'_>) -> u64 {
    String::from_utf8_lossy(file.bytes)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|v| v["messages"].as_array().cloned().unwrap_or_default())
        .map(|m| words(m["content"].as_str().unwrap_or("")) as u64)
        .sum()
}

/// A sim fine-tuning job.
struct SimJob {
    id: String,
    hash8: String,
    trained_tokens: u64,
    model: String,
    suffix: String,
    /// Status polls so far (in this process).
    polls: u32,
}

impl SimJob {
    fn fine_tuned_model(&self) -> String {
        if self.suffix.is_empty() {
            format!("ft:{}:{}", self.model, self.hash8)
        } else {
            format!("ft:{}:{}:{}", self.model, self.suffix, self.hash8)
        }
    }

    fn object(&self, status: &str) -> Value {
        let done = status == "succeeded";
        json!({
            "object": "fine_tuning.job",
            "id": self.id,
            "model": self.model,
            "created_at": 0,
            "finished_at": if done { json!(self.polls) } else { Value::Null },
            "status": status,
            "fine_tuned_model": if done { json!(self.fine_tuned_model()) } else { Value::Null },
            "trained_tokens": if done { json!(self.trained_tokens) } else { Value::Null },
            "suffix": self.suffix,
            "error": null,
        })
    }

    /// The events so far, newest first (as OpenAI lists them).
    fn events(&self) -> Value {
        let mut events = vec![format!("Created fine-tuning job: {}", self.id)];
        if self.polls >= 1 {
            events.push("Validating training file".into());
        }
        let running = self.polls.saturating_sub(VALIDATING_POLLS).min(RUNNING_POLLS);
        if running >= 1 {
            events.push("Fine-tuning job started".into());
        }
        let mut events: Vec<(String, Value)> = events.into_iter().map(|m| (m, Value::Null)).collect();
        for step in 1..=running * STEPS / RUNNING_POLLS {
            let (loss, accuracy) = sim_metrics(step);
            let data =
                json!({"step": step, "total_steps": STEPS, "train_loss": loss, "train_mean_token_accuracy": accuracy});
            events.push((format!("Step {step}/{STEPS}: training loss={loss:.3}"), data));
        }
        if self.polls > VALIDATING_POLLS + RUNNING_POLLS {
            events.push((format!("New fine-tuned model created: {}", self.fine_tuned_model()), Value::Null));
            events.push(("The job has successfully completed".into(), Value::Null));
        }
        let data: Vec<Value> = events
            .into_iter()
            .enumerate()
            .rev()
            .map(|(i, (m, data))| {
                let mut e = json!({"object": "fine_tuning.job.event", "id": format!("ftevent-{}-{i}", self.hash8), "created_at": i, "level": "info", "message": m, "type": "message"});
                if !data.is_null() {
                    e["type"] = json!("metrics");
                    e["data"] = data;
                }
                e
            })
            .collect();
        json!({"object": "list", "data": data, "has_more": false})
    }
}

/// The training loss and token accuracy a sim job reports at `step`: a
/// loss falling from 2 towards 0.3, lower at every step.
fn sim_metrics(step: u32) -> (f64, f64) {
    let loss = 0.3 + 1.7 * (-(step as f64) / 4.0).exp();
    let round = |x: f64| (x * 1e4).round() / 1e4;
    (round(loss), round(1.0 - loss / 2.5))
}

/// Words of a prompt that ask a model to show its reasoning: the sim then
/// answers an arithmetic question with a sentence around the result, as a
/// model does, which an exact match fails and `contains` passes.
const REASONING: [&str; 4] = ["step by step", "explain", "show your work", "your reasoning"];

/// The value of the last `a op b` in the text, if any.
fn arithmetic(text: &str) -> Option<f64> {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"(-?\d+(?:\.\d+)?)\s*(plus|minus|times|[-+*/x×])\s*(-?\d+(?:\.\d+)?)").expect("valid regex")
    });
    let c = re.captures_iter(text).last()?;
    let a: f64 = c[1].parse().ok()?;
    let b: f64 = c[3].parse().ok()?;
    let v = match &c[2] {
        "+" | "plus" => a + b,
        "-" | "minus" => a - b,
        "*" | "x" | "×" | "times" => a * b,
        "/" if b != 0.0 => a / b,
        _ => return None,
    };
    Some(v)
}

fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{}", (v * 1e6).round() / 1e6)
    }
}

fn words(s: &str) -> usize {
    s.split_whitespace().count().max(1)
}

/// A number in [0, 1) from a text, by blake3.
pub fn unit(s: &str) -> f64 {
    let h = blake3::hash(s.as_bytes());
    let b: [u8; 8] = h.as_bytes()[..8].try_into().expect("8 bytes");
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

fn embeddings(body: &Value, model: &str) -> Value {
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|v| v.as_str().unwrap_or("").to_string()).collect(),
        _ => Vec::new(),
    };
    let dims = body["dimensions"].as_u64().unwrap_or(64).clamp(2, 4096) as usize;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": embed(t, dims)}))
        .collect();
    let tokens: usize = inputs.iter().map(|t| words(t)).sum();
    json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
}

/// Feature hashing of lower-cased words into `dims` signed buckets.
pub fn embed(text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![0f32; dims];
    for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let h = blake3::hash(w.to_lowercase().as_bytes());
        let b = h.as_bytes();
        let i = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize % dims;
        v[i] += if b[4] & 1 == 0 { 1.0 } else { -1.0 };
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        v[0] = 1.0;
    } else {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_is_read_from_questions() {
        assert_eq!(arithmetic("What is 12 + 30?"), Some(42.0));
        assert_eq!(arithmetic("compute 7 times 6"), Some(42.0));
        assert_eq!(arithmetic("no numbers"), None);
        assert_eq!(format_number(42.0), "42");
    }

    #[tokio::test]
    async fn a_job_succeeds_over_polls_and_a_replay_restores_it() {
        let spec: BackendSpec = serde_yaml::from_str("{provider: sim, model: base-1}").unwrap();
        let sim = Sim::new(&spec, Arc::new([]));
        let data = b"{\"messages\": [{\"role\": \"user\", \"content\": \"hi there\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n";
        let upload = Upload { filename: "train.jsonl", bytes: data, purpose: "fine-tune" };
        let file = sim.fine_tuning(Request::Upload("files", upload)).await.unwrap();
        let file_id = file["id"].as_str().unwrap();
        let body = json!({"model": "base-1", "training_file": file_id, "suffix": "golden", "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}});
        let created = sim.fine_tuning(Request::Post("fine_tuning/jobs", &body)).await.unwrap();
        assert_eq!(created["status"], "validating_files");
        let path = format!("fine_tuning/jobs/{}", created["id"].as_str().unwrap());
        let mut seen = Vec::new();
        for _ in 0..4 {
            let j = sim.fine_tuning(Request::Get(&path)).await.unwrap();
            seen.push(j["status"].as_str().unwrap().to_string());
        }
        assert_eq!(seen, ["validating_files", "running", "running", "succeeded"]);
        let done = sim.fine_tuning(Request::Get(&path)).await.unwrap();
        let model = done["fine_tuned_model"].as_str().unwrap();
        assert!(model.starts_with("ft:base-1:golden:") && model.len() == "ft:base-1:golden:".len() + 8, "{model}");
        assert_eq!(done["trained_tokens"], 6, "3 words × 2 epochs");
        let events = sim.fine_tuning(Request::Get(&format!("{path}/events"))).await.unwrap();
        assert_eq!(events["data"][0]["message"], "The job has successfully completed");
        // Metrics events, oldest last: every step once, the loss falling.
        let steps: Vec<&Value> =
            events["data"].as_array().unwrap().iter().rev().filter(|e| e["type"] == "metrics").collect();
        assert_eq!(steps.len(), STEPS as usize);
        assert_eq!(steps[0]["message"], format!("Step 1/{STEPS}: training loss=1.624"));
        for (k, pair) in steps.windows(2).enumerate() {
            assert_eq!(pair[0]["data"]["step"], k as u64 + 1);
            let (a, b) =
                (pair[0]["data"]["train_loss"].as_f64().unwrap(), pair[1]["data"]["train_loss"].as_f64().unwrap());
            assert!(b < a, "step {}: {a} then {b}", k + 2);
        }

        // Another process (a resumed run) knows the job once the memo's
        // answers are replayed to it, and it starts over its polls.
        let fresh = Sim::new(&spec, Arc::new([]));
        assert_eq!(fresh.fine_tuning(Request::Get(&path)).await.unwrap_err().status, Some(404));
        fresh.replayed(Request::Upload("files", upload), &file);
        fresh.replayed(Request::Post("fine_tuning/jobs", &body), &created);
        let j = fresh.fine_tuning(Request::Get(&path)).await.unwrap();
        assert_eq!((j["status"].as_str(), j["id"].as_str()), (Some("validating_files"), created["id"].as_str()));
        let bad = json!({"model": "base-1", "training_file": "file-nope"});
        assert_eq!(fresh.fine_tuning(Request::Post("fine_tuning/jobs", &bad)).await.unwrap_err().status, Some(404));
    }

    #[test]
    fn error_rate_is_a_share_of_questions() {
        let spec: BackendSpec = serde_yaml::from_str("{provider: sim, sim: {error_rate: 0.3}}").unwrap();
        let sim = Sim::new(&spec, Arc::new([]));
        let wrong = (0..1000)
            .filter(|i| {
                let q = format!("What is {i} + 1?");
                let body = json!({"model": "sim-1", "messages": [{"role": "user", "content": q}]});
                let r = sim.chat(&body, 0).unwrap();
                r["choices"][0]["message"]["content"] != format!("{}", i + 1)
            })
            .count();
        assert!((220..380).contains(&wrong), "{wrong} of 1000 wrong at error_rate 0.3");
    }

    #[test]
    fn logprobs_come_when_asked_a_word_each() {
        let spec: BackendSpec = serde_yaml::from_str("{provider: sim}").unwrap();
        let sim = Sim::new(&spec, Arc::new([]));
        let ask = |logprobs: bool| {
            let body = json!({"model": "sim-1", "logprobs": logprobs, "messages": [{"role": "user", "content": "Name a colour."}]});
            sim.chat(&body, 0).unwrap()
        };
        assert!(ask(false)["choices"][0]["logprobs"].is_null());
        let r = ask(true);
        let lp = super::super::Logprobs::of(&r["choices"][0]["logprobs"]).unwrap();
        let words = r["choices"][0]["message"]["content"].as_str().unwrap().split_whitespace().count() as u64;
        assert_eq!(lp.tokens, words);
        let mean = lp.sum / lp.tokens as f64;
        assert!((-0.5..=-0.02).contains(&mean), "{mean}");
        assert_eq!(r, ask(true), "deterministic");
    }
}
