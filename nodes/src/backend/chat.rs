//! The calls a stage makes by name: a chat completion (plain, JSON mode,
//! with a schema, with tools, for a record of the user's app) and
//! embeddings, each built on the call pipeline of the parent module.

use serde_json::Value;

use flow_engine::Provider;

use super::request::has_content;
use super::{
    app, chat_body, chat_body_for, chat_body_schema, embed_body, tools, Backend, CallError, CallOpts, ChatReply,
    Endpoint, Logprobs, Message, Tool, Unusable,
};

impl Backend {
    /// The request body of a chat completion (see [`chat_body`]).
    pub fn chat_body(&self, messages: &[Message], json_mode: bool, sample: u32) -> Value {
        chat_body(&self.spec, messages, json_mode, sample)
    }

    /// A chat completion.
    pub async fn chat(
        &self,
        messages: &[Message],
        json_mode: bool,
        opts: CallOpts<'_>,
    ) -> Result<ChatReply, CallError> {
        self.chat_with(messages, json_mode, &[], opts).await
    }

    /// A JSON-mode chat completion whose answer should fit `schema` (see
    /// [`chat_body_schema`]).
    pub async fn chat_schema(
        &self,
        messages: &[Message],
        name: &str,
        schema: &Value,
        opts: CallOpts<'_>,
    ) -> Result<ChatReply, CallError> {
        if app::is_app(self.spec.provider) {
            return self.chat_for(&serde_json::Map::new(), messages, true, &[], opts).await;
        }
        let body = chat_body_schema(&self.spec, messages, name, schema, opts.sample);
        self.chat_body_call(body, opts).await
    }

    /// A chat completion offering `tools` (see [`chat_body_with`]).
    pub async fn chat_with(
        &self,
        messages: &[Message],
        json_mode: bool,
        tools: &[Tool],
        opts: CallOpts<'_>,
    ) -> Result<ChatReply, CallError> {
        self.chat_for(&serde_json::Map::new(), messages, json_mode, tools, opts).await
    }

    /// [`Backend::chat_with`] for `record`: the user's application
    /// (`http`, `exec`) is sent the record's fields too ([`chat_body_for`]).
    pub async fn chat_for(
        &self,
        record: &serde_json::Map<String, Value>,
        messages: &[Message],
        json_mode: bool,
        tools: &[Tool],
        opts: CallOpts<'_>,
    ) -> Result<ChatReply, CallError> {
        let body = chat_body_for(&self.spec, record, messages, json_mode, opts.sample, tools)
            .map_err(|e| CallError::fatal(format!("the body of backend `{}`: {e}", self.name)))?;
        self.chat_body_call(body, opts).await
    }

    /// A chat completion of `body`.
    async fn chat_body_call(&self, body: Value, opts: CallOpts<'_>) -> Result<ChatReply, CallError> {
        let reply = self.call_checked(Endpoint::Chat, body, opts, has_content).await?;
        let text = reply.body["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string();
        Ok(ChatReply {
            text,
            tool_calls: tools::calls_of(&reply.body),
            finish_reason: reply.body["choices"][0]["finish_reason"].as_str().map(str::to_string),
            logprobs: Logprobs::of(&reply.body["choices"][0]["logprobs"]),
            usage: reply.usage,
            model: reply.model,
            latency_ms: reply.latency_ms,
            cost_usd: reply.cost_usd,
        })
    }

    /// Embeddings of `texts`, in order.
    pub async fn embed(&self, texts: &[String], opts: CallOpts<'_>) -> Result<Vec<Vec<f32>>, CallError> {
        self.embed_dims(texts, None, opts).await
    }

    /// Embeddings of `texts`, in order, of `dimensions` when given (the
    /// request's `dimensions`, for models that can shorten their vectors).
    pub async fn embed_dims(
        &self,
        texts: &[String],
        dimensions: Option<u32>,
        opts: CallOpts<'_>,
    ) -> Result<Vec<Vec<f32>>, CallError> {
        let body = embed_body(&self.spec, texts, dimensions);
        let listed = |b: &Value| match b["data"].as_array() {
            Some(d) if d.len() == texts.len() => {
                let asked = dimensions.filter(|_| self.spec.provider != Provider::Sim);
                let wrong = d.iter().filter_map(|e| e["embedding"].as_array().map(Vec::len));
                match asked.and_then(|asked| wrong.into_iter().find(|n| *n != asked as usize).map(|got| (asked, got))) {
                    Some((asked, got)) => Err(Unusable::Dimensions { backend: self.name.clone(), asked, got }),
                    None => Ok(()),
                }
            }
            _ => Err(Unusable::Embeddings { expected: texts.len() }),
        };
        let reply = self.call_checked(Endpoint::Embeddings, body, opts, listed).await?;
        let data = reply.body["data"]
            .as_array()
            .ok_or_else(|| CallError::fatal("the embeddings response has no `data` list"))?;
        let mut out = vec![Vec::new(); texts.len()];
        for (i, item) in data.iter().enumerate() {
            let index = item["index"].as_u64().map(|x| x as usize).unwrap_or(i);
            let v = item["embedding"]
                .as_array()
                .ok_or_else(|| CallError::fatal("an embedding is not a list of numbers"))?
                .iter()
                .map(|x| x.as_f64().unwrap_or(0.0) as f32)
                .collect();
            if let Some(slot) = out.get_mut(index) {
                *slot = v;
            }
        }
        if out.iter().any(Vec::is_empty) {
            return Err(CallError::fatal(format!("expected {} embeddings, got {}", texts.len(), data.len())));
        }
        Ok(out)
    }
}
