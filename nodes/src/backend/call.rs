//! What a call is and what it gives back: the endpoint, the options a node
//! passes, a reply and its usage, a chat answer (text, tool calls, why it
//! stopped, log probabilities), and why a call failed. The pipeline that
//! makes calls is the parent module's.

use std::time::Duration;

use serde_json::{json, Value};

use flow_engine::{BuildCx, Meter};

use super::ToolCall;

/// An API endpoint, as a path under the backend's base URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Embeddings,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat/completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

/// A file to send as `multipart/form-data` (a fine-tuning dataset): the
/// form has a `purpose` field and a `file` part.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    pub filename: &'a str,
    pub bytes: &'a [u8],
    /// The form's `purpose` (`fine-tune` for OpenAI's files API).
    pub purpose: &'a str,
}

/// What one attempt sends: a chat or embeddings call, a JSON POST or a
/// multipart upload at a path under the base URL, or a GET.
#[derive(Debug, Clone, Copy)]
pub(super) enum Request<'a> {
    Endpoint(Endpoint, &'a Value, u32),
    Post(&'a str, &'a Value),
    Upload(&'a str, Upload<'a>),
    Get(&'a str),
}

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    pub message: String,
    /// HTTP status, when the server answered.
    pub status: Option<u16>,
    /// Worth trying again (429, 5xx, timeout, connection).
    pub retryable: bool,
    /// The server's `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl CallError {
    pub fn fatal(message: impl Into<String>) -> Self {
        Self { message: message.into(), status: None, retryable: false, retry_after: None }
    }
}

/// Why a response the server sent with success does not hold what the
/// caller needs (see [`Backend::call_checked`]): a failed call, counted as
/// an error and not memoized, so a later run asks again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unusable {
    /// A chat completion without an answer: a content filter's refusal, a
    /// tool call. `shown` is the start of the body.
    #[error(
        "the response has no message content{}: {shown}",
        .finish_reason.as_ref().map(|r| format!(" (finish_reason: {r})")).unwrap_or_default()
    )]
    NoContent { finish_reason: Option<String>, shown: String },
    /// An embeddings response with another number of vectors than texts sent.
    #[error("expected {expected} embeddings in the response's `data`")]
    Embeddings { expected: usize },
    /// Embeddings of another length than the `dimensions` asked for: the
    /// server ignores the parameter.
    #[error("backend `{backend}` was asked for {asked}-dimensional embeddings and returned {got} dimensions: the server ignores `dimensions`; drop `dimensions`, or use a model that can shorten its vectors")]
    Dimensions { backend: String, asked: u32, got: usize },
    /// A files or jobs answer that names nothing it made.
    #[error("the answer has no `id`: {shown}")]
    NoId { shown: String },
}

/// Per-call options a node passes.
#[derive(Clone, Copy)]
pub struct CallOpts<'a> {
    pub meter: &'a Meter,
    /// Reuse a memoized answer if there is one.
    pub memo_reads: bool,
    /// Which sample (`repeat: n`): each has its own memo key.
    pub sample: u32,
}

impl<'a> CallOpts<'a> {
    pub fn new(cx: &'a BuildCx) -> Self {
        Self { meter: &cx.meter, memo_reads: cx.memo_reads, sample: 0 }
    }
}

/// Token counts a server reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// A successful call.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The response body.
    pub body: Value,
    /// Time the server took (the original call's, for a memo hit).
    pub latency_ms: u64,
    pub memo_hit: bool,
    pub usage: Usage,
    /// The model that answered (the response's, else the request's).
    pub model: String,
    pub cost_usd: Option<f64>,
    /// The server reported more tokens than [`MAX_CALL_TOKENS`]: `usage`
    /// counts none.
    pub implausible_usage: bool,
}

/// More tokens than any model reads or writes in one call: a count above it
/// is a broken server's (`u64::MAX` would bill $13.8 trillion), not summed.
pub const MAX_CALL_TOKENS: u64 = 100_000_000;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// A chat completion's text and accounting.
#[derive(Debug, Clone)]
pub struct ChatReply {
    /// The answer's text (empty when it only calls tools).
    pub text: String,
    /// The tools the answer calls, with their arguments.
    pub tool_calls: Vec<ToolCall>,
    /// Why the model stopped (`stop`, `length`, `tool_calls`), when it says.
    pub finish_reason: Option<String>,
    /// The answer's token log probabilities, when the request asked for
    /// them (`params: {logprobs: true}`) and the server sent them.
    pub logprobs: Option<Logprobs>,
    pub usage: Usage,
    pub model: String,
    pub latency_ms: u64,
    pub cost_usd: Option<f64>,
}

/// What a metric needs of an answer's token log probabilities: how many
/// tokens and their sum (the mean and the perplexity follow).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Logprobs {
    pub tokens: u64,
    pub sum: f64,
}

impl Logprobs {
    /// From a choice's `logprobs` (OpenAI's chat shape, also vLLM's and
    /// llama.cpp's: `{content: [{token, logprob}, ...]}`); none when absent
    /// or when a value is not a log probability. A token the server is
    /// sure of may come a rounding error above 0 (`2e-8`): that is 0.
    pub fn of(v: &Value) -> Option<Self> {
        const ROUNDING: f64 = 1e-4;
        let content = v["content"].as_array()?;
        let mut sum = 0.0;
        for t in content {
            let lp = t["logprob"].as_f64().filter(|x| x.is_finite() && *x <= ROUNDING)?;
            sum += lp.min(0.0);
        }
        Some(Self { tokens: content.len() as u64, sum })
    }

    /// As stored on a record: `{tokens, sum, mean}`.
    pub fn to_json(self) -> Value {
        let mean = if self.tokens == 0 { Value::Null } else { json!(self.sum / self.tokens as f64) };
        json!({"tokens": self.tokens, "sum": self.sum, "mean": mean})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprobs_take_a_rounding_error_above_zero_as_zero() {
        let of = |lps: &[f64]| {
            Logprobs::of(
                &json!({"content": lps.iter().map(|l| json!({"token": "t", "logprob": l})).collect::<Vec<_>>()}),
            )
        };
        assert_eq!(of(&[-0.5, 2e-8, 0.0]).map(|l| (l.tokens, l.sum)), Some((3, -0.5)));
        assert!(of(&[-0.5, 0.3]).is_none(), "a positive log probability is not one");
        assert_eq!(of(&[]).map(|l| l.tokens), Some(0));
    }
}
