//! `provider: azure`: Azure OpenAI. The requests and answers are OpenAI's
//! (sent by the [`super::openai`] client); what differs is where they go
//! and how the key travels:
//!
//! - deployment style (the default): `{base_url}/openai/deployments/{deployment}/chat/completions?api-version={api_version}`;
//!   files and fine-tuning jobs at `{base_url}/openai/{path}?api-version=...`;
//! - v1 style (`api_version: v1`, Azure's OpenAI-compatible "v1 API"):
//!   `{base_url}/openai/v1/{path}`, the deployment named as the request's
//!   `model`, no version parameter.
//!
//! The key goes in the `api-key` header unless `api_key_header:
//! Authorization` asks for a bearer token (a Microsoft Entra ID token from
//! the environment). `model` names the model deployed, for prices.

use flow_engine::spec::url;
use flow_engine::BackendSpec;

use super::Endpoint;

/// The header the key goes in when `api_key_header` names none.
pub const KEY_HEADER: &str = "api-key";

/// Where an Azure backend's requests go.
#[derive(Debug, Clone)]
pub struct Routes {
    /// `{base_url}/openai`, or `{base_url}/openai/v1`.
    api: String,
    /// Chat and embeddings: under the deployment, or `api` in v1 style.
    deployment: String,
    /// `?api-version=...`, or nothing in v1 style.
    query: String,
}

impl Routes {
    pub fn new(spec: &BackendSpec) -> Self {
        let base = spec.base_url().trim_end_matches('/');
        // A base URL given with its `/openai` already is taken as is.
        let base = base.strip_suffix("/openai").unwrap_or(base);
        if spec.api_version() == "v1" {
            let api = format!("{base}/openai/v1");
            Self { deployment: api.clone(), api, query: String::new() }
        } else {
            let deployment = format!("{base}/openai/deployments/{}", encode(spec.request_model()));
            let query = format!("?api-version={}", encode(spec.api_version()));
            Self { api: format!("{base}/openai"), deployment, query }
        }
    }

    /// The URL of a chat or embeddings call.
    pub fn endpoint(&self, e: Endpoint) -> String {
        format!("{}{}", url::join(&self.deployment, e.path()), self.query)
    }

    /// The URL of any other path (`files`, `fine_tuning/jobs/ID`).
    pub fn path(&self, path: &str) -> String {
        format!("{}{}", url::join(&self.api, path), self.query)
    }
}

/// A path segment or query value, percent-encoded where it must be.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(extra: &str) -> Routes {
        let spec: BackendSpec = serde_yaml::from_str(&format!(
            "{{provider: azure, base_url: 'https://r.openai.azure.com/', model: gpt-4o{extra}}}"
        ))
        .unwrap();
        Routes::new(&spec)
    }

    #[test]
    fn deployment_style_urls_carry_the_api_version() {
        let r = routes(", deployment: prod chat");
        assert_eq!(
            r.endpoint(Endpoint::Chat),
            "https://r.openai.azure.com/openai/deployments/prod%20chat/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(r.path("files"), "https://r.openai.azure.com/openai/files?api-version=2024-10-21");
        let r = routes(", api_version: 2025-01-01-preview");
        assert_eq!(
            r.endpoint(Endpoint::Embeddings),
            "https://r.openai.azure.com/openai/deployments/gpt-4o/embeddings?api-version=2025-01-01-preview"
        );
    }

    #[test]
    fn v1_style_has_no_version_and_no_deployment_path() {
        let r = routes(", api_version: v1, deployment: prod");
        assert_eq!(r.endpoint(Endpoint::Chat), "https://r.openai.azure.com/openai/v1/chat/completions");
        assert_eq!(r.path("fine_tuning/jobs"), "https://r.openai.azure.com/openai/v1/fine_tuning/jobs");
    }
}
