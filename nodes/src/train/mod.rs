//! `train`: fine-tune a model on ChatExample records (`{"messages": [...]}`)
//! through an OpenAI-compatible fine-tuning API, or write the dataset and a
//! ready config for a local trainer.
//!
//! Through a backend: the records are checked (roles, content, the last
//! message from the assistant, `min_examples`) before anything is sent, the
//! JSONL is uploaded (`files`, multipart, purpose `fine-tune`), the job is
//! created (`fine_tuning/jobs`, supervised, with the hyperparameters), and
//! the job and its events are polled until it succeeds, fails or is
//! cancelled (see [`job`]). The upload and the creation are memoized by the
//! file's content and the job's parameters, so a run stopped while polling
//! (Ctrl-C, a kill) and started again replays them and follows the same job:
//! one job, however often the run is restarted. The node key covers the
//! data and the parameters too, so a finished job is a cached node.
//!
//! `export: trl | axolotl` calls nothing: it writes `train.jsonl` and the
//! trainer's config, which reads that file as is (see [`export`]). It is a
//! node option rather than a backend provider because it shares nothing with
//! a backend (no endpoint, key, limits or memo) and is a property of what
//! this node produces.

mod dataset;
mod export;
mod job;
pub mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};

use flow_engine::{
    Arity, BackendSpec, BuildCx, CheckCx, FieldSet, Node, NodeError, PlannedCall, PortType, Record, Shape, Stage,
};

use crate::backend::{self, Backends, Upload};
pub use dataset::Dataset;

pub struct Train;

/// The file the dataset is uploaded and written as.
pub const TRAIN_JSONL: &str = "train.jsonl";

/// The fields of the output record, with a backend or with `export`.
pub const OUTPUT_FIELDS: &[&str] =
    &["id", "job_id", "status", "model", "fine_tuned_model", "trained_tokens", "training_file", "examples", "events"];

/// A local trainer whose config `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Export {
    /// Hugging Face TRL's `SFTTrainer`: a Python script.
    Trl,
    /// axolotl: a YAML config.
    Axolotl,
}

/// The job's supervised hyperparameters: each a number or `auto`; unset
/// ones are left to the provider (or the local trainer).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hyperparameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_epochs: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate_multiplier: Option<Value>,
}

impl Hyperparameters {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("json")
    }

    /// A positive number set for `field` (not `auto`).
    fn number(v: &Option<Value>) -> Option<f64> {
        v.as_ref().and_then(Value::as_f64)
    }
}

/// Where the fine-tuning endpoints are, under the backend's base URL;
/// `{id}` is the job's id. OpenAI's by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Paths {
    pub files: String,
    pub jobs: String,
    pub job: String,
    pub events: String,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            files: "files".into(),
            jobs: "fine_tuning/jobs".into(),
            job: "fine_tuning/jobs/{id}".into(),
            events: "fine_tuning/jobs/{id}/events".into(),
        }
    }
}

/// Which job statuses end the wait, and how; any other status is a job
/// still on its way (`validating_files`, `queued`, `running`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Statuses {
    pub succeeded: Vec<String>,
    pub failed: Vec<String>,
    pub cancelled: Vec<String>,
}

impl Default for Statuses {
    fn default() -> Self {
        Self { succeeded: vec!["succeeded".into()], failed: vec!["failed".into()], cancelled: vec!["cancelled".into()] }
    }
}

/// `kind: train`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The backend whose fine-tuning API runs the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Instead of a backend: write the dataset and this trainer's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<Export>,
    /// The base model; default the backend's `model` (needed with `export`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Part of the fine-tuned model's name (at most 64 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Hyperparameters::is_empty")]
    pub hyperparameters: Hyperparameters,
    /// Other fields of the job's creation, sent as they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
    /// Fewest examples accepted; default 10 (OpenAI's minimum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_examples: Option<u64>,
    /// Time between polls of the job; default 10 s. How the job is
    /// followed, not what it makes: not part of the node key.
    #[serde(default, skip_serializing, deserialize_with = "duration")]
    #[schemars(with = "Option<String>")]
    pub poll_interval: Option<Duration>,
    /// Give up following a job still running after this long (it goes on
    /// at the provider; a new run resumes following it); default no limit.
    /// Not part of the node key.
    #[serde(default, skip_serializing, deserialize_with = "duration")]
    #[schemars(with = "Option<String>")]
    pub max_wait: Option<Duration>,
    #[serde(default)]
    pub paths: Paths,
    #[serde(default)]
    pub statuses: Statuses,
    /// Raise it (2, 3, ...) to start a new job on the same data after a
    /// failed or cancelled one: it is part of the job's memo key, so only
    /// this node's job is created again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    flow_engine::spec::backend::parse_duration(&v).map(Some).map_err(serde::de::Error::custom)
}

impl TrainConfig {
    fn min_examples(&self) -> u64 {
        self.min_examples.unwrap_or(10)
    }

    fn poll_interval(&self) -> Duration {
        self.poll_interval.unwrap_or(Duration::from_secs(10))
    }

    /// The base model: the node's, else the backend's.
    fn model(&self, spec: Option<&BackendSpec>) -> String {
        match (&self.model, spec) {
            (Some(m), _) => m.clone(),
            (None, Some(s)) => s.model().to_string(),
            (None, None) => String::new(),
        }
    }

    /// The body of the job's creation; `training_file` is the uploaded
    /// file's id, or (for the memo key) the dataset's content hash.
    fn job_body(&self, model: &str, training_file: Value) -> Value {
        let mut body = Map::new();
        body.insert("model".into(), json!(model));
        body.insert("training_file".into(), training_file);
        if let Some(s) = &self.suffix {
            body.insert("suffix".into(), json!(s));
        }
        if let Some(seed) = self.seed {
            body.insert("seed".into(), json!(seed));
        }
        body.insert(
            "method".into(),
            json!({"type": "supervised", "supervised": {"hyperparameters": self.hyperparameters.to_json()}}),
        );
        for (k, v) in &self.params {
            body.insert(k.clone(), v.clone());
        }
        Value::Object(body)
    }

    /// What the job's creation is memoized under: its body with the file's
    /// content in place of the file id, known before the upload answers.
    fn job_key(&self, model: &str, data: &Dataset) -> Value {
        let mut key = self.job_body(model, json!({"content": data.hash.hex()}));
        if let (Some(n), Some(o)) = (self.attempt, key.as_object_mut()) {
            o.insert("attempt".into(), json!(n));
        }
        key
    }
}

/// The upload of `data`.
fn upload(data: &Dataset) -> Upload<'_> {
    Upload { filename: TRAIN_JSONL, bytes: &data.jsonl, purpose: "fine-tune" }
}

impl Node for Train {
    type Config = TrainConfig;
    const KIND: &'static str = "train";
    // 2: events keep their `type` and `data` (a `metrics` event's figures).
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "fine-tunes a model on chat examples through a fine-tuning API, or exports them";
    const INPUTS: Arity = Arity::One;
    const SHAPE: Shape = Shape::Barrier;

    fn check(c: &TrainConfig, cx: &mut CheckCx<'_>) -> PortType {
        let spec = match (&c.backend, c.export) {
            (Some(name), None) => {
                // Not per record: `flow plan` counts the upload and the
                // creation from the whole input (`plan_batch_calls`); the
                // polls, never memoized, come on top.
                cx.calls_per_record(1);
                cx.chat_backend(&cx.field("backend"), name)
            }
            (None, Some(_)) => None,
            (Some(_), Some(_)) => {
                let hint = "drop `backend` to write files for a local trainer, or drop `export` to run the job \
                            through the backend"
                    .to_string();
                let msg = format!("node `{}`: `export` calls no backend, but `backend` is set too", cx.node());
                cx.error_at_key(&cx.field("export"), msg, Some(hint));
                None
            }
            (None, None) => {
                let hint = "name a backend with a fine-tuning API (`backend: openai`), or write the dataset for a \
                            local trainer (`export: trl` or `export: axolotl`)"
                    .to_string();
                let msg = format!("node `{}` needs `backend` or `export`", cx.node());
                cx.error(&cx.field("kind"), msg, Some(hint));
                None
            }
        };
        let model_missing = match (&c.model, &c.backend, c.export, &spec) {
            (Some(m), _, _, _) => m.trim().is_empty(),
            (None, None, Some(_), _) => true,
            (None, _, None, Some(s)) => s.model().is_empty(),
            _ => false,
        };
        if model_missing {
            let hint = if c.export.is_some() {
                "name the base model the trainer starts from, e.g. `model: Qwen/Qwen2.5-0.5B-Instruct`"
            } else {
                "name the base model to fine-tune (`model: gpt-4o-mini-2024-07-18`), here or on the backend"
            };
            cx.error(&cx.field("kind"), format!("node `{}` names no base model", cx.node()), Some(hint.into()));
        }
        let node = cx.node().to_string();
        if let Some(s) = &c.suffix {
            let n = s.chars().count();
            if n > 64 {
                cx.error(&cx.field("suffix"), format!("node `{node}`: `suffix` has {n} characters, at most 64"), None);
            }
        }
        let h = &c.hyperparameters;
        let at = cx.field("hyperparameters");
        for (name, v, integer) in [
            ("n_epochs", &h.n_epochs, true),
            ("batch_size", &h.batch_size, true),
            ("learning_rate_multiplier", &h.learning_rate_multiplier, false),
        ] {
            let Some(v) = v else { continue };
            let ok = v == "auto"
                || if integer { v.as_u64().is_some_and(|n| n >= 1) } else { v.as_f64().is_some_and(|x| x > 0.0) };
            if !ok {
                let what = if integer { "a whole number from 1" } else { "a positive number" };
                cx.error(&at.key(name), format!("node `{node}`: `{name}` must be `auto` or {what}"), None);
            }
        }
        if c.min_examples == Some(0) {
            cx.error(&cx.field("min_examples"), format!("node `{node}`: `min_examples` must be at least 1"), None);
        }
        let defaults = Paths::default();
        for (name, path, default) in [("job", &c.paths.job, defaults.job), ("events", &c.paths.events, defaults.events)]
        {
            if !path.contains("{id}") {
                let msg = format!("node `{node}`: `paths.{name}` has no `{{id}}` for the job's id");
                cx.error(&cx.field("paths").key(name), msg, Some(format!("OpenAI's is `{default}`")));
            }
        }
        let mut seen = BTreeSet::new();
        let s = &c.statuses;
        for (name, list) in [("succeeded", &s.succeeded), ("failed", &s.failed), ("cancelled", &s.cancelled)] {
            if list.is_empty() {
                cx.error(&cx.field("statuses").key(name), format!("node `{node}`: `statuses.{name}` is empty"), None);
            }
            for (i, status) in list.iter().enumerate() {
                if !seen.insert(status.clone()) {
                    let msg = format!("node `{node}`: status `{status}` is in more than one list of `statuses`");
                    let hint = "each status ends the wait one way; a list given replaces that list's default \
                                (`succeeded: [succeeded]`, `failed: [failed]`, `cancelled: [cancelled]`)";
                    cx.error(&cx.field("statuses").key(name).index(i), msg, Some(hint.into()));
                }
            }
        }
        cx.require_fields(&[("messages".to_string(), cx.field("input"))]);
        let mut fields: BTreeSet<String> = OUTPUT_FIELDS.iter().map(|s| s.to_string()).collect();
        if c.export.is_some() {
            fields.extend(["export".to_string(), "files".to_string()]);
        } else {
            fields.extend(["backend".to_string(), "provider_status".to_string()]);
        }
        PortType { name: "TrainedModel".into(), fields: FieldSet::Known(fields) }
    }

    /// The upload and the job's creation (the polls are never memoized and
    /// not known in advance); none when the data would be rejected.
    fn plan_batch_calls(
        c: &TrainConfig,
        records: &[Record],
        backends: &BTreeMap<String, BackendSpec>,
    ) -> Option<Vec<PlannedCall>> {
        let name = c.backend.as_ref()?;
        let spec = backends.get(name)?;
        let Ok(data) = Dataset::from_records(records, c.min_examples()) else {
            return Some(Vec::new());
        };
        let model = c.model(Some(spec));
        // Billed by trained tokens, not priced here.
        let call = |key| PlannedCall { key, backend: name.clone(), tokens: None };
        Some(vec![
            call(backend::upload_key(spec, &c.paths.files, &upload(&data))),
            call(backend::post_key(spec, &c.paths.jobs, &c.job_key(&model, &data))),
        ])
    }

    fn build(c: &TrainConfig, cx: &BuildCx) -> Result<Stage, NodeError> {
        if let Some(format) = c.export {
            return Ok(Stage::Barrier(Box::new(export::ExportRun {
                config: c.clone(),
                format,
                node: cx.node.clone(),
            })));
        }
        let name = c.backend.as_deref().ok_or_else(|| NodeError::new("no `backend` to run the job"))?;
        let backend = Backends::of(cx, name)?;
        Ok(Stage::Barrier(Box::new(job::JobRun {
            node: cx.node.clone(),
            model: c.model(Some(&backend.spec)),
            config: c.clone(),
            backend,
            meter: cx.meter.clone(),
            memo_reads: cx.memo_reads,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> TrainConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_new_attempt_is_a_new_job_key() {
        let data = Dataset { jsonl: b"x\n".to_vec(), examples: 1, hash: flow_engine::cache::ContentHash::of(b"x\n") };
        let first = config("{backend: ft}").job_key("m", &data);
        assert_eq!(first, config("{backend: ft}").job_key("m", &data));
        assert_ne!(first, config("{backend: ft, attempt: 2}").job_key("m", &data));
    }

    #[test]
    fn the_job_body_is_openais_and_its_key_the_content() {
        let c = config(
            "{backend: ft, suffix: golden, seed: 7, hyperparameters: {n_epochs: 3, batch_size: auto}, params: {integrations: []}}",
        );
        let body = c.job_body("base-1", json!("file-1"));
        assert_eq!(
            body,
            json!({"model": "base-1", "training_file": "file-1", "suffix": "golden", "seed": 7, "integrations": [],
                   "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": "auto"}}}})
        );
        let data = Dataset { jsonl: b"x\n".to_vec(), examples: 1, hash: flow_engine::cache::ContentHash::of(b"x\n") };
        assert_eq!(
            c.job_key("base-1", &data)["training_file"]["content"],
            flow_engine::cache::ContentHash::of(b"x\n").hex()
        );
    }

    #[test]
    fn how_a_job_is_followed_is_not_in_the_key() {
        let a = serde_json::to_value(config("{backend: ft, poll_interval: 10ms, max_wait: 1h}")).unwrap();
        let b = serde_json::to_value(config("{backend: ft}")).unwrap();
        assert_eq!(a, b);
        assert_eq!(config("{backend: ft, poll_interval: 250ms}").poll_interval(), Duration::from_millis(250));
        assert_eq!(config("{backend: ft}").poll_interval(), Duration::from_secs(10));
        let e = serde_yaml::from_str::<TrainConfig>("{backend: ft, poll_interval: soon}").unwrap_err();
        assert!(e.to_string().contains("not a duration"), "{e}");
    }
}
