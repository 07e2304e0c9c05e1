//! `exec`: the user's program between stages (DVC's `cmd` stage,
//! promptfoo's transforms): the node's input records go to the program's
//! stdin as JSONL, and every JSON object it prints on stdout, one a line,
//! is an output record, streamed as it comes. Retrieval before `run`,
//! preprocessing, post-processing: a filter prints fewer lines, an
//! expansion more.
//!
//! The program runs once per run of the node, in the spec's folder (the
//! [`crate::process`] plumbing the `exec` provider shares); the files its
//! command names are part of the node's key, so editing `retrieve.py`
//! re-runs the node, and an unchanged node replays its stored output
//! without starting the program. A program that cannot start, exits with
//! an error, or prints a line that is not a JSON object fails the node,
//! naming the line.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use flow_engine::node::SUMMARY_JSON;
use flow_engine::{
    Arity, Artifact, BatchStream, BuildCx, CheckCx, FieldSet, Node, NodeError, PortType, Record, RecordStream, Shape,
    Stage, StreamStage, SUMMARY_MD,
};

use crate::process::{Child, Program};

pub struct Exec;

/// `kind: exec`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    /// The program and its arguments, run in the spec's folder: it reads
    /// the input records as JSONL on stdin and prints its output records,
    /// one JSON object a line, on stdout (logs go to stderr). The files it
    /// names (`retrieve.py`, a data file) are part of the node's key.
    pub command: Vec<String>,
}

impl crate::Face for Exec {}

/// Output records sent on at once, at most.
const BATCH: usize = 256;

impl Node for Exec {
    type Config = ExecConfig;
    const KIND: &'static str = "exec";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "pipes its input records through your program as JSONL and streams the JSON objects it prints as its output";
    const INPUTS: Arity = Arity::One;
    const SHAPE: Shape = Shape::Streaming;

    fn check(c: &ExecConfig, cx: &mut CheckCx<'_>) -> PortType {
        crate::process::check_command(&c.command, &cx.field("command"), cx);
        // Whatever the program prints.
        PortType::records(FieldSet::Open)
    }

    fn build(c: &ExecConfig, cx: &BuildCx) -> Result<Stage, NodeError> {
        Ok(Stage::Stream(Arc::new(Piped {
            program: Program::new(c.command.clone(), &cx.spec_dir),
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
        })))
    }
}

struct Piped {
    program: Program,
    records_in: AtomicU64,
    records_out: AtomicU64,
}

impl Piped {
    fn fail(&self, what: impl std::fmt::Display) -> NodeError {
        NodeError::new(format!("`{}`: {what}", self.program.shown()))
    }

    /// Runs the program over `input`, sending its output records to `tx`.
    async fn drive(self: Arc<Self>, input: RecordStream, tx: mpsc::Sender<Result<Vec<Record>, NodeError>>) {
        if let Err(e) = self.clone().pipe(input, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    }

    async fn pipe(
        self: Arc<Self>,
        mut input: RecordStream,
        tx: &mpsc::Sender<Result<Vec<Record>, NodeError>>,
    ) -> Result<(), NodeError> {
        let mut child: Child = self.program.spawn().map_err(|e| self.fail(e))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // Its own task: a program that stops reading must not stop us from
        // reading what it prints (or from killing it).
        let this = self.clone();
        let writer = tokio::spawn(async move {
            let mut line = Vec::with_capacity(512);
            while let Some(r) = input.next().await {
                line.clear();
                serde_json::to_writer(&mut line, &*r).expect("a record serializes");
                line.push(b'\n');
                if stdin.write_all(&line).await.is_err() {
                    // It closed its stdin: its exit status says whether that is a failure.
                    return;
                }
                this.records_in.fetch_add(1, Ordering::Relaxed);
            }
            let _ = stdin.flush().await;
        });
        let _abort_writer = AbortOnDrop(writer);
        let mut n = 0usize;
        let mut batch = Vec::new();
        loop {
            // One line awaited, then whatever more is there already.
            let first = child.stdout.next_line().await;
            let mut lines = vec![first];
            while lines.len() < BATCH {
                match child.stdout.next_line().now_or_never() {
                    Some(l) => lines.push(l),
                    None => break,
                }
            }
            let mut ended = false;
            for line in lines {
                match line.map_err(|e| self.fail(format!("reading its output failed: {e}")))? {
                    None => {
                        ended = true;
                        break;
                    }
                    Some(l) => {
                        n += 1;
                        if l.trim().is_empty() {
                            continue;
                        }
                        match serde_json::from_str::<Value>(&l) {
                            Ok(Value::Object(o)) => batch.push(Arc::new(o)),
                            _ => {
                                let shown: String = l.chars().take(120).collect();
                                return Err(self.fail(format!(
                                    "line {n} of its output is not a JSON object: `{shown}`\nhint: print one JSON object per line on stdout (`print(json.dumps(record))`); logs go to stderr"
                                )));
                            }
                        }
                    }
                }
            }
            if !batch.is_empty() {
                self.records_out.fetch_add(batch.len() as u64, Ordering::Relaxed);
                if tx.send(Ok(std::mem::take(&mut batch))).await.is_err() {
                    return Err(NodeError::Cancelled);
                }
            }
            if ended {
                break;
            }
        }
        let status = child.finish().await.map_err(|e| self.fail(format!("waiting for it failed: {e}")))?;
        if !status.success() {
            // The drain may still be reading its last lines.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let stderr = child.stderr_tail();
            let tail = if stderr.is_empty() { String::new() } else { format!("; its stderr ends: {stderr}") };
            return Err(self.fail(format!("exited with {status} after {n} lines of output{tail}")));
        }
        Ok(())
    }
}

/// Stops the writer task when the node is done with the program.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl StreamStage for Piped {
    fn run(self: Arc<Self>, input: RecordStream) -> BatchStream {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(self.drive(input, tx));
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) }).boxed()
    }

    fn finish(&self) -> Result<Vec<Artifact>, NodeError> {
        let (n_in, n_out) = (self.records_in.load(Ordering::Relaxed), self.records_out.load(Ordering::Relaxed));
        let mut md = String::new();
        let _ = writeln!(md, "`{}`: {n_in} records in, {n_out} out", self.program.shown());
        let summary = json!({"command": self.program.command, "records_in": n_in, "records_out": n_out});
        Ok(vec![
            Artifact { name: SUMMARY_JSON.into(), bytes: serde_json::to_vec_pretty(&summary).expect("json") },
            Artifact { name: SUMMARY_MD.into(), bytes: md.into_bytes() },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piped(script: &str) -> Arc<Piped> {
        Arc::new(Piped {
            program: Program::new(vec!["sh".into(), "-c".into(), script.into()], &std::env::temp_dir()),
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
        })
    }

    async fn through(p: Arc<Piped>, n: usize) -> Result<Vec<Record>, NodeError> {
        let input: Vec<Record> = (0..n).map(|i| Arc::new(json!({"id": i}).as_object().unwrap().clone())).collect();
        let mut out = Vec::new();
        let mut s = p.run(futures::stream::iter(input).boxed());
        while let Some(b) = s.next().await {
            out.extend(b?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn records_stream_through_and_bad_lines_fail_the_node() {
        // Each record twice, with a field added: more out than in.
        let p = piped(r#"while read l; do echo "$l"; echo '{"extra": true}'; done"#);
        let out = through(p.clone(), 600).await.unwrap();
        assert_eq!(out.len(), 1200);
        assert_eq!((out[2]["id"].as_u64(), out[3]["extra"].as_bool()), (Some(1), Some(true)));
        assert_eq!(p.records_in.load(Ordering::Relaxed), 600);
        let e = through(piped("read l; echo '{}'; echo; echo oops"), 3).await.unwrap_err().to_string();
        assert!(e.contains("line 3 of its output is not a JSON object: `oops`"), "{e}");
        let e = through(piped("cat; echo boom >&2; exit 4"), 2).await.unwrap_err().to_string();
        assert!(e.contains("exited with exit status: 4 after 2 lines") && e.contains("boom"), "{e}");
        let e = through(piped("exit 0"), 10_000).await;
        assert!(e.unwrap().is_empty(), "a program that reads nothing and exits well: no output, no failure");
    }
}
