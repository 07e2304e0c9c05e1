//! Which process runs a run, so that a reader can tell a run in progress
//! from one whose process died without recording its end (SIGKILL, the OOM
//! killer, a power cut): such a run's manifest says `running` forever.
//!
//! On Linux a process is known by its pid *and* its start time (field 22 of
//! `/proc/<pid>/stat`, clock ticks after boot), so a pid reused by another
//! process is not mistaken for the run; the boot id and the host name say
//! whether that pid can be looked up here at all. Elsewhere only the pid is
//! recorded and liveness is [`Liveness::Unknown`]: a bare pid may be reused,
//! and saying "died" of a live run would let `flow cache gc` take its files.

use serde::{Deserialize, Serialize};

/// The `flow` process that runs a run, as its run manifest records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunProcess {
    pub pid: u32,
    /// Linux: the process's start time in clock ticks after boot
    /// (`/proc/<pid>/stat` field 22); another process given the same pid
    /// later has another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
    /// Linux: `/proc/sys/kernel/random/boot_id`. Start ticks count from
    /// boot, so they only identify a process within one boot; after a
    /// reboot no process of the run is alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The host name: a workspace on a shared disk may be run from another
    /// machine (or container), whose processes cannot be looked up here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Whether a recorded process is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Gone: no such pid, a pid now held by another process, a zombie, or
    /// a reboot since.
    Dead,
    /// Cannot be told from here (another host, a platform without `/proc`).
    Unknown,
}

impl RunProcess {
    /// The current process.
    pub fn this_process() -> Self {
        let pid = std::process::id();
        Self { pid, start_ticks: stat(pid).and_then(|s| s.start_ticks), boot_id: boot_id(), host: host() }
    }

    /// Looks the process up (Linux only; [`Liveness::Unknown`] elsewhere).
    pub fn liveness(&self) -> Liveness {
        let Some(ticks) = self.start_ticks else { return Liveness::Unknown };
        if !cfg!(target_os = "linux") || self.host != host() {
            return Liveness::Unknown;
        }
        if self.boot_id != boot_id() {
            return Liveness::Dead;
        }
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Liveness::Dead,
            Err(_) => Liveness::Unknown,
            Ok(text) => match parse_stat(&text) {
                // A zombie has exited; it waits only for its parent to reap it.
                Some(s) if matches!(s.state, 'Z' | 'X' | 'x') => Liveness::Dead,
                Some(Stat { start_ticks: Some(t), .. }) if t == ticks => Liveness::Alive,
                Some(Stat { start_ticks: Some(_), .. }) => Liveness::Dead,
                Some(Stat { start_ticks: None, .. }) | None => Liveness::Unknown,
            },
        }
    }
}

/// The start of the name of a temp file this process writes in
/// `.flow/tmp/`: `flow-<pid>-<start ticks>-`, so a later run can tell the
/// files of a process that was killed from those of one still writing.
pub fn temp_prefix() -> String {
    let me = RunProcess::this_process();
    format!("flow-{}-{}-", me.pid, me.start_ticks.unwrap_or(0))
}

/// Whether the temp file `name` was written by a process that is gone
/// (only on Linux, where that can be told; a name of another form is
/// left to `flow cache gc`).
pub fn temp_owner_is_dead(name: &str) -> bool {
    let mut parts = name.strip_prefix("flow-").unwrap_or("").splitn(3, '-');
    let (Some(pid), Some(ticks)) =
        (parts.next().and_then(|p| p.parse().ok()), parts.next().and_then(|t| t.parse().ok()))
    else {
        return false;
    };
    let owner = RunProcess { pid, start_ticks: Some(ticks).filter(|t| *t > 0), boot_id: boot_id(), host: host() };
    owner.liveness() == Liveness::Dead
}

/// The fields of `/proc/<pid>/stat` we read.
struct Stat {
    state: char,
    start_ticks: Option<u64>,
}

fn stat(pid: u32) -> Option<Stat> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `pid (comm) state ppid ... starttime ...`: the command name may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `state` is field 3; `starttime` is field 22.
    let start_ticks = fields.nth(22 - 4).and_then(|f| f.parse().ok());
    Some(Stat { state, start_ticks })
}

fn boot_id() -> Option<String> {
    linux_file("/proc/sys/kernel/random/boot_id")
}

fn host() -> Option<String> {
    linux_file("/proc/sys/kernel/hostname")
}

fn linux_file(path: &str) -> Option<String> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn temp_files_of_a_gone_process_are_known_by_their_name() {
        assert!(!temp_owner_is_dead(&format!("{}abc123", temp_prefix())), "this process is writing it");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(temp_owner_is_dead(&format!("flow-{pid}-12345-abc")), "its writer is gone");
        assert!(temp_owner_is_dead(&format!("flow-{}-1-abc", std::process::id())), "another start time: a reused pid");
        assert!(!temp_owner_is_dead(".tmpXYZ"), "an older name is left to gc");
        assert!(!temp_owner_is_dead("flow-x-y-z"));
    }

    #[test]
    fn this_process_is_alive() {
        let me = RunProcess::this_process();
        assert!(me.start_ticks.is_some() && me.boot_id.is_some(), "{me:?}");
        assert_eq!(me.liveness(), Liveness::Alive);
    }

    #[test]
    fn a_reused_pid_is_not_the_run() {
        let me = RunProcess::this_process();
        let other = RunProcess { start_ticks: me.start_ticks.map(|t| t + 1), ..me };
        assert_eq!(other.liveness(), Liveness::Dead);
    }

    #[test]
    fn a_pid_that_does_not_exist_is_dead() {
        // Above the kernel's largest pid (2^22).
        let gone = RunProcess { pid: 1 << 30, ..RunProcess::this_process() };
        assert_eq!(gone.liveness(), Liveness::Dead);
    }

    #[test]
    fn an_exited_child_not_yet_reaped_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let p = RunProcess {
            pid: child.id(),
            start_ticks: stat(child.id()).and_then(|s| s.start_ticks),
            ..RunProcess::this_process()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while stat(child.id()).is_some_and(|s| s.state != 'Z') && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(p.liveness(), Liveness::Dead);
        child.wait().unwrap();
        assert_eq!(p.liveness(), Liveness::Dead);
    }

    #[test]
    fn another_boot_is_dead_and_another_host_unknown() {
        let me = RunProcess::this_process();
        let rebooted = RunProcess { boot_id: Some("another-boot".into()), ..me.clone() };
        assert_eq!(rebooted.liveness(), Liveness::Dead);
        let elsewhere = RunProcess { host: Some("another-host".into()), ..me.clone() };
        assert_eq!(elsewhere.liveness(), Liveness::Unknown);
        let pid_only = RunProcess { start_ticks: None, ..me };
        assert_eq!(pid_only.liveness(), Liveness::Unknown);
    }

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let fields = (4..=52).map(|i| if i == 22 { "777".to_string() } else { i.to_string() });
        let text = format!("42 (a ) b (c) S {}\n", fields.collect::<Vec<_>>().join(" "));
        let s = parse_stat(&text).unwrap();
        assert_eq!((s.state, s.start_ticks), ('S', Some(777)));
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x)").is_none());
        assert_eq!(parse_stat("1 (x) R 2").unwrap().start_ticks, None);
    }
}
