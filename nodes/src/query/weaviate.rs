//! Objects of a Weaviate collection (the store VectorWave keeps execution
//! logs in), through Weaviate's REST API: the collection's properties from
//! `GET /v1/schema/{class}` and its object count (the fingerprint) from a
//! GraphQL `Aggregate` when the spec is compiled; the objects, with their
//! vectors, from `GET /v1/objects?class=…&include=vector` page by page
//! with cursor pagination (`after` the last id) when it runs.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{json, Value};

use flow_engine::cache::{hash_json, ContentHash};
use flow_engine::{Fields, NodeError, Record, SourceStage};

use super::{blocking, Problem, WeaviateSource};

const TIMEOUT: Duration = Duration::from_secs(60);

/// What compiling the spec learns.
pub struct Inspected {
    pub properties: BTreeSet<String>,
    pub count: u64,
}

impl Inspected {
    pub fn fingerprint(&self) -> ContentHash {
        hash_json(&json!({"count": self.count}))
    }
}

/// The API key from `api_key_env`, when the source names one.
pub fn api_key(source: &WeaviateSource) -> Result<Option<String>, Problem> {
    let Some(var) = &source.api_key_env else { return Ok(None) };
    match std::env::var(var) {
        Ok(k) if !k.trim().is_empty() => Ok(Some(k)),
        _ => Err(Problem {
            field: "api_key_env",
            message: format!("the environment variable `{var}` (the Weaviate API key) is not set"),
            hint: format!("export {var}=..., or remove `api_key_env` for a server without authentication"),
        }),
    }
}

/// Checks the URL: http(s), with no credentials in it.
pub fn base_url(source: &WeaviateSource) -> Result<String, Problem> {
    let problem = |message: String, hint: &str| Problem { field: "url", message, hint: hint.into() };
    let url = source.url.trim_end_matches('/');
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return Err(problem(format!("`{}` is not an http(s) URL", source.url), "e.g. `url: http://localhost:8080`"));
    };
    if rest.split('/').next().is_some_and(|host| host.contains('@')) {
        return Err(problem(
            "the Weaviate URL holds credentials".into(),
            "put the API key in an environment variable and name it in `api_key_env`",
        ));
    }
    Ok(url.to_string())
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Api {
    fn new(base: String, key: Option<String>) -> Result<Self, Problem> {
        let http = reqwest::Client::builder().timeout(TIMEOUT).build().map_err(|e| Problem {
            field: "url",
            message: format!("cannot make an HTTP client: {e}"),
            hint: String::new(),
        })?;
        Ok(Self { http, base, key })
    }

    /// A JSON answer from `GET path` (or `POST` with `body`), or what the
    /// server said was wrong.
    async fn call(&self, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut req = match body {
            Some(b) => self.http.post(&url).header("content-type", "application/json").body(b.to_string()),
            None => self.http.get(&url),
        };
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.map_err(|e| format!("cannot reach Weaviate at {}: {}", self.base, chain(&e)))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| format!("reading Weaviate's answer: {}", chain(&e)))?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let said = v["error"][0]["message"].as_str().or(v["message"].as_str()).map(str::to_string);
            return Err(format!(
                "Weaviate answered {status} to {path}: {}",
                said.unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned())
            ));
        }
        if let Some(e) = v["errors"][0]["message"].as_str() {
            return Err(format!("Weaviate: {e}"));
        }
        Ok(v)
    }

    async fn count(&self, class: &str) -> Result<u64, String> {
        let q = json!({"query": format!("{{ Aggregate {{ {class} {{ meta {{ count }} }} }} }}")});
        let v = self.call("/v1/graphql", Some(&q)).await?;
        v["data"]["Aggregate"][class][0]["meta"]["count"]
            .as_u64()
            .ok_or_else(|| format!("Weaviate's Aggregate answer has no count for `{class}`"))
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let said = s.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        source = s.source();
    }
    text
}

/// The collection's properties and object count.
pub fn inspect(source: &WeaviateSource) -> Result<Inspected, Problem> {
    let api = Api::new(base_url(source)?, api_key(source)?)?;
    blocking(async {
        let class = &source.class;
        let problem = |field, message| Problem { field, message, hint: String::new() };
        let schema = api.call(&format!("/v1/schema/{class}"), None).await.map_err(|e| Problem {
            field: "class",
            message: e,
            hint: "the collection's name as Weaviate has it (capitalized, e.g. `ExecutionLog`)".into(),
        })?;
        let properties: BTreeSet<String> = schema["properties"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect();
        let count = api.count(class).await.map_err(|e| problem("class", e))?;
        if let Some(wanted) = &source.properties {
            if let Some(p) = wanted.iter().find(|p| !properties.contains(*p)) {
                let hint = match flow_engine::diag::did_you_mean(p, properties.iter().map(String::as_str)) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!("`{class}` has: {}", properties.iter().cloned().collect::<Vec<_>>().join(", ")),
                };
                return Err(Problem { field: "properties", message: format!("`{class}` has no property `{p}`"), hint });
            }
        }
        Ok(Inspected { properties, count })
    })
}

/// The objects, a page at a time.
pub struct Objects {
    source: WeaviateSource,
    expect: Option<ContentHash>,
    id_field: String,
    left: u64,
    limited: bool,
    api: Option<Api>,
    after: Option<String>,
    read: u64,
    count: u64,
    done: bool,
}

impl Objects {
    pub fn new(source: WeaviateSource, expect: Option<ContentHash>, id_field: String, limit: Option<u64>) -> Self {
        Self {
            source,
            expect,
            id_field,
            left: limit.unwrap_or(u64::MAX),
            limited: limit.is_some(),
            api: None,
            after: None,
            read: 0,
            count: 0,
            done: false,
        }
    }

    fn record(&self, object: &Value) -> Result<Fields, NodeError> {
        let props = object["properties"].as_object().cloned().unwrap_or_default();
        let mut fields: Fields = match &self.source.properties {
            Some(wanted) => props.into_iter().filter(|(k, _)| wanted.contains(k)).collect(),
            None => props,
        };
        let vector = match &self.source.vector_name {
            Some(name) => &object["vectors"][name],
            None => &object["vector"],
        };
        if !vector.is_null() {
            fields.insert(self.source.vector_field.clone(), vector.clone());
        }
        let id = match fields.get(&self.id_field) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => {
                object["id"].as_str().map(str::to_string).unwrap_or_else(|| hash_json(&fields).hex()[..16].to_string())
            }
            Some(other) => other.to_string(),
        };
        fields.insert("id".into(), Value::String(id));
        Ok(fields)
    }
}

impl SourceStage for Objects {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<Record>>, NodeError>> {
        Box::pin(async move {
            if self.done || self.left == 0 {
                return Ok(None);
            }
            let fail = |p: Problem| NodeError::new(format!("{}; {}", p.message, p.hint));
            if self.api.is_none() {
                let api = Api::new(base_url(&self.source).map_err(fail)?, api_key(&self.source).map_err(fail)?)
                    .map_err(fail)?;
                self.count = api.count(&self.source.class).await.map_err(NodeError::new)?;
                if self.expect.is_some_and(|e| e != hash_json(&json!({"count": self.count}))) {
                    return Err(NodeError::new(
                        "the collection changed since the spec was compiled (its object count differs); run again",
                    ));
                }
                self.api = Some(api);
            }
            let api = self.api.as_ref().expect("set above");
            let page = u64::from(self.source.page).min(self.left);
            let mut path = format!("/v1/objects?class={}&limit={page}&include=vector", self.source.class);
            if let Some(after) = &self.after {
                path.push_str(&format!("&after={after}"));
            }
            let v = api.call(&path, None).await.map_err(NodeError::new)?;
            let objects = v["objects"].as_array().cloned().unwrap_or_default();
            if objects.is_empty() {
                self.done = true;
                if !self.limited && self.read != self.count {
                    return Err(NodeError::new(format!(
                        "the collection changed while it was read ({} objects read, {} counted first); run again",
                        self.read, self.count
                    )));
                }
                return Ok(None);
            }
            self.after = objects.last().and_then(|o| o["id"].as_str()).map(str::to_string);
            if self.after.is_none() {
                return Err(NodeError::new("Weaviate sent an object without an `id`"));
            }
            self.read += objects.len() as u64;
            self.left = self.left.saturating_sub(objects.len() as u64);
            objects.iter().map(|o| self.record(o).map(std::sync::Arc::new)).collect::<Result<Vec<_>, _>>().map(Some)
        })
    }
}
