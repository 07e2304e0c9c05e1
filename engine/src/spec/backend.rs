//! `backends:` and `prices:` in a spec: the LLM endpoints nodes call, named
//! once and used by any node (`backend: bot`).
//!
//! Only the configuration lives here (the engine owns the spec); the clients,
//! limits and retries that act on it are in `flow-nodes`' `backend` module.
//! A backend's *identity* (provider, base URL, model, sampling parameters) is
//! what its answers depend on: it is part of the key of every node that uses
//! the backend and of every memoized call. Keys, headers, limits and
//! timeouts are not: they change how a call is made, not what it returns.
//! Reading and checking the `backends:` of a spec is `backend_check.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Which client talks to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Any OpenAI-compatible HTTP API (OpenAI, Azure OpenAI, vLLM, Ollama,
    /// llama.cpp server, LM Studio, TGI, OpenRouter, Together, ...).
    Openai,
    /// Built in and offline: deterministic answers derived from the request.
    Sim,
    /// Anthropic's Messages API (`POST /v1/messages`).
    Anthropic,
    /// Azure OpenAI: a `deployment` under `base_url` (the resource's
    /// endpoint), with `api_version`.
    Azure,
    /// Sentence embeddings computed in this process from a
    /// sentence-transformers folder (`model_dir`); embeddings only.
    Local,
    /// The user's own application behind any JSON HTTP endpoint: `url`,
    /// `method`, `headers`, a `body` template and an `output:` path.
    Http,
    /// The user's own program, one long-lived process per slot speaking
    /// JSONL on stdin/stdout: `command: [python3, app.py]`.
    Exec,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Sim => "sim",
            Provider::Anthropic => "anthropic",
            Provider::Azure => "azure",
            Provider::Local => "local",
            Provider::Http => "http",
            Provider::Exec => "exec",
        }
    }

    /// Whether the provider is reached over HTTP (and may need a key).
    pub fn is_remote(self) -> bool {
        !matches!(self, Provider::Sim | Provider::Exec | Provider::Local)
    }

    /// Whether it answers chat completions (a `local` model only embeds).
    pub fn chats(self) -> bool {
        self != Provider::Local
    }

    /// Whether a backend must name its `model` (an LLM API routes by it).
    pub fn needs_model(self) -> bool {
        matches!(self, Provider::Openai | Provider::Anthropic | Provider::Azure)
    }
}

/// The base URL used when an `openai` backend gives none.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// The base URL used when an `anthropic` backend gives none (the Anthropic
/// SDKs' convention: the API root without `/v1`).
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// The `api-version` an `azure` backend sends when it names none (the
/// latest GA version of the Azure OpenAI data-plane API).
pub const AZURE_API_VERSION: &str = "2024-10-21";
/// The model a `sim` backend reports when it names none.
pub const SIM_MODEL: &str = "sim-1";

/// One entry of `backends:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// Send a well-known provider key (`OPENAI_API_KEY`,
    /// `ANTHROPIC_API_KEY`, `AZURE_OPENAI_API_KEY`) to a `base_url` that is
    /// not that provider's own API. Off by default: pointing a shipped spec
    /// at a local server with `--set base_url=...` does not hand it your
    /// OpenAI key. A key under a name of your own goes wherever its backend
    /// points.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub send_key_anywhere: bool,
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
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::duration::optional")]
    #[schemars(with = "Option<String>")]
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
    /// The largest response body read, in bytes; default 16 MiB. A larger
    /// one fails its call (not retried) rather than filling memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
    #[serde(default)]
    pub retry: RetrySpec,
    /// `azure` only: the deployment's name (default: `model`); `model` is
    /// the model deployed, for prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// `azure` only: the `?api-version=` query parameter (default
    /// `2024-10-21`); `v1` uses the v1 path style (`/openai/v1/...`, the
    /// deployment named as the request's `model`, no version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `anthropic` only: mark the system prompt (else the first user
    /// message) with `cache_control: {type: ephemeral}` for prompt caching.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prompt_cache: bool,
    /// JSON-mode calls that know the JSON they expect (the judge's verdict,
    /// `generate`'s cases) send its JSON Schema as `response_format:
    /// {type: json_schema}` (OpenAI's structured outputs, honoured by
    /// llama.cpp and vLLM too) instead of `json_object`; on `anthropic`,
    /// as the forced `json` tool's `input_schema`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_schema: bool,
    /// `sim` only: how the simulated model behaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim: Option<SimSpec>,
    /// `local` only: a sentence-transformers folder (`config.json`,
    /// `tokenizer.json`, `model.safetensors`), relative to the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<String>,
    /// `local` only: sentences per forward pass; default 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// `local`: the checked `model_dir` and its content hash (set when the
    /// spec loads; the hash is the backend's identity).
    #[serde(skip)]
    #[schemars(skip)]
    pub model_files: Option<super::local_model::ModelFiles>,
    /// `http` only: the endpoint's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `http` only: `POST` (the default), `PUT`, `PATCH`, or `GET` (no body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    /// `http` only: the request body, a YAML value whose strings are
    /// `{{field}}` templates over the record's fields, `prompt` (the last
    /// user message), `system`, `messages` and `record`; a string that is one
    /// `{{field}}` alone becomes that value (a list stays a list). Default:
    /// `{record, prompt, messages}`, the `exec` protocol's request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// `http` only: where the answer is in the JSON response, e.g.
    /// `data.answer` or `choices[0].text`; default `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// `http` only: where token counts are in the response (an object with
    /// `prompt_tokens`/`completion_tokens` or `input_tokens`/`output_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<String>,
    /// `http` only: where the call's cost in USD is in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    /// `http` only: the HTTP statuses retried; default 408, 409, 429 and
    /// 5xx but 501 and 505. Timeouts and connection errors are always retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<u16>>,
    /// `exec` only: the program and its arguments, run in the spec's folder;
    /// the files it names are part of the backend's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// `exec`: the content hash of each file `command` names, by the path
    /// written, read when the spec loads.
    #[serde(skip)]
    #[schemars(skip)]
    pub command_files: BTreeMap<String, String>,
    /// The spec's folder, where an `exec` command runs.
    #[serde(skip)]
    #[schemars(skip)]
    pub dir: std::path::PathBuf,
    /// `openai`, `anthropic` and `sim`: send chat calls through the
    /// provider's batch API at half the price, answers within 24 h: `true`
    /// or `{max_requests, max_wait, poll}` (see docs/batch.md). Not part of
    /// the identity: batch and live answers share the call memo.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "super::batch::deserialize")]
    #[schemars(with = "Option<super::batch::BatchField>")]
    pub batch: Option<super::batch::BatchSpec>,
}

pub use super::app::HttpMethod;

/// Retries on 429, 5xx, timeouts and connection errors: exponential backoff
/// with jitter, or the server's `Retry-After` when it sends one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    #[serde(default = "default_initial_delay", with = "super::duration::required")]
    #[schemars(with = "String")]
    pub initial_delay: Duration,
    #[serde(default = "default_max_delay", with = "super::duration::required")]
    #[schemars(with = "String")]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimSpec {
    /// Share of arithmetic questions answered wrong, in 0..=1; default 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Simulated latency per call, e.g. `200ms`; default none.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::duration::optional")]
    #[schemars(with = "Option<String>")]
    pub latency: Option<Duration>,
}

impl BackendSpec {
    /// The largest response body read (`max_response_bytes`).
    pub fn max_response_bytes(&self) -> u64 {
        self.max_response_bytes.unwrap_or(16 << 20)
    }

    /// The model requests name.
    pub fn model(&self) -> &str {
        match (&self.model, self.provider) {
            (Some(m), _) => m,
            (None, Provider::Sim) => SIM_MODEL,
            (None, Provider::Local) => {
                self.model_dir.as_deref().map(super::local_model::ModelFiles::name_of).unwrap_or("local")
            }
            (None, Provider::Http | Provider::Exec) => super::app::APP_MODEL,
            (None, _) => "",
        }
    }

    /// The model a request names: an `azure` backend's deployment (Azure
    /// routes by it; `model` names what is deployed, for prices), else
    /// [`BackendSpec::model`].
    pub fn request_model(&self) -> &str {
        match (self.provider, &self.deployment) {
            (Provider::Azure, Some(d)) => d,
            _ => self.model(),
        }
    }

    /// An `azure` backend's `api-version` (`v1` for the v1 path style).
    pub fn api_version(&self) -> &str {
        self.api_version.as_deref().unwrap_or(AZURE_API_VERSION)
    }

    /// The API root.
    pub fn base_url(&self) -> &str {
        match (&self.base_url, self.provider) {
            (Some(u), _) => u.trim_end_matches('/'),
            (None, Provider::Openai) => OPENAI_BASE_URL,
            (None, Provider::Sim) => "sim:",
            (None, Provider::Local) => "local:",
            (None, Provider::Anthropic) => ANTHROPIC_BASE_URL,
            // Checked when the spec loads: an azure backend names its endpoint.
            (None, Provider::Azure) => "",
            (None, Provider::Http) => self.url.as_deref().unwrap_or("").trim_end_matches('/'),
            (None, Provider::Exec) => "exec:",
        }
    }

    /// What the backend's answers depend on, and nothing else: never the key,
    /// headers, limits or timeouts.
    pub fn identity(&self) -> Value {
        let mut v = json!({
            "provider": self.provider.name(),
            // Not a key riding in the query: it is not what answers depend
            // on, and identities are stored.
            "base_url": super::url::redact(self.base_url()),
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
        if self.json_schema {
            put("json_schema", Some(json!(true)));
        }
        if self.provider == Provider::Azure {
            put("deployment", Some(json!(self.request_model())));
            put("api_version", Some(json!(self.api_version())));
        }
        if self.provider == Provider::Local {
            // The model's files, not where they are.
            put("model_files", Some(json!(self.model_files.as_ref().map(|m| m.hash.hex()))));
        }
        super::app::identity(self, o);
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
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

/// Field names that would hold a literal secret.
pub const SECRET_FIELDS: &[&str] = &["api_key", "key", "token", "secret", "password"];

/// Header names that carry credentials.
pub fn is_credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization"
            | "proxy-authorization"
            | "cookie"
            | "api-key"
            | "x-api-key"
            | "x-goog-api-key"
            | "ocp-apim-subscription-key"
    ) || n.contains("token")
        || n.contains("secret")
        || n.ends_with("-key")
}

/// Whether a value starts the way common API keys do.
pub fn has_key_prefix(s: &str) -> bool {
    let s = s.trim();
    ["sk-", "sk_", "pk-", "hf_", "gsk_", "xai-", "AIza", "Bearer ", "Basic "].iter().any(|p| s.starts_with(p))
}

/// Whether `s` looks like a secret rather than the name of an environment
/// variable (`OPENAI_API_KEY`).
pub fn looks_like_secret(s: &str) -> bool {
    let is_env_name = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.chars().next().is_some_and(|c| c.is_ascii_digit());
    has_key_prefix(s) || !is_env_name
}

pub use super::duration::{parse_duration, DurationError, DurationProblem, MAX_DURATION};

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
