//! Durations in a backend (`timeout`, `retry.*`, `sim.latency`): read from
//! `500ms`, `2m` or a number of seconds, written back as text, and checked
//! for values that read as durations but cannot work.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::backend::BackendSpec;

/// The longest any duration of a backend may be (a day): past it a value
/// is a slip of the keyboard (`max_delay: 5000000000000000000s`), and
/// waiting that long would overflow the clock.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// A duration field of a backend that reads as a duration but cannot work.
#[derive(Debug, Clone, PartialEq)]
pub struct DurationProblem {
    /// Where it is under the backend (`["retry", "max_delay"]`).
    pub field: &'static [&'static str],
    pub message: String,
    pub hint: &'static str,
}

impl BackendSpec {
    /// The durations that parse but cannot work: a zero `timeout` fails
    /// every call; one past [`MAX_DURATION`] is a typo; an `initial_delay`
    /// past `max_delay` never backs off.
    pub fn duration_problems(&self) -> Vec<DurationProblem> {
        let mut out = Vec::new();
        let shown = |d: &Duration| format_duration(d);
        let mut too_long = |field: &'static [&'static str], d: Option<Duration>| {
            if let Some(d) = d.filter(|d| *d > MAX_DURATION) {
                out.push(DurationProblem {
                    field,
                    message: format!("`{}: {}` is longer than a day", field.join("."), shown(&d)),
                    hint: "write a duration of a day or less, e.g. `30s` or `2m`",
                });
            }
        };
        too_long(&["timeout"], self.timeout);
        too_long(&["retry", "initial_delay"], Some(self.retry.initial_delay));
        too_long(&["retry", "max_delay"], Some(self.retry.max_delay));
        too_long(&["sim", "latency"], self.sim.as_ref().and_then(|s| s.latency));
        if self.timeout == Some(Duration::ZERO) {
            out.push(DurationProblem {
                field: &["timeout"],
                message: "`timeout: 0s` would fail every call before it is sent".into(),
                hint: "write how long a request may take, e.g. `timeout: 60s` (the default)",
            });
        }
        if self.retry.initial_delay > self.retry.max_delay && self.retry.max_delay <= MAX_DURATION {
            out.push(DurationProblem {
                field: &["retry", "initial_delay"],
                message: format!(
                    "`retry.initial_delay: {}` is longer than `retry.max_delay: {}`",
                    shown(&self.retry.initial_delay),
                    shown(&self.retry.max_delay)
                ),
                hint: "the first retry waits `initial_delay`, later ones up to `max_delay`: make it the shorter",
            });
        }
        out
    }
}

/// A value of a duration field (`timeout`, `retry.initial_delay`, ...)
/// that is not a duration; serde reports it at the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DurationError {
    /// A number of seconds that is negative or not finite.
    #[error("`{0}` is not a duration")]
    Seconds(serde_json::Number),
    /// Text humantime cannot read.
    #[error("`{text}` is not a duration ({source}); write e.g. `500ms`, `30s` or `2m`")]
    Text { text: String, source: humantime::DurationError },
    /// Neither a number nor text (a list, a mapping, a boolean).
    #[error("`{0}` is not a duration; write e.g. `500ms`, `30s` or `2m`")]
    Other(Value),
}

/// A duration written as `500ms`, `2s`, `1m` or a number of seconds.
pub fn parse_duration(v: &Value) -> Result<Duration, DurationError> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| DurationError::Seconds(n.clone())),
        Value::String(s) => {
            humantime::parse_duration(s.trim()).map_err(|source| DurationError::Text { text: s.clone(), source })
        }
        other => Err(DurationError::Other(other.clone())),
    }
}

fn format_duration(d: &Duration) -> String {
    humantime::format_duration(*d).to_string()
}

pub mod required {
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

pub mod optional {
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
