//! What `run` sends: the chat messages, from `prompt:`, `prompt_file:`,
//! `messages:`, or one set per named variant of `prompts:`.
//!
//! Prompt files are read when the spec is checked: their content is hashed
//! into the node's key (editing `prompts/v2.txt` re-runs the node), and the
//! text read then is what the plan's memo lookups and the run both send.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use flow_engine::spec::YamlPath;
use flow_engine::template::{RenderError, TemplateError};
use flow_engine::{CheckCx, Record, Template};

use super::RunConfig;
use crate::backend::Message;

/// One message of `messages:`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageConfig {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// A variant's text that names a file instead: `file:prompts/v2.txt`.
const FILE_PREFIX: &str = "file:";

/// `prompts:`: named variants of the user message, in the order written
/// (the first is the baseline a `compare` of variants measures against).
/// Each is a `{{field}}` template, or `file:PATH` for one in a file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Variants(pub Vec<(String, String)>);

impl Serialize for Variants {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Variants {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = Variants;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of variant names to prompts (`{short: \"...\", long: \"file:prompts/long.txt\"}`)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Variants, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    if out.iter().any(|(name, _)| *name == k) {
                        return Err(serde::de::Error::custom(format!("variant `{k}` is named twice")));
                    }
                    out.push((k, v));
                }
                Ok(Variants(out))
            }
        }
        d.deserialize_map(Ordered)
    }
}

impl schemars::JsonSchema for Variants {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Variants".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "description": "Variant name → user message template, or `file:PATH`.",
            "additionalProperties": {"type": "string"},
            "minProperties": 1
        })
    }
}

/// The text of the prompt files, read when the spec is checked, by the
/// path as written.
#[derive(Debug, Clone, Default)]
pub struct PromptFiles(Arc<OnceLock<BTreeMap<String, String>>>);

impl PromptFiles {
    fn text(&self, written: &str) -> Option<&str> {
        self.0.get()?.get(written).map(String::as_str)
    }
}

/// Where a user message comes from, for each variant (`None`: unnamed).
fn sources(c: &RunConfig) -> Vec<(Option<&str>, Source<'_>)> {
    if let Some(v) = &c.prompts {
        return v
            .0
            .iter()
            .map(|(name, text)| {
                let source = match text.strip_prefix(FILE_PREFIX) {
                    Some(path) => Source::File(path.trim(), format!("prompts.{name}")),
                    None => Source::Inline(text, format!("prompts.{name}")),
                };
                (Some(name.as_str()), source)
            })
            .collect();
    }
    match (&c.prompt, &c.prompt_file) {
        (Some(p), _) => vec![(None, Source::Inline(p, "prompt".into()))],
        (None, Some(f)) => vec![(None, Source::File(f, "prompt_file".into()))],
        (None, None) => vec![(None, Source::None)],
    }
}

enum Source<'a> {
    Inline(&'a str, String),
    /// (path as written, the config field)
    File(&'a str, String),
    /// `messages:` only.
    None,
}

/// Checks where the prompts come from: one of `prompt`, `prompt_file`,
/// `prompts` and `messages`; variant names; prompt files, read and hashed
/// into the key. Returns each template with the field it is written at.
pub(super) fn check(c: &RunConfig, cx: &mut CheckCx<'_>) -> Vec<(YamlPath, String)> {
    let set: Vec<&str> = [
        ("prompt", c.prompt.is_some()),
        ("prompt_file", c.prompt_file.is_some()),
        ("prompts", c.prompts.is_some()),
        ("messages", c.messages.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, on)| on.then_some(f))
    .collect();
    match set.as_slice() {
        [] => cx.error_at_key(
            &cx.field("backend"),
            format!("node `{}` has no prompt", cx.node()),
            Some(
                "add `prompt: \"{{question}}\"`, `prompt_file: prompts/ask.txt`, `prompts: {short: ..., long: ...}` or `messages: [{role: user, content: \"...\"}]`"
                    .into(),
            ),
        ),
        [_] => {}
        [first, second, ..] => cx.error_at_key(
            &cx.field(second),
            format!("node `{}` has both `{first}` and `{second}`", cx.node()),
            Some("keep one: `prompt`, `prompt_file` or `prompts` for the user message, or put the chat into `messages`".into()),
        ),
    }
    if matches!(&c.messages, Some(m) if m.is_empty()) {
        cx.error(&cx.field("messages"), "`messages` is empty", None);
    }
    if let Some(v) = &c.prompts {
        if v.0.is_empty() {
            cx.error(
                &cx.field("prompts"),
                "`prompts` is empty",
                Some("name at least one variant: `prompts: {v1: \"{{question}}\"}`".into()),
            );
        }
        for (name, _) in &v.0 {
            let ok =
                !name.is_empty() && name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'));
            if !ok {
                cx.error_at_key(
                    &cx.field("prompts").key(name.clone()),
                    format!("invalid variant name `{name}` in node `{}`", cx.node()),
                    Some("use letters, digits, `_`, `-` and `.`: the name tags each record's `variant`".into()),
                );
            }
        }
    }
    let mut texts = BTreeMap::new();
    let mut templates = Vec::new();
    if let Some(s) = &c.system {
        templates.push((cx.field("system"), s.clone()));
    }
    for (_, source) in sources(c) {
        match source {
            Source::Inline(text, field) => templates.push((field_path(cx, &field), text.to_string())),
            Source::File(written, field) => {
                let at = field_path(cx, &field);
                let Some(path) = cx.input_file(&at, written) else { continue };
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        templates.push((at, text.clone()));
                        texts.insert(written.to_string(), text);
                    }
                    Err(e) => cx.error(
                        &at,
                        format!("cannot read prompt file `{written}` of node `{}`: {e}", cx.node()),
                        Some("a prompt file is UTF-8 text".into()),
                    ),
                }
            }
            Source::None => {}
        }
    }
    for (i, m) in c.messages.iter().flatten().enumerate() {
        templates.push((cx.field("messages").index(i).key("content"), m.content.clone()));
    }
    let _ = c.files.0.set(texts);
    templates
}

/// `prompts.short` → the path of that key under the node.
fn field_path(cx: &CheckCx<'_>, field: &str) -> YamlPath {
    match field.split_once('.') {
        Some((f, key)) => cx.field(f).key(key.to_string()),
        None => cx.field(field),
    }
}

/// The messages of one variant, ready to render per record.
pub(super) struct Prompt {
    /// (role, template)
    parts: Vec<(&'static str, Template)>,
    /// The rules block, appended to the first system message (or sent as
    /// one, before the others).
    pub rules: Option<String>,
}

/// Why a prompt cannot be built: the field and the template's problem.
#[derive(Debug, thiserror::Error)]
pub(super) enum PromptError {
    #[error("`{0}`: {1}")]
    Template(String, TemplateError),
    #[error("prompt file `{0}` was not read when the spec was checked")]
    Unread(String),
}

/// The prompts of `c`, one per variant, with the variant's name.
pub(super) fn prompts(c: &RunConfig) -> Result<Vec<(Option<String>, Prompt)>, PromptError> {
    let parse = |field: &str, t: &str| Template::parse(t).map_err(|e| PromptError::Template(field.to_string(), e));
    let system = c.system.as_deref().map(|s| parse("system", s)).transpose()?;
    let mut out = Vec::new();
    for (name, source) in sources(c) {
        let mut parts = Vec::new();
        if let Some(s) = &system {
            parts.push(("system", s.clone()));
        }
        match source {
            Source::Inline(text, field) => parts.push(("user", parse(&field, text)?)),
            Source::File(written, field) => {
                let text = c.files.text(written).ok_or_else(|| PromptError::Unread(written.to_string()))?;
                parts.push(("user", parse(&field, text)?));
            }
            Source::None => {}
        }
        for (i, m) in c.messages.iter().flatten().enumerate() {
            parts.push((m.role.name(), parse(&format!("messages[{i}].content"), &m.content)?));
        }
        out.push((name.map(str::to_string), Prompt { parts, rules: None }));
    }
    Ok(out)
}

impl Prompt {
    pub(super) fn render(&self, r: &Record) -> Result<Vec<Message>, RenderError> {
        let mut messages = self
            .parts
            .iter()
            .map(|(role, t)| Ok(Message { role: role.to_string(), content: t.render(r)?.into_owned() }))
            .collect::<Result<Vec<_>, RenderError>>()?;
        if let Some(block) = &self.rules {
            match messages.iter_mut().find(|m| m.role == "system") {
                Some(m) if m.content.trim().is_empty() => m.content = block.clone(),
                Some(m) => {
                    m.content.truncate(m.content.trim_end().len());
                    m.content.push_str("\n\n");
                    m.content.push_str(block);
                }
                None => messages.insert(0, Message { role: "system".into(), content: block.clone() }),
            }
        }
        Ok(messages)
    }
}
