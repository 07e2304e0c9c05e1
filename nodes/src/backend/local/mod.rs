//! `provider: local`: sentence embeddings computed in this process, from a
//! sentence-transformers folder on disk (`model_dir`), with no server and
//! nothing downloaded. The all-MiniLM-L6-v2 recipe: the folder's WordPiece
//! tokenizer (`tokenizer.json`, truncated at the model's `max_seq_length`),
//! a BERT forward pass ([`bert`], on candle's CPU tensors), the mean of the token states
//! under the attention mask (padding left out), L2 normalization.
//!
//! It is a transport like HTTP: a call goes through the same memo, slots,
//! retries and accounting, and answers in the OpenAI embeddings shape, so
//! every kind that embeds (extract, synthesize, `embedding_similarity`)
//! uses it unchanged. The model is loaded on the first call that reaches
//! it (a run whose calls are all memo hits never loads it) and shared by
//! the run; the forward passes run on tokio's blocking pool, each batch
//! spread over the cores by candle's matrix kernels. A call's texts are
//! sorted by length and cut into batches of `batch_size`, so little of a
//! batch is padding.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use flow_engine::spec::local_model::{ModelDirError, ModelFiles};
use flow_engine::BackendSpec;
use serde_json::{json, Value};
use tokenizers::{Tokenizer, TruncationParams};

use super::{CallError, Endpoint, Request};
use bert::{Bert, Config};

mod bert;

/// Sentences per forward pass when the spec says none: the fastest on 2
/// cores of those measured (`cargo bench --bench embed`).
pub const DEFAULT_BATCH: usize = 64;

/// Why a model folder could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read `{}`: {source}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("`{}` is not a BERT config: {source}", .path.display())]
    Config { path: PathBuf, source: serde_json::Error },
    #[error("`{}` describes a model flow cannot run: {message}", .path.display())]
    Unsupported { path: PathBuf, message: String },
    #[error("`{}`: {message}", .path.display())]
    Tokenizer { path: PathBuf, message: String },
    #[error("`{}` does not hold the BERT weights `config.json` describes: {source}", .path.display())]
    Weights { path: PathBuf, source: candle_core::Error },
}

/// Why texts could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("tokenizing: {0}")]
    Tokenize(String),
    #[error("the forward pass: {0}")]
    Forward(#[from] candle_core::Error),
}

/// A loaded sentence-embedding model.
pub struct Model {
    bert: Bert,
    tokenizer: Tokenizer,
    pad_id: u32,
    dims: usize,
}

impl Model {
    /// Loads the model in `dir`: its config, tokenizer and weights (memory
    /// mapped, as f32).
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| LoadError::Read { path, source })
        };
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|source| LoadError::Config { path: dir.join("config.json"), source })?;
        if let Some(message) = config.unsupported() {
            return Err(LoadError::Unsupported { path: dir.join("config.json"), message });
        }
        // sentence-transformers truncates at `max_seq_length` (256 for
        // MiniLM), not at the 128 tokenizer.json was saved with.
        let max_len = std::fs::read(dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["max_seq_length"].as_u64())
            .map_or(config.max_position_embeddings, |n| (n as usize).min(config.max_position_embeddings));
        let tokenizer_path = dir.join("tokenizer.json");
        let bad_tokenizer =
            |e: tokenizers::Error| LoadError::Tokenizer { path: tokenizer_path.clone(), message: e.to_string() };
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?).map_err(bad_tokenizer)?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(bad_tokenizer)?;
        let weights = dir.join("model.safetensors");
        let bad_weights = |source| LoadError::Weights { path: weights.clone(), source };
        // SAFETY: the file is mapped read-only; flow does not write it, and
        // a model folder changed under a running process is the user's.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu) }
            .map_err(bad_weights)?;
        let bert = Bert::load(vb, &config).map_err(bad_weights)?;
        Ok(Self { bert, tokenizer, pad_id: config.pad_token_id as u32, dims: config.hidden_size })
    }

    /// The length of the vectors.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The vectors of `texts`, in order, and the tokens read (padding not
    /// counted), in forward passes of at most `batch` texts of like length.
    pub fn embed(&self, texts: &[String], batch: usize) -> Result<(Vec<Vec<f32>>, u64), EmbedError> {
        let encodings =
            self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut out = vec![Vec::new(); texts.len()];
        let tokens = encodings.iter().map(|e| e.get_ids().len() as u64).sum();
        for chunk in order.chunks(batch.max(1)) {
            let len = chunk.iter().map(|&i| encodings[i].get_ids().len()).max().unwrap_or(0);
            let (mut ids, mut mask) = (Vec::with_capacity(chunk.len() * len), Vec::with_capacity(chunk.len() * len));
            for &i in chunk {
                let e = encodings[i].get_ids();
                ids.extend(e.iter().copied().chain(std::iter::repeat(self.pad_id)).take(len));
                mask.extend((0..len).map(|j| u32::from(j < e.len())));
            }
            let shape = (chunk.len(), len);
            let ids = Tensor::from_vec(ids, shape, &Device::Cpu)?;
            let mask = Tensor::from_vec(mask, shape, &Device::Cpu)?;
            let states = self.bert.forward(&ids, &mask)?;
            // Mean over the tokens the mask keeps, then unit length (as
            // torch's `normalize`: the norm at least 1e-12).
            let keep = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = states.broadcast_mul(&keep)?.sum(1)?;
            let mean = summed.broadcast_div(&keep.sum(1)?.clamp(1e-9, f32::MAX)?)?;
            let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
            let vectors = mean.broadcast_div(&norm)?.to_vec2::<f32>()?;
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok((out, tokens))
    }
}

/// The `model_dir` of a `local` backend built without the spec loader
/// (which checks and hashes it), to check here; `None` when checked.
pub(super) fn unchecked(spec: &BackendSpec) -> Option<&str> {
    match (spec.provider, &spec.model_files) {
        (flow_engine::Provider::Local, None) => Some(spec.model_dir.as_deref().unwrap_or_default()),
        _ => None,
    }
}

/// `spec` with its model folder checked and hashed (its identity).
pub(super) fn checked(spec: &BackendSpec, dir: &str) -> Result<BackendSpec, ModelDirError> {
    let mut spec = spec.clone();
    spec.model_files = Some(ModelFiles::check(Path::new(dir))?);
    Ok(spec)
}

/// The transport of a `local` backend: its model folder, loaded once.
pub struct Local {
    name: String,
    dir: PathBuf,
    model_name: String,
    batch: usize,
    model: tokio::sync::OnceCell<Result<Arc<Model>, String>>,
}

impl Local {
    /// The transport of backend `name`, its `model_files` checked (see
    /// [`ModelFiles::check`]).
    pub fn new(name: &str, spec: &BackendSpec) -> Self {
        let dir = spec.model_files.as_ref().map(|f| f.dir.clone()).unwrap_or_default();
        Self {
            name: name.to_string(),
            dir,
            model_name: spec.model().to_string(),
            batch: spec.batch_size.map_or(DEFAULT_BATCH, |b| b.max(1) as usize),
            model: tokio::sync::OnceCell::new(),
        }
    }

    /// The model, loaded by the first call that needs it; a folder that
    /// does not load fails every call of the run with the same message.
    async fn model(&self) -> Result<Arc<Model>, CallError> {
        let dir = self.dir.clone();
        let loaded = self
            .model
            .get_or_init(|| async move {
                let load = tokio::task::spawn_blocking(move || Model::load(&dir).map(Arc::new));
                match load.await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(e) => Err(format!("loading the model stopped: {e}")),
                }
            })
            .await;
        loaded.clone().map_err(|e| CallError::fatal(format!("backend `{}` (local): {e}", self.name)))
    }

    /// One attempt at a request: embeddings are computed here; nothing
    /// else is served.
    pub(super) async fn send(&self, request: Request<'_>) -> Result<Value, CallError> {
        let body = match request {
            Request::Endpoint(Endpoint::Embeddings, body, _) => body,
            Request::Endpoint(Endpoint::Chat, ..) => {
                return Err(CallError::fatal(format!(
                    "backend `{}` (local) computes embeddings only, not chat completions; \
                     hint: name an `openai` backend (a local llama.cpp or vLLM server works) for chat",
                    self.name
                )))
            }
            _ => {
                return Err(CallError::fatal(format!(
                    "backend `{}` (local) has no files or fine-tuning API; hint: use `export:` to write the dataset",
                    self.name
                )))
            }
        };
        let texts: Vec<String> = match body["input"].as_array() {
            Some(items) => items.iter().map(|t| t.as_str().unwrap_or_default().to_string()).collect(),
            None => return Err(CallError::fatal("an embeddings request's `input` is not a list of texts")),
        };
        let model = self.model().await?;
        if let Some(asked) = body["dimensions"].as_u64().filter(|d| *d as usize != model.dims()) {
            return Err(CallError::fatal(format!(
                "backend `{}` (local) gives {}-dimensional vectors, not {asked}; hint: drop `dimensions`",
                self.name,
                model.dims()
            )));
        }
        let batch = self.batch;
        let worker = model.clone();
        let embedded = tokio::task::spawn_blocking(move || worker.embed(&texts, batch))
            .await
            .map_err(|e| CallError::fatal(format!("backend `{}` (local): the forward pass stopped: {e}", self.name)))?;
        let (vectors, tokens) =
            embedded.map_err(|e| CallError::fatal(format!("backend `{}` (local): {e}", self.name)))?;
        let data: Vec<Value> = vectors
            .into_iter()
            .enumerate()
            .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
            .collect();
        Ok(json!({
            "object": "list",
            "data": data,
            "model": self.model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model `scripts/fetch-minilm.sh` fetches, when it is there.
    pub(crate) fn minilm() -> Option<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/models/all-MiniLM-L6-v2");
        if ModelFiles::check(&dir).is_ok() {
            return Some(dir);
        }
        eprintln!("skipped: no model in {} (run scripts/fetch-minilm.sh)", dir.display());
        None
    }

    fn cosine(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b))
    }

    /// Compares flow's vectors with sentence-transformers' (stored by
    /// `scripts/minilm-reference.py`); the lowest cosine.
    fn against(reference: &Path, model: &Model) -> f64 {
        let stored: Value = serde_json::from_slice(&std::fs::read(reference).unwrap()).unwrap();
        let sentences = stored["sentences"].as_array().unwrap();
        let texts: Vec<String> = sentences.iter().map(|s| s["text"].as_str().unwrap().to_string()).collect();
        let (ours, _) = model.embed(&texts, DEFAULT_BATCH).unwrap();
        let mut lowest = f64::MAX;
        for (s, v) in sentences.iter().zip(&ours) {
            let theirs: Vec<f32> = s["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            assert_eq!(v.len(), theirs.len());
            let c = cosine(v, &theirs);
            assert!(c >= 0.999, "cosine {c} for {:?}", s["text"]);
            lowest = lowest.min(c);
        }
        eprintln!("{} sentences, lowest cosine {lowest:.7} (1 - {:.1e})", texts.len(), 1.0 - lowest);
        lowest
    }

    #[test]
    fn vectors_match_sentence_transformers() {
        let Some(dir) = minilm() else { return };
        let model = Model::load(&dir).unwrap();
        assert_eq!(model.dims(), 384);
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/local/minilm-reference.json");
        against(&fixture, &model);
    }

    /// The one-off comparison on 100 sentences (`scripts/minilm-reference.py`
    /// writes the reference; it needs torch, so this is not run in CI).
    #[test]
    #[ignore]
    fn matches_sentence_transformers_on_100() {
        let dir = minilm().expect("scripts/fetch-minilm.sh");
        let model = Model::load(&dir).unwrap();
        against(&dir.join("../minilm-reference-100.json"), &model);
    }

    /// Padding is left out of the mean: a text's vector does not depend on
    /// the batch it is padded in, nor on its place.
    #[test]
    fn vectors_do_not_depend_on_the_batch() {
        let Some(dir) = minilm() else { return };
        let model = Model::load(&dir).unwrap();
        let texts: Vec<String> =
            ["a", "a somewhat longer sentence about a refund that never came", "ok", ""].map(String::from).to_vec();
        let (alone, tokens) = model.embed(&texts, 1).unwrap();
        let (together, _) = model.embed(&texts, 64).unwrap();
        assert_eq!(tokens, 3 + 13 + 3 + 2, "[CLS] … [SEP] per text, no padding");
        for (a, b) in alone.iter().zip(&together) {
            assert!(cosine(a, b) > 0.99999, "{}", cosine(a, b));
            let norm: f32 = b.iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-4);
        }
        let reversed: Vec<String> = texts.iter().rev().cloned().collect();
        let (back, _) = model.embed(&reversed, 64).unwrap();
        assert!(cosine(&back[3], &together[0]) > 0.99999);
        assert!(cosine(&together[0], &together[1]) < 0.9, "different texts, different vectors");
    }

    #[test]
    fn a_folder_that_is_not_a_model_fails_to_load_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("config.json"), "{\"hidden_size\": 4}").unwrap();
        let Err(e) = Model::load(d.path()) else { panic!("loaded") };
        assert!(e.to_string().contains("config.json` is not a BERT config"), "{e}");
        let Some(minilm) = minilm() else { return };
        for f in ["config.json", "tokenizer.json"] {
            std::fs::copy(minilm.join(f), d.path().join(f)).unwrap();
        }
        std::fs::write(d.path().join("model.safetensors"), b"not weights").unwrap();
        let Err(e) = Model::load(d.path()) else { panic!("loaded") };
        assert!(e.to_string().contains("model.safetensors` does not hold the BERT weights"), "{e}");
    }
}
