//! `provider: anthropic`: Anthropic's Messages API (`POST /v1/messages`).
//!
//! It shares the HTTP client of [`super::openai`] (reqwest, body limits,
//! retries on 429, 529 and other 5xx with `retry-after`); what differs is
//! here: the headers (`x-api-key`, `anthropic-version`), the request body
//! (a top-level `system`, `max_tokens` required, `stop_sequences`, content
//! blocks) and the answer, which is translated into the chat-completion
//! shape the stages read (`choices[0].message`, `usage.prompt_tokens`), so
//! the memo, the accounting and every stage stay provider-blind.
//!
//! JSON mode: the Messages API has no `response_format`, so a JSON-mode
//! call offers one tool, `json`, and forces it (`tool_choice`); the tool's
//! `input` is the answer. Unlike a prefilled `{`, this works with every
//! Claude model (newer ones refuse prefills) and carries a schema when
//! the stage has one.

use serde_json::{json, Map, Value};

use flow_engine::{BackendSpec, Price};

use super::Message;

/// The `anthropic-version` header sent (the current, and only, stable one).
pub const VERSION: &str = "2023-06-01";

/// `max_tokens` when the backend sets none: the API requires one.
pub const DEFAULT_MAX_TOKENS: u64 = 1024;

/// The path of the Messages API under the base URL.
pub const MESSAGES_PATH: &str = "v1/messages";

/// The tool a JSON-mode call is forced to use.
const JSON_TOOL: &str = "json";

/// The request body of a Messages API call: system messages go to the
/// top-level `system`, the others to `messages` as text blocks (consecutive
/// ones of a role merged: the API wants user and assistant turns to
/// alternate).
pub fn body(spec: &BackendSpec, messages: &[Message], json_mode: bool, schema: Option<&Value>) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(spec.model()));
    let system: Vec<&str> = messages.iter().filter(|m| m.role == "system").map(|m| m.content.as_str()).collect();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    for m in messages.iter().filter(|m| m.role != "system") {
        let role = if m.role == "assistant" { "assistant" } else { "user" };
        let block = json!({"type": "text", "text": m.content});
        match turns.last_mut() {
            Some((r, blocks)) if r == role => blocks.push(block),
            _ => turns.push((role.to_string(), vec![block])),
        }
    }
    if spec.prompt_cache && system.is_empty() {
        if let Some(block) = turns.first_mut().and_then(|(_, b)| b.last_mut()) {
            block["cache_control"] = json!({"type": "ephemeral"});
        }
    }
    if !system.is_empty() {
        let text = system.join("\n\n");
        let value = if spec.prompt_cache {
            json!([{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}])
        } else {
            json!(text)
        };
        body.insert("system".into(), value);
    }
    let turns: Vec<Value> =
        turns.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    body.insert("messages".into(), Value::Array(turns));
    body.insert("max_tokens".into(), json!(spec.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)));
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            body.insert(k.to_string(), v);
        }
    };
    put("temperature", spec.temperature.map(Value::from));
    put("top_p", spec.top_p.map(Value::from));
    put("stop_sequences", spec.stop.as_ref().map(|x| json!(x)));
    // No `seed`: the API has none (each sample has its own memo key anyway).
    for (k, v) in &spec.params {
        body.insert(k.clone(), v.clone());
    }
    if json_mode {
        let schema = schema.cloned().unwrap_or_else(|| json!({"type": "object"}));
        body.insert(
            "tools".into(),
            json!([{"name": JSON_TOOL, "description": "Answer with this tool: its input is the JSON answer.", "input_schema": schema}]),
        );
        body.insert("tool_choice".into(), json!({"type": "tool", "name": JSON_TOOL}));
    }
    Value::Object(body)
}

/// A Messages API answer in the chat-completion shape: the text blocks
/// joined as `content` (a forced `json` tool's input as JSON text), other
/// `tool_use` blocks as `tool_calls`, `stop_reason` as `finish_reason`
/// (`max_tokens` → `length`), and the usage as `prompt_tokens` (cache
/// reads and writes included, also kept apart for pricing) and
/// `completion_tokens`. A body that is not a message is kept as it is.
pub fn normalize(answer: Value) -> Value {
    let Some(blocks) = answer["content"].as_array() else { return answer };
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => text.push_str(b["text"].as_str().unwrap_or_default()),
            Some("tool_use") if b["name"] == JSON_TOOL => text.push_str(&b["input"].to_string()),
            Some("tool_use") => tool_calls.push(json!({
                "id": b["id"],
                "type": "function",
                "function": {"name": b["name"], "arguments": b["input"].to_string()},
            })),
            _ => {}
        }
    }
    let stop = answer["stop_reason"].as_str().unwrap_or_default();
    let finish_reason = match stop {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" => "length",
        "tool_use" if !tool_calls.is_empty() => "tool_calls",
        "tool_use" => "stop",
        "refusal" => "content_filter",
        other => other,
    };
    let mut message = json!({"role": "assistant", "content": text});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let u = &answer["usage"];
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let (input, written, read) = (n("input_tokens"), n("cache_creation_input_tokens"), n("cache_read_input_tokens"));
    json!({
        "id": answer["id"],
        "model": answer["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": input.saturating_add(written).saturating_add(read),
            "completion_tokens": n("output_tokens"),
            "prompt_tokens_details": {"cached_tokens": read},
            "cache_creation_input_tokens": written,
        },
        "stop_reason": stop,
    })
}

/// What a call cost by a normalized answer's usage: cache writes at 1.25×
/// the input price, cache reads at 0.1× (Anthropic's published multipliers
/// for the 5-minute cache), the rest at the model's prices.
pub fn cost(p: Price, body: &Value) -> f64 {
    let u = &body["usage"];
    let n = |v: &Value| v.as_u64().unwrap_or(0) as f64;
    let (prompt, read, written) =
        (n(&u["prompt_tokens"]), n(&u["prompt_tokens_details"]["cached_tokens"]), n(&u["cache_creation_input_tokens"]));
    let plain = (prompt - read - written).max(0.0);
    let usd =
        (plain * p.input + written * p.input * 1.25 + read * p.input * 0.1 + n(&u["completion_tokens"]) * p.output)
            / 1e6;
    (usd * 1e12).round() / 1e12
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> BackendSpec {
        serde_yaml::from_str(&format!("{{provider: anthropic, model: claude-3-5-haiku-latest{extra}}}")).unwrap()
    }

    fn msg(role: &str, content: &str) -> Message {
        Message { role: role.into(), content: content.into() }
    }

    #[test]
    fn system_is_top_level_and_max_tokens_is_always_sent() {
        let b = body(
            &spec(", temperature: 0, stop: [END], seed: 3"),
            &[msg("system", "be brief"), msg("user", "hi"), msg("user", "there")],
            false,
            None,
        );
        assert_eq!(b["system"], "be brief");
        assert_eq!(b["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(b["stop_sequences"], json!(["END"]));
        assert!(b.get("seed").is_none() && b.get("stop").is_none());
        assert_eq!(
            b["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "there"}]}])
        );
    }

    #[test]
    fn prompt_cache_marks_the_system_prompt_or_the_first_message() {
        let b = body(&spec(", prompt_cache: true"), &[msg("system", "rules"), msg("user", "q")], false, None);
        assert_eq!(b["system"][0]["cache_control"]["type"], "ephemeral");
        let b = body(&spec(", prompt_cache: true"), &[msg("user", "q")], false, None);
        assert_eq!(b["messages"][0]["content"][0]["cache_control"]["type"], "ephemeral");
    }

    #[test]
    fn json_mode_forces_a_tool_whose_input_is_the_answer() {
        let b = body(&spec(""), &[msg("user", "rate")], true, None);
        assert_eq!(b["tool_choice"], json!({"type": "tool", "name": "json"}));
        let answer = json!({
            "id": "msg_1", "model": "claude-3-5-haiku-20241022", "stop_reason": "tool_use",
            "content": [{"type": "tool_use", "id": "t1", "name": "json", "input": {"score": 1}}],
            "usage": {"input_tokens": 10, "output_tokens": 5},
        });
        let n = normalize(answer);
        assert_eq!(n["choices"][0]["message"]["content"], r#"{"score":1}"#);
        assert_eq!(n["choices"][0]["finish_reason"], "stop");
        assert!(n["choices"][0]["message"].get("tool_calls").is_none());
    }

    #[test]
    fn answers_map_to_the_chat_shape_and_cached_tokens_are_priced_apart() {
        let answer = json!({
            "id": "msg_2", "model": "claude-3-5-haiku-20241022", "stop_reason": "max_tokens",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"},
                        {"type": "tool_use", "id": "t2", "name": "lookup", "input": {"q": "x"}}],
            "usage": {"input_tokens": 1_000_000, "output_tokens": 1_000_000,
                      "cache_creation_input_tokens": 1_000_000, "cache_read_input_tokens": 1_000_000},
        });
        let n = normalize(answer);
        assert_eq!(n["choices"][0]["message"]["content"], "ab");
        assert_eq!(n["choices"][0]["finish_reason"], "length");
        assert_eq!(n["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "lookup");
        assert_eq!(n["usage"]["prompt_tokens"], 3_000_000);
        // 0.80 + 1.25 × 0.80 + 0.1 × 0.80 input, 4.00 output.
        let usd = cost(Price { input: 0.8, output: 4.0 }, &n);
        assert!((usd - (0.8 + 1.0 + 0.08 + 4.0)).abs() < 1e-9, "{usd}");
    }
}
