//! `backends:` and `prices:` in a spec: the LLM endpoints nodes call, named
//! once and used by any node (`backend: bot`).
//!
//! Only the configuration lives here (the engine owns the spec); the clients,
//! limits and retries that act on it are in `flow-nodes`' `backend` module.
//! A backend's *identity* (provider, base URL, model, sampling parameters) is
//! what its answers depend on: it is part of the key of every node that uses
//! the backend and of every memoized call. Keys, headers, limits and
//! timeouts are not: they change how a call is made, not what it returns.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Which client talks to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Any OpenAI-compatible HTTP API (OpenAI, Azure OpenAI, vLLM, Ollama,
    /// llama.cpp server, LM Studio, TGI, OpenRouter, Together, ...).
    Openai,
    /// Built in and offline: deterministic answers derived from the request.
    Sim,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Sim => "sim",
        }
    }
}

/// The base URL used when an `openai` backend gives none.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// The model a `sim` backend reports when it names none.
pub const SIM_MODEL: &str = "sim-1";

/// One entry of `backends:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    pub provider: Provider,
    /// API root, e.g. `http://localhost:8000/v1` (`openai` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The *name* of the environment variable that holds the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Header the key is sent in: `Authorization` (as `Bearer <key>`, the
    /// default) or another name such as Azure's `api-key` (the key as is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    /// Any other request fields, sent as they are (`presence_penalty`,
    /// `logit_bias`, `reasoning_effort`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
    /// Extra HTTP headers (not for keys: use `api_key_env`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout, e.g. `60s`; default 60 s.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Requests in flight at once, across every node using this backend in
    /// a run; default 16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Requests per minute, across the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Tokens per minute (prompt estimate + `max_tokens`), across the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u32>,
    #[serde(default)]
    pub retry: RetrySpec,
    /// `sim` only: how the simulated model behaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim: Option<SimSpec>,
}

/// Retries on 429, 5xx, timeouts and connection errors: exponential backoff
/// with jitter, or the server's `Retry-After` when it sends one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    #[serde(default = "default_initial_delay", with = "duration")]
    pub initial_delay: Duration,
    #[serde(default = "default_max_delay", with = "duration")]
    pub max_delay: Duration,
}

fn default_max_retries() -> u32 {
    6
}
fn default_initial_delay() -> Duration {
    Duration::from_millis(500)
}
fn default_max_delay() -> Duration {
    Duration::from_secs(30)
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self {
            max_retries: default_max_retries(),
            initial_delay: default_initial_delay(),
            max_delay: default_max_delay(),
        }
    }
}

/// How the `sim` backend behaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSpec {
    /// Share of arithmetic questions answered wrong, in 0..=1; default 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Simulated latency per call, e.g. `200ms`; default none.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub latency: Option<Duration>,
}

impl BackendSpec {
    /// The model requests name.
    pub fn model(&self) -> &str {
        match (&self.model, self.provider) {
            (Some(m), _) => m,
            (None, Provider::Sim) => SIM_MODEL,
            (None, Provider::Openai) => "",
        }
    }

    /// The API root.
    pub fn base_url(&self) -> &str {
        match (&self.base_url, self.provider) {
            (Some(u), _) => u.trim_end_matches('/'),
            (None, Provider::Openai) => OPENAI_BASE_URL,
            (None, Provider::Sim) => "sim:",
        }
    }

    /// What the backend's answers depend on, and nothing else: never the key,
    /// headers, limits or timeouts.
    pub fn identity(&self) -> Value {
        let mut v = json!({
            "provider": self.provider.name(),
            "base_url": self.base_url(),
            "model": self.model(),
        });
        let o = v.as_object_mut().expect("object");
        let mut put = |k: &str, x: Option<Value>| {
            if let Some(x) = x {
                o.insert(k.to_string(), x);
            }
        };
        put("temperature", self.temperature.map(Value::from));
        put("max_tokens", self.max_tokens.map(Value::from));
        put("top_p", self.top_p.map(Value::from));
        put("seed", self.seed.map(Value::from));
        put("stop", self.stop.as_ref().map(|s| json!(s)));
        if !self.params.is_empty() {
            put("params", Some(json!(self.params)));
        }
        if let Some(sim) = &self.sim {
            put("sim", Some(json!({"error_rate": sim.error_rate})));
        }
        v
    }

    /// Requests in flight at once.
    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency.unwrap_or(16).max(1) as usize
    }

    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(60))
    }
}

/// Price of a model in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

/// A duration written as `500ms`, `2s`, `1m` or a number of seconds.
pub fn parse_duration(v: &Value) -> Result<Duration, String> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("`{n}` is not a duration")),
        Value::String(s) => humantime::parse_duration(s.trim())
            .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. `500ms`, `30s` or `2m`")),
        other => Err(format!("`{other}` is not a duration; write e.g. `500ms`, `30s` or `2m`")),
    }
}

fn format_duration(d: &Duration) -> String {
    humantime::format_duration(*d).to_string()
}

mod duration {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = Value::deserialize(d)?;
        parse_duration(&v).map_err(serde::de::Error::custom)
    }
}

mod opt_duration {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format_duration(d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let v = Value::deserialize(d)?;
        if v.is_null() {
            return Ok(None);
        }
        parse_duration(&v).map(Some).map_err(serde::de::Error::custom)
    }
}

/// Field names that would hold a literal secret.
pub const SECRET_FIELDS: &[&str] = &["api_key", "key", "token", "secret", "password"];

/// Header names that carry credentials.
pub fn is_credential_header(name: &str) -> bool {
    matches!(name.to_ascii_lowercase().as_str(), "authorization" | "api-key" | "x-api-key" | "proxy-authorization")
}

/// Whether `s` looks like a secret rather than the name of an environment
/// variable (`OPENAI_API_KEY`).
pub fn looks_like_secret(s: &str) -> bool {
    let is_env_name = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.chars().next().is_some_and(|c| c.is_ascii_digit());
    let key_prefix = ["sk-", "sk_", "pk-", "hf_", "gsk_", "xai-", "AIza"].iter().any(|p| s.starts_with(p));
    key_prefix || !is_env_name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_leaves_out_secrets_and_limits() {
        let a: BackendSpec = serde_yaml::from_str(
            "{provider: openai, model: m, api_key_env: K, headers: {X-A: b}, max_concurrency: 4, timeout: 5s, temperature: 0}",
        )
        .unwrap();
        let mut b = a.clone();
        b.api_key_env = Some("OTHER".into());
        b.headers.clear();
        b.max_concurrency = Some(64);
        b.timeout = Some(Duration::from_secs(1));
        assert_eq!(a.identity(), b.identity());
        b.temperature = Some(0.7);
        assert_ne!(a.identity(), b.identity());
        assert_eq!(a.identity()["base_url"], OPENAI_BASE_URL);
    }

    #[test]
    fn durations_and_secrets() {
        assert_eq!(parse_duration(&json!("250ms")), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(&json!(2)), Ok(Duration::from_secs(2)));
        assert!(parse_duration(&json!("soon")).is_err());
        assert!(looks_like_secret("sk-proj-abc123"));
        assert!(looks_like_secret("abc def"));
        assert!(!looks_like_secret("OPENAI_API_KEY"));
        assert!(is_credential_header("Authorization"));
    }
}
