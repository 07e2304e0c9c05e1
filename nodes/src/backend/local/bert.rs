//! The BERT encoder (Devlin et al.; Hugging Face's `BertModel` layout and
//! weight names) on candle's tensors: embeddings, then self-attention and
//! feed-forward layers, each with a residual and a layer norm. Written
//! here rather than taken from candle-transformers, which compiles every
//! model it ships (minutes of CI) for the ~100 lines used; the vectors are
//! checked against sentence-transformers' (see the tests of the parent
//! module).

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

/// What of a `config.json` the encoder reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    /// Only `gelu` (the exact, erf form), BERT's and MiniLM's.
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    /// Only `absolute` (the default) is read.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

impl Config {
    /// What this encoder cannot run, if anything.
    pub fn unsupported(&self) -> Option<String> {
        if self.hidden_act != "gelu" {
            return Some(format!("`hidden_act: {}` (only `gelu` is supported)", self.hidden_act));
        }
        if let Some(p) = self.position_embedding_type.as_deref().filter(|p| *p != "absolute") {
            return Some(format!("`position_embedding_type: {p}` (only `absolute` is supported)"));
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Some(format!(
                "`hidden_size: {}` is not a multiple of `num_attention_heads: {}`",
                self.hidden_size, self.num_attention_heads
            ));
        }
        None
    }
}

struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    out: Linear,
    out_norm: LayerNorm,
}

/// A loaded encoder.
pub struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    heads: usize,
}

impl Bert {
    /// The weights under `vb` (`embeddings.*`, `encoder.layer.N.*`; or
    /// under `bert.`, as a `BertForMaskedLM` checkpoint has them).
    pub fn load(vb: VarBuilder, c: &Config) -> Result<Self> {
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") { vb } else { vb.pp("bert") };
        let h = c.hidden_size;
        let e = vb.pp("embeddings");
        let embeddings = Embeddings {
            word: embedding(c.vocab_size, h, e.pp("word_embeddings"))?,
            position: embedding(c.max_position_embeddings, h, e.pp("position_embeddings"))?,
            token_type: embedding(c.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            norm: layer_norm(h, c.layer_norm_eps, e.pp("LayerNorm"))?,
        };
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let (a, s) = (l.pp("attention"), l.pp("attention.self"));
                Ok(Layer {
                    query: linear(h, h, s.pp("query"))?,
                    key: linear(h, h, s.pp("key"))?,
                    value: linear(h, h, s.pp("value"))?,
                    attention_out: linear(h, h, a.pp("output.dense"))?,
                    attention_norm: layer_norm(h, c.layer_norm_eps, a.pp("output.LayerNorm"))?,
                    intermediate: linear(h, c.intermediate_size, l.pp("intermediate.dense"))?,
                    out: linear(c.intermediate_size, h, l.pp("output.dense"))?,
                    out_norm: layer_norm(h, c.layer_norm_eps, l.pp("output.LayerNorm"))?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { embeddings, layers, heads: c.num_attention_heads })
    }

    /// The last hidden states, `(batch, tokens, hidden)`, of `ids`
    /// (`(batch, tokens)`, u32) where `mask` (the same shape, 1 for a
    /// token, 0 for padding) lets attention see.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (_, n) = ids.dims2()?;
        let e = &self.embeddings;
        let positions = Tensor::arange(0u32, n as u32, ids.device())?;
        let x = (e.word.forward(ids)? + e.token_type.forward(&ids.zeros_like()?)?)?;
        let mut x = e.norm.forward(&x.broadcast_add(&e.position.forward(&positions)?)?)?;
        // Padding gets the lowest score (as Hugging Face's `finfo.min`), so
        // its attention weight is 0.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(1)?.unsqueeze(1)?;
        let bias = ((mask.ones_like()? - mask)? * f32::MIN as f64)?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias, self.heads)?;
        }
        Ok(x)
    }
}

impl Layer {
    fn forward(&self, x: &Tensor, bias: &Tensor, heads: usize) -> Result<Tensor> {
        let (b, n, h) = x.dims3()?;
        let d = h / heads;
        let split = |t: Tensor| t.reshape((b, n, heads, d))?.transpose(1, 2)?.contiguous();
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?.broadcast_add(bias)?;
        let weights = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let context = weights.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((b, n, h))?;
        let a = self.attention_norm.forward(&(self.attention_out.forward(&context)? + x)?)?;
        let i = self.intermediate.forward(&a)?.gelu_erf()?;
        self.out_norm.forward(&(self.out.forward(&i)? + a)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_it_cannot_run_are_named() {
        let config = |extra: &str| -> Config {
            serde_json::from_str(&format!(
                "{{\"vocab_size\": 10, \"hidden_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \
                 \"intermediate_size\": 16, \"max_position_embeddings\": 16, \
                 \"type_vocab_size\": 2, \"layer_norm_eps\": 1e-12{extra}}}"
            ))
            .unwrap()
        };
        let gelu = ", \"hidden_act\": \"gelu\"";
        assert_eq!(config(gelu).unsupported(), None);
        assert!(config(", \"hidden_act\": \"relu\"").unsupported().unwrap().contains("only `gelu`"));
        let relative = format!("{gelu}, \"position_embedding_type\": \"relative_key\"");
        assert!(config(&relative).unsupported().unwrap().contains("relative_key"));
        let mut odd = config(gelu);
        odd.num_attention_heads = 3;
        assert!(odd.unsupported().unwrap().contains("not a multiple"));
    }
}
