//! `{{field}}` templates in prompts and metric arguments, filled per record.
//!
//! Parsed once at compile time, so the fields a template names are known
//! before anything runs and can be checked against the input's port type.

use std::borrow::Cow;

use crate::record::Fields;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    /// A dotted path into the record (`meta.lang`).
    Field(Vec<String>),
}

/// Why text is not a template; reported at compile time, at the field that
/// holds it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// A `{{` without its `}}`.
    #[error("unclosed `{{{{` in `{text}`")]
    Unclosed { text: String },
    /// Braces around something that is not a (dotted) field name.
    #[error("`{{{{{inner}}}}}` is not a field reference")]
    NotAField { inner: String },
}

/// A record without a field the template reads: an error of that record
/// (its `error`, a metric's `error`), not of the node.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("record has no field `{field}`")]
pub struct RenderError {
    /// The dotted path, as written (`meta.lang`).
    pub field: String,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; `{{ name }}` and `{{a.b}}` are field references.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| TemplateError::Unclosed { text: text.to_string() })?;
            let name = after[..end].trim();
            let valid = !name.is_empty()
                && name
                    .split('.')
                    .all(|s| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-'));
            if !valid {
                return Err(TemplateError::NotAField { inner: after[..end].to_string() });
            }
            parts.push(Part::Field(name.split('.').map(str::to_string).collect()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Self { source: text.to_string(), parts })
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Top-level record fields this template reads.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(path) => Some(path[0].as_str()),
            Part::Lit(_) => None,
        })
    }

    /// Fills the template from a record. Strings are inserted as they are,
    /// other values as JSON. A missing field is an error naming it.
    pub fn render<'a>(&'a self, record: &'a Fields) -> Result<Cow<'a, str>, RenderError> {
        match self.parts.as_slice() {
            [Part::Lit(s)] => return Ok(Cow::Borrowed(s)),
            // `{{field}}` alone: borrow the record's string, no allocation.
            [Part::Field(path)] if path.len() == 1 => {
                if let Some(serde_json::Value::String(s)) = record.get(&path[0]) {
                    return Ok(Cow::Borrowed(s));
                }
            }
            _ => {}
        }
        self.render_with(record, |s| s.to_string()).map(Cow::Owned)
    }

    /// Like [`Template::render`], passing each inserted value through
    /// `insert` (e.g. `regex::escape`) while literal text stays as written.
    pub fn render_with(&self, record: &Fields, insert: impl Fn(&str) -> String) -> Result<String, RenderError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Field(path) => match lookup(record, path) {
                    Some(serde_json::Value::String(s)) => out.push_str(&insert(s)),
                    Some(serde_json::Value::Null) | None => {
                        return Err(RenderError { field: path.join(".") });
                    }
                    Some(other) => out.push_str(&insert(&other.to_string())),
                },
            }
        }
        Ok(out)
    }
}

fn lookup<'r>(record: &'r Fields, path: &[String]) -> Option<&'r serde_json::Value> {
    let mut v = record.get(&path[0]);
    for seg in &path[1..] {
        v = v.and_then(|x| match x {
            serde_json::Value::Object(m) => m.get(seg),
            serde_json::Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: serde_json::Value) -> Fields {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn renders_fields_and_paths() {
        let t = Template::parse("Q: {{ question }} ({{meta.lang}}, {{n}})").unwrap();
        assert_eq!(t.fields().collect::<Vec<_>>(), ["question", "meta", "n"]);
        let r = rec(serde_json::json!({"question": "hi?", "meta": {"lang": "en"}, "n": 3}));
        assert_eq!(t.render(&r).unwrap(), "Q: hi? (en, 3)");
    }

    #[test]
    fn literal_and_errors() {
        assert_eq!(Template::parse("plain").unwrap().render(&Fields::new()).unwrap(), "plain");
        assert!(Template::parse("{{ a").is_err());
        assert!(Template::parse("{{ a b }}").is_err());
        let t = Template::parse("{{missing}}").unwrap();
        assert_eq!(t.render(&Fields::new()).unwrap_err().to_string(), "record has no field `missing`");
    }
}
