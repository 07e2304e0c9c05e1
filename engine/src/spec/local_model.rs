//! The model folder of a `provider: local` backend (`model_dir:`), checked
//! when the spec loads: a sentence-transformers folder holding the three
//! files the in-process embedder reads. Its content hash is the backend's
//! identity, so every memoized vector and every node key that used the
//! model changes when the model does, and none when the folder only moves.

use std::io;
use std::path::{Path, PathBuf};

use flow_cache::ContentHash;

/// The files a local model folder must hold: the BERT config, the
/// tokenizer, the weights.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Files read when present, which change the vectors too
/// (`max_seq_length`).
pub const OPTIONAL_FILES: [&str; 1] = ["sentence_bert_config.json"];

/// What `flow` ships a script for: the model the tests and the demo use.
pub const FETCH_HINT: &str = "point `model_dir` at a sentence-transformers folder (config.json, tokenizer.json, \
                              model.safetensors); `scripts/fetch-minilm.sh` puts all-MiniLM-L6-v2 in \
                              target/models/all-MiniLM-L6-v2";

/// A checked model folder: where it is, and the hash of what is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub hash: ContentHash,
}

/// Why a model folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelDirError {
    #[error("model folder `{}` does not exist", .0.display())]
    NoFolder(PathBuf),
    #[error("`{}` is not a folder", .0.display())]
    NotAFolder(PathBuf),
    #[error("model folder `{}` has no {}", .dir.display(), .missing.join(", "))]
    Missing { dir: PathBuf, missing: Vec<&'static str> },
    #[error("cannot read `{}`: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
}

impl ModelFiles {
    /// Checks that `dir` holds [`MODEL_FILES`] and hashes them (with
    /// [`OPTIONAL_FILES`] where present): the hash covers each file's
    /// name and content, not the folder's path.
    pub fn check(dir: &Path) -> Result<Self, ModelDirError> {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(ModelDirError::NotAFolder(dir.to_path_buf())),
            Err(_) => return Err(ModelDirError::NoFolder(dir.to_path_buf())),
        }
        let missing: Vec<&'static str> = MODEL_FILES.into_iter().filter(|f| !dir.join(f).is_file()).collect();
        if !missing.is_empty() {
            return Err(ModelDirError::Missing { dir: dir.to_path_buf(), missing });
        }
        let mut hasher = blake3::Hasher::new();
        let present = OPTIONAL_FILES.into_iter().filter(|f| dir.join(f).is_file());
        for name in MODEL_FILES.into_iter().chain(present) {
            let path = dir.join(name);
            let hash = flow_cache::hash_file(&path).map_err(|source| ModelDirError::Read { path, source })?;
            hasher.update(name.as_bytes());
            hasher.update(&[0]);
            hasher.update(hash.hex().as_bytes());
            hasher.update(&[0]);
        }
        Ok(Self { dir: dir.to_path_buf(), hash: ContentHash(*hasher.finalize().as_bytes()) })
    }

    /// The model's name when the spec gives none: the folder's.
    pub fn name_of(dir: &str) -> &str {
        let trimmed = dir.trim_end_matches(['/', '\\']);
        trimmed.rsplit(['/', '\\']).next().filter(|n| !n.is_empty()).unwrap_or("local")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_follows_the_content_not_the_place() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for dir in [a.path(), b.path()] {
            for f in MODEL_FILES {
                std::fs::write(dir.join(f), format!("{f} bytes")).unwrap();
            }
        }
        let (ha, hb) = (ModelFiles::check(a.path()).unwrap(), ModelFiles::check(b.path()).unwrap());
        assert_eq!(ha.hash, hb.hash);
        std::fs::write(b.path().join("model.safetensors"), "other weights").unwrap();
        assert_ne!(ha.hash, ModelFiles::check(b.path()).unwrap().hash);
        std::fs::write(a.path().join("sentence_bert_config.json"), "{\"max_seq_length\": 128}").unwrap();
        assert_ne!(ha.hash, ModelFiles::check(a.path()).unwrap().hash, "max_seq_length changes the vectors");
    }

    #[test]
    fn a_folder_without_the_files_names_what_is_missing() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("config.json"), "{}").unwrap();
        let e = ModelFiles::check(d.path()).unwrap_err().to_string();
        assert!(e.ends_with("has no tokenizer.json, model.safetensors"), "{e}");
        let e = ModelFiles::check(&d.path().join("nope")).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        let e = ModelFiles::check(&d.path().join("config.json")).unwrap_err().to_string();
        assert!(e.contains("is not a folder"), "{e}");
        assert_eq!(ModelFiles::name_of("target/models/all-MiniLM-L6-v2/"), "all-MiniLM-L6-v2");
    }
}
