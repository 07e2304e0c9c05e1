//! The spec side of the user's own application as the system under test:
//! `provider: http` (any JSON endpoint: `url`, `method`, `headers`, a `body`
//! template, `output:`/`usage:`/`cost:` paths into the answer) and
//! `provider: exec` (`command: [python3, app.py]`, a program speaking JSONL).
//!
//! Kept apart from [`super::backend`] because what it checks is the app's
//! shape rather than an LLM API's: the body's templates, the response
//! paths, the statuses to retry, and the files a command names, whose
//! content hashes join the backend's identity (editing `app.py` re-runs
//! what it answered). An `http` header may read `${env.X}`: it is left
//! unresolved when the spec loads and filled when the backend is built, so
//! the value lives only in the HTTP client, never in a spec, key or file.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use serde_yaml::{Mapping, Value as Yaml};

use super::{BackendSpec, Provider, YamlPath};
use crate::template::Template;

/// The model an `http` or `exec` backend reports when it names none.
pub const APP_MODEL: &str = "app";

/// How an `http` backend sends its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[serde(alias = "post")]
    Post,
    #[serde(alias = "put")]
    Put,
    #[serde(alias = "patch")]
    Patch,
    /// No body: the rendered `body`'s fields go in the query string.
    #[serde(alias = "get")]
    Get,
}

impl HttpMethod {
    pub fn name(self) -> &'static str {
        match self {
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Get => "GET",
        }
    }
}

/// One step of a path into a JSON answer: a field, or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Field(String),
    Index(usize),
}

/// A path into a JSON answer as written in `output:` (`data.answer`,
/// `choices[0].text`; `items.0` indexes a list too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsePath {
    pub written: String,
    steps: Vec<Step>,
}

impl ResponsePath {
    pub fn parse(written: &str) -> Result<Self, String> {
        let mut steps = Vec::new();
        for part in written.trim().split('.') {
            let (name, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if name.is_empty() && (rest.is_empty() || steps.is_empty() && !part.starts_with('[')) {
                return Err(format!("`{written}` has an empty step"));
            }
            if !name.is_empty() {
                steps.push(Step::Field(name.to_string()));
            }
            while !rest.is_empty() {
                let end = rest.find(']').ok_or_else(|| format!("`{written}`: `[` without its `]`"))?;
                let i = rest[1..end].trim().parse::<usize>().map_err(|_| {
                    format!("`{written}`: `{}` is not a list index (a number in brackets)", &rest[..=end])
                })?;
                steps.push(Step::Index(i));
                rest = &rest[end + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(format!("`{written}`: write a `.` between `]` and `{rest}`"));
                }
            }
        }
        Ok(Self { written: written.trim().to_string(), steps })
    }

    /// The value at the path, if there is one.
    pub fn get<'v>(&self, mut v: &'v Value) -> Option<&'v Value> {
        for step in &self.steps {
            v = match (step, v) {
                (Step::Field(f), Value::Object(o)) => o.get(f)?,
                // `items.0`: a number names a list's element.
                (Step::Field(f), Value::Array(a)) => a.get(f.parse::<usize>().ok()?)?,
                (Step::Index(i), Value::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(v)
    }
}

/// Adds what an `http` or `exec` backend's answers depend on to its
/// identity: where and how the request goes and how the answer is read,
/// or the command and the content of the files it names.
pub(super) fn identity(spec: &BackendSpec, o: &mut Map<String, Value>) {
    match spec.provider {
        Provider::Http => {
            o.insert("method".into(), json!(spec.method.unwrap_or(HttpMethod::Post).name()));
            o.insert("body".into(), spec.body.clone().unwrap_or(Value::Null));
            o.insert("output".into(), json!(spec.output.as_deref().unwrap_or("output")));
            for (k, v) in [("usage", &spec.usage), ("cost", &spec.cost)] {
                if let Some(v) = v {
                    o.insert(k.into(), json!(v));
                }
            }
        }
        Provider::Exec => {
            o.insert("command".into(), json!(spec.command));
            o.insert("files".into(), json!(spec.command_files));
        }
        _ => {}
    }
}

fn is_http(body: &Mapping) -> bool {
    body.get("provider").and_then(Yaml::as_str) == Some(Provider::Http.name())
}

/// An `http` backend's `headers:` with their `${env.X}` escaped, so the
/// spec's interpolation leaves them for [`resolve_header`] at run time.
pub(super) fn defer_header_env(mut body: Mapping) -> Mapping {
    if !is_http(&body) {
        return body;
    }
    if let Some(Yaml::Mapping(headers)) = body.get_mut("headers") {
        for (_, v) in headers.iter_mut() {
            if let Yaml::String(s) = v {
                *s = s.replace("${env.", "$${env.");
            }
        }
    }
    body
}

/// Whether a header's value of an `http` backend takes its secret from the
/// environment (`Bearer ${env.APP_TOKEN}`), which keeps it out of the spec.
pub(super) fn reads_env(body: &Mapping, value: &Yaml) -> bool {
    is_http(body) && value.as_str().is_some_and(|v| v.contains("${env."))
}

/// Why a header's `${env.X}` could not be filled at run time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("environment variable `{0}` is not set")]
pub struct MissingEnv(pub String);

/// An `http` header's value with its `${env.X}` (and `${env.X:-default}`)
/// filled from `env`.
pub fn resolve_header(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, MissingEnv> {
    let vars = super::Vars { params: None, inputs: None, matrix: None, env };
    match super::interp::resolve(value, &vars) {
        Ok(Yaml::String(s)) => Ok(s),
        Ok(other) => Ok(super::yaml_brief(&other)),
        Err(super::InterpError::MissingEnv(name)) => Err(MissingEnv(name)),
        // Anything else was checked when the spec loaded.
        Err(_) => Ok(value.to_string()),
    }
}

/// Every string of a `body:` template with where it is, for checking.
fn body_strings<'v>(v: &'v Value, at: YamlPath, out: &mut Vec<(YamlPath, &'v str)>) {
    match v {
        Value::String(s) => out.push((at, s)),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| body_strings(x, at.index(i), out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| body_strings(x, at.key(k.clone()), out)),
        _ => {}
    }
}

impl super::Parser<'_> {
    /// Checks an `http` or `exec` backend and reads the files its command
    /// names; `false` (reported) when it cannot be used.
    pub(super) fn app_backend(&mut self, name: &str, path: &YamlPath, spec: &mut BackendSpec) -> bool {
        let before = self.diags.len();
        match spec.provider {
            Provider::Http => {
                match spec.url.as_deref().map(str::trim) {
                    None | Some("") => self.diags.push(
                        self.file
                            .at_key(&path.key("provider"), format!("backend `{name}` (http) names no `url`"))
                            .hint("add `url: http://localhost:8000/answer` (where your app answers)"),
                    ),
                    Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => self.diags.push(
                        self.file
                            .at_value(&path.key("url"), format!("`url` of backend `{name}` is not an http(s) URL"))
                            .hint("write the full URL: `http://localhost:8000/answer`"),
                    ),
                    Some(u) if super::url::userinfo(u).is_some() => self.diags.push(
                        self.file
                            .at_value(&path.key("url"), format!("`url` of backend `{name}` holds credentials (`user:...@`)"))
                            .hint("send them in a header that reads the environment: `headers: {Authorization: \"Bearer ${env.APP_TOKEN}\"}`")
                            .redacted(),
                    ),
                    Some(_) => {}
                }
                if let Some(body) = &spec.body {
                    let mut strings = Vec::new();
                    body_strings(body, path.key("body"), &mut strings);
                    for (at, s) in strings {
                        if let Err(e) = Template::parse(s) {
                            self.diags.push(
                                self.file
                                    .at_value(&at, format!("backend `{name}`: {e}"))
                                    .hint("write `{{field}}` for a record's field, `{{prompt}}` for the prompt"),
                            );
                        }
                    }
                }
                for (field, written) in [("output", &spec.output), ("usage", &spec.usage), ("cost", &spec.cost)] {
                    if let Some(Err(e)) = written.as_deref().map(ResponsePath::parse) {
                        self.diags.push(
                            self.file
                                .at_value(&path.key(field), format!("`{field}` of backend `{name}`: {e}"))
                                .hint("write a path into the JSON answer: `data.answer`, `choices[0].text`"),
                        );
                    }
                }
                for (i, code) in spec.retry_on.iter().flatten().enumerate() {
                    if !(100..=599).contains(code) {
                        self.diags.push(
                            self.file
                                .at_value(
                                    &path.key("retry_on").index(i),
                                    format!("backend `{name}`: `{code}` is not an HTTP status"),
                                )
                                .hint("list statuses from 100 to 599, e.g. `retry_on: [429, 502, 503]`"),
                        );
                    }
                }
            }
            Provider::Exec => {
                let command = spec.command.as_deref().unwrap_or_default();
                if command.first().is_none_or(|p| p.trim().is_empty()) {
                    let at = if spec.command.is_some() { path.key("command") } else { path.key("provider") };
                    self.diags.push(
                        self.file
                            .at_key(&at, format!("backend `{name}` (exec) names no `command`"))
                            .hint("add the program and its arguments: `command: [python3, app.py]`"),
                    );
                } else {
                    spec.dir = self.file.dir.clone();
                    spec.command_files = command_files(command, &self.file.dir);
                }
            }
            _ => {}
        }
        self.diags.len() == before
    }
}

/// The content hash of each argument of `command` that names a file in
/// `dir` (the program itself too, when it is a script of the project).
pub fn command_files(command: &[String], dir: &std::path::Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for arg in command.iter().filter(|a| !a.starts_with('-')) {
        let p = super::resolve_in(dir, arg);
        if p.is_file() {
            if let Ok(bytes) = std::fs::read(&p) {
                out.insert(arg.clone(), flow_cache::ContentHash::of(&bytes).hex());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_paths() {
        let v = json!({"data": {"answer": "42", "items": [[1, 2], [3]]}, "choices": [{"text": "hi"}]});
        let get = |p: &str| ResponsePath::parse(p).unwrap().get(&v).cloned();
        assert_eq!(get("data.answer"), Some(json!("42")));
        assert_eq!(get("choices[0].text"), Some(json!("hi")));
        assert_eq!(get("data.items[0][1]"), Some(json!(2)));
        assert_eq!(get("data.items.1"), Some(json!([3])));
        assert_eq!(get("data.nope"), None);
        assert_eq!(get("choices[3]"), None);
        for bad in ["", "a..b", "a[x]", "a[0", "a[0]b"] {
            assert!(ResponsePath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_env_is_deferred_and_filled_later() {
        let body: Mapping =
            serde_yaml::from_str("{provider: http, headers: {Authorization: 'Bearer ${env.T}'}}").unwrap();
        let out = defer_header_env(body);
        let h = out.get("headers").unwrap().as_mapping().unwrap();
        assert_eq!(h.get("Authorization").unwrap().as_str(), Some("Bearer $${env.T}"));
        let env = |n: &str| (n == "T").then(|| "tok".to_string());
        assert_eq!(resolve_header("Bearer ${env.T}", &env), Ok("Bearer tok".into()));
        assert_eq!(resolve_header("${env.U}", &env), Err(MissingEnv("U".into())));
        assert_eq!(resolve_header("${env.U:-x}", &env), Ok("x".into()));
    }
}
