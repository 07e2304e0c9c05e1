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

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use serde_yaml::{Mapping, Value as Yaml};

use super::{yaml_brief, Seg, YamlPath};
use crate::diag::suggest;

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

/// Reading `backends:` and `prices:`, and keeping keys out of specs.
impl super::Parser<'_> {
    pub(super) fn backends(
        &mut self,
        value: Option<&Yaml>,
        params: &BTreeMap<String, serde_json::Value>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> BTreeMap<String, BackendSpec> {
        let at = YamlPath::root().key("backends");
        let mut out = BTreeMap::new();
        let Some(map) = self.section(value, &at, "backend name to backend", "write `backends: {bot: {provider: sim}}`")
        else {
            return out;
        };
        for (k, v) in map {
            let name = yaml_brief(k);
            let path = at.key(name.clone());
            let Some(body) = v.as_mapping() else {
                self.diags.push(
                    self.file
                        .at_value(&path, format!("backend `{name}` must be a mapping"))
                        .hint("write `provider: openai` (or `sim`), `model:` and the other fields under the name"),
                );
                continue;
            };
            // Secrets are reported, then left out so the rest is still checked.
            let has_secrets = !self.no_literal_secrets(body, &path, &name);
            let mut body = body.clone();
            body.retain(|k, _| !SECRET_FIELDS.contains(&yaml_brief(k).as_str()));
            let errors_before = self.diags.len();
            let body = super::app::defer_header_env(body);
            let resolved = self.interpolate(&Yaml::Mapping(body), &path, params, env);
            if self.diags.len() > errors_before {
                continue;
            }
            match serde_path_to_error::deserialize::<_, BackendSpec>(resolved) {
                Ok(_) if has_secrets => {}
                // `api_key_env: ${env.X}` or `--set` may resolve to the key itself.
                Ok(spec) if spec.api_key_env.as_deref().is_some_and(looks_like_secret) => {
                    let d = self
                        .file
                        .at_value(&path.key("api_key_env"), format!("`api_key_env` of backend `{name}` resolves to something that is not the name of an environment variable (it looks like a key)"))
                        .hint("write the variable's name itself: `api_key_env: OPENAI_API_KEY`")
                        .redacted();
                    self.diags.push(d);
                }
                Ok(spec) if spec.base_url.as_deref().and_then(super::url::userinfo).is_some() => {
                    let d = self
                        .file
                        .at_value(&path.key("base_url"), format!("`base_url` of backend `{name}` holds credentials (`user:...@`)"))
                        .hint("keep keys out of URLs: export the key and name it with `api_key_env:` (and `api_key_header:` for a header other than `Authorization`)")
                        .redacted();
                    self.diags.push(d);
                }
                Ok(spec) if spec.params.get("stream").is_some_and(|s| s != &Value::Bool(false)) => {
                    let d = self
                        .file
                        .at_key(&path.key("params").key("stream"), format!("backend `{name}`: flow reads whole answers, not streams"))
                        .hint("drop `stream` from `params`: a streamed answer is not JSON, and every call would fail and be retried");
                    self.diags.push(d);
                }
                Ok(spec) if !spec.duration_problems().is_empty() => {
                    for p in spec.duration_problems() {
                        let at = p.field.iter().fold(path.clone(), |at, k| at.key(*k));
                        self.diags
                            .push(self.file.at_value(&at, format!("backend `{name}`: {}", p.message)).hint(p.hint));
                    }
                }
                Ok(mut spec) => {
                    let app_ok = self.app_backend(&name, &path, &mut spec);
                    if spec.provider.needs_model() && spec.model.is_none() {
                        let hint = match spec.provider {
                            Provider::Anthropic => "add `model: claude-3-5-haiku-latest` (or another Claude model)",
                            Provider::Azure => "add `model:` (the model the deployment serves, for prices) and `deployment:` (its name; default: the model)",
                            _ => "add `model: gpt-4o-mini` (or the model your server serves)",
                        };
                        self.diags.push(
                            self.file
                                .at_key(&path.key("provider"), format!("backend `{name}` names no `model`"))
                                .hint(hint),
                        );
                        continue;
                    }
                    if spec.provider == Provider::Azure && spec.base_url.is_none() {
                        self.diags.push(
                            self.file
                                .at_key(&path.key("provider"), format!("backend `{name}` (azure) names no `base_url`"))
                                .hint(
                                    "add `base_url: https://YOUR-RESOURCE.openai.azure.com` (the resource's endpoint)",
                                ),
                        );
                        continue;
                    }
                    let only = |field: &str, set: bool, provider: Provider| {
                        (set && spec.provider != provider).then(|| (field.to_string(), provider.name()))
                    };
                    let misplaced = [
                        only("deployment", spec.deployment.is_some(), Provider::Azure),
                        only("api_version", spec.api_version.is_some(), Provider::Azure),
                        only("prompt_cache", spec.prompt_cache, Provider::Anthropic),
                        only("model_dir", spec.model_dir.is_some(), Provider::Local),
                        only("batch_size", spec.batch_size.is_some(), Provider::Local),
                        only("url", spec.url.is_some(), Provider::Http),
                        only("method", spec.method.is_some(), Provider::Http),
                        only("body", spec.body.is_some(), Provider::Http),
                        only("output", spec.output.is_some(), Provider::Http),
                        only("usage", spec.usage.is_some(), Provider::Http),
                        only("cost", spec.cost.is_some(), Provider::Http),
                        only("retry_on", spec.retry_on.is_some(), Provider::Http),
                        only("command", spec.command.is_some(), Provider::Exec),
                    ];
                    let mut bad = false;
                    for (field, provider) in misplaced.into_iter().flatten() {
                        bad = true;
                        self.diags.push(
                            self.file
                                .at_key(
                                    &path.key(field.clone()),
                                    format!(
                                        "backend `{name}`: `{field}` is for `provider: {provider}`, not `{}`",
                                        spec.provider.name()
                                    ),
                                )
                                .hint(format!("drop `{field}`, or set `provider: {provider}`")),
                        );
                    }
                    if spec.batch.is_some()
                        && !matches!(spec.provider, Provider::Openai | Provider::Anthropic | Provider::Sim)
                    {
                        bad = true;
                        self.diags.push(
                            self.file
                                .at_key(&path.key("batch"), format!("backend `{name}`: `batch` is for `provider: openai`, `anthropic` or `sim`, not `{}`", spec.provider.name()))
                                .hint("drop `batch`: only OpenAI's Batch API and Anthropic's Message Batches are supported"),
                        );
                    }
                    if !bad && spec.provider == Provider::Local {
                        bad = !self.local_model(&mut spec, &path, &name);
                    }
                    if !bad && app_ok {
                        out.insert(name, spec);
                    }
                }
                Err(e) => self.field_error(&path, &format!("backend `{name}`"), e.path(), &e.inner().to_string()),
            }
        }
        out
    }

    /// Checks a `local` backend's `model_dir` and hashes its files into
    /// `spec` (see [`super::local_model`]); false when reported.
    fn local_model(&mut self, spec: &mut BackendSpec, path: &YamlPath, name: &str) -> bool {
        let fetch = super::local_model::FETCH_HINT;
        let Some(written) = spec.model_dir.clone() else {
            let d = self
                .file
                .at_key(&path.key("provider"), format!("backend `{name}` (local) names no `model_dir`"))
                .hint(format!("add `model_dir: ../target/models/all-MiniLM-L6-v2`: {fetch}"));
            self.diags.push(d);
            return false;
        };
        let remote_only = [
            ("base_url", spec.base_url.is_some()),
            ("api_key_env", spec.api_key_env.is_some()),
            ("json_schema", spec.json_schema),
            ("send_key_anywhere", spec.send_key_anywhere),
        ];
        if let Some((field, _)) = remote_only.into_iter().find(|(_, set)| *set) {
            let d = self
                .file
                .at_key(
                    &path.key(field),
                    format!("backend `{name}`: `{field}` is for a backend reached over HTTP, not `provider: local`"),
                )
                .hint(format!("drop `{field}`: a local model is read from `model_dir`"));
            self.diags.push(d);
            return false;
        }
        if spec.batch_size == Some(0) {
            let d = self
                .file
                .at_value(&path.key("batch_size"), format!("backend `{name}`: `batch_size` must be at least 1"));
            self.diags.push(d.hint("write `batch_size: 64` (the default), or leave it out"));
            return false;
        }
        match super::local_model::ModelFiles::check(&self.file.resolve(&written)) {
            Ok(files) => {
                spec.model_files = Some(files);
                true
            }
            Err(e) => {
                let d = self.file.at_value(&path.key("model_dir"), format!("backend `{name}`: {e}"));
                let hint = format!("paths resolve against the spec's folder; {fetch}");
                self.diags.push(d.hint(hint));
                false
            }
        }
    }

    /// Rejects a key written into the spec itself: specs are committed, keys
    /// must not be. The line shown is redacted.
    fn no_literal_secrets(&mut self, body: &Mapping, path: &YamlPath, name: &str) -> bool {
        let before = self.diags.len();
        let hint = "keep keys out of specs: export the key in an environment variable and name it with `api_key_env: OPENAI_API_KEY`";
        for (key, value) in body {
            let k = yaml_brief(key);
            if SECRET_FIELDS.contains(&k.as_str()) {
                self.secret(value);
                let d = self
                    .file
                    .at_key(
                        &path.key(k.clone()),
                        format!("backend `{name}` has a literal `{k}`; flow does not read keys from specs"),
                    )
                    .hint(hint)
                    .redacted();
                self.diags.push(d);
            }
        }
        if let Some(Yaml::String(s)) = body.get("api_key_env") {
            if looks_like_secret(s) && !s.starts_with("${") {
                self.secret(&Yaml::String(s.clone()));
                let d = self
                    .file
                    .at_value(&path.key("api_key_env"), format!("`api_key_env` of backend `{name}` looks like a key, not the name of an environment variable"))
                    .hint("write the variable's name (`api_key_env: OPENAI_API_KEY`) and export the key under that name")
                    .redacted();
                self.diags.push(d);
            }
        }
        if let Some(Yaml::Mapping(headers)) = body.get("headers") {
            for (h, value) in headers {
                let h = yaml_brief(h);
                let shaped_like_a_key = value.as_str().is_some_and(has_key_prefix);
                if (is_credential_header(&h) || shaped_like_a_key) && !super::app::reads_env(body, value) {
                    self.secret(value);
                    let d = self
                        .file
                        .at_key(&path.key("headers").key(h.clone()), format!("header `{h}` of backend `{name}` would put a key in the spec"))
                        .hint("name the key's environment variable with `api_key_env:`; for a header other than `Authorization: Bearer`, add `api_key_header: api-key`")
                        .redacted();
                    self.diags.push(d);
                }
            }
        }
        self.diags.len() == before
    }

    /// Remembers a secret's text, to mask it in every line shown.
    fn secret(&mut self, value: &Yaml) {
        if let Yaml::String(s) = value {
            let s = s.trim();
            // Masking a tiny string would garble the lines shown.
            if s.len() >= 4 && !s.starts_with("${") {
                self.secrets.push(s.to_string());
            }
        }
    }

    /// A top-level section that must be a mapping (`backends:`, `prices:`);
    /// `None` when it is absent, or not a mapping (reported).
    fn section<'v>(&mut self, value: Option<&'v Yaml>, at: &YamlPath, of: &str, hint: &str) -> Option<&'v Mapping> {
        match value {
            None | Some(Yaml::Null) => None,
            Some(Yaml::Mapping(m)) => Some(m),
            Some(_) => {
                let name = at.to_string();
                self.diags.push(self.file.at_value(at, format!("`{name}` must be a mapping from {of}")).hint(hint));
                None
            }
        }
    }

    pub(super) fn prices(&mut self, value: Option<&Yaml>) -> BTreeMap<String, Price> {
        let at = YamlPath::root().key("prices");
        let mut out = BTreeMap::new();
        let hint = "write `prices: {my-model: {input: 0.15, output: 0.60}}` (USD per million tokens)";
        let Some(map) = self.section(value, &at, "model to price", hint) else {
            return out;
        };
        for (k, v) in map {
            let model = yaml_brief(k);
            let path = at.key(model.clone());
            match serde_path_to_error::deserialize::<_, Price>(v.clone()) {
                Ok(p) if p.input >= 0.0 && p.output >= 0.0 => {
                    out.insert(model, p);
                }
                Ok(_) => self.diags.push(self.file.at_value(&path, format!("price of `{model}` is negative"))),
                Err(e) => self.field_error(&path, &format!("price of `{model}`"), e.path(), &e.inner().to_string()),
            }
        }
        out
    }

    /// A serde error inside a section (`backends.bot`), located, with a
    /// did-you-mean for unknown fields and values.
    fn field_error(&mut self, base: &YamlPath, what: &str, at: &serde_path_to_error::Path, message: &str) {
        let path = base.join_serde(at);
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let allowed: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            let key_path =
                if path.0.last() == Some(&Seg::Key(field.to_string())) { path.clone() } else { path.key(field) };
            let d = self.file.at_key(&key_path, format!("unknown field `{field}` in {what}")).hint(suggest(
                field,
                allowed.iter().copied(),
                "a field",
            ));
            self.diags.push(d);
        } else if let Some(rest) = message.strip_prefix("unknown variant `") {
            let (value, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let allowed: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            let d = self.file.at_value(&path, format!("unknown value `{value}` in {what}")).hint(suggest(
                value,
                allowed.iter().copied(),
                "the value",
            ));
            self.diags.push(d);
        } else if message.contains("missing field") {
            self.diags.push(self.file.at_key(&path, format!("invalid {what}: {message}")));
        } else {
            let field = YamlPath(path.0[base.0.len().min(path.0.len())..].to_vec());
            self.diags.push(self.file.at_value(&path, format!("invalid `{field}` in {what}: {message}")));
        }
    }
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
