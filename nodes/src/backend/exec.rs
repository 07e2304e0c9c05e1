//! `provider: exec`: the user's own program as the system under test. Up
//! to `max_concurrency` long-lived processes of `command` (a
//! [`crate::process::Pool`]), each reading one request a line
//! (`{record, prompt, system, messages}`) and printing one answer a line:
//! `{"output": ..., "usage": {...}, "cost_usd": ..., "error": ...}`. A
//! process that dies or hangs past `timeout` is dropped and the call is
//! retried on a fresh one; an answer with an `error`, or a line that is not
//! a JSON object, fails the call (not retried) and names what came.

use serde_json::Value;

use flow_engine::BackendSpec;

use super::app::Reading;
use super::CallError;
use crate::process::{Pool, ProcessError, Program};

pub struct Client {
    pool: Pool,
    timeout: std::time::Duration,
    reading: Reading,
    model: String,
}

impl Client {
    pub fn new(spec: &BackendSpec) -> Self {
        let program = Program::new(spec.command.clone().unwrap_or_default(), &spec.dir);
        Self {
            pool: Pool::new(program),
            timeout: spec.timeout(),
            reading: Reading::of_exec(),
            model: spec.model().to_string(),
        }
    }

    /// One attempt.
    pub async fn send(&self, body: &Value) -> Result<Value, CallError> {
        let line = serde_json::to_vec(body).expect("a request serializes");
        let shown = self.pool.program().shown();
        let fit = |l: &str| serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object());
        let line = self.pool.ask(&line, self.timeout, fit).await.map_err(|e| {
            let retryable = !matches!(e, ProcessError::Start { .. });
            CallError { message: format!("`{shown}`: {e}"), status: None, retryable, retry_after: None }
        })?;
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                let start: String = line.chars().take(120).collect();
                return Err(CallError::fatal(format!(
                    "`{shown}` printed `{start}`, not a JSON object; print one line `{{\"output\": ...}}` per request (logs go to stderr)"
                )));
            }
        };
        if let Some(e) = answer.get("error").filter(|e| !e.is_null()) {
            let e = e.as_str().map(str::to_string).unwrap_or_else(|| e.to_string());
            return Err(CallError::fatal(format!("`{shown}` answered with an error: {e}")));
        }
        self.reading.normalize(&answer, &self.model)
    }
}
