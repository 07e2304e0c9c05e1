//! `flow cache ls` and `flow cache gc`: what the workspace holds, and
//! reclaiming what no kept run and no current entry needs.

use crate::out::outln;
use std::time::Duration;

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};

use flow_engine::cache::Store;

/// Bytes as `1.2 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The entries, most recently used first, and the totals.
pub fn ls(store: &Store) -> anyhow::Result<()> {
    let entries = store.entries()?;
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header(["spec", "node", "kind", "records", "size", "last used", "key"]);
    for e in &entries {
        let m = &e.manifest;
        table.add_row([
            m.spec.clone(),
            format!("{}{}", m.node, if e.current { "" } else { " (old)" }),
            m.kind.clone(),
            m.records.to_string(),
            human_bytes(e.bytes),
            e.last_used.clone().unwrap_or_else(|| "-".into()),
            m.key.hex()[..12].to_string(),
        ]);
    }
    outln!("{table}");
    let u = store.usage()?;
    outln!(
        "{} entries ({} current); {} runs; {} objects, {}; call memo {}; {} temp files\n(old: not what the next run of its spec would reuse; `flow cache gc` removes old entries no kept run uses)",
        entries.len(),
        entries.iter().filter(|e| e.current).count(),
        u.runs,
        u.objects,
        human_bytes(u.object_bytes),
        human_bytes(u.memo_bytes),
        u.temp_files
    );
    Ok(())
}

pub fn gc(store: &Store, keep_runs: usize, min_age: Duration, dry_run: bool) -> anyhow::Result<()> {
    let r = store.gc(keep_runs, min_age, dry_run)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    outln!(
        "{verb} {} runs, {} cache entries, {} objects, {} temp files: {}; kept {} runs and {} objects",
        r.runs.len(),
        r.manifests,
        r.objects,
        r.temp_files,
        human_bytes(r.bytes),
        r.kept_runs,
        r.kept_objects
    );
    Ok(())
}

/// `flow cache import DIR...`: each workspace's (or file's) call memo into
/// this workspace's. A path with no memo is bad input, said before anything
/// is imported.
pub fn import(store: &Store, from: &[std::path::PathBuf]) -> Result<(), crate::Failure> {
    let mut paths = Vec::with_capacity(from.len());
    for dir in from {
        let path = if dir.is_dir() { dir.join("memo.sqlite") } else { dir.clone() };
        if !path.is_file() {
            return Err(flow_engine::diag::Diagnostic::new(format!("no call memo at {}", path.display()))
                .hint("name a .flow folder that a run wrote, or its memo.sqlite")
                .into());
        }
        paths.push((dir, path));
    }
    store.create().map_err(anyhow::Error::from)?;
    let memo = flow_engine::cache::CallMemo::open(&store.memo_path()).map_err(anyhow::Error::from)?;
    for (dir, path) in paths {
        let (added, there) = memo.import(&path).map_err(anyhow::Error::from)?;
        outln!("{}: {there} answers, {added} new here", dir.display());
    }
    Ok(())
}
