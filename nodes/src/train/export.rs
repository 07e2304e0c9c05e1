//! `export: trl | axolotl`: the checked dataset as `train.jsonl` and a
//! ready config for a local trainer that reads that file as is (chat
//! `messages`, the model's own chat template). Nothing is called: the files
//! are the node's artifacts, in the run folder under the node's name.
//!
//! The hyperparameters map onto the trainer's: `n_epochs` to the epochs,
//! `batch_size` to the per-device batch, `learning_rate_multiplier` to the
//! trainer's default learning rate (2e-5) times it; `auto` or unset leaves
//! the trainer's default.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};

use flow_engine::{Artifact, BarrierOutput, BarrierStage, NodeError, Record, Spool, META_JSON, SUMMARY_MD};

use super::{Dataset, Export, Hyperparameters, TrainConfig, TRAIN_JSONL};

/// The learning rate a multiplier scales (TRL's and a common axolotl one).
const BASE_LEARNING_RATE: f64 = 2e-5;

/// The barrier stage that writes the files.
pub struct ExportRun {
    pub config: TrainConfig,
    pub format: Export,
    pub node: String,
}

impl BarrierStage for ExportRun {
    fn run(self: Box<Self>, inputs: Vec<Vec<Record>>) -> BoxFuture<'static, BarrierOutput> {
        self.run_spooled(vec![Spool::in_memory(inputs.into_iter().flatten().collect())])
    }

    fn run_spooled(self: Box<Self>, inputs: Vec<Spool>) -> BoxFuture<'static, BarrierOutput> {
        Box::pin(async move {
            let min = self.config.min_examples();
            let data = tokio::task::spawn_blocking(move || {
                let input = inputs.into_iter().next().unwrap_or_default();
                super::dataset::from_spool(&input, min)
            })
            .await
            .map_err(|e| NodeError::new(format!("reading the training data panicked: {e}")))??;
            Ok(self.export(data))
        })
    }
}

/// A string as a literal both Python and YAML read back as is (JSON's
/// double-quoted form is one for each).
fn literal(s: &str) -> String {
    serde_json::to_string(s).expect("json")
}

impl ExportRun {
    fn export(&self, data: Dataset) -> (Vec<Record>, Vec<Artifact>) {
        let c = &self.config;
        let model = c.model.clone().unwrap_or_default();
        let (config_name, config_text, run) = match self.format {
            Export::Trl => {
                ("train_sft.py", trl(&self.node, &model, c), "pip install trl datasets && python train_sft.py")
            }
            Export::Axolotl => ("axolotl.yaml", axolotl(&self.node, &model, c), "axolotl train axolotl.yaml"),
        };
        let format = match self.format {
            Export::Trl => "trl",
            Export::Axolotl => "axolotl",
        };
        let files = [TRAIN_JSONL, config_name];
        let id = format!("export-{}", &data.hash.hex()[..12]);
        let record = json!({
            "id": id,
            "job_id": null,
            "status": "exported",
            "model": model,
            "fine_tuned_model": null,
            "trained_tokens": null,
            "training_file": TRAIN_JSONL,
            "examples": data.examples,
            "events": [],
            "export": format,
            "files": files,
        });
        let meta = json!({"export": format, "model": model, "examples": data.examples, "files": files});
        let summary = format!(
            "exported {} examples for {format}: {TRAIN_JSONL} and {config_name} in this node's folder of the run; \
             there: {run}\n",
            data.examples
        );
        let mut meta_bytes = serde_json::to_vec_pretty(&meta).expect("json");
        meta_bytes.push(b'\n');
        let artifacts = vec![
            Artifact { name: TRAIN_JSONL.into(), bytes: data.jsonl },
            Artifact { name: config_name.into(), bytes: config_text.into_bytes() },
            Artifact { name: META_JSON.into(), bytes: meta_bytes },
            Artifact { name: SUMMARY_MD.into(), bytes: summary.into_bytes() },
        ];
        let Value::Object(fields) = record else { unreachable!("an object") };
        (vec![Arc::new(fields)], artifacts)
    }
}

/// A whole number set for a hyperparameter (not `auto`).
fn whole(v: &Option<Value>) -> Option<u64> {
    v.as_ref().and_then(Value::as_u64)
}

fn learning_rate(h: &Hyperparameters) -> Option<f64> {
    Hyperparameters::number(&h.learning_rate_multiplier).map(|m| BASE_LEARNING_RATE * m)
}

/// A TRL `SFTTrainer` script that trains on `train.jsonl` beside it.
fn trl(node: &str, model: &str, c: &TrainConfig) -> String {
    let h = &c.hyperparameters;
    let mut args = vec!["    output_dir=str(HERE / \"out\"),".to_string()];
    if let Some(n) = whole(&h.n_epochs) {
        args.push(format!("    num_train_epochs={n},"));
    }
    if let Some(b) = whole(&h.batch_size) {
        args.push(format!("    per_device_train_batch_size={b},"));
    }
    if let Some(lr) = learning_rate(h) {
        args.push(format!("    learning_rate={lr:e},"));
    }
    if let Some(seed) = c.seed {
        args.push(format!("    seed={seed},"));
    }
    format!(
        r#"# Generated by flow (node `{node}`): supervised fine-tuning of {model} with TRL on
# train.jsonl beside this file, read as is: one {{"messages": [...]}} chat per line,
# formatted with the model's chat template.
# Run from this folder: pip install trl datasets && python train_sft.py
from pathlib import Path

from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

HERE = Path(__file__).resolve().parent

dataset = load_dataset("json", data_files=str(HERE / "train.jsonl"), split="train")
config = SFTConfig(
{args}
)
trainer = SFTTrainer(model={model_literal}, train_dataset=dataset, args=config)
trainer.train()
trainer.save_model()
"#,
        args = args.join("\n"),
        model_literal = literal(model),
    )
}

/// An axolotl config that trains on `train.jsonl` beside it.
fn axolotl(node: &str, model: &str, c: &TrainConfig) -> String {
    let h = &c.hyperparameters;
    let mut extra = String::new();
    if let Some(seed) = c.seed {
        extra.push_str(&format!("seed: {seed}\n"));
    }
    format!(
        r#"# Generated by flow (node `{node}`): supervised fine-tuning of {model} with axolotl
# on train.jsonl beside this file, read as is: one {{"messages": [...]}} chat per line,
# formatted with the model's chat template, trained on the assistant's turns.
# Run from this folder: axolotl train axolotl.yaml
base_model: {model_literal}
chat_template: tokenizer_default
datasets:
  - path: train.jsonl
    ds_type: json
    type: chat_template
    field_messages: messages
    roles_to_train: [assistant]
dataset_prepared_path: prepared
output_dir: out
sequence_len: 2048
num_epochs: {epochs}
micro_batch_size: {batch}
gradient_accumulation_steps: 1
learning_rate: {lr:e}
optimizer: adamw_torch
lr_scheduler: cosine
{extra}"#,
        model_literal = literal(model),
        epochs = whole(&h.n_epochs).unwrap_or(3),
        batch = whole(&h.batch_size).unwrap_or(1),
        lr = learning_rate(h).unwrap_or(BASE_LEARNING_RATE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> TrainConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn trl_script_carries_the_model_and_hyperparameters() {
        let c = config("{export: trl, model: \"Qwen/Qwen2.5-0.5B\", seed: 3, hyperparameters: {n_epochs: 2, batch_size: auto, learning_rate_multiplier: 0.5}}");
        let s = trl("ft", "Qwen/Qwen2.5-0.5B", &c);
        assert!(s.contains("SFTTrainer(model=\"Qwen/Qwen2.5-0.5B\""), "{s}");
        assert!(s.contains("num_train_epochs=2,") && s.contains("seed=3,") && s.contains("learning_rate=1e-5,"), "{s}");
        assert!(!s.contains("per_device_train_batch_size"), "auto is the trainer's default: {s}");
        assert!(s.contains("data_files=str(HERE / \"train.jsonl\")"), "{s}");
    }

    #[test]
    fn axolotl_config_is_yaml_reading_the_jsonl() {
        let c =
            config("{export: axolotl, model: \"meta-llama/Llama-3.2-1B-Instruct\", hyperparameters: {batch_size: 4}}");
        let text = axolotl("ft", "meta-llama/Llama-3.2-1B-Instruct", &c);
        let y: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(y["base_model"], "meta-llama/Llama-3.2-1B-Instruct");
        assert_eq!(y["datasets"][0]["path"], "train.jsonl");
        assert_eq!(y["datasets"][0]["type"], "chat_template");
        assert_eq!(y["datasets"][0]["field_messages"], "messages");
        assert_eq!(y["num_epochs"], 3);
        assert_eq!(y["micro_batch_size"], 4);
        assert_eq!(y["learning_rate"].as_f64(), Some(2e-5));
    }
}
