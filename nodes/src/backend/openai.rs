//! `provider: openai`: any OpenAI-compatible HTTP API, over reqwest with
//! rustls. The key travels only in a header marked sensitive (so no debug
//! output shows it); it is never part of a memo key, a node key or a file.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;

use flow_engine::BackendSpec;

use super::{CallError, Endpoint};

pub struct Client {
    http: reqwest::Client,
    base_url: String,
}

impl Client {
    pub fn new(spec: &BackendSpec, key: Option<String>) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        for (k, v) in &spec.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header `{k}`: {e}"))?;
            let value = HeaderValue::from_str(v).map_err(|e| format!("header `{k}`: {e}"))?;
            headers.insert(name, value);
        }
        if let Some(key) = key {
            let (name, text) = match spec.api_key_header.as_deref() {
                None => (AUTHORIZATION, format!("Bearer {key}")),
                Some(h) if h.eq_ignore_ascii_case("authorization") => (AUTHORIZATION, format!("Bearer {key}")),
                Some(h) => {
                    (HeaderName::from_bytes(h.as_bytes()).map_err(|e| format!("api_key_header `{h}`: {e}"))?, key)
                }
            };
            let mut value =
                HeaderValue::from_str(&text).map_err(|_| "the API key holds characters a header cannot".to_string())?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(spec.timeout())
            .connect_timeout(spec.timeout().min(Duration::from_secs(10)))
            .pool_max_idle_per_host(spec.max_concurrency())
            .user_agent(concat!("flow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { http, base_url: spec.base_url().to_string() })
    }

    /// One attempt.
    pub async fn send(&self, endpoint: Endpoint, body: &Value) -> Result<Value, CallError> {
        let url = format!("{}/{}", self.base_url, endpoint.path());
        let bytes = serde_json::to_vec(body).expect("a request serializes");
        let response =
            self.http.post(&url).header(CONTENT_TYPE, "application/json").body(bytes).send().await.map_err(|e| {
                CallError {
                    message: format!("POST {url}: {}", error_chain(&e)),
                    status: None,
                    retryable: e.is_timeout() || e.is_connect() || e.is_request(),
                    retry_after: None,
                }
            })?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = response.bytes().await.map_err(|e| CallError {
            message: format!("POST {url}: reading the response: {}", error_chain(&e)),
            status: Some(status.as_u16()),
            retryable: true,
            retry_after,
        })?;
        if status.is_success() {
            return serde_json::from_slice(&text).map_err(|e| CallError {
                message: format!("POST {url}: the response is not JSON ({e})"),
                status: Some(status.as_u16()),
                retryable: true,
                retry_after: None,
            });
        }
        let code = status.as_u16();
        let detail = serde_json::from_slice::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().or(v["message"].as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&text).chars().take(300).collect());
        Err(CallError {
            message: format!("HTTP {code} from POST {url}: {}", detail.trim()),
            status: Some(code),
            retryable: code == 408 || code == 409 || code == 429 || status.is_server_error(),
            retry_after,
        })
    }
}

/// `Retry-After` in seconds (or OpenAI's `retry-after-ms`). An HTTP date is
/// left to the backoff.
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = h.get("retry-after-ms").and_then(|v| v.to_str().ok()).and_then(|s| s.trim().parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    h.get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite())
        .map(|s| Duration::from_secs_f64(s.max(0.0)))
}

/// reqwest's message and its causes, on one line ("error sending request:
/// connection refused").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_retry_after() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}
