//! User-facing diagnostics: what went wrong, where (file:line:col with the
//! source line underlined), and a `hint:` that says how to fix it.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A position in a source file: 1-based line and column, and the width of
/// the token there (for the underline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub line: usize,
    pub col: usize,
    pub width: usize,
}

/// A source file that diagnostics point into.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: Arc<str>,
}

/// One problem found in a spec (or the command line).
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub message: String,
    pub source: Option<Box<Source>>,
    pub loc: Option<Loc>,
    pub hint: Option<String>,
    /// The source line holds a secret: show it only up to the key.
    pub redacted: bool,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), source: None, loc: None, hint: None, redacted: false }
    }

    /// Hides the value on the line shown, which may be a secret.
    pub fn redacted(mut self) -> Self {
        self.redacted = true;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }

    pub fn at(mut self, source: &Source, loc: Option<Loc>) -> Self {
        self.source = Some(Box::new(source.clone()));
        self.loc = loc;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        if let Some(src) = &self.source {
            let path = display_path(&src.path);
            match self.loc {
                Some(loc) => {
                    writeln!(f, "  --> {path}:{}:{}", loc.line, loc.col)?;
                    if let Some(line) = src.text.lines().nth(loc.line - 1) {
                        let line = if self.redacted { redact(line) } else { line.to_string() };
                        let n = loc.line.to_string();
                        let pad = " ".repeat(n.len());
                        writeln!(f, "{pad} |")?;
                        writeln!(f, "{n} | {line}")?;
                        let lead: String = line
                            .chars()
                            .take(loc.col.saturating_sub(1))
                            .map(|c| if c == '\t' { '\t' } else { ' ' })
                            .collect();
                        // A redacted value's caret must not tell its length.
                        let width = if self.redacted { loc.width.clamp(1, 3) } else { loc.width.max(1) };
                        writeln!(f, "{pad} | {lead}{}", "^".repeat(width))?;
                    }
                }
                None => writeln!(f, "  --> {path}")?,
            }
        }
        if let Some(hint) = &self.hint {
            writeln!(f, "  hint: {hint}")?;
        }
        Ok(())
    }
}

/// `  api_key: sk-...` → `  api_key: ***`: the key and the indentation stay,
/// the value goes.
fn redact(line: &str) -> String {
    match line.find(':') {
        Some(i) => format!("{}: ***", &line[..i]),
        None => "***".to_string(),
    }
}

/// Paths are shown as given (relative stays relative) with `/` separators.
fn display_path(p: &Path) -> String {
    p.display().to_string().replace('\\', "/")
}

/// All problems found, reported together.
#[derive(Debug, Clone)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        let n = self.0.len();
        if n > 1 {
            writeln!(f)?;
            writeln!(f, "error: {n} problems found; nothing was run")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Self(vec![d])
    }
}

/// The closest candidate to `name`, if it is close enough to be a likely typo.
/// A swapped pair of letters (`bto` → `bot`) counts as one edit.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let chars = name.chars().count();
    candidates
        .into_iter()
        .filter_map(|c| {
            let most = (c.len().max(name.len()) / 3).max(1);
            // The distance is at least the difference in length: skipping
            // those that are too far apart keeps a 1 MB typo from costing
            // seconds of edit distance (it is quadratic).
            if chars.abs_diff(c.chars().count()) > most {
                return None;
            }
            let d = strsim::osa_distance(name, c);
            (d <= most && d > 0).then_some((d, c))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `did you mean `x`?`, or a list of what is allowed when nothing is close.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str> + Clone, what: &str) -> String {
    match did_you_mean(name, candidates.clone()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => {
            let mut all = String::new();
            for (i, c) in candidates.into_iter().enumerate() {
                if i > 0 {
                    all.push_str(", ");
                }
                let _ = write!(all, "`{c}`");
            }
            if all.is_empty() {
                format!("no {what} is defined")
            } else {
                format!("{what} must be one of {all}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("evalute", ["load", "evaluate"]), Some("evaluate"));
        assert_eq!(did_you_mean("zzz", ["load", "evaluate"]), None);
        assert_eq!(did_you_mean("load", ["load"]), None);
        assert_eq!(did_you_mean("lo", ["load"]), None, "two edits is more than a third of four letters");
    }

    #[test]
    fn a_huge_name_is_not_compared_letter_by_letter() {
        let huge = "x".repeat(1_000_000);
        let start = std::time::Instant::now();
        assert_eq!(did_you_mean(&huge, ["exact_match", "contains", "regex"]), None);
        assert!(start.elapsed() < std::time::Duration::from_millis(200), "{:?}", start.elapsed());
    }

    #[test]
    fn renders_location_and_underline() {
        let src = Source { path: "specs/a.yaml".into(), text: "flow: 1\nnodes:\n  x:\n    kind: lod\n".into() };
        let d = Diagnostic::new("unknown kind `lod`")
            .at(&src, Some(Loc { line: 4, col: 11, width: 3 }))
            .hint("did you mean `load`?");
        assert_eq!(
            d.to_string(),
            "error: unknown kind `lod`\n  --> specs/a.yaml:4:11\n  |\n4 |     kind: lod\n  |           ^^^\n  hint: did you mean `load`?\n"
        );
    }
}
