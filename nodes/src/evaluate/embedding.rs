//! The `embedding_similarity` metric: the cosine between the embeddings of
//! the field and of `expected`, both in one call to a backend's embeddings
//! endpoint per record. The call goes through the backend's whole pipeline
//! (memo, limits, retries), so a re-run or a grown test set pays only for
//! records it has not embedded, and `flow plan` counts the calls (see
//! [`request`]).

use std::sync::Arc;

use flow_engine::{BackendSpec, PlannedCall, Record, Template};

use super::metric::{Score, ScoreError};
use crate::backend::{self, Backend, CallOpts, Endpoint, MemoFailed};

pub struct EmbeddingSimilarity {
    backend: Arc<Backend>,
    expected: Template,
    threshold: f64,
}

/// The texts one record's call embeds: the field under test, then the
/// expected text.
pub fn texts(expected: &Template, text: &str, record: &Record) -> Result<Vec<String>, ScoreError> {
    Ok(vec![text.to_string(), expected.render(record)?.into_owned()])
}

/// One record's call on backend `name`, filed as [`Backend::embed`] files it.
pub fn request(name: &str, spec: &BackendSpec, texts: &[String]) -> PlannedCall {
    backend::planned(name, spec, Endpoint::Embeddings, &backend::embed_body(spec, texts, None), 0)
}

impl EmbeddingSimilarity {
    /// The backend that embeds.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    pub fn new(backend: Arc<Backend>, expected: Template, threshold: f64) -> Self {
        Self { backend, expected, threshold }
    }

    /// Why the backend sends no more calls (see [`Backend::halted`]).
    pub fn halted(&self) -> Option<MemoFailed> {
        self.backend.halted()
    }

    /// The verdict on `text`, the field under test of `record`: the cosine
    /// as the value, the score that cosine clamped to 0..=1 (opposite
    /// directions are as unlike as orthogonal ones, for a mean).
    pub async fn score(&self, record: &Record, text: &str, opts: CallOpts<'_>) -> Result<Score, ScoreError> {
        let texts = texts(&self.expected, text, record)?;
        let v = self.backend.embed(&texts, opts).await.map_err(ScoreError::Embed)?;
        let c = cosine(&v[0], &v[1]);
        Ok(Score::of(c.clamp(0.0, 1.0), c >= self.threshold).with_value(super::metric::round6(c)))
    }
}

/// Cosine of two vectors, in f64; 0 when either is all zeros or they
/// differ in length (a server that answers garbage does not pass).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use flow_engine::Meter;

    use super::*;
    use crate::backend::Backends;
    use crate::evaluate::metric::testing::rec;

    #[test]
    fn cosine_by_hand() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 2.0]), 0.0);
        assert!((cosine(&[1.0, 1.0], &[1.0, 0.0]) - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-7);
        assert!((cosine(&[1.0, 2.0], &[-1.0, -2.0]) + 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
    }

    /// On `sim` (hashed bag-of-words embeddings): the same words in any
    /// order and case are cosine 1; the figure is the cosine of the sim's
    /// own vectors; the call is memoized under the key the plan computes.
    #[tokio::test]
    async fn scores_through_the_backend_and_its_memo() {
        let spec: BackendSpec = serde_yaml::from_str("{provider: sim}").unwrap();
        let specs = BTreeMap::from([("emb".to_string(), spec.clone())]);
        let backends = Backends::new(&specs, &BTreeMap::new(), &["emb".into()], None, &[], &|_| None).unwrap();
        let m = EmbeddingSimilarity::new(backends.get("emb").unwrap(), Template::parse("{{expected}}").unwrap(), 0.8);
        let meter = Meter::default();
        let opts = CallOpts { meter: &meter, memo_reads: true, sample: 0 };
        let r = rec(json!({"output": "Paris is the capital", "expected": "the capital is paris"}));
        let s = m.score(&r, "Paris is the capital", opts).await.unwrap();
        assert!((s.score - 1.0).abs() < 1e-6 && s.pass, "{s:?}");
        let other = "a completely unrelated sentence about cheese";
        let s = m.score(&r, other, opts).await.unwrap();
        let want = cosine(&backend::sim::embed(other, 64), &backend::sim::embed("the capital is paris", 64));
        assert!((s.value.unwrap() - want).abs() < 1e-6 && !s.pass, "{s:?} vs {want}");
        assert_eq!(meter.snapshot().unwrap().requests, 2);
        let texts = texts(&Template::parse("{{expected}}").unwrap(), other, &r).unwrap();
        assert_eq!(
            request("emb", &spec, &texts).key,
            backends.get("emb").unwrap().memo_key(Endpoint::Embeddings, &backend::embed_body(&spec, &texts, None), 0)
        );
        let missing = rec(json!({"output": "x"}));
        assert!(m.score(&missing, "x", opts).await.unwrap_err().to_string().contains("no field `expected`"));
    }
}
