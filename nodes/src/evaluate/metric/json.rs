//! JSON checks: `json_valid` (the text is JSON), `equals_json` (the same
//! JSON as `expected`, key order and number formatting aside),
//! `json_schema` (valid against a JSON Schema, the failing instance path as
//! the reason) and `contains_json` (the text holds a JSON object or array
//! somewhere, as a model writes one in prose or a code fence; valid against
//! a schema when one is given).
//!
//! `json_valid` is a validating scanner rather than a parse: what the JSON
//! grammar (RFC 8259) accepts passes, however deep (serde_json stops at 128
//! levels, and a recursive parser would overflow the stack on 100 000) and
//! whatever a number's size (`1e400` is JSON, if no f64).

use std::path::Path;

use serde_json::{Number, Value};

use flow_engine::{BuildCx, NodeError, Record, Template};

use super::{arg, shorten, template, Score, ScoreError, Verdict};
use crate::evaluate::config::{MetricConfig, MetricType};

pub enum JsonCheck {
    Valid,
    Equals { expected: Template },
    Schema(Box<jsonschema::Validator>),
    Contains(Option<Box<jsonschema::Validator>>),
}

/// Where `contains_json` looks for JSON at most: the first this many `{`
/// and `[` of a text (a long text of braces is not tried at each).
const MAX_STARTS: usize = 200;

impl JsonCheck {
    pub fn new(m: &MetricConfig, cx: &BuildCx) -> Result<Self, NodeError> {
        Ok(match m.kind {
            MetricType::JsonValid => JsonCheck::Valid,
            MetricType::EqualsJson => JsonCheck::Equals { expected: template(arg(m, &m.expected, "expected")?)? },
            MetricType::JsonSchema => match schema_of(m, cx)? {
                Some(v) => JsonCheck::Schema(v),
                None => return Err(NodeError::new("`json_schema` needs `schema` or `schema_file`")),
            },
            MetricType::ContainsJson => JsonCheck::Contains(schema_of(m, cx)?),
            other => unreachable!("`{}` is no JSON check", other.name()),
        })
    }

    /// The verdict on `value`; `text` when it is a top-level field, whose
    /// string is the text to parse (a model's answer), rather than a value
    /// a path found inside JSON, which is JSON already (a string there is
    /// a JSON string).
    pub fn score(&self, value: &Value, text: bool, record: &Record) -> Verdict {
        let parsed = || parsed(value, text);
        Ok(match self {
            JsonCheck::Valid => match value {
                Value::String(s) if text => match validate(s) {
                    Ok(()) => Score::flag(true),
                    Err(e) => Score::failing_because(false, || e.to_string()),
                },
                _ => Score::flag(true),
            },
            JsonCheck::Equals { expected } => {
                let want: Value =
                    serde_json::from_str(&expected.render(record)?).map_err(ScoreError::ExpectedNotJson)?;
                match parsed() {
                    Ok(got) => {
                        let diff = difference(&got, &want, &mut String::new());
                        Score::failing_because(diff.is_none(), || diff.unwrap_or_default())
                    }
                    Err(why) => Score::failing_because(false, || why),
                }
            }
            JsonCheck::Schema(v) => match parsed() {
                Ok(instance) => match v.validate(&instance) {
                    Ok(()) => Score::flag(true),
                    Err(e) => {
                        let at = e.instance_path().as_str().to_string();
                        let at = if at.is_empty() { "the top".to_string() } else { format!("`{at}`") };
                        Score::failing_because(false, || format!("at {at}: {}", shorten(&e.to_string(), 200)))
                    }
                },
                Err(why) => Score::failing_because(false, || why),
            },
            JsonCheck::Contains(schema) => {
                let found: Vec<std::borrow::Cow<'_, Value>> = match value {
                    Value::String(s) if text => embedded(s).into_iter().map(std::borrow::Cow::Owned).collect(),
                    v @ (Value::Object(_) | Value::Array(_)) => vec![std::borrow::Cow::Borrowed(v)],
                    _ => Vec::new(),
                };
                match (schema, found.first()) {
                    (_, None) => Score::failing_because(false, || "no JSON object or array in the text".into()),
                    (None, Some(_)) => Score::flag(true),
                    // The first that is valid passes; else the first's problem.
                    (Some(v), Some(first)) => match found.iter().any(|f| v.is_valid(f)) {
                        true => Score::flag(true),
                        false => {
                            let e = v.validate(first).err().map(|e| {
                                let at = e.instance_path().as_str().to_string();
                                let at = if at.is_empty() { "the top".to_string() } else { format!("`{at}`") };
                                format!("the JSON found is not valid: at {at}: {}", shorten(&e.to_string(), 200))
                            });
                            Score::failing_because(false, || e.unwrap_or_default())
                        }
                    },
                }
            }
        })
    }
}

/// The JSON objects and arrays a text holds, outermost first, in order:
/// each `{` or `[` (up to [`MAX_STARTS`]) not inside one found already is
/// tried as the start of a JSON value.
fn embedded(text: &str) -> Vec<Value> {
    let mut found = Vec::new();
    let mut from = 0;
    for (tried, (at, _)) in text.char_indices().filter(|(_, c)| matches!(c, '{' | '[')).enumerate() {
        if tried >= MAX_STARTS {
            break;
        }
        if at < from {
            continue;
        }
        let mut values = serde_json::Deserializer::from_str(&text[at..]).into_iter::<Value>();
        if let Some(Ok(v)) = values.next() {
            from = at + values.byte_offset();
            found.push(v);
        }
    }
    found
}

/// The validator of the metric's `schema` or `schema_file`, if it has one.
fn schema_of(m: &MetricConfig, cx: &BuildCx) -> Result<Option<Box<jsonschema::Validator>>, NodeError> {
    let schema = match (&m.schema, &m.schema_file) {
        (Some(s), _) => s.clone(),
        (None, Some(written)) => {
            // The file the plan hashed, not whatever is there now.
            let file = cx
                .file(written)
                .ok_or_else(|| NodeError::new(format!("`schema_file` `{written}` was not resolved")))?;
            read_schema(&file.path).map_err(|e| NodeError::new(format!("`schema_file` `{written}`: {e}")))?
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(Box::new(validator(&schema).map_err(NodeError::new)?)))
}

/// A schema's validator, with `format` asserted (`format: email` is what a
/// user means to check); its `$ref`s resolve within the schema only.
pub fn validator(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options().should_validate_formats(true).build(schema).map_err(|e| {
        let at = e.instance_path().as_str();
        let at = if at.is_empty() { String::new() } else { format!(" at `{at}`") };
        format!("invalid JSON Schema{at}: {}", shorten(&e.to_string(), 200))
    })
}

/// A schema file's JSON.
pub fn read_schema(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))
}

/// The JSON under test: a top-level field's string is parsed (a model
/// answers text), any other value is JSON already; or why the text is not
/// JSON.
fn parsed(value: &Value, text: bool) -> Result<std::borrow::Cow<'_, Value>, String> {
    match value {
        Value::String(s) if text => serde_json::from_str(s)
            .map(std::borrow::Cow::Owned)
            .map_err(|e| format!("not JSON ({e}): `{}`", shorten(s, 60))),
        other => Ok(std::borrow::Cow::Borrowed(other)),
    }
}

/// Where `got` and `want` first differ, as a JSON pointer and what is
/// there; `None` when they are the same JSON. Objects compare by key,
/// numbers by value (`1`, `1.0` and `1e0` are one number).
fn difference(got: &Value, want: &Value, at: &mut String) -> Option<String> {
    let here = |at: &str| if at.is_empty() { "the top".to_string() } else { format!("`{at}`") };
    match (got, want) {
        (Value::Number(a), Value::Number(b)) if same_number(a, b) => None,
        (Value::Object(a), Value::Object(b)) => {
            if let Some(k) = b.keys().find(|k| !a.contains_key(*k)) {
                return Some(format!("at {}: no key `{k}`", here(at)));
            }
            if let Some(k) = a.keys().find(|k| !b.contains_key(*k)) {
                return Some(format!("at {}: unexpected key `{k}`", here(at)));
            }
            b.iter().find_map(|(k, w)| {
                let len = at.len();
                at.push('/');
                at.push_str(&k.replace('~', "~0").replace('/', "~1"));
                let d = difference(&a[k], w, at);
                at.truncate(len);
                d
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() != b.len() => {
            Some(format!("at {}: {} items, expected {}", here(at), a.len(), b.len()))
        }
        (Value::Array(a), Value::Array(b)) => a.iter().zip(b).enumerate().find_map(|(i, (g, w))| {
            let len = at.len();
            at.push_str(&format!("/{i}"));
            let d = difference(g, w, at);
            at.truncate(len);
            d
        }),
        (a, b) if a == b => None,
        (a, b) => Some(format!("at {}: {} ≠ {}", here(at), shorten(&a.to_string(), 60), shorten(&b.to_string(), 60))),
    }
}

/// Two JSON numbers are one when their values are: integers exactly, any
/// other pair as f64.
fn same_number(a: &Number, b: &Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

/// Where a text stops being JSON, and what was expected there.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not JSON: {what} at line {line}, column {column}")]
pub struct InvalidJson {
    pub what: &'static str,
    pub line: usize,
    pub column: usize,
}

/// Checks `text` against the JSON grammar of RFC 8259 without building
/// anything: a stack of one byte per open container, so any depth is fine.
pub fn validate(text: &str) -> Result<(), InvalidJson> {
    let b = text.as_bytes();
    let mut i = 0;
    // `true` for an object, `false` for an array.
    let mut stack: Vec<bool> = Vec::new();
    let fail = |what: &'static str, at: usize| {
        let before = &text.as_bytes()[..at.min(b.len())];
        let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
        let start = before.iter().rposition(|&c| c == b'\n').map_or(0, |p| p + 1);
        let column = String::from_utf8_lossy(&before[start..]).chars().count() + 1;
        Err(InvalidJson { what, line, column })
    };
    let ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\n' | b'\r') {
            *i += 1;
        }
    };
    'value: loop {
        ws(&mut i);
        // A value.
        match b.get(i) {
            Some(b'{') => {
                i += 1;
                ws(&mut i);
                if b.get(i) == Some(&b'}') {
                    i += 1;
                } else {
                    stack.push(true);
                    if let Err(what) = key(b, &mut i) {
                        return fail(what, i);
                    }
                    continue 'value;
                }
            }
            Some(b'[') => {
                i += 1;
                ws(&mut i);
                if b.get(i) == Some(&b']') {
                    i += 1;
                } else {
                    stack.push(false);
                    continue 'value;
                }
            }
            Some(b'"') => {
                if let Err(what) = string(b, &mut i) {
                    return fail(what, i);
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                if let Err(what) = number(b, &mut i) {
                    return fail(what, i);
                }
            }
            Some(b't') if b[i..].starts_with(b"true") => i += 4,
            Some(b'f') if b[i..].starts_with(b"false") => i += 5,
            Some(b'n') if b[i..].starts_with(b"null") => i += 4,
            Some(_) => return fail("expected a value", i),
            None => return fail("expected a value, found the end", i),
        }
        // After a value: the end, or what its container allows next.
        loop {
            ws(&mut i);
            match (stack.last(), b.get(i)) {
                (None, None) => return Ok(()),
                (None, Some(_)) => return fail("expected the end after the value", i),
                (Some(_), Some(b',')) => {
                    i += 1;
                    if stack.last() == Some(&true) {
                        ws(&mut i);
                        if let Err(what) = key(b, &mut i) {
                            return fail(what, i);
                        }
                    }
                    continue 'value;
                }
                (Some(true), Some(b'}')) | (Some(false), Some(b']')) => {
                    stack.pop();
                    i += 1;
                }
                (Some(true), _) => return fail("expected `,` or `}`", i),
                (Some(false), _) => return fail("expected `,` or `]`", i),
            }
        }
    }
}

/// An object's `"key":`, from its opening quote.
fn key(b: &[u8], i: &mut usize) -> Result<(), &'static str> {
    if b.get(*i) != Some(&b'"') {
        return Err("expected a key in quotes");
    }
    string(b, i)?;
    while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\n' | b'\r') {
        *i += 1;
    }
    if b.get(*i) != Some(&b':') {
        return Err("expected `:` after the key");
    }
    *i += 1;
    Ok(())
}

/// A string, from its opening quote to past its closing one.
fn string(b: &[u8], i: &mut usize) -> Result<(), &'static str> {
    *i += 1;
    loop {
        match b.get(*i) {
            None => return Err("unterminated string"),
            Some(b'"') => {
                *i += 1;
                return Ok(());
            }
            Some(b'\\') => match b.get(*i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => *i += 2,
                Some(b'u') => {
                    let hex = b.get(*i + 2..*i + 6).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                    if hex.is_none() {
                        return Err("`\\u` needs four hex digits");
                    }
                    *i += 6;
                }
                _ => return Err("invalid escape in a string"),
            },
            Some(c) if *c < 0x20 => return Err("unescaped control character in a string"),
            Some(_) => *i += 1,
        }
    }
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, of any size.
fn number(b: &[u8], i: &mut usize) -> Result<(), &'static str> {
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(*i) == Some(&b'-') {
        *i += 1;
    }
    match b.get(*i) {
        Some(b'0') => *i += 1,
        Some(b'1'..=b'9') => {
            digits(i);
        }
        _ => return Err("expected a digit"),
    }
    if b.get(*i) == Some(&b'.') {
        *i += 1;
        if digits(i) == 0 {
            return Err("expected a digit after `.`");
        }
    }
    if matches!(b.get(*i), Some(b'e' | b'E')) {
        *i += 1;
        if matches!(b.get(*i), Some(b'+' | b'-')) {
            *i += 1;
        }
        if digits(i) == 0 {
            return Err("expected a digit in the exponent");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::*;
    use super::*;

    #[test]
    fn the_grammar_decides_not_the_parser() {
        for ok in [
            "0",
            "-0",
            "1e400",
            "-1.5E-7",
            "123456789012345678901234567890",
            "\"\"",
            "\"\\u00e9\\n\"",
            "true",
            " [1, [2, {}], {\"a\": null}] ",
            "{\"a\":{\"b\":[]}}",
            "\"\\ud800\"",
            "\"é日\"",
            "[\n]",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            " ",
            "01",
            "1.",
            ".5",
            "+1",
            "1e",
            "-",
            "[1,]",
            "{\"a\":1,}",
            "{a:1}",
            "{\"a\" 1}",
            "[1 2]",
            "'x'",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a\nb\"",
            "nul",
            "truex",
            "[",
            "{",
            "]",
            "1 2",
            "NaN",
            "[1]]",
            "{\"a\":1]",
            "\"unterminated",
        ] {
            assert!(validate(bad).is_err(), "{bad:?} passed");
        }
        let e = validate("{\"a\": 1,\n  \"b\" 2}").unwrap_err();
        assert_eq!((e.what, e.line, e.column), ("expected `:` after the key", 2, 7));
    }

    #[test]
    fn deep_nesting_and_huge_numbers_are_json() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(validate(&deep), Ok(()));
        let objects = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        assert_eq!(validate(&objects), Ok(()));
        assert!(validate(&format!("{}{}", "[".repeat(100_000), "]".repeat(99_999))).is_err());
        assert_eq!(verdict("{type: json_valid}", &deep), (1.0, true));
        assert_eq!(verdict("{type: json_valid}", "[1e400]"), (1.0, true));
        let s = score("{type: json_valid}", &rec(json!({"output": "{\"a\": }"}))).unwrap();
        assert_eq!(s.reason.as_deref(), Some("not JSON: expected a value at line 1, column 7"));
    }

    /// serde_json is an independent reference wherever it has no limit of
    /// its own: on every text below 128 levels with f64-sized numbers, both
    /// must agree. The texts are JSON and near-JSON from a seeded generator.
    #[test]
    fn agrees_with_serde_json_within_its_limits() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        const PIECES: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            " ",
            "\"a\"",
            "\"\\n\"",
            "\"\\u0041\"",
            "1",
            "-2.5",
            "0",
            "1e3",
            "true",
            "null",
            "\n",
            "\"",
            "\\",
            "x",
            "01",
            "-",
            ".",
            "e",
        ];
        let mut agreed = 0;
        for _ in 0..20_000 {
            let n = 1 + next() % 12;
            let text: String = (0..n).map(|_| PIECES[(next() % PIECES.len() as u64) as usize]).collect();
            let serde = match serde_json::from_str::<serde::de::IgnoredAny>(&text) {
                Ok(_) => true,
                // `1e3` then `00`: a number past f64, which only the grammar accepts.
                Err(e) if e.to_string().contains("number out of range") => continue,
                Err(_) => false,
            };
            assert_eq!(validate(&text).is_ok(), serde, "{text:?}");
            agreed += serde as usize;
        }
        assert!(agreed > 500, "the generator makes valid JSON too ({agreed})");
    }

    #[test]
    fn equal_json_ignores_key_order_and_number_spelling() {
        let eq = |out: &str, want: &str| {
            let yaml = format!("{{type: equals_json, expected: '{want}'}}");
            score(&yaml, &rec(json!({"output": out}))).unwrap()
        };
        assert!(eq(r#"{"b": [1, 2.0], "a": {"x": 1e0}}"#, r#"{"a": {"x": 1}, "b": [1.0, 2]}"#).pass);
        assert!(eq(r#" [10E-1] "#, r#"[1]"#).pass);
        let s = eq(r#"{"a": {"x": [1, 3]}}"#, r#"{"a": {"x": [1, 2]}}"#);
        assert_eq!((s.pass, s.reason.as_deref()), (false, Some("at `/a/x/1`: 3 ≠ 2")));
        assert_eq!(eq(r#"{"a": 1}"#, r#"{"a": 1, "b": 2}"#).reason.as_deref(), Some("at the top: no key `b`"));
        assert_eq!(eq(r#"{"a": 1, "c": 2}"#, r#"{"a": 1}"#).reason.as_deref(), Some("at the top: unexpected key `c`"));
        assert_eq!(eq(r#"[1, 2]"#, r#"[1]"#).reason.as_deref(), Some("at the top: 2 items, expected 1"));
        assert!(!eq(r#""1""#, r#"1"#).pass, "a string is not a number");
        assert!(!eq(r#"{"a": null}"#, r#"{}"#).pass);
        assert!(eq("not json", "1").reason.unwrap().starts_with("not JSON"));
        // `expected` from the record: an object field is inserted as JSON.
        let r = rec(json!({"output": "{\"answer\": 4}", "gold": {"answer": 4.0}}));
        assert!(score("{type: equals_json, expected: '{{gold}}'}", &r).unwrap().pass);
        let r = rec(json!({"output": "1", "gold": "{oops"}));
        assert!(score("{type: equals_json, expected: '{{gold}}'}", &r).unwrap_err().contains("`expected` is not JSON"));
        // A path's value compares as it is.
        let r = rec(json!({"output": "{\"answer\": {\"city\": \"Paris\"}}"}));
        assert!(
            score("{type: equals_json, field: output.answer, expected: '{\"city\": \"Paris\"}'}", &r).unwrap().pass
        );
    }

    #[test]
    fn schema_failures_name_the_instance_path() {
        let yaml = r#"{type: json_schema, schema: {type: object, required: [answer, items],
            properties: {answer: {type: string}, items: {type: array, items: {type: integer, minimum: 0}}}}}"#;
        let check = |out: &str| score(yaml, &rec(json!({"output": out}))).unwrap();
        assert!(check(r#"{"answer": "x", "items": [0, 3]}"#).pass);
        let s = check(r#"{"answer": "x", "items": [0, -3]}"#);
        assert_eq!((s.pass, s.reason.as_deref()), (false, Some("at `/items/1`: -3 is less than the minimum of 0")));
        let s = check(r#"{"answer": 5, "items": []}"#);
        assert_eq!(s.reason.as_deref(), Some("at `/answer`: 5 is not of type \"string\""));
        let s = check(r#"{"items": []}"#);
        assert_eq!(s.reason.as_deref(), Some("at the top: \"answer\" is a required property"));
        assert!(check("{nope").reason.unwrap().starts_with("not JSON"));
        let email = "{type: json_schema, schema: {type: string, format: email}, field: output.to}";
        assert!(!score(email, &rec(json!({"output": "{\"to\": \"nobody\"}"}))).unwrap().pass, "formats are asserted");
        assert!(score(email, &rec(json!({"output": "{\"to\": \"a@b.org\"}"}))).unwrap().pass);
    }

    #[test]
    fn json_is_found_in_prose_and_fences() {
        let found = |out: &str| score("{type: contains_json}", &rec(json!({"output": out}))).unwrap();
        assert!(found("Here is the order: {\"order_id\": 7, \"items\": [1, 2]} as asked.").pass);
        assert!(found("```json\n[{\"a\": 1}]\n```").pass);
        assert!(found("{not json} but then {\"ok\": true}").pass);
        let s = found("No JSON here, only [citation needed] and {braces}.");
        assert_eq!((s.pass, s.reason.as_deref()), (false, Some("no JSON object or array in the text")));
        assert!(!found("a number 42 and a string \"x\" are not objects").pass);
        // The outermost value, not its inner ones: one value found here.
        assert_eq!(embedded("x {\"a\": {\"b\": [1]}} y"), vec![json!({"a": {"b": [1]}})]);
        assert_eq!(embedded("[1] then {\"c\": 2}"), vec![json!([1]), json!({"c": 2})]);
        // With a schema, one of the values found must hold.
        let yaml = "{type: contains_json, schema: {type: object, required: [order_id]}}";
        let with = |out: &str| score(yaml, &rec(json!({"output": out}))).unwrap();
        assert!(with("first {\"x\": 1} then {\"order_id\": 3}").pass);
        let s = with("only {\"x\": 1}");
        assert_eq!(
            (s.pass, s.reason.as_deref()),
            (false, Some("the JSON found is not valid: at the top: \"order_id\" is a required property"))
        );
        // A path's value is JSON already.
        assert!(
            score("{type: contains_json, field: output.data}", &rec(json!({"output": "{\"data\": {\"k\": 1}}"})))
                .unwrap()
                .pass
        );
        // A text of braces is tried at its first 200 only.
        let braces = "{".repeat(10_000);
        assert!(!found(&braces).pass);
    }
}
