//! The HTML report of a run: `.flow/runs/<run-id>/report.html`, written at
//! the end of every `flow run` (failed and interrupted ones too, with what
//! finished), and opened by `flow view`.
//!
//! It is one self-contained file, so it can be opened offline and attached
//! to a CI job: the stylesheet and the script are inlined, and the run's data
//! is embedded as JSON in a `<script type="application/json">` block that the
//! script renders with `textContent` only. Model output is untrusted text:
//! it never reaches the page as markup, the JSON escapes every `<`, `>` and
//! `&` so no record can close its block, and a Content-Security-Policy with a
//! per-report nonce forbids any other script, inline handler or network
//! fetch, in case anything slipped through anyway.
//!
//! [`index`] writes `.flow/index.html`, the workspace's runs newest first,
//! which `flow view` with no run opens; [`comparison`] the page of `flow
//! compare A B`. `flow view --serve` (`crate::serve`) serves the same pages
//! with the live strip.
//!
//! [`data`] gathers what the page shows (bounded: a node's records are
//! capped, long strings cut), [`page`] assembles the file. A kind's view is
//! its own (`nodes/src/<kind>/view.rs` and `view.js`): this module names no
//! kind.

pub mod comparison;
mod data;
pub mod index;
mod page;

use crate::out::outln;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::Context;

use flow_engine::cache::{write_replaceable, ContentHash, RunManifest, RunStatus, Store};
use flow_engine::Plan;

use super::{inspect, Failure};

/// The report's file name in a run folder.
pub const REPORT_HTML: &str = "report.html";

/// Writes the report of run `manifest` into its run folder and returns its
/// path. `plan` draws the graph's edges; a report written later, from the
/// manifest alone, shows the nodes without them.
pub fn write(store: &Store, plan: Option<&Plan>, manifest: &RunManifest) -> anyhow::Result<PathBuf> {
    let data = data::collect(store, plan, manifest);
    let html = page::render(&manifest.spec, &manifest.run_id, &data.to_json(), &nonce(&manifest.run_id));
    let path = store.run_dir(&manifest.run_id).join(REPORT_HTML);
    write_replaceable(&path, html.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The element that holds a page's data.
const DATA_OPEN: &str = r#"<script type="application/json" id="flow-data">"#;

/// The data (JSON) embedded in a page this module wrote.
pub fn embedded_data(page: &str) -> Option<&str> {
    let start = page.find(DATA_OPEN)? + DATA_OPEN.len();
    let len = page[start..].find("</script>")?;
    Some(&page[start..start + len])
}

/// The data of run `m`'s report as it stands (a run still going: its
/// finished nodes), without the plan's graph.
pub fn data_of(store: &Store, m: &RunManifest) -> String {
    data::collect(store, None, m).to_json()
}

/// The page of run `run_id` (of spec `spec`) with `data`, as `flow view
/// --serve` serves it: `connect` what it may connect to.
pub fn served_page(spec: &str, run_id: &str, data: &str, connect: &str) -> String {
    page::render_page(&format!("flow · {spec} · {run_id}"), data, &nonce(run_id), connect)
}

/// `flow view [RUN]` (an id, a unique prefix, `latest`): prints the report's
/// path and opens it with the system's opener when there is a display. A
/// run from before reports were written gets one now. With no run, the
/// index of the workspace's runs, written afresh.
pub fn view(store: &Store, run: Option<&str>, open: bool) -> Result<(), Failure> {
    let ids = store.run_ids().map_err(anyhow::Error::from)?;
    if ids.is_empty() {
        return Err(flow_engine::diag::Diagnostic::new(format!("no runs yet in {}", store.root().display()))
            .hint("run a spec first: flow run specs/demo.yaml")
            .into());
    }
    let Some(given) = run else {
        let path = index::write(store)?;
        outln!("{}", path.display());
        if open {
            open_in_browser(&path);
        }
        return Ok(());
    };
    let id = inspect::resolve_run(store, given, None)?;
    let mut path = store.run_dir(&id).join(REPORT_HTML);
    if !path.is_file() {
        let manifest = store.run_manifest(&id).map_err(anyhow::Error::from)?;
        if manifest.status == RunStatus::Running {
            return Err(flow_engine::diag::Diagnostic::new(format!("run `{id}` is still running"))
                .hint("its report is written when it ends")
                .into());
        }
        path = write(store, None, &manifest)?;
    }
    outln!("{}", path.display());
    if open {
        open_in_browser(&path);
    }
    Ok(())
}

/// Hands the file (or URL) to the system's opener. Never fails: the path
/// is printed already, and a machine without a display or an opener is
/// normal (CI).
pub fn open_in_browser(path: &std::path::Path) {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut cmd = if cfg!(target_os = "macos") {
        Command::new("open")
    } else if cfg!(windows) {
        let mut c = Command::new("cmd");
        c.args(["/C", "start", ""]);
        c
    } else {
        // Without a display, xdg-open falls back to a text browser that
        // would take over the terminal.
        if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
            return;
        }
        Command::new("xdg-open")
    };
    let spawned = cmd.arg(&path).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
    if let Err(e) = spawned {
        tracing::debug!("cannot open the report: {e}");
    }
}

/// A Content-Security-Policy nonce unique to this report: model output
/// written before it cannot know it.
fn nonce(run_id: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    ContentHash::of(format!("{run_id}-{now}-{}", std::process::id()).as_bytes()).hex()[..32].to_string()
}
