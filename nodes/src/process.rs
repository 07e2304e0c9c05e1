//! The user's program as a long-lived child process speaking JSONL: one
//! JSON value a line on its stdin, one a line on its stdout. Shared by the
//! `exec` provider (a [`Pool`] of up to `max_concurrency` processes, each
//! asked one request at a time, restarted when it dies or hangs) and the
//! `exec` kind (one [`Child`] its input records stream through).
//!
//! A program runs in the spec's folder with `PYTHONUNBUFFERED=1` (Python
//! buffers a pipe's output, which would hold an answer back forever); its
//! stderr is drained as it runs (a full pipe would block it) and its last
//! lines kept for messages. A child is killed when dropped, so a cancelled
//! run or a failed node leaves no process behind.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};

use flow_engine::spec::YamlPath;
use flow_engine::CheckCx;

/// Lines of stderr kept for messages.
const STDERR_LINES: usize = 8;

/// Checks a `command:` at compile time and registers the files it names
/// (the program itself too, when it is a script of the project), so
/// editing one re-runs the node.
pub fn check_command(command: &[String], at: &YamlPath, cx: &mut CheckCx<'_>) {
    if command.is_empty() || command[0].trim().is_empty() {
        cx.error(
            at,
            "`command` is empty",
            Some("write the program and its arguments: `[python3, metrics/brevity.py]`".into()),
        );
        return;
    }
    for (i, arg) in command.iter().enumerate() {
        if !arg.starts_with('-') && cx.resolve(arg).is_file() {
            cx.input_file(&at.index(i), arg);
        }
    }
}

/// What went wrong with a child process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start `{program}`: {source}")]
    Start { program: String, source: io::Error },
    /// It exited (or closed its stdout) before it answered; `stderr` is the
    /// last lines it printed there.
    #[error("exited{} before it answered{}", status.map(|s| format!(" ({s})")).unwrap_or_default(), tail(stderr))]
    Died { status: Option<ExitStatus>, stderr: String },
    #[error("gave no answer within {after:?}{}", tail(stderr))]
    Timeout { after: Duration, stderr: String },
}

fn tail(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; its stderr ends: {stderr}")
    }
}

/// A program and the folder it runs in.
#[derive(Debug, Clone)]
pub struct Program {
    pub command: Vec<String>,
    pub dir: PathBuf,
}

impl Program {
    pub fn new(command: Vec<String>, dir: &Path) -> Self {
        Self { command, dir: dir.to_path_buf() }
    }

    /// The command as a user wrote it, for messages.
    pub fn shown(&self) -> String {
        self.command.join(" ")
    }

    /// The command set up as every program runs: in the spec's folder,
    /// `PYTHONUNBUFFERED=1`, its three streams piped, killed when dropped.
    pub fn command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(self.command.first().map(String::as_str).unwrap_or_default());
        c.args(self.command.iter().skip(1))
            .current_dir(&self.dir)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Starts it, with stdin and stdout piped and stderr drained.
    pub fn spawn(&self) -> Result<Child, ProcessError> {
        let program = self.command.first().cloned().unwrap_or_default();
        let mut child = self.command().spawn().map_err(|source| ProcessError::Start { program, source })?;
        let stderr_lines = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(err) = child.stderr.take() {
            let keep = stderr_lines.clone();
            let shown = self.shown();
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(command = %shown, "stderr: {line}");
                    let mut k = keep.lock().expect("stderr lock");
                    if k.len() == STDERR_LINES {
                        k.pop_front();
                    }
                    k.push_back(line);
                }
            });
        }
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        Ok(Child { child, stdin, stdout, stderr: stderr_lines })
    }
}

/// A running program.
pub struct Child {
    child: tokio::process::Child,
    /// Its stdin; `None` once closed (or taken by a writer).
    pub stdin: Option<ChildStdin>,
    /// Its stdout, line by line.
    pub stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Child {
    /// Writes `line` and a newline to its stdin.
    pub async fn send(&mut self, line: &[u8]) -> io::Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))?;
        stdin.write_all(line).await?;
        stdin.write_all(b"\n").await?;
        stdin.flush().await
    }

    /// The next line it prints that is not blank; `None` once its stdout
    /// is closed.
    pub async fn recv(&mut self) -> io::Result<Option<String>> {
        loop {
            match self.stdout.next_line().await? {
                Some(l) if l.trim().is_empty() => continue,
                other => return Ok(other),
            }
        }
    }

    /// One request and its answer, within `timeout`.
    pub async fn ask(&mut self, line: &[u8], timeout: Duration) -> Result<String, ProcessError> {
        let exchange = async {
            // A write to a process that died fails; what it said is in its
            // exit status and stderr, which `died` reports.
            self.send(line).await.ok()?;
            self.recv().await.ok().flatten()
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Some(answer)) => Ok(answer),
            Ok(None) => Err(self.died().await),
            Err(_) => Err(ProcessError::Timeout { after: timeout, stderr: self.stderr_tail() }),
        }
    }

    /// Why it stopped answering: its exit status (waited for briefly) and
    /// the end of its stderr.
    pub async fn died(&mut self) -> ProcessError {
        let status = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await.ok().and_then(Result::ok);
        // The stderr drain may still be reading its last lines.
        tokio::time::sleep(Duration::from_millis(20)).await;
        ProcessError::Died { status, stderr: self.stderr_tail() }
    }

    /// Closes its stdin (it sees the end of its input) and waits for it.
    pub async fn finish(&mut self) -> io::Result<ExitStatus> {
        self.stdin = None;
        self.child.wait().await
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines it printed on stderr, joined.
    pub fn stderr_tail(&self) -> String {
        let k = self.stderr.lock().expect("stderr lock");
        k.iter().map(|l| l.trim_end()).collect::<Vec<_>>().join(" | ")
    }
}

/// Up to as many processes of one program as ask at once (the backend's
/// slots bound that by `max_concurrency`), each answering one request at a
/// time. A process that died, hung or answered out of protocol is dropped
/// (killed) and the next request starts a fresh one.
pub struct Pool {
    program: Program,
    idle: Mutex<Vec<Child>>,
    started: AtomicU64,
}

impl Pool {
    pub fn new(program: Program) -> Self {
        Self { program, idle: Mutex::new(Vec::new()), started: AtomicU64::new(0) }
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    /// How many processes were started (restarts included).
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Asks an idle process, or a new one; `keep` says whether an answer
    /// leaves the process fit for the next request.
    pub async fn ask(
        &self,
        line: &[u8],
        timeout: Duration,
        keep: impl FnOnce(&str) -> bool,
    ) -> Result<String, ProcessError> {
        let idle = loop {
            let popped = self.idle.lock().expect("pool lock").pop();
            match popped {
                // It died while idle: a fresh one takes its place.
                Some(mut c) => {
                    if !c.exited() {
                        break Some(c);
                    }
                }
                None => break None,
            }
        };
        let mut child = match idle {
            Some(c) => c,
            None => {
                let n = self.started.fetch_add(1, Ordering::Relaxed);
                if n > 0 {
                    tracing::debug!(command = %self.program.shown(), "starting process {}", n + 1);
                }
                self.program.spawn()?
            }
        };
        let answer = child.ask(line, timeout).await?;
        if keep(&answer) {
            self.idle.lock().expect("pool lock").push(child);
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Program {
        Program::new(vec!["sh".into(), "-c".into(), script.into()], &std::env::temp_dir())
    }

    #[tokio::test]
    async fn a_pool_reuses_a_process_and_restarts_a_dead_one() {
        // Answers with its pid and how many lines it read; dies on `die`.
        let pool = Pool::new(sh(
            r#"n=0; while read l; do n=$((n+1)); [ "$l" = die ] && { echo bye >&2; exit 3; }; echo "$$ $n"; done"#,
        ));
        let t = Duration::from_secs(10);
        let a = pool.ask(b"x", t, |_| true).await.unwrap();
        let b = pool.ask(b"y", t, |_| true).await.unwrap();
        let (pid, n) = b.split_once(' ').unwrap();
        assert_eq!((a.split_once(' ').unwrap().0, n), (pid, "2"), "one process answered both");
        let e = pool.ask(b"die", t, |_| true).await.unwrap_err().to_string();
        assert!(e.contains("exited (exit status: 3) before it answered") && e.contains("bye"), "{e}");
        let c = pool.ask(b"z", t, |_| true).await.unwrap();
        assert_ne!(c.split_once(' ').unwrap().0, pid, "a fresh process");
        assert_eq!(c.split_once(' ').unwrap().1, "1");
        assert_eq!(pool.started(), 2);
    }

    #[tokio::test]
    async fn a_hung_process_times_out_and_a_missing_one_cannot_start() {
        let pool = Pool::new(sh("read l; sleep 30"));
        let e = pool.ask(b"x", Duration::from_millis(200), |_| true).await.unwrap_err();
        assert!(matches!(e, ProcessError::Timeout { .. }), "{e}");
        let missing = Pool::new(Program::new(vec!["no-such-program-here".into()], &std::env::temp_dir()));
        let e = missing.ask(b"x", Duration::from_secs(1), |_| true).await.unwrap_err().to_string();
        assert!(e.contains("cannot start `no-such-program-here`"), "{e}");
    }
}
