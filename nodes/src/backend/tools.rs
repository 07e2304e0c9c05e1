//! Tools a `run` node offers the model (function calling), written once in
//! one JSON-schema form and sent in each provider's shape, and the calls an
//! answer makes, read back from the chat-completion shape every answer is
//! stored in. There is no execution loop: a call is recorded, not run.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One tool: a function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// The function's name (letters, digits, `_` and `-`).
    pub name: String,
    /// What it does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema of its arguments (an object); default: any object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

impl Tool {
    fn parameters(&self) -> Value {
        self.parameters.clone().unwrap_or_else(|| json!({"type": "object", "properties": {}}))
    }

    /// OpenAI's (and Azure's) shape: `{type: function, function: {...}}`.
    pub fn openai(&self) -> Value {
        let mut f = json!({"name": self.name, "parameters": self.parameters()});
        if let Some(d) = &self.description {
            f["description"] = json!(d);
        }
        json!({"type": "function", "function": f})
    }

    /// Anthropic's shape: `{name, description, input_schema}`.
    pub fn anthropic(&self) -> Value {
        let mut t = json!({"name": self.name, "input_schema": self.parameters()});
        if let Some(d) = &self.description {
            t["description"] = json!(d);
        }
        t
    }
}

/// A call an answer made: the function's name and its arguments, parsed
/// (kept as the text the model wrote when that is not JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    pub name: String,
    pub arguments: Value,
}

/// The tool calls of a chat-completion answer.
pub fn calls_of(body: &Value) -> Vec<ToolCall> {
    let Some(calls) = body["choices"][0]["message"]["tool_calls"].as_array() else { return Vec::new() };
    calls
        .iter()
        .map(|c| {
            let f = &c["function"];
            let arguments = match &f["arguments"] {
                Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
                other => other.clone(),
            };
            ToolCall { name: f["name"].as_str().unwrap_or_default().to_string(), arguments }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_form_two_shapes_and_calls_parsed() {
        let t: Tool = serde_yaml::from_str(
            "{name: weather, description: Current weather, parameters: {type: object, properties: {city: {type: string}}}}",
        )
        .unwrap();
        assert_eq!(t.openai()["function"]["parameters"]["properties"]["city"]["type"], "string");
        assert_eq!(t.openai()["type"], "function");
        assert_eq!(t.anthropic()["input_schema"]["properties"]["city"]["type"], "string");
        assert_eq!(t.anthropic()["description"], "Current weather");
        let body = json!({"choices": [{"message": {"content": null, "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}},
            {"id": "2", "type": "function", "function": {"name": "x", "arguments": "not json"}},
        ]}}]});
        let calls = calls_of(&body);
        assert_eq!(calls[0], ToolCall { name: "weather".into(), arguments: json!({"city": "Paris"}) });
        assert_eq!(calls[1].arguments, "not json");
    }
}
