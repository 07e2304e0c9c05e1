//! The run's event log, `.flow/runs/<run-id>/events.jsonl`: the `--json`
//! events appended as they happen, whatever the display, so that another
//! process (`flow view --serve`) follows a run by tailing one small,
//! append-only file and never reads the run's outputs while they grow.
//!
//! It stays small and cheap whatever the run's size: a node's progress is
//! written at most every [`PROGRESS_EVERY`] (its last count always, when it
//! finishes), and of the records a node outputs only the first
//! [`LOG_RECORDS`] and the first [`LOG_ERROR_RECORDS`] with an error after
//! them are logged, their long strings cut as the report cuts them. Each
//! line is written whole as it is made. A log that cannot be written
//! (a full disk) is given up with a warning: the run goes on.

use crate::out::errln;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use flow_engine::record::Batch;

/// The log's file name in a run folder.
pub const EVENTS_JSONL: &str = "events.jsonl";

/// Records of one node the log carries from its start.
pub const LOG_RECORDS: u64 = 50;

/// Records with an error the log carries past the first [`LOG_RECORDS`].
pub const LOG_ERROR_RECORDS: u64 = 50;

/// How often one node's progress may be written.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// What the log has written of one node.
#[derive(Default)]
struct NodeLog {
    last_progress: Option<Instant>,
    /// A progress line held back by [`PROGRESS_EVERY`].
    pending: Option<String>,
    records: u64,
    errors: u64,
}

/// An open event log.
pub struct EventLog {
    path: PathBuf,
    file: Option<File>,
    nodes: HashMap<String, NodeLog>,
}

impl EventLog {
    /// Opens (appends to) the log in `run_dir`; `None`, after a warning,
    /// when it cannot be created.
    pub fn open(run_dir: &Path) -> Option<Self> {
        let path = run_dir.join(EVENTS_JSONL);
        match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            Ok(file) => Some(Self { path, file: Some(file), nodes: HashMap::new() }),
            Err(e) => {
                errln!("warning: no event log ({}): {e}; `flow view --serve` will not follow this run", path.display());
                None
            }
        }
    }

    /// Writes an event line of node `node` (or of the run, `None`); a
    /// progress line waits its turn.
    pub fn event(&mut self, node: Option<&str>, progress: bool, line: &Value) {
        let text = line.to_string();
        let Some(node) = node else { return self.write(&text) };
        let n = self.nodes.entry(node.to_string()).or_default();
        if progress {
            if n.last_progress.is_some_and(|t| t.elapsed() < PROGRESS_EVERY) {
                n.pending = Some(text);
                return;
            }
            n.last_progress = Some(Instant::now());
            n.pending = None;
        } else if let Some(held) = n.pending.take() {
            // In order: the count held back came first.
            self.write(&held);
        }
        self.write(&text);
    }

    /// Writes the progress lines held back whose turn has come.
    pub fn tick(&mut self) {
        let due: Vec<String> = self
            .nodes
            .values_mut()
            .filter(|n| n.pending.is_some() && n.last_progress.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY))
            .filter_map(|n| {
                n.last_progress = Some(Instant::now());
                n.pending.take()
            })
            .collect();
        for text in due {
            self.write(&text);
        }
    }

    /// Logs what the log keeps of `batch`, records node `node` output.
    pub fn records(&mut self, node: &str, batch: &Batch) {
        let n = self.nodes.entry(node.to_string()).or_default();
        let mut kept = Vec::new();
        for r in batch.iter() {
            let failed = r.get("error").is_some_and(|e| !e.is_null());
            if n.records < LOG_RECORDS {
                n.records += 1;
            } else if failed && n.errors < LOG_ERROR_RECORDS {
                n.errors += 1;
            } else {
                continue;
            }
            let mut v = Value::Object((**r).clone());
            flow_nodes::view::cut_strings(&mut v);
            kept.push(v);
        }
        if !kept.is_empty() {
            self.write(&json!({"event": "records", "node": node, "records": kept}).to_string());
        }
    }

    fn write(&mut self, text: &str) {
        let Some(file) = &mut self.file else { return };
        let mut line = String::with_capacity(text.len() + 1);
        line.push_str(text);
        line.push('\n');
        // One write per line: a reader never sees half of one unless the
        // disk is full, and then it waits for the newline that never comes.
        if let Err(e) = file.write_all(line.as_bytes()) {
            errln!("warning: the event log {} stopped: {e}", self.path.display());
            self.file = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn lines(dir: &Path) -> Vec<Value> {
        let text = std::fs::read_to_string(dir.join(EVENTS_JSONL)).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn progress_is_thinned_and_its_last_count_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(dir.path()).unwrap();
        for i in 1..=5 {
            log.event(Some("a"), true, &json!({"event": "progress", "records": i}));
        }
        log.tick();
        assert_eq!(lines(dir.path()).len(), 1, "the rest waits its turn");
        std::thread::sleep(PROGRESS_EVERY);
        log.tick();
        log.event(Some("a"), false, &json!({"event": "node_finished"}));
        log.event(Some("a"), true, &json!({"event": "progress", "records": 6}));
        log.event(Some("a"), false, &json!({"event": "node_finished"}));
        let got: Vec<Value> = lines(dir.path()).iter().map(|l| l.get("records").cloned().unwrap_or_default()).collect();
        assert_eq!(got, [json!(1), json!(5), Value::Null, json!(6), Value::Null], "a held count goes before the end");
    }

    #[test]
    fn records_are_capped_and_errors_kept_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(dir.path()).unwrap();
        let rec = |i: u64, error: bool| {
            let mut m = serde_json::Map::new();
            m.insert("id".into(), json!(i));
            m.insert("output".into(), json!("x".repeat(5000)));
            if error {
                m.insert("error".into(), json!("HTTP 500"));
            }
            Arc::new(m)
        };
        let batch: Batch = Arc::new((0..LOG_RECORDS + 200).map(|i| rec(i, i % 2 == 1)).collect());
        log.records("a", &batch);
        log.records("a", &Arc::new(vec![rec(10_000, false)]));
        let all = lines(dir.path());
        assert_eq!(all.len(), 1, "nothing more once the cap is reached");
        let kept = all[0]["records"].as_array().unwrap();
        assert_eq!(kept.len() as u64, LOG_RECORDS + LOG_ERROR_RECORDS);
        assert!(kept[LOG_RECORDS as usize..].iter().all(|r| r["error"] == "HTTP 500"));
        assert!(kept[0]["output"].as_str().unwrap().len() < 2100, "long strings are cut");
    }
}
