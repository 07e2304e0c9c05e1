//! `field:` paths: which part of a record a metric reads. `output` is a
//! top-level field; `output.answer`, `output.items[0].name` (or
//! `output.items.0.name`) walk into JSON, and also into a *string* that
//! holds JSON, since a model's JSON answer is text until it is parsed.
//! A record that has a field named exactly as written (`a.b`) reads that
//! field.

use std::borrow::Cow;

use serde_json::Value;

use flow_engine::Fields;

/// A parsed `field:`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldPath {
    written: String,
    /// The segments, the first a key; each with the byte offset in
    /// `written` where it ends (for messages naming a prefix).
    segs: Vec<(Seg, usize)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    /// `.name`; on an array, `.0` is an index.
    Key(String),
    /// `[0]`.
    Index(usize),
}

/// A `field:` that is no path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PathSyntaxError {
    #[error("`{0}` has an empty part; a path looks like `output.answer` or `output.items[0].name`")]
    Empty(String),
    #[error("`{0}` has a `[` without its `]`")]
    Unclosed(String),
    #[error("`{path}`: `[{inner}]` is not an index; write `[0]`, `[1]`...")]
    NotAnIndex { path: String, inner: String },
}

/// Why a path finds no value in a record.
#[derive(Debug, Clone, PartialEq)]
pub enum PathError {
    /// The top-level field is missing or null (its own message depends on
    /// why: a failed call, an unpriced model).
    Absent,
    /// `at` (a prefix of the path) holds no `seg`.
    Missing { at: String, seg: String },
    /// `at` is text that is not JSON, so the path cannot go on.
    NotJson { at: String },
    /// The value at the path is null.
    Null,
}

impl FieldPath {
    pub fn parse(written: &str) -> Result<Self, PathSyntaxError> {
        let empty = || PathSyntaxError::Empty(written.into());
        let mut segs = Vec::new();
        let (mut rest, mut pos) = (written, 0);
        loop {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            if end == 0 {
                return Err(empty());
            }
            segs.push((Seg::Key(rest[..end].to_string()), pos + end));
            (rest, pos) = (&rest[end..], pos + end);
            while let Some(inside) = rest.strip_prefix('[') {
                let close = inside.find(']').ok_or_else(|| PathSyntaxError::Unclosed(written.into()))?;
                let inner = &inside[..close];
                let n = Some(inner)
                    .filter(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|i| i.parse::<usize>().ok())
                    .ok_or_else(|| PathSyntaxError::NotAnIndex { path: written.into(), inner: inner.into() })?;
                segs.push((Seg::Index(n), pos + close + 2));
                (rest, pos) = (&inside[close + 1..], pos + close + 2);
            }
            if rest.is_empty() {
                return Ok(Self { written: written.to_string(), segs });
            }
            // `a[0]b`: after an index comes `.`, `[` or the end.
            rest = rest.strip_prefix('.').ok_or_else(empty)?;
            pos += 1;
        }
    }

    /// The path as written.
    pub fn written(&self) -> &str {
        &self.written
    }

    /// The top-level record field the path starts at.
    pub fn head(&self) -> &str {
        match &self.segs[0].0 {
            Seg::Key(k) => k,
            Seg::Index(_) => unreachable!("a path starts with a key"),
        }
    }

    /// Whether the path is one top-level field.
    pub fn is_top_level(&self) -> bool {
        self.segs.len() == 1
    }

    /// The value at the path.
    pub fn resolve<'r>(&self, record: &'r Fields) -> Result<Cow<'r, Value>, PathError> {
        if !self.is_top_level() {
            if let Some(v) = record.get(&self.written).filter(|v| !v.is_null()) {
                return Ok(Cow::Borrowed(v));
            }
        }
        let mut cur: Cow<'r, Value> = match record.get(self.head()) {
            Some(Value::Null) | None => return Err(PathError::Absent),
            Some(v) => Cow::Borrowed(v),
        };
        for (k, (seg, _)) in self.segs.iter().enumerate().skip(1) {
            let at = || self.written[..self.segs[k - 1].1].to_string();
            // A string on the way holds JSON, or the path ends here.
            if let Value::String(s) = &*cur {
                match serde_json::from_str::<Value>(s) {
                    Ok(v @ (Value::Object(_) | Value::Array(_))) => cur = Cow::Owned(v),
                    _ => return Err(PathError::NotJson { at: at() }),
                }
            }
            let next = match cur {
                Cow::Borrowed(v) => child(v, seg).map(Cow::Borrowed),
                Cow::Owned(v) => take_child(v, seg).map(Cow::Owned),
            };
            cur = next.ok_or_else(|| PathError::Missing { at: at(), seg: seg.shown() })?;
        }
        if cur.is_null() {
            return Err(PathError::Null);
        }
        Ok(cur)
    }
}

impl Seg {
    fn shown(&self) -> String {
        match self {
            Seg::Key(k) => format!("`{k}`"),
            Seg::Index(i) => format!("item [{i}]"),
        }
    }

    fn index(&self) -> Option<usize> {
        match self {
            Seg::Index(i) => Some(*i),
            Seg::Key(k) if k.bytes().all(|b| b.is_ascii_digit()) => k.parse().ok(),
            Seg::Key(_) => None,
        }
    }
}

fn child<'v>(v: &'v Value, seg: &Seg) -> Option<&'v Value> {
    match (v, seg) {
        (Value::Object(m), Seg::Key(k)) => m.get(k),
        (Value::Array(a), s) => a.get(s.index()?),
        _ => None,
    }
}

fn take_child(v: Value, seg: &Seg) -> Option<Value> {
    match (v, seg) {
        (Value::Object(mut m), Seg::Key(k)) => m.remove(k),
        (Value::Array(mut a), s) => {
            let i = s.index()?;
            (i < a.len()).then(|| a.swap_remove(i))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rec(v: Value) -> Fields {
        v.as_object().unwrap().clone()
    }

    fn at(path: &str, r: &Fields) -> Result<Value, PathError> {
        FieldPath::parse(path).unwrap().resolve(r).map(Cow::into_owned)
    }

    #[test]
    fn paths_parse_or_say_why_not() {
        let p = FieldPath::parse("output.items[0].name").unwrap();
        assert_eq!((p.head(), p.is_top_level()), ("output", false));
        assert!(FieldPath::parse("output").unwrap().is_top_level());
        assert!(FieldPath::parse("a[1][2].b.3").is_ok());
        for bad in ["", ".a", "a.", "a..b", "a[0]b", "[0]"] {
            assert!(matches!(FieldPath::parse(bad), Err(PathSyntaxError::Empty(_))), "{bad}");
        }
        assert_eq!(FieldPath::parse("a[0"), Err(PathSyntaxError::Unclosed("a[0".into())));
        assert!(matches!(FieldPath::parse("a[x]"), Err(PathSyntaxError::NotAnIndex { .. })));
        assert!(matches!(FieldPath::parse("a[-1]"), Err(PathSyntaxError::NotAnIndex { .. })));
    }

    #[test]
    fn paths_walk_json_and_json_held_in_strings() {
        let r = rec(json!({
            "output": "{\"answer\": \"Paris\", \"items\": [{\"name\": \"a\"}, {\"name\": \"b\"}]}",
            "meta": {"tags": ["x", "y"], "n": null},
            "text": "not json",
            "a.b": 1,
            "nested": "{\"inner\": \"{\\\"deep\\\": 7}\"}",
        }));
        assert_eq!(at("output.answer", &r), Ok(json!("Paris")));
        assert_eq!(at("output.items[1].name", &r), Ok(json!("b")));
        assert_eq!(at("output.items.0.name", &r), Ok(json!("a")));
        assert_eq!(at("meta.tags[1]", &r), Ok(json!("y")));
        // A string inside the parsed JSON that holds JSON again.
        assert_eq!(at("nested.inner.deep", &r), Ok(json!(7)));
        // A field named with a dot is read as it is.
        assert_eq!(at("a.b", &r), Ok(json!(1)));
        assert_eq!(at("nope", &r), Err(PathError::Absent));
        assert_eq!(
            at("output.items[5]", &r),
            Err(PathError::Missing { at: "output.items".into(), seg: "item [5]".into() })
        );
        assert_eq!(at("output.city", &r), Err(PathError::Missing { at: "output".into(), seg: "`city`".into() }));
        assert_eq!(at("text.answer", &r), Err(PathError::NotJson { at: "text".into() }));
        assert_eq!(at("meta.n", &r), Err(PathError::Null));
        assert_eq!(at("meta.tags.x", &r), Err(PathError::Missing { at: "meta.tags".into(), seg: "`x`".into() }));
    }
}
