//! The `exec` metric: a custom metric as a command. It reads records as
//! JSONL on stdin and writes one score per line on stdout, in order: a
//! number, or an object `{"score": 0.7, "pass": true, "reason": "..."}`
//! (`pass` defaults to `score >= threshold`; `{"error": "..."}` marks a
//! record it could not score). The command runs in the spec's folder, once
//! per chunk of records; a script it names there is part of the node's key,
//! so editing the script re-runs the node. A command that cannot start,
//! exits with an error, or prints anything else fails the node with a
//! message that says which.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use flow_engine::Record;

use super::metric::{Score, ScoreError, Verdict};

/// Checks a command at compile time and registers the files it names.
pub use crate::process::check_command as check;

/// Why an `exec` metric failed the node (not a record): which metric,
/// which command, and what went wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("metric `{metric}` (`{command}`): {failure}")]
pub struct ExecError {
    metric: String,
    command: String,
    #[source]
    failure: ExecFailure,
}

/// What went wrong with an `exec` metric's command.
#[derive(Debug, thiserror::Error)]
pub enum ExecFailure {
    #[error("cannot start `{program}`: {source}")]
    Start { program: String, source: io::Error },
    #[error("waiting for it failed: {0}")]
    Wait(#[source] io::Error),
    /// A failed exit; `stderr` is the last lines it printed there.
    #[error("exited with {status}: {stderr}")]
    Exited { status: ExitStatus, stderr: String },
    /// It exited well but stopped reading before the last record.
    #[error("did not read its input: {0}")]
    Stdin(#[source] io::Error),
    #[error("printed {printed} score lines for {records} records; it must print exactly one line per input line")]
    LineCount { printed: usize, records: usize },
    /// Line `line` (from 1) of its output is not a score.
    #[error("line {line} of its output: {source}")]
    Line { line: usize, source: LineError },
}

/// An output line of an `exec` command that is not a score; `shown` is its
/// start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    #[error("`{shown}` is not JSON (a number or an object)")]
    NotJson { shown: String },
    #[error("`{shown}` has no numeric score")]
    NoScore { shown: String },
}

pub struct Exec {
    name: String,
    command: Vec<String>,
    dir: PathBuf,
    threshold: f64,
    /// Runs of the command at once, at most: a core each. The node may
    /// have many chunks in flight (a batch judge keeps a batch's worth),
    /// and each would start a process.
    runs: tokio::sync::Semaphore,
}

impl Exec {
    pub fn new(name: String, command: Vec<String>, dir: PathBuf, threshold: f64) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self { name, command, dir, threshold, runs: tokio::sync::Semaphore::new(cores) }
    }

    fn shown(&self) -> String {
        self.command.join(" ")
    }

    fn fail(&self, failure: ExecFailure) -> ExecError {
        ExecError { metric: self.name.clone(), command: self.shown(), failure }
    }

    /// Scores a chunk of records with one run of the command.
    pub async fn run(&self, chunk: &[Record]) -> Result<Vec<Verdict>, ExecError> {
        let _run = self.runs.acquire().await.expect("the semaphore is never closed");
        let mut child = crate::process::Program::new(self.command.clone(), &self.dir)
            .command()
            .spawn()
            .map_err(|source| self.fail(ExecFailure::Start { program: self.command[0].clone(), source }))?;
        let mut input = Vec::with_capacity(chunk.len() * 256);
        for r in chunk {
            serde_json::to_writer(&mut input, &**r).expect("a record serializes");
            input.push(b'\n');
        }
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // Write and read at once: a command that answers as it reads would
        // otherwise fill its output pipe and wait for us forever.
        let write = async move {
            let r = stdin.write_all(&input).await;
            drop(stdin);
            r
        };
        let (written, output) = tokio::join!(write, child.wait_with_output());
        let output = output.map_err(|e| self.fail(ExecFailure::Wait(e)))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
            let stderr = tail.join("\n  ").trim().to_string();
            return Err(self.fail(ExecFailure::Exited { status: output.status, stderr }));
        }
        if let Err(e) = written {
            return Err(self.fail(ExecFailure::Stdin(e)));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.len() != chunk.len() {
            return Err(self.fail(ExecFailure::LineCount { printed: lines.len(), records: chunk.len() }));
        }
        lines
            .iter()
            .enumerate()
            .map(|(i, line)| self.parse(line).map_err(|source| self.fail(ExecFailure::Line { line: i + 1, source })))
            .collect()
    }

    /// One output line: `Ok(Err(..))` when the command says it could not
    /// score the record, `Err` when the line is not a score at all.
    fn parse(&self, line: &str) -> Result<Verdict, LineError> {
        let shown: String = line.chars().take(80).collect();
        let v: Value = serde_json::from_str(line.trim()).map_err(|_| LineError::NotJson { shown: shown.clone() })?;
        let (score, pass, reason) = match &v {
            Value::Number(n) => (n.as_f64(), None, None),
            Value::Object(o) => {
                if let Some(e) = o.get("error").filter(|e| !e.is_null()) {
                    return Ok(Err(ScoreError::Reported(
                        e.as_str().map(str::to_string).unwrap_or_else(|| e.to_string()),
                    )));
                }
                (o.get("score").and_then(Value::as_f64), o.get("pass").and_then(Value::as_bool), o.get("reason"))
            }
            _ => (None, None, None),
        };
        let score = score.filter(|s| s.is_finite()).ok_or(LineError::NoScore { shown })?;
        let reason = reason.map(|r| r.as_str().map(str::to_string).unwrap_or_else(|| r.to_string()));
        Ok(Ok(Score { score, pass: pass.unwrap_or(score >= self.threshold), reason, value: None }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn exec(script: &str) -> Exec {
        Exec::new("m".into(), vec!["sh".into(), "-c".into(), script.into()], std::env::temp_dir(), 0.5)
    }

    fn records(n: usize) -> Vec<Record> {
        (0..n).map(|i| Arc::new(json!({"id": i, "output": "x".repeat(i)}).as_object().unwrap().clone())).collect()
    }

    #[tokio::test]
    async fn scores_errors_and_garbage() {
        let ok =
            exec(r#"while read l; do echo '{"score": 0.25, "reason": "short"}'; done"#).run(&records(3)).await.unwrap();
        assert_eq!(ok.len(), 3);
        let s = ok[0].as_ref().unwrap();
        assert_eq!((s.score, s.pass, s.reason.as_deref()), (0.25, false, Some("short")));
        let mixed = exec(r#"read a; echo 1; read b; echo '{"error": "no output"}'"#).run(&records(2)).await.unwrap();
        assert!(mixed[0].as_ref().unwrap().pass);
        assert_eq!(mixed[1].as_ref().unwrap_err().to_string(), "no output");
        let e = exec("cat >/dev/null; echo hello; echo 1").run(&records(2)).await.err().unwrap().to_string();
        assert!(e.contains("line 1 of its output: `hello` is not JSON"), "{e}");
        let e = exec("cat >/dev/null; echo 1").run(&records(2)).await.err().unwrap().to_string();
        assert!(e.contains("printed 1 score lines for 2 records"), "{e}");
        let e = exec("echo boom >&2; exit 3").run(&records(2)).await.err().unwrap().to_string();
        assert!(e.contains("exit status: 3") && e.contains("boom"), "{e}");
        let missing = Exec::new("m".into(), vec!["no-such-program-here".into()], std::env::temp_dir(), 0.5);
        let e = missing.run(&records(1)).await.err().unwrap().to_string();
        assert!(e.contains("cannot start `no-such-program-here`"), "{e}");
    }
}
