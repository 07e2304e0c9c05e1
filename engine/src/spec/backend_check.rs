//! Checking `backends:` and `prices:` when the spec loads: each backend
//! read into a [`BackendSpec`] with every problem located (unknown fields,
//! provider-specific fields, durations, URLs holding credentials), and keys
//! kept out of specs (a literal key, a credential header, a key where a
//! variable's name goes), every secret found masked in what is shown.

use std::collections::BTreeMap;

use serde_json::Value;
use serde_yaml::{Mapping, Value as Yaml};

use super::backend::*;
use super::{yaml_brief, Seg, YamlPath};
use crate::diag::suggest;

/// Reading `backends:` and `prices:`, and keeping keys out of specs.
impl super::Parser<'_> {
    pub(super) fn backends(
        &mut self,
        value: Option<&Yaml>,
        params: &BTreeMap<String, serde_json::Value>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> BTreeMap<String, BackendSpec> {
        let at = YamlPath::root().key("backends");
        let mut out = BTreeMap::new();
        let Some(map) = self.section(value, &at, "backend name to backend", "write `backends: {bot: {provider: sim}}`")
        else {
            return out;
        };
        for (k, v) in map {
            let name = yaml_brief(k);
            let path = at.key(name.clone());
            let Some(body) = v.as_mapping() else {
                self.diags.push(
                    self.file
                        .at_value(&path, format!("backend `{name}` must be a mapping"))
                        .hint("write `provider: openai` (or `sim`), `model:` and the other fields under the name"),
                );
                continue;
            };
            // Secrets are reported, then left out so the rest is still checked.
            let has_secrets = !self.no_literal_secrets(body, &path, &name);
            let mut body = body.clone();
            body.retain(|k, _| !SECRET_FIELDS.contains(&yaml_brief(k).as_str()));
            let errors_before = self.diags.len();
            let body = super::app::defer_header_env(body);
            let resolved = self.interpolate(&Yaml::Mapping(body), &path, params, env);
            if self.diags.len() > errors_before {
                continue;
            }
            match serde_path_to_error::deserialize::<_, BackendSpec>(resolved) {
                Ok(_) if has_secrets => {}
                // `api_key_env: ${env.X}` or `--set` may resolve to the key itself.
                Ok(spec) if spec.api_key_env.as_deref().is_some_and(looks_like_secret) => {
                    let d = self
                        .file
                        .at_value(&path.key("api_key_env"), format!("`api_key_env` of backend `{name}` resolves to something that is not the name of an environment variable (it looks like a key)"))
                        .hint("write the variable's name itself: `api_key_env: OPENAI_API_KEY`")
                        .redacted();
                    self.diags.push(d);
                }
                Ok(spec) if spec.base_url.as_deref().and_then(super::url::userinfo).is_some() => {
                    let d = self
                        .file
                        .at_value(&path.key("base_url"), format!("`base_url` of backend `{name}` holds credentials (`user:...@`)"))
                        .hint("keep keys out of URLs: export the key and name it with `api_key_env:` (and `api_key_header:` for a header other than `Authorization`)")
                        .redacted();
                    self.diags.push(d);
                }
                Ok(spec) if spec.params.get("stream").is_some_and(|s| s != &Value::Bool(false)) => {
                    let d = self
                        .file
                        .at_key(&path.key("params").key("stream"), format!("backend `{name}`: flow reads whole answers, not streams"))
                        .hint("drop `stream` from `params`: a streamed answer is not JSON, and every call would fail and be retried");
                    self.diags.push(d);
                }
                Ok(spec) if !spec.duration_problems().is_empty() => {
                    for p in spec.duration_problems() {
                        let at = p.field.iter().fold(path.clone(), |at, k| at.key(*k));
                        self.diags
                            .push(self.file.at_value(&at, format!("backend `{name}`: {}", p.message)).hint(p.hint));
                    }
                }
                Ok(mut spec) => {
                    let app_ok = self.app_backend(&name, &path, &mut spec);
                    if spec.provider.needs_model() && spec.model.is_none() {
                        let hint = match spec.provider {
                            Provider::Anthropic => "add `model: claude-3-5-haiku-latest` (or another Claude model)",
                            Provider::Azure => "add `model:` (the model the deployment serves, for prices) and `deployment:` (its name; default: the model)",
                            _ => "add `model: gpt-4o-mini` (or the model your server serves)",
                        };
                        self.diags.push(
                            self.file
                                .at_key(&path.key("provider"), format!("backend `{name}` names no `model`"))
                                .hint(hint),
                        );
                        continue;
                    }
                    if spec.provider == Provider::Azure && spec.base_url.is_none() {
                        self.diags.push(
                            self.file
                                .at_key(&path.key("provider"), format!("backend `{name}` (azure) names no `base_url`"))
                                .hint(
                                    "add `base_url: https://YOUR-RESOURCE.openai.azure.com` (the resource's endpoint)",
                                ),
                        );
                        continue;
                    }
                    let only = |field: &str, set: bool, provider: Provider| {
                        (set && spec.provider != provider).then(|| (field.to_string(), provider.name()))
                    };
                    let misplaced = [
                        only("deployment", spec.deployment.is_some(), Provider::Azure),
                        only("api_version", spec.api_version.is_some(), Provider::Azure),
                        only("prompt_cache", spec.prompt_cache, Provider::Anthropic),
                        only("model_dir", spec.model_dir.is_some(), Provider::Local),
                        only("batch_size", spec.batch_size.is_some(), Provider::Local),
                        only("url", spec.url.is_some(), Provider::Http),
                        only("method", spec.method.is_some(), Provider::Http),
                        only("body", spec.body.is_some(), Provider::Http),
                        only("output", spec.output.is_some(), Provider::Http),
                        only("usage", spec.usage.is_some(), Provider::Http),
                        only("cost", spec.cost.is_some(), Provider::Http),
                        only("retry_on", spec.retry_on.is_some(), Provider::Http),
                        only("command", spec.command.is_some(), Provider::Exec),
                    ];
                    let mut bad = false;
                    for (field, provider) in misplaced.into_iter().flatten() {
                        bad = true;
                        self.diags.push(
                            self.file
                                .at_key(
                                    &path.key(field.clone()),
                                    format!(
                                        "backend `{name}`: `{field}` is for `provider: {provider}`, not `{}`",
                                        spec.provider.name()
                                    ),
                                )
                                .hint(format!("drop `{field}`, or set `provider: {provider}`")),
                        );
                    }
                    if spec.batch.is_some()
                        && !matches!(spec.provider, Provider::Openai | Provider::Anthropic | Provider::Sim)
                    {
                        bad = true;
                        self.diags.push(
                            self.file
                                .at_key(&path.key("batch"), format!("backend `{name}`: `batch` is for `provider: openai`, `anthropic` or `sim`, not `{}`", spec.provider.name()))
                                .hint("drop `batch`: only OpenAI's Batch API and Anthropic's Message Batches are supported"),
                        );
                    }
                    if !bad && spec.provider == Provider::Local {
                        bad = !self.local_model(&mut spec, &path, &name);
                    }
                    if !bad && app_ok {
                        out.insert(name, spec);
                    }
                }
                Err(e) => self.field_error(&path, &format!("backend `{name}`"), e.path(), &e.inner().to_string()),
            }
        }
        out
    }

    /// Checks a `local` backend's `model_dir` and hashes its files into
    /// `spec` (see [`super::local_model`]); false when reported.
    fn local_model(&mut self, spec: &mut BackendSpec, path: &YamlPath, name: &str) -> bool {
        let fetch = super::local_model::FETCH_HINT;
        let Some(written) = spec.model_dir.clone() else {
            let d = self
                .file
                .at_key(&path.key("provider"), format!("backend `{name}` (local) names no `model_dir`"))
                .hint(format!("add `model_dir: ../target/models/all-MiniLM-L6-v2`: {fetch}"));
            self.diags.push(d);
            return false;
        };
        let remote_only = [
            ("base_url", spec.base_url.is_some()),
            ("api_key_env", spec.api_key_env.is_some()),
            ("json_schema", spec.json_schema),
            ("send_key_anywhere", spec.send_key_anywhere),
        ];
        if let Some((field, _)) = remote_only.into_iter().find(|(_, set)| *set) {
            let d = self
                .file
                .at_key(
                    &path.key(field),
                    format!("backend `{name}`: `{field}` is for a backend reached over HTTP, not `provider: local`"),
                )
                .hint(format!("drop `{field}`: a local model is read from `model_dir`"));
            self.diags.push(d);
            return false;
        }
        if spec.batch_size == Some(0) {
            let d = self
                .file
                .at_value(&path.key("batch_size"), format!("backend `{name}`: `batch_size` must be at least 1"));
            self.diags.push(d.hint("write `batch_size: 64` (the default), or leave it out"));
            return false;
        }
        match super::local_model::ModelFiles::check(&self.file.resolve(&written)) {
            Ok(files) => {
                spec.model_files = Some(files);
                true
            }
            Err(e) => {
                let d = self.file.at_value(&path.key("model_dir"), format!("backend `{name}`: {e}"));
                let hint = format!("paths resolve against the spec's folder; {fetch}");
                self.diags.push(d.hint(hint));
                false
            }
        }
    }

    /// Rejects a key written into the spec itself: specs are committed, keys
    /// must not be. The line shown is redacted.
    fn no_literal_secrets(&mut self, body: &Mapping, path: &YamlPath, name: &str) -> bool {
        let before = self.diags.len();
        let hint = "keep keys out of specs: export the key in an environment variable and name it with `api_key_env: OPENAI_API_KEY`";
        for (key, value) in body {
            let k = yaml_brief(key);
            if SECRET_FIELDS.contains(&k.as_str()) {
                self.secret(value);
                let d = self
                    .file
                    .at_key(
                        &path.key(k.clone()),
                        format!("backend `{name}` has a literal `{k}`; flow does not read keys from specs"),
                    )
                    .hint(hint)
                    .redacted();
                self.diags.push(d);
            }
        }
        if let Some(Yaml::String(s)) = body.get("api_key_env") {
            if looks_like_secret(s) && !s.starts_with("${") {
                self.secret(&Yaml::String(s.clone()));
                let d = self
                    .file
                    .at_value(&path.key("api_key_env"), format!("`api_key_env` of backend `{name}` looks like a key, not the name of an environment variable"))
                    .hint("write the variable's name (`api_key_env: OPENAI_API_KEY`) and export the key under that name")
                    .redacted();
                self.diags.push(d);
            }
        }
        if let Some(Yaml::Mapping(headers)) = body.get("headers") {
            for (h, value) in headers {
                let h = yaml_brief(h);
                let shaped_like_a_key = value.as_str().is_some_and(has_key_prefix);
                if (is_credential_header(&h) || shaped_like_a_key) && !super::app::reads_env(body, value) {
                    self.secret(value);
                    let d = self
                        .file
                        .at_key(&path.key("headers").key(h.clone()), format!("header `{h}` of backend `{name}` would put a key in the spec"))
                        .hint("name the key's environment variable with `api_key_env:`; for a header other than `Authorization: Bearer`, add `api_key_header: api-key`")
                        .redacted();
                    self.diags.push(d);
                }
            }
        }
        self.diags.len() == before
    }

    /// Remembers a secret's text, to mask it in every line shown.
    fn secret(&mut self, value: &Yaml) {
        if let Yaml::String(s) = value {
            let s = s.trim();
            // Masking a tiny string would garble the lines shown.
            if s.len() >= 4 && !s.starts_with("${") {
                self.secrets.push(s.to_string());
            }
        }
    }

    /// A top-level section that must be a mapping (`backends:`, `prices:`);
    /// `None` when it is absent, or not a mapping (reported).
    fn section<'v>(&mut self, value: Option<&'v Yaml>, at: &YamlPath, of: &str, hint: &str) -> Option<&'v Mapping> {
        match value {
            None | Some(Yaml::Null) => None,
            Some(Yaml::Mapping(m)) => Some(m),
            Some(_) => {
                let name = at.to_string();
                self.diags.push(self.file.at_value(at, format!("`{name}` must be a mapping from {of}")).hint(hint));
                None
            }
        }
    }

    pub(super) fn prices(&mut self, value: Option<&Yaml>) -> BTreeMap<String, Price> {
        let at = YamlPath::root().key("prices");
        let mut out = BTreeMap::new();
        let hint = "write `prices: {my-model: {input: 0.15, output: 0.60}}` (USD per million tokens)";
        let Some(map) = self.section(value, &at, "model to price", hint) else {
            return out;
        };
        for (k, v) in map {
            let model = yaml_brief(k);
            let path = at.key(model.clone());
            match serde_path_to_error::deserialize::<_, Price>(v.clone()) {
                Ok(p) if p.input >= 0.0 && p.output >= 0.0 => {
                    out.insert(model, p);
                }
                Ok(_) => self.diags.push(self.file.at_value(&path, format!("price of `{model}` is negative"))),
                Err(e) => self.field_error(&path, &format!("price of `{model}`"), e.path(), &e.inner().to_string()),
            }
        }
        out
    }

    /// A serde error inside a section (`backends.bot`), located, with a
    /// did-you-mean for unknown fields and values.
    fn field_error(&mut self, base: &YamlPath, what: &str, at: &serde_path_to_error::Path, message: &str) {
        let path = base.join_serde(at);
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let allowed: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            let key_path =
                if path.0.last() == Some(&Seg::Key(field.to_string())) { path.clone() } else { path.key(field) };
            let d = self.file.at_key(&key_path, format!("unknown field `{field}` in {what}")).hint(suggest(
                field,
                allowed.iter().copied(),
                "a field",
            ));
            self.diags.push(d);
        } else if let Some(rest) = message.strip_prefix("unknown variant `") {
            let (value, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let allowed: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            let d = self.file.at_value(&path, format!("unknown value `{value}` in {what}")).hint(suggest(
                value,
                allowed.iter().copied(),
                "the value",
            ));
            self.diags.push(d);
        } else if message.contains("missing field") {
            self.diags.push(self.file.at_key(&path, format!("invalid {what}: {message}")));
        } else {
            let field = YamlPath(path.0[base.0.len().min(path.0.len())..].to_vec());
            self.diags.push(self.file.at_value(&path, format!("invalid `{field}` in {what}: {message}")));
        }
    }
}
