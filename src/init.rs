//! `flow init`: a runnable spec and its data in a folder, from the shipped
//! examples (embedded in the binary), so a new project starts from one that
//! passes `flow validate` and runs offline.

use std::path::{Path, PathBuf};

use clap::ValueEnum;

use flow_engine::diag::Diagnostic;

/// The specs `flow init` can write.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Starter {
    /// Load cases, ask a chatbot, score the answers (exact match, judge, latency, cost, a Python metric).
    Eval,
    /// Generate cases, answer them with two models, compare behind a gate.
    Ab,
    /// Score stored answers with deterministic metrics only.
    Demo,
}

impl Starter {
    /// (path in the new folder, contents)
    fn files(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Starter::Eval => vec![
                ("eval.yaml", include_str!("../specs/eval.yaml")),
                ("flow.schema.json", include_str!("../specs/flow.schema.json")),
                ("data/cases.jsonl", include_str!("../specs/data/cases.jsonl")),
                ("metrics/brevity.py", include_str!("../specs/metrics/brevity.py")),
            ],
            Starter::Ab => vec![
                ("ab.yaml", include_str!("../specs/ab.yaml")),
                ("flow.schema.json", include_str!("../specs/flow.schema.json")),
                ("data/seeds.jsonl", include_str!("../specs/data/seeds.jsonl")),
            ],
            Starter::Demo => vec![
                ("demo.yaml", include_str!("../specs/demo.yaml")),
                ("flow.schema.json", include_str!("../specs/flow.schema.json")),
                ("data/answers.jsonl", include_str!("../specs/data/answers.jsonl")),
            ],
        }
    }
}

/// Writes the template's files under `dir`; refuses to overwrite any.
pub fn init(template: Starter, dir: &Path) -> Result<PathBuf, Diagnostic> {
    let files = template.files();
    let existing: Vec<String> =
        files.iter().map(|(p, _)| dir.join(p)).filter(|p| p.exists()).map(|p| p.display().to_string()).collect();
    if !existing.is_empty() {
        return Err(Diagnostic::new(format!("not overwriting {}", existing.join(", ")))
            .hint("pick an empty folder: `flow init DIR`, or remove those files"));
    }
    for (p, text) in &files {
        let path = dir.join(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Diagnostic::new(format!("cannot create {}: {e}", parent.display())))?;
        }
        std::fs::write(&path, text).map_err(|e| Diagnostic::new(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(dir.join(files[0].0))
}
