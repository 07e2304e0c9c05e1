//! Headless Chromium driven over the DevTools protocol, for tests of the
//! HTML report.
//!
//! The transport is `--remote-debugging-pipe`: Chromium reads commands on
//! file descriptor 3 and writes replies and events on descriptor 4, each a
//! JSON message ended by a NUL byte. So there is no WebDriver server to
//! install, no port to pick, and no websocket or HTTP client to build: two
//! pipes placed on those descriptors in the child before it executes (with
//! libc, already a dev-dependency), and serde_json. A reader thread turns
//! the messages into a channel, so every wait has a deadline.
//!
//! The browser starts with a fresh profile and the flags that keep a headless
//! Chromium from reaching for the network (this machine has none, and those
//! attempts hang). One page per [`Browser`]; dropping it closes Chromium.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long one command may take before the test fails.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The Chromium binary: `$FLOW_TEST_CHROMIUM`, else the first of the usual
/// names on `PATH` (Debian's package installs `/usr/bin/chromium`).
pub fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FLOW_TEST_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// A headless Chromium with one page.
pub struct Browser {
    child: Child,
    commands: File,
    messages: Receiver<Value>,
    /// Events received so far, in order (those of the page carry its
    /// `sessionId`).
    events: Vec<Value>,
    next_id: u64,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium; its stderr goes to `log`.
    pub fn launch(bin: &Path, log: &Path) -> Browser {
        let profile = tempfile::tempdir().expect("a profile folder");
        let (their_in, our_out) = pipe();
        let (our_in, their_out) = pipe();
        let (fd_in, fd_out) = (their_in.as_raw_fd(), their_out.as_raw_fd());
        let mut cmd = Command::new(bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--mute-audio",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(log).expect("the browser's log file"));
        // SAFETY: between fork and exec only async-signal-safe calls
        // (fcntl, dup2) on descriptors this process owns.
        unsafe {
            cmd.pre_exec(move || {
                // Copy both ends above 4 first, so placing one on 3 or 4
                // cannot close the other; the copies close on exec, the
                // results of dup2 stay open.
                let a = libc::fcntl(fd_in, libc::F_DUPFD_CLOEXEC, 10);
                let b = libc::fcntl(fd_out, libc::F_DUPFD_CLOEXEC, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        // Only Chromium holds its ends now: its exit ends our reads.
        drop((their_in, their_out));
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(File::from(our_in));
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                let Ok(v) = serde_json::from_slice::<Value>(&buf) else { continue };
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Browser {
            child,
            commands: File::from(our_out),
            messages,
            events: Vec::new(),
            next_id: 0,
            session: None,
            _profile: profile,
        }
    }

    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let mut msg = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap_or_else(|e| panic!("sending {method} to the browser: {e}"));
        self.next_id
    }

    /// Sends a command and waits for its result; a protocol error fails
    /// the test. Events that arrive meanwhile are kept.
    fn call_in(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.send(session, method, params);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let msg = self.next_message(deadline).unwrap_or_else(|| panic!("no answer to {method} in {TIMEOUT:?}"));
            if msg["id"] == id {
                if let Some(e) = msg.get("error") {
                    panic!("{method} failed: {e}");
                }
                return msg["result"].clone();
            }
        }
    }

    /// The next message, keeping events; `None` past the deadline.
    fn next_message(&mut self, deadline: Instant) -> Option<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.messages.recv_timeout(left) {
            Ok(msg) => {
                if msg.get("method").is_some() {
                    self.on_event(&msg);
                }
                Some(msg)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => panic!("the browser exited"),
        }
    }

    fn on_event(&mut self, msg: &Value) {
        // A dialog (an `alert` that ran) would block the page: note it and
        // dismiss it, so the test fails on the assertion, not a timeout.
        if msg["method"] == "Page.javascriptDialogOpening" {
            let session = msg["sessionId"].as_str().map(str::to_string);
            self.send(session.as_deref(), "Page.handleJavaScriptDialog", json!({"accept": false}));
        }
        self.events.push(msg.clone());
    }

    /// Takes in events already received, without waiting.
    fn drain(&mut self) {
        while let Ok(msg) = self.messages.try_recv() {
            if msg.get("method").is_some() {
                self.on_event(&msg);
            }
        }
    }

    /// A command to the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone().expect("a page is open");
        self.call_in(Some(&session), method, params)
    }

    /// Opens a page of `width` × `height` CSS pixels at `url` and waits for
    /// its load event. Console, errors, network and dialogs are recorded
    /// from the start.
    pub fn open(&mut self, url: &str, width: u32, height: u32) {
        let target = self.call_in(None, "Target.createTarget", json!({"url": "about:blank"}));
        let attached =
            self.call_in(None, "Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true}));
        self.session = Some(attached["sessionId"].as_str().expect("a session id").to_string());
        for domain in ["Page", "Runtime", "Log", "Network", "Performance"] {
            self.call(&format!("{domain}.enable"), json!({}));
        }
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        let before = self.events.len();
        self.call("Page.navigate", json!({"url": url}));
        let deadline = Instant::now() + TIMEOUT;
        while !self.events[before..].iter().any(|e| e["method"] == "Page.loadEventFired") {
            self.next_message(deadline).unwrap_or_else(|| panic!("{url} did not load in {TIMEOUT:?}"));
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its value
    /// (promises awaited); an exception fails the test.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true, "userGesture": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("evaluating `{expression}` threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Console errors and warnings, uncaught exceptions, and browser log
    /// entries of level error (a refused script or fetch) so far.
    pub fn errors(&mut self) -> Vec<String> {
        self.drain();
        self.events
            .iter()
            .filter_map(|e| {
                let p = &e["params"];
                match e["method"].as_str()? {
                    "Runtime.exceptionThrown" => {
                        let d = &p["exceptionDetails"];
                        Some(format!(
                            "exception: {}",
                            d["exception"]["description"].as_str().unwrap_or(&d["text"].to_string())
                        ))
                    }
                    "Runtime.consoleAPICalled"
                        if matches!(p["type"].as_str(), Some("error" | "assert" | "warning")) =>
                    {
                        let args: Vec<String> = p["args"].as_array()?.iter().map(|a| a["value"].to_string()).collect();
                        Some(format!("console.{}: {}", p["type"].as_str()?, args.join(" ")))
                    }
                    "Log.entryAdded" if matches!(p["entry"]["level"].as_str(), Some("error" | "warning")) => {
                        Some(format!("{} ({}): {}", p["entry"]["level"], p["entry"]["source"], p["entry"]["text"]))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// Messages of the dialogs (`alert`, `confirm`...) the page opened.
    pub fn dialogs(&mut self) -> Vec<String> {
        self.drain();
        self.events
            .iter()
            .filter(|e| e["method"] == "Page.javascriptDialogOpening")
            .map(|e| e["params"]["message"].to_string())
            .collect()
    }

    /// URLs of every request the page made.
    pub fn requests(&mut self) -> Vec<String> {
        self.drain();
        self.events
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .map(|e| e["params"]["request"]["url"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// The page's performance counters (`ScriptDuration`, in seconds, is
    /// the time spent running script).
    pub fn metric(&mut self, name: &str) -> f64 {
        let m = self.call("Performance.getMetrics", json!({}));
        m["metrics"]
            .as_array()
            .and_then(|all| all.iter().find(|x| x["name"] == name))
            .and_then(|x| x["value"].as_f64())
            .unwrap_or_else(|| panic!("no metric {name}: {m}"))
    }

    /// Saves a PNG of what the page shows.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.send(None, "Browser.close", json!({}));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pipe whose ends close on exec: (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors, which we then own.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Standard base64 (the screenshot's encoding).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &c)| acc | value(c) << (18 - 6 * i));
        let take = chunk.len() - 1;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
}
