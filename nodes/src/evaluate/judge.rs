//! The `judge` metric: an LLM grades a record's field against a rubric,
//! through a named backend, in JSON mode. It answers a score in 0..=1 and a
//! one-sentence reason; the call is memoized like any other.

use std::sync::Arc;

use serde_json::{json, Value};

use flow_engine::template::RenderError;
use flow_engine::{Record, Template};

use super::metric::{Score, ScoreError};
use crate::backend::{Answer, Backend, CallError, CallOpts, MemoFailed, Message};

/// The instructions every judge call starts with.
const SYSTEM: &str = "You are a strict, fair grader. Grade the response against the criteria. \
Reply with only a JSON object: {\"score\": <a number from 0 to 1>, \"reason\": \"<one sentence>\"}.";

/// The line before the graded response (the offline `sim` backend grades by it).
pub const JUDGE_RESPONSE_MARKER: &str = "Response to grade:";

/// How `provider: sim` grades a judge prompt.
pub const SIM_ANSWER: Answer = Answer { marker: JUDGE_RESPONSE_MARKER, answer: sim_grade };

/// Why the judge gave no verdict on a record: nothing to grade, the call
/// failed, or the answer is not the JSON verdict asked for.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The rubric reads a field the record lacks.
    #[error(transparent)]
    Rubric(#[from] RenderError),
    #[error("judge call failed: {0}")]
    Call(#[source] CallError),
    #[error("the judge answered no JSON object: `{shown}`")]
    NoJson { shown: String },
    #[error("the judge's JSON is cut off: `{shown}`")]
    CutOff { shown: String },
    #[error("the judge's JSON is invalid ({source}): `{shown}`")]
    InvalidJson { source: serde_json::Error, shown: String },
    #[error("the judge's answer has no numeric `score`: `{shown}`")]
    NoScore { shown: String },
    #[error("the judge's score {0} is outside 0..=1")]
    OutOfRange(f64),
    /// The verdict stopped at `max_tokens` before its JSON was complete.
    #[error("the judge's JSON was truncated at max_tokens ({max}): `{shown}`; raise the judge backend's `max_tokens`")]
    Truncated { max: String, shown: String },
}

pub struct Judge {
    backend: Arc<Backend>,
    rubric: Template,
    threshold: f64,
}

impl Judge {
    pub fn new(backend: Arc<Backend>, rubric: Template, threshold: f64) -> Self {
        Self { backend, rubric, threshold }
    }

    /// The backend that grades.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// Why the judge's backend sends no more calls (see [`Backend::halted`]).
    pub fn halted(&self) -> Option<MemoFailed> {
        self.backend.halted()
    }

    /// Grades `response`, the field under test of `record`: the verdict,
    /// or why there is none.
    pub async fn grade(&self, record: &Record, response: &str, opts: CallOpts<'_>) -> Result<Score, ScoreError> {
        let messages = messages(&self.rubric, response, record)?;
        let reply =
            self.backend.chat_schema(&messages, "verdict", &verdict_schema(), opts).await.map_err(JudgeError::Call)?;
        let (score, reason) = match parse_verdict(&reply.text) {
            Err(_) if reply.finish_reason.as_deref() == Some("length") => {
                let max = self.backend.spec.max_tokens.map_or("the server's limit".into(), |n| n.to_string());
                return Err(JudgeError::Truncated { max, shown: reply.text.chars().take(120).collect() }.into());
            }
            other => other?,
        };
        Ok(Score { score, pass: score >= self.threshold, reason: Some(reason), value: None })
    }
}

/// The JSON Schema of a verdict, sent with the backend's `json_schema: true`.
pub fn verdict_schema() -> Value {
    serde_json::json!({
        "type": "object",
        "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1}, "reason": {"type": "string"}},
        "required": ["score", "reason"],
    })
}

/// The judge's chat for one record, grading `response`: the same at plan
/// time (to count memo hits) and at run time.
pub fn messages(rubric: &Template, response: &str, record: &Record) -> Result<Vec<Message>, JudgeError> {
    let criteria = rubric.render(record)?;
    let user = format!(
        "Criteria:\n{criteria}\n\n{JUDGE_RESPONSE_MARKER}\n{response}\n\nReply with a JSON object {{\"score\": <0 to 1>, \"reason\": \"...\"}}."
    );
    Ok(vec![Message { role: "system".into(), content: SYSTEM.into() }, Message { role: "user".into(), content: user }])
}

/// `{"score": 0.8, "reason": "..."}`, also inside a Markdown code fence or
/// after some words, as models sometimes write it.
pub fn parse_verdict(text: &str) -> Result<(f64, String), JudgeError> {
    let shown = || text.chars().take(120).collect::<String>();
    let start = text.find('{').ok_or_else(|| JudgeError::NoJson { shown: shown() })?;
    let end = text.rfind('}').filter(|e| *e > start).ok_or_else(|| JudgeError::CutOff { shown: shown() })?;
    let v: Value = serde_json::from_str(&text[start..=end])
        .map_err(|source| JudgeError::InvalidJson { source, shown: shown() })?;
    let score = match &v["score"] {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or_else(|| JudgeError::NoScore { shown: shown() })?;
    if !(0.0..=1.0).contains(&score) {
        return Err(JudgeError::OutOfRange(score));
    }
    let reason = v["reason"].as_str().unwrap_or("").to_string();
    Ok((score, reason))
}

/// Words a sim judge does not count: they say nothing about correctness.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "of", "to", "in", "on", "and", "or", "it", "that", "this", "with", "for",
    "as", "be", "by", "answer", "what", "which", "who", "how", "score", "if", "one", "zero",
];

/// A sim judge: the share of the response's content words that the criteria
/// (rubric, reference) contain. `4` against "the answer is 4" scores 1.
fn sim_grade(criteria: &str, response: &str, _: f64) -> Value {
    let response = response.split("\n\nReply with").next().unwrap_or(response);
    let tokens = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric() && c != '.' && c != '-')
            .map(|t| t.trim_matches(['.', '-']).to_lowercase())
            .filter(|t| !t.is_empty() && !STOPWORDS.contains(&t.as_str()))
            .collect()
    };
    let have = tokens(criteria);
    let words = tokens(response);
    if words.is_empty() {
        return json!({"score": 0.0, "reason": "sim judge: the response is empty"});
    }
    let found = words.iter().filter(|w| have.contains(w)).count();
    let score = (found as f64 / words.len() as f64 * 1000.0).round() / 1000.0;
    json!({"score": score, "reason": format!("sim judge: {found} of {} response words match the criteria", words.len())})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sim_judge_counts_the_response_words_the_criteria_hold() {
        assert_eq!(sim_grade("The right answer is 42.", "\n42\n", 0.0)["score"], 1.0);
        assert_eq!(sim_grade("The right answer is 42.", "41", 0.0)["score"], 0.0);
        assert_eq!(sim_grade("The correct answer is Paris.", "The answer: the capital of France", 0.0)["score"], 0.0);
    }

    #[test]
    fn verdicts_are_parsed_or_explained() {
        assert_eq!(parse_verdict(r#"{"score": 0.5, "reason": "half"}"#).unwrap(), (0.5, "half".into()));
        assert_eq!(parse_verdict("```json\n{\"score\": \"1\", \"reason\": \"ok\"}\n```").unwrap(), (1.0, "ok".into()));
        assert!(parse_verdict("looks good").unwrap_err().to_string().contains("no JSON object"));
        assert!(parse_verdict(r#"{"score": 7}"#).unwrap_err().to_string().contains("outside 0..=1"));
        assert!(parse_verdict(r#"{"grade": 1}"#).unwrap_err().to_string().contains("no numeric `score`"));
    }
}
