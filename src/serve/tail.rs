//! Following a workspace's runs for `flow view --serve`. A thread looks
//! every [`EVERY`] at the log of each run still going
//! (`runs/<id>/events.jsonl`, which `flow run` appends to as it goes) and
//! reads only the bytes added since, handing each whole line to the pages
//! connected; the runs folder is listed again when it changes. A page that
//! connects first gets each followed run's log so far, read up to exactly
//! where the live lines it will get begin. Nothing else is read: a run's
//! outputs and reports are not touched while they grow, and a finished
//! run's log is not read at all unless a page asks for that run.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use tokio::sync::broadcast;

use flow_engine::cache::{RunStatus, Store};

use crate::progress::log::EVENTS_JSONL;

/// How often the logs are looked at.
pub const EVERY: Duration = Duration::from_millis(100);

/// How often the runs folder is listed even when its time did not change
/// (a coarse file system clock).
const LIST_EVERY: Duration = Duration::from_secs(1);

/// How long a followed log may stay quiet before its run's manifest is read
/// to see whether its process died.
const QUIET: Duration = Duration::from_secs(2);

/// Lines buffered for a page that reads slowly; past them it reconnects.
const BUFFERED: usize = 4096;

/// One line of a run's log, as a page gets it: `{"run": id, "e": event}`.
pub struct Line {
    pub run: String,
    pub text: String,
}

/// A run's log as far as it is read.
struct Followed {
    /// Bytes read, whole lines and `partial`.
    read: u64,
    /// The start of a line whose end is not written yet.
    partial: Vec<u8>,
    /// It ended (`run_finished`): not read again.
    ended: bool,
    changed: Instant,
}

impl Followed {
    /// Where the whole lines read end.
    fn whole(&self) -> u64 {
        self.read - self.partial.len() as u64
    }
}

struct State {
    runs: BTreeMap<String, Followed>,
    listed: Option<(SystemTime, Instant)>,
}

/// The runs of a workspace, followed.
pub struct Tail {
    store: Store,
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<Line>>,
}

/// What a page that connects reads first: each run's log up to `upto`.
pub struct Backlog(Vec<(String, PathBuf, u64)>);

impl Tail {
    /// Starts following `store`'s runs, on a thread of its own.
    pub fn start(store: Store) -> Arc<Tail> {
        let (tx, _) = broadcast::channel(BUFFERED);
        let tail = Arc::new(Tail { store, state: Mutex::new(State { runs: BTreeMap::new(), listed: None }), tx });
        tail.scan(true);
        let t = tail.clone();
        std::thread::Builder::new()
            .name("flow-serve-tail".into())
            .spawn(move || loop {
                std::thread::sleep(EVERY);
                t.scan(false);
            })
            .expect("a thread");
        tail
    }

    /// The live lines from now on, and what to read before them: the runs
    /// still going, or with `run`, that run whatever its state.
    pub fn subscribe(&self, run: Option<&str>) -> (broadcast::Receiver<Arc<Line>>, Backlog) {
        let state = self.state.lock().expect("the tail's state");
        let rx = self.tx.subscribe();
        let backlog = state
            .runs
            .iter()
            .filter(|(id, f)| match run {
                Some(r) => *id == r,
                None => !f.ended,
            })
            .map(|(id, f)| (id.clone(), self.log_path(id), f.whole()))
            .collect();
        (rx, Backlog(backlog))
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.store.run_dir(id).join(EVENTS_JSONL)
    }

    /// Lists new runs when the folder changed, and reads what the logs of
    /// those going added. `first`: the runs already there that ended are
    /// not followed.
    fn scan(&self, first: bool) {
        let mut state = self.state.lock().expect("the tail's state");
        let runs_dir = self.store.root().join("runs");
        let mtime = std::fs::metadata(&runs_dir).and_then(|m| m.modified()).ok();
        let due = match (state.listed, mtime) {
            (None, _) => true,
            (Some((t, at)), Some(m)) => t != m || at.elapsed() >= LIST_EVERY,
            (Some((_, at)), None) => at.elapsed() >= LIST_EVERY,
        };
        if due {
            state.listed = Some((mtime.unwrap_or(SystemTime::UNIX_EPOCH), Instant::now()));
            for id in self.store.run_ids().unwrap_or_default() {
                if state.runs.contains_key(&id) {
                    continue;
                }
                let ended = first && self.store.run_manifest(&id).is_ok_and(|m| m.status != RunStatus::Running);
                let read = if ended { std::fs::metadata(self.log_path(&id)).map_or(0, |m| m.len()) } else { 0 };
                state.runs.insert(id, Followed { read, partial: Vec::new(), ended, changed: Instant::now() });
            }
        }
        for (id, f) in state.runs.iter_mut().filter(|(_, f)| !f.ended) {
            let lines = self.read_more(id, f);
            for line in lines {
                let _ = self.tx.send(Arc::new(line));
            }
        }
    }

    /// The whole lines `f`'s log gained; a run whose process died without
    /// ending its log gets the end it did not write.
    fn read_more(&self, id: &str, f: &mut Followed) -> Vec<Line> {
        let path = self.log_path(id);
        let len = std::fs::metadata(&path).map_or(0, |m| m.len());
        let mut out = Vec::new();
        if len > f.read {
            let mut bytes = Vec::new();
            let read = std::fs::File::open(&path).and_then(|mut file| {
                file.seek(SeekFrom::Start(f.read))?;
                file.take(len - f.read).read_to_end(&mut bytes)
            });
            if read.is_ok() {
                f.read += bytes.len() as u64;
                f.changed = Instant::now();
                f.partial.extend_from_slice(&bytes);
                let end = f.partial.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let whole: Vec<u8> = f.partial.drain(..end).collect();
                for raw in whole.split(|&b| b == b'\n') {
                    if let Some((line, ends)) = line_of(id, raw) {
                        f.ended |= ends;
                        out.push(line);
                    }
                }
            }
        } else if f.changed.elapsed() >= QUIET {
            f.changed = Instant::now();
            if self.store.run_manifest(id).is_ok_and(|m| m.status == RunStatus::Died) {
                f.ended = true;
                let end = serde_json::json!({
                    "event": "run_finished",
                    "run_id": id,
                    "status": RunStatus::Died,
                    "error": "its process ended without finishing the run",
                });
                out.extend(line_of(id, end.to_string().as_bytes()).map(|(l, _)| l));
            }
        }
        out
    }
}

impl Backlog {
    /// The lines: each run's log read up to where its live lines begin.
    pub fn read(self) -> Vec<String> {
        let mut out = Vec::new();
        for (id, path, upto) in self.0 {
            let mut bytes = Vec::new();
            let read = std::fs::File::open(&path).and_then(|file| file.take(upto).read_to_end(&mut bytes));
            if read.is_err() {
                continue;
            }
            out.extend(bytes.split(|&b| b == b'\n').filter_map(|raw| line_of(&id, raw)).map(|(l, _)| l.text));
        }
        out
    }
}

/// What a log line must be: a JSON object naming its event.
#[derive(Deserialize)]
struct Head {
    event: String,
}

/// Run `id`'s log line `raw` as a page gets it, and whether it ends the
/// run; `None` for an empty or unreadable line.
fn line_of(id: &str, raw: &[u8]) -> Option<(Line, bool)> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    let head: Head = serde_json::from_str(text).ok()?;
    let run = serde_json::to_string(id).expect("a string");
    Some((Line { run: id.to_string(), text: format!("{{\"run\":{run},\"e\":{text}}}") }, head.event == "run_finished"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_wrapped_with_its_run_and_a_torn_one_is_dropped() {
        let (line, ends) = line_of("r1", br#"{"event":"run_finished","status":"succeeded"}"#).unwrap();
        assert!(ends);
        let v: serde_json::Value = serde_json::from_str(&line.text).unwrap();
        assert_eq!((&v["run"], &v["e"]["status"]), (&serde_json::json!("r1"), &serde_json::json!("succeeded")));
        assert!(line_of("r1", br#"{"event":"progr"#).is_none());
        assert!(line_of("r1", b"").is_none());
        assert!(!line_of("r1", br#"{"event":"progress","records":3}"#).unwrap().1);
    }
}
