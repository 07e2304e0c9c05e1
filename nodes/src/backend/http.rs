//! `provider: http`: the user's application behind any JSON HTTP endpoint.
//! The request is the rendered `body:` template ([`super::app::body`]) sent
//! with `method` to `url` (a `GET` puts the body's fields in the query);
//! the answer is read at the `output:`/`usage:`/`cost:` paths. It goes over
//! the [`super::openai`] client (timeouts, the response size cap, error
//! messages without keys in URLs); the statuses retried are `retry_on`'s
//! when the spec lists them. Header values that read `${env.X}` are filled
//! here, from the environment, and marked sensitive in the client.

use std::collections::BTreeMap;

use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use flow_engine::spec::app::{resolve_header, HttpMethod, MissingEnv};
use flow_engine::BackendSpec;

use super::app::Reading;
use super::openai::{self, ClientError};
use super::CallError;

/// Why an `http` backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A header reads a variable the environment lacks.
    #[error("header `{header}`: {source}")]
    Env { header: String, source: MissingEnv },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("`url` `{0}` is not a URL")]
    Url(String),
}

/// The headers of `spec` with their `${env.X}` filled from `env`.
pub fn headers(
    spec: &BackendSpec,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, HttpError> {
    spec.headers
        .iter()
        .map(|(k, v)| {
            let v = resolve_header(v, env).map_err(|source| HttpError::Env { header: k.clone(), source })?;
            Ok((k.clone(), v))
        })
        .collect()
}

pub struct Client {
    inner: openai::Client,
    url: reqwest::Url,
    method: HttpMethod,
    retry_on: Option<Vec<u16>>,
    reading: Reading,
    model: String,
}

impl Client {
    pub fn new(
        spec: &BackendSpec,
        key: Option<String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, HttpError> {
        let mut resolved = spec.clone();
        resolved.headers = headers(spec, env)?;
        let inner = openai::Client::new(&resolved, key)?;
        let url = reqwest::Url::parse(spec.base_url()).map_err(|_| HttpError::Url(spec.base_url().to_string()))?;
        Ok(Self {
            inner,
            url,
            method: spec.method.unwrap_or(HttpMethod::Post),
            retry_on: spec.retry_on.clone(),
            reading: Reading::of_http(spec),
            model: spec.model().to_string(),
        })
    }

    /// One attempt: the rendered body out, the answer in the chat shape.
    pub async fn send(&self, body: &Value) -> Result<Value, CallError> {
        let http = self.inner.http();
        let mut url = self.url.clone();
        let request = match self.method {
            HttpMethod::Get => {
                if let Value::Object(fields) = body {
                    let mut q = url.query_pairs_mut();
                    for (k, v) in fields {
                        q.append_pair(k, &v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
                    }
                }
                http.get(url.clone())
            }
            m => {
                let method = reqwest::Method::from_bytes(m.name().as_bytes()).expect("an HTTP method");
                let bytes = serde_json::to_vec(body).expect("a request serializes");
                http.request(method, url.clone()).header(CONTENT_TYPE, "application/json").body(bytes)
            }
        };
        let answer = self.inner.execute(self.method.name(), url.as_str(), request).await.map_err(|mut e| {
            if let (Some(status), Some(listed)) = (e.status, &self.retry_on) {
                if !(200..300).contains(&status) {
                    e.retryable = listed.contains(&status);
                }
            }
            e
        })?;
        self.reading.normalize(&answer, &self.model)
    }
}
