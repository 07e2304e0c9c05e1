//! `provider: openai`: any OpenAI-compatible HTTP API, over reqwest with
//! rustls; also the HTTP client of `anthropic` and `azure`, which differ in
//! their routes and key header (see those modules). The key travels only in a header marked sensitive (so no debug
//! output shows it); it is never part of a memo key, a node key or a file.

use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, InvalidHeaderName, InvalidHeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER,
};
use reqwest::RequestBuilder;
use serde_json::Value;

use flow_engine::{BackendSpec, Provider};

use super::{anthropic, azure, CallError, Endpoint, Upload};

/// A backend's fields that cannot make an HTTP client: a header that is not
/// one, or a TLS setup reqwest refuses.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A name under `headers:` that is not a header name.
    #[error("header `{header}`: {source}")]
    HeaderName { header: String, source: InvalidHeaderName },
    /// A value under `headers:` that a header cannot hold.
    #[error("header `{header}`: {source}")]
    HeaderValue { header: String, source: InvalidHeaderValue },
    /// `api_key_header` is not a header name.
    #[error("api_key_header `{header}`: {source}")]
    KeyHeader { header: String, source: InvalidHeaderName },
    /// The key itself cannot be sent in a header; the message leaves the
    /// key out.
    #[error("the API key holds characters a header cannot")]
    KeyValue(#[source] InvalidHeaderValue),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

pub struct Client {
    http: reqwest::Client,
    base_url: String,
    /// An Azure backend's routes (deployment paths, `api-version`).
    azure: Option<azure::Routes>,
    /// The chat and embeddings URLs (as joined, for messages), parsed
    /// once rather than per call.
    endpoints: [Option<(reqwest::Url, String)>; 2],
    /// The largest response body read.
    max_body: u64,
}

impl Client {
    pub fn new(spec: &BackendSpec, key: Option<String>) -> Result<Self, ClientError> {
        let mut headers = HeaderMap::new();
        for (k, v) in &spec.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|source| ClientError::HeaderName { header: k.clone(), source })?;
            let mut value =
                HeaderValue::from_str(v).map_err(|source| ClientError::HeaderValue { header: k.clone(), source })?;
            // An app's headers may hold what `${env.X}` read: never shown.
            value.set_sensitive(spec.provider == Provider::Http);
            headers.insert(name, value);
        }
        if let Some(key) = key {
            // Anthropic reads `x-api-key`, Azure `api-key`, both the key as
            // is; `api_key_header: Authorization` sends a bearer token.
            let header = spec.api_key_header.as_deref().or(match spec.provider {
                Provider::Anthropic => Some("x-api-key"),
                Provider::Azure => Some(azure::KEY_HEADER),
                _ => None,
            });
            let (name, text) = match header {
                None => (AUTHORIZATION, format!("Bearer {key}")),
                Some(h) if h.eq_ignore_ascii_case("authorization") => (AUTHORIZATION, format!("Bearer {key}")),
                Some(h) => {
                    let name = HeaderName::from_bytes(h.as_bytes())
                        .map_err(|source| ClientError::KeyHeader { header: h.to_string(), source })?;
                    (name, key)
                }
            };
            let mut value = HeaderValue::from_str(&text).map_err(ClientError::KeyValue)?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        if spec.provider == Provider::Anthropic && !headers.contains_key("anthropic-version") {
            headers.insert("anthropic-version", HeaderValue::from_static(anthropic::VERSION));
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(spec.timeout())
            .connect_timeout(spec.timeout().min(Duration::from_secs(10)))
            .pool_max_idle_per_host(spec.max_concurrency())
            .user_agent(concat!("flow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError::Http)?;
        let base_url = spec.base_url().to_string();
        let azure = (spec.provider == Provider::Azure).then(|| azure::Routes::new(spec));
        let parsed = |e: Endpoint| {
            let joined = match (&azure, spec.provider, e) {
                (Some(r), _, _) => r.endpoint(e),
                (None, Provider::Anthropic, Endpoint::Chat) => {
                    flow_engine::spec::url::join(&base_url, anthropic::MESSAGES_PATH)
                }
                _ => flow_engine::spec::url::join(&base_url, e.path()),
            };
            reqwest::Url::parse(&joined).ok().map(|url| (url, joined))
        };
        let endpoints = [parsed(Endpoint::Chat), parsed(Endpoint::Embeddings)];
        Ok(Self { http, base_url, azure, endpoints, max_body: spec.max_response_bytes() })
    }

    /// One attempt.
    pub async fn send(&self, endpoint: Endpoint, body: &Value) -> Result<Value, CallError> {
        let at = match endpoint {
            Endpoint::Chat => &self.endpoints[0],
            Endpoint::Embeddings => &self.endpoints[1],
        };
        let Some((url, joined)) = at else {
            // Not a URL: the request fails with reqwest's message.
            return self.post(endpoint.path(), body).await;
        };
        let bytes = serde_json::to_vec(body).expect("a request serializes");
        let request = self.http.post(url.clone()).header(CONTENT_TYPE, "application/json").body(bytes);
        self.execute("POST", joined, request).await
    }

    /// One attempt at a JSON POST to `path` under the base URL.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        let url = self.url(path);
        let bytes = serde_json::to_vec(body).expect("a request serializes");
        let request = self.http.post(&url).header(CONTENT_TYPE, "application/json").body(bytes);
        self.execute("POST", &url, request).await
    }

    /// One attempt at a `multipart/form-data` upload to `path`.
    pub async fn upload(&self, path: &str, file: &Upload<'_>) -> Result<Value, CallError> {
        let url = self.url(path);
        let (content_type, body) = multipart(file);
        let request = self.http.post(&url).header(CONTENT_TYPE, content_type).body(body);
        self.execute("POST", &url, request).await
    }

    /// One attempt at a GET of `path`.
    pub async fn get(&self, path: &str) -> Result<Value, CallError> {
        let url = self.url(path);
        self.execute("GET", &url, self.http.get(&url)).await
    }

    fn url(&self, path: &str) -> String {
        if let Some(r) = &self.azure {
            return r.path(path);
        }
        flow_engine::spec::url::join(&self.base_url, path)
    }

    /// The HTTP client, with the backend's headers and timeouts (`http`
    /// builds its own requests on it).
    pub(super) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// One attempt at a GET of `path` under the base URL, or of an
    /// absolute URL (a batch's results), its body as it is (JSONL).
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, CallError> {
        let url =
            if path.starts_with("http://") || path.starts_with("https://") { path.to_string() } else { self.url(path) };
        self.execute_bytes("GET", &url, self.http.get(&url)).await
    }

    /// Sends `request` and reads a JSON answer; `method` and `url` are for
    /// messages.
    pub(super) async fn execute(&self, method: &str, url: &str, request: RequestBuilder) -> Result<Value, CallError> {
        let text = self.execute_bytes(method, url, request).await?;
        serde_json::from_slice(&text).map_err(|e| CallError {
            message: format!("{method} {}: the response is not JSON ({e})", flow_engine::spec::url::redact(url)),
            status: Some(200),
            retryable: true,
            retry_after: None,
        })
    }

    /// Sends `request` and reads a successful answer's body.
    async fn execute_bytes(&self, method: &str, url: &str, request: RequestBuilder) -> Result<Vec<u8>, CallError> {
        // Messages (only on failure: nothing per call) show the URL without
        // a key in its query; reqwest's own errors would show it whole.
        let shown = || flow_engine::spec::url::redact(url);
        let response = request.send().await.map_err(|e| {
            let retryable = e.is_timeout() || e.is_connect() || e.is_request();
            CallError {
                message: format!("{method} {}: {}", shown(), error_chain(&e.without_url())),
                status: None,
                retryable,
                retry_after: None,
            }
        })?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = self.read_body(response).await.map_err(|e| match e {
            BodyError::Read(e) => CallError {
                message: format!("{method} {}: reading the response: {}", shown(), error_chain(&e.without_url())),
                status: Some(status.as_u16()),
                retryable: true,
                retry_after,
            },
            BodyError::TooLarge => CallError {
                message: format!(
                    "{method} {}: the response is larger than {} bytes (`max_response_bytes`)",
                    shown(),
                    self.max_body
                ),
                status: Some(status.as_u16()),
                retryable: false,
                retry_after: None,
            },
        })?;
        if status.is_success() {
            return Ok(text);
        }
        let code = status.as_u16();
        let detail = serde_json::from_slice::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().or(v["message"].as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&text).chars().take(300).collect());
        Err(CallError {
            message: format!("HTTP {code} from {method} {}: {}", shown(), detail.trim()),
            status: Some(code),
            // 501 and 505: the server cannot do this at all; asking again
            // changes nothing.
            retryable: code == 408
                || code == 409
                || code == 429
                || (status.is_server_error() && code != 501 && code != 505),
            retry_after,
        })
    }
}

/// Why a response body was not read.
enum BodyError {
    Read(reqwest::Error),
    TooLarge,
}

impl Client {
    /// The body, chunk by chunk, up to `max_body` bytes: a server that sends
    /// (or announces) more gets no further than that into memory.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, BodyError> {
        if response.content_length().is_some_and(|n| n > self.max_body) {
            return Err(BodyError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
            if (body.len() + chunk.len()) as u64 > self.max_body {
                return Err(BodyError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// A `multipart/form-data` body with the `purpose` field and the `file`
/// part, and its content type. Written by hand (a few lines) rather than
/// with reqwest's `multipart` feature: the body is bytes, deterministic for
/// the same file, and any retry sends it again as is. The boundary is
/// derived from the content and checked not to occur in it.
pub fn multipart(file: &Upload<'_>) -> (String, Vec<u8>) {
    let mut salt = 0u32;
    let boundary = loop {
        let mut h = blake3::Hasher::new();
        h.update(file.bytes);
        h.update(&salt.to_le_bytes());
        let b = format!("flow-boundary-{}", &h.finalize().to_hex()[..24]);
        if !file.bytes.windows(b.len()).any(|w| w == b.as_bytes()) {
            break b;
        }
        salt += 1;
    };
    // Quotes and line breaks cannot be in a quoted header parameter.
    let name: String = file.filename.chars().map(|c| if matches!(c, '"' | '\r' | '\n') { '_' } else { c }).collect();
    let mut body = Vec::with_capacity(file.bytes.len() + 512);
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{}\r\n", file.purpose)
            .as_bytes(),
    );
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file.bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The longest wait a server's `Retry-After` is taken at its word for; the
/// backend caps it again by its `retry.max_delay`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The server's wait: OpenAI's `retry-after-ms`, else `Retry-After` in
/// seconds or as an HTTP date. Whatever a hostile or broken server sends
/// (`1e300`, `inf`, `NaN`, a negative number, a date long past) is a wait
/// of at most [`MAX_RETRY_AFTER`], or none: never a panic.
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let header = |name| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let seconds =
        |s: f64| Duration::try_from_secs_f64(s).ok().or((s.is_finite() && s > 0.0).then_some(MAX_RETRY_AFTER));
    let wait = match header("retry-after-ms").and_then(|s| s.parse::<f64>().ok()).filter(|ms| *ms >= 0.0) {
        Some(ms) => seconds(ms / 1000.0),
        None => {
            let text = header(RETRY_AFTER.as_str())?;
            match text.parse::<f64>() {
                Ok(s) => Some(s).filter(|s| *s >= 0.0).and_then(seconds),
                Err(_) => {
                    let at = httpdate::parse_http_date(text).ok()?;
                    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
                }
            }
        }
    };
    wait.map(|w| w.min(MAX_RETRY_AFTER))
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

    #[test]
    fn a_hostile_retry_after_is_capped_or_ignored() {
        let wait = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            retry_after(&h)
        };
        assert_eq!(wait("retry-after", "1e300"), Some(MAX_RETRY_AFTER));
        assert_eq!(wait("retry-after", "inf"), None, "not finite: the backoff decides");
        assert_eq!(wait("retry-after", "NaN"), None);
        assert_eq!(wait("retry-after", "-5"), None);
        assert_eq!(wait("retry-after-ms", "inf"), None);
        assert_eq!(wait("retry-after-ms", "1e300"), Some(MAX_RETRY_AFTER));
        assert_eq!(wait("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO), "a date past");
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(90));
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&soon).unwrap());
        let w = retry_after(&h).unwrap();
        assert!(w > Duration::from_secs(85) && w <= Duration::from_secs(90), "{w:?}");
        assert_eq!(wait("retry-after", "soon"), None);
    }

    #[test]
    fn multipart_holds_the_purpose_and_the_file() {
        let file = Upload { filename: "train.jsonl", bytes: b"{\"messages\": []}\n", purpose: "fine-tune" };
        let (content_type, body) = multipart(&file);
        let boundary = content_type.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(text.starts_with(&format!("--{boundary}\r\n")), "{text}");
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")), "{text}");
        assert!(text.contains("name=\"purpose\"\r\n\r\nfine-tune\r\n"), "{text}");
        assert!(text.contains("name=\"file\"; filename=\"train.jsonl\"\r\n"), "{text}");
        assert!(text.contains("\r\n\r\n{\"messages\": []}\n\r\n--"), "{text}");
        // The same file, the same bytes: a retry or a rerun sends it alike.
        assert_eq!(multipart(&file).1, body);
    }
}
