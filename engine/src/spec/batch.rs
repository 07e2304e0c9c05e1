//! `batch:` on a backend: send its chat calls through the provider's batch
//! API (OpenAI Batch, Anthropic Message Batches) at half the live price,
//! answers within the provider's window (24 h) instead of seconds.
//!
//! Only the configuration lives here; the batcher that collects, submits,
//! polls and resumes is `flow-nodes`' `backend::batch`. Whether a backend
//! batches is not part of its identity: a batch answer is the same model's
//! answer to the same request, so batch and live calls share their memo keys
//! (a batch answer serves a later live call, and the other way round).

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// OpenAI's limit on requests in one batch (Anthropic's is 100,000).
pub const DEFAULT_MAX_REQUESTS: u64 = 50_000;
/// How long a batch may take: the providers' completion window.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(24 * 3600);
/// How often a batch's status is asked for.
pub const DEFAULT_POLL: Duration = Duration::from_secs(30);

/// `batch: true`, or `batch: {max_requests, max_wait, poll}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct BatchSpec {
    /// Requests in one batch at most; default 50,000 (OpenAI's limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u64>,
    /// How long to wait for a batch before giving up on it in this run;
    /// default `24h` (its answers are still collected by a later run).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::duration::optional")]
    #[schemars(with = "Option<String>")]
    pub max_wait: Option<Duration>,
    /// How often to ask for a batch's status; default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::duration::optional")]
    #[schemars(with = "Option<String>")]
    pub poll: Option<Duration>,
}

impl BatchSpec {
    pub fn max_requests(&self) -> usize {
        self.max_requests.unwrap_or(DEFAULT_MAX_REQUESTS).max(1) as usize
    }

    pub fn max_wait(&self) -> Duration {
        self.max_wait.unwrap_or(DEFAULT_MAX_WAIT)
    }

    pub fn poll(&self) -> Duration {
        self.poll.unwrap_or(DEFAULT_POLL)
    }
}

/// `batch:` as written: a boolean or the settings.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // read through `deserialize`; here for the schema
pub(super) enum BatchField {
    On(bool),
    With(BatchSpec),
}

/// `batch: false` (or absent) is `None`, `batch: true` the defaults.
pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BatchSpec>, D::Error> {
    let v = serde_yaml::Value::deserialize(d)?;
    match v {
        serde_yaml::Value::Null | serde_yaml::Value::Bool(false) => Ok(None),
        serde_yaml::Value::Bool(true) => Ok(Some(BatchSpec::default())),
        serde_yaml::Value::Mapping(_) => serde_yaml::from_value(v).map(Some).map_err(serde::de::Error::custom),
        _ => Err(serde::de::Error::custom(
            "`batch` is `true`, `false` or a mapping (`{max_requests: 50000, max_wait: 24h, poll: 30s}`)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::BackendSpec;

    #[test]
    fn batch_reads_a_boolean_or_its_settings() {
        let spec = |y: &str| serde_yaml::from_str::<BackendSpec>(y);
        assert_eq!(spec("{provider: openai, model: m}").unwrap().batch, None);
        assert_eq!(spec("{provider: openai, model: m, batch: false}").unwrap().batch, None);
        let on = spec("{provider: openai, model: m, batch: true}").unwrap().batch.unwrap();
        assert_eq!((on.max_requests(), on.poll()), (50_000, super::DEFAULT_POLL));
        let b = spec("{provider: anthropic, model: m, batch: {max_requests: 10, poll: 2s}}").unwrap().batch.unwrap();
        assert_eq!((b.max_requests(), b.poll().as_secs()), (10, 2));
        assert!(spec("{provider: openai, model: m, batch: {max_request: 10}}").is_err());
        assert!(spec("{provider: openai, model: m, batch: 3}").is_err());
        // Not part of what the answers depend on.
        let live = spec("{provider: openai, model: m}").unwrap();
        let batch = spec("{provider: openai, model: m, batch: true}").unwrap();
        assert_eq!(live.identity(), batch.identity());
    }
}
