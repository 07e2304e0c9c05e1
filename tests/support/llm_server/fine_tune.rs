//! The fine-tuning half of the test server: the files API (a multipart
//! upload, parsed by hand) and fine-tuning jobs that go through their
//! statuses over polls ([`super::FineTuneScript`]), with events.

use axum::extract::Path;

use super::*;

pub(super) async fn upload_file(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    count_route(&s, "POST /v1/files");
    let _in_flight = InFlight::enter(&s);
    if let Err(r) = admit_any(&s, &headers).await {
        return r;
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let parts = match multipart_parts(content_type, &body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e, "invalid_request_error"),
    };
    let purpose = parts.iter().find(|p| p.name == "purpose").map(|p| String::from_utf8_lossy(&p.data).into_owned());
    let Some(file) = parts.iter().find(|p| p.name == "file" && p.filename.is_some()) else {
        return error(StatusCode::BAD_REQUEST, "no `file` part", "invalid_request_error");
    };
    let Some(purpose) = purpose.filter(|p| p == "fine-tune" || p == "batch") else {
        return error(StatusCode::BAD_REQUEST, "`purpose` must be `fine-tune` or `batch`", "invalid_request_error");
    };
    let filename = file.filename.clone().unwrap_or_default();
    let mut files = s.files.lock().unwrap();
    let id = format!("file-{}", files.len() + 1);
    let reply = json!({
        "object": "file", "id": id, "bytes": file.data.len(), "created_at": 0,
        "filename": filename, "purpose": purpose, "status": "processed",
    });
    files.insert(id, UploadedFile { filename, purpose, bytes: file.data.clone() });
    s.successes.fetch_add(1, Ordering::SeqCst);
    Json(reply).into_response()
}

/// One part of a `multipart/form-data` body.
struct Part {
    name: String,
    filename: Option<String>,
    data: Vec<u8>,
}

/// The parts of a `multipart/form-data` body (RFC 7578), strictly: a
/// malformed body is an error, as a real server would answer it.
fn multipart_parts(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let boundary = content_type
        .strip_prefix("multipart/form-data")
        .and_then(|rest| rest.split(';').find_map(|p| p.trim().strip_prefix("boundary=")))
        .map(|b| b.trim_matches('"').to_string())
        .ok_or_else(|| format!("expected multipart/form-data with a boundary, got `{content_type}`"))?;
    let delimiter = format!("--{boundary}").into_bytes();
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay.get(from..).and_then(|h| h.windows(needle.len()).position(|w| w == needle)).map(|i| i + from)
    };
    let mut at = find(body, &delimiter, 0).ok_or("no boundary in the body")? + delimiter.len();
    let mut parts = Vec::new();
    loop {
        if body[at..].starts_with(b"--") {
            return Ok(parts);
        }
        if !body[at..].starts_with(b"\r\n") {
            return Err("a boundary is not followed by a line break".into());
        }
        at += 2;
        let head_end = find(body, b"\r\n\r\n", at).ok_or("a part has no end of headers")?;
        let head = String::from_utf8_lossy(&body[at..head_end]).into_owned();
        let mut closing = b"\r\n".to_vec();
        closing.extend_from_slice(&delimiter);
        let data_end = find(body, &closing, head_end + 4).ok_or("a part is not closed by the boundary")?;
        let param = |key: &str| {
            head.lines()
                .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
                .and_then(|l| l.split(';').find_map(|p| p.trim().strip_prefix(&format!("{key}=")).map(str::to_string)))
                .map(|v| v.trim_matches('"').to_string())
        };
        let name = param("name").ok_or("a part has no name")?;
        parts.push(Part { name, filename: param("filename"), data: body[head_end + 4..data_end].to_vec() });
        at = data_end + closing.len();
    }
}

pub(super) async fn create_job(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    count_route(&s, "POST /v1/fine_tuning/jobs");
    let _in_flight = InFlight::enter(&s);
    let req = match admit(&s, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if req.get("model").and_then(Value::as_str).is_none_or(str::is_empty) {
        return error(StatusCode::BAD_REQUEST, "`model` is required", "invalid_request_error");
    }
    if let Some(t) = req.pointer("/method/type").and_then(Value::as_str).filter(|t| *t != "supervised") {
        return error(StatusCode::BAD_REQUEST, &format!("method `{t}` is not supported here"), "invalid_request_error");
    }
    let file_id = req.get("training_file").and_then(Value::as_str).unwrap_or("").to_string();
    let Some(file) = s.files.lock().unwrap().get(&file_id).cloned() else {
        return error(StatusCode::BAD_REQUEST, &format!("invalid training_file: {file_id}"), "invalid_request_error");
    };
    // What OpenAI checks while `validating_files`: one chat per line.
    let text = String::from_utf8_lossy(&file.bytes).into_owned();
    let mut invalid_file = None;
    let mut tokens = 0;
    for (i, line) in text.lines().enumerate() {
        match serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v.get("messages").and_then(Value::as_array).cloned())
        {
            Some(messages) => {
                tokens += messages.iter().map(|m| words(&content_text(m.get("content")))).sum::<usize>() as u64
            }
            None => {
                invalid_file.get_or_insert(format!("line {} of {file_id} has no `messages` list", i + 1));
            }
        }
    }
    let epochs = req.pointer("/method/supervised/hyperparameters/n_epochs").and_then(Value::as_u64).unwrap_or(3);
    let mut jobs = s.jobs.lock().unwrap();
    let number = jobs.len() as u64 + 1;
    let job = Job { number, request: req.clone(), polls: 0, invalid_file, trained_tokens: tokens * epochs };
    let reply = job_object(&job, "validating_files");
    jobs.insert(format!("ftjob-{number}"), job);
    succeed(&s, req);
    Json(reply).into_response()
}

/// A job as OpenAI shows it, in `status`.
fn job_object(job: &Job, status: &str) -> Value {
    let r = &job.request;
    let done = status == "succeeded";
    let suffix = r.get("suffix").and_then(Value::as_str);
    let model = r.get("model").and_then(Value::as_str).unwrap_or_default();
    let fine_tuned = format!("ft:{model}:test-org:{}:{}", suffix.unwrap_or(""), job.number);
    let error = match (status, &job.invalid_file) {
        ("failed", Some(why)) => json!({"code": "invalid_training_file", "message": why, "param": "training_file"}),
        ("failed", None) => json!({"code": "job_failed", "message": "the job failed", "param": null}),
        _ => Value::Null,
    };
    json!({
        "object": "fine_tuning.job",
        "id": format!("ftjob-{}", job.number),
        "model": model,
        "created_at": 0,
        "finished_at": if done { json!(job.polls) } else { Value::Null },
        "fine_tuned_model": if done { json!(fine_tuned) } else { Value::Null },
        "organization_id": "org-test",
        "status": status,
        "training_file": r.get("training_file"),
        "validation_file": null,
        "method": r.get("method"),
        "seed": r.get("seed"),
        "suffix": suffix,
        "trained_tokens": if done { json!(job.trained_tokens) } else { Value::Null },
        "error": error,
    })
}

/// The status of `job` after its polls so far, under the server's script.
fn job_status_now(s: &Shared, job: &Job) -> &'static str {
    let f = &s.cfg.fine_tune;
    if job.polls <= f.validating_polls {
        return "validating_files";
    }
    if job.invalid_file.is_some() {
        return "failed";
    }
    if job.polls <= f.validating_polls + f.running_polls || s.hold_jobs.load(Ordering::SeqCst) {
        return "running";
    }
    if f.fail_with.is_some() {
        "failed"
    } else {
        "succeeded"
    }
}

pub(super) async fn job_status(State(s): State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    count_route(&s, "GET /v1/fine_tuning/jobs/{id}");
    let _in_flight = InFlight::enter(&s);
    if let Err(r) = admit_any(&s, &headers).await {
        return r;
    }
    let mut jobs = s.jobs.lock().unwrap();
    let Some(job) = jobs.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, &format!("no fine-tuning job `{id}`"), "invalid_request_error");
    };
    // A held job does not move on, so it does not count its polls either.
    let held = s.hold_jobs.load(Ordering::SeqCst) && job.polls > s.cfg.fine_tune.validating_polls;
    if !held {
        job.polls += 1;
    }
    let status = job_status_now(&s, job);
    let mut reply = job_object(job, status);
    if let (Some(why), "failed", None) = (&s.cfg.fine_tune.fail_with, status, &job.invalid_file) {
        reply["error"] = json!({"code": "job_failed", "message": why, "param": null});
    }
    s.successes.fetch_add(1, Ordering::SeqCst);
    Json(reply).into_response()
}

pub(super) async fn job_events(State(s): State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    count_route(&s, "GET /v1/fine_tuning/jobs/{id}/events");
    let _in_flight = InFlight::enter(&s);
    if let Err(r) = admit_any(&s, &headers).await {
        return r;
    }
    let jobs = s.jobs.lock().unwrap();
    let Some(job) = jobs.get(&id) else {
        return error(StatusCode::NOT_FOUND, &format!("no fine-tuning job `{id}`"), "invalid_request_error");
    };
    let f = &s.cfg.fine_tune;
    let status = job_status_now(&s, job);
    let mut events: Vec<(&str, String)> = vec![("info", format!("Created fine-tuning job: {id}"))];
    if job.polls >= 1 {
        events.push(("info", "Validating training file".into()));
    }
    let running = job.polls.saturating_sub(f.validating_polls);
    if running >= 1 && job.invalid_file.is_none() {
        events.push(("info", "Fine-tuning job started".into()));
        for step in 1..=running.min(f.running_polls) {
            events.push((
                "info",
                format!("Step {step}/{}: training loss={:.3}", f.running_polls, 1.0 / (step as f64 + 1.0)),
            ));
        }
    }
    match status {
        "succeeded" => {
            events.push(("info", "New fine-tuned model created".into()));
            events.push(("info", "The job has successfully completed".into()));
        }
        "failed" => {
            let why = job.invalid_file.clone().or_else(|| f.fail_with.clone()).unwrap_or_default();
            events.push(("error", format!("The job failed: {why}")));
        }
        _ => {}
    }
    let data: Vec<Value> = events
        .iter()
        .enumerate()
        .rev()
        .map(|(i, (level, message))| {
            json!({"object": "fine_tuning.job.event", "id": format!("ftevent-{}-{i}", job.number), "created_at": i, "level": level, "message": message, "type": "message"})
        })
        .collect();
    s.successes.fetch_add(1, Ordering::SeqCst);
    Json(json!({"object": "list", "data": data, "has_more": false})).into_response()
}
