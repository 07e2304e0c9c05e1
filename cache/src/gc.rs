//! Looking at and reclaiming the store: `flow cache ls` and `flow cache gc`.
//!
//! What is live: the newest `keep_runs` runs, everything their manifests
//! name (node outputs and artifacts, and the node manifests of their keys),
//! and the entry each `refs/<spec>/<node>` points at (the working cache of
//! every spec: what the next run would reuse). Everything else — older run
//! folders, node manifests nothing names, objects no kept manifest names,
//! and temp files left by a killed run — is garbage. Anything written in the
//! last few minutes is kept whatever it is, so a run in progress is safe,
//! and so is any older run still `running` (one whose process died reads
//! as died and is collected like any finished run).
//! The call memo is never touched here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::{ContentHash, NodeManifest, RunStatus, Store, StoreError};

/// Files younger than this are never collected (a run may be writing them).
pub const GRACE: Duration = Duration::from_secs(10 * 60);

/// One cache entry (a node manifest) as `flow cache ls` shows it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub manifest: NodeManifest,
    /// Bytes of its output and artifacts.
    pub bytes: u64,
    /// Start time of the newest run that used it (ran or reused it).
    pub last_used: Option<String>,
    /// Whether a ref points at it (the next run of its spec reuses it).
    pub current: bool,
}

/// What the whole store holds.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub runs: usize,
    pub objects: usize,
    pub object_bytes: u64,
    pub temp_files: usize,
    pub memo_bytes: u64,
}

/// What a collection removed (or would remove, for a dry run).
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    pub runs: Vec<String>,
    pub manifests: usize,
    pub objects: usize,
    pub temp_files: usize,
    pub bytes: u64,
    pub kept_runs: usize,
    pub kept_objects: usize,
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_in(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn recent(p: &Path, now: SystemTime, grace: Duration) -> bool {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .map(|t| now.duration_since(t).unwrap_or_default() < grace)
        .unwrap_or(false)
}

impl Store {
    /// Every node manifest in the store.
    fn manifests(&self) -> Vec<NodeManifest> {
        files_in(&self.root().join("nodes"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter_map(|p| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
            .collect()
    }

    /// The keys the refs point at.
    fn current_keys(&self) -> BTreeSet<ContentHash> {
        files_in(&self.root().join("refs"))
            .into_iter()
            .filter_map(|p| std::fs::read_to_string(p).ok()?.trim().parse().ok())
            .collect()
    }

    /// Cache entries, most recently used first.
    pub fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        let mut last_used: BTreeMap<ContentHash, String> = BTreeMap::new();
        for id in self.run_ids()? {
            let m = self.run_manifest(&id)?;
            for n in &m.nodes {
                if let Some(k) = n.key.filter(|_| n.output.is_some()) {
                    last_used.insert(k, m.started.clone());
                }
            }
        }
        let current = self.current_keys();
        let mut entries: Vec<Entry> = self
            .manifests()
            .into_iter()
            .map(|m| {
                let bytes =
                    std::iter::once(&m.output).chain(m.artifacts.values()).map(|h| size(&self.object_path(h))).sum();
                Entry {
                    last_used: last_used.get(&m.key).cloned(),
                    current: current.contains(&m.key),
                    bytes,
                    manifest: m,
                }
            })
            .collect();
        entries.sort_by(|a, b| {
            b.last_used
                .cmp(&a.last_used)
                .then_with(|| (&a.manifest.spec, &a.manifest.node).cmp(&(&b.manifest.spec, &b.manifest.node)))
        });
        Ok(entries)
    }

    /// Totals of the store.
    pub fn usage(&self) -> Result<Usage, StoreError> {
        let objects = files_in(&self.root().join("objects"));
        Ok(Usage {
            runs: self.run_ids()?.len(),
            objects: objects.len(),
            object_bytes: objects.iter().map(|p| size(p)).sum(),
            temp_files: files_in(&self.root().join("tmp")).len(),
            // The memo and its write-ahead log.
            memo_bytes: size(&self.memo_path()) + size(&self.root().join("memo.sqlite-wal")),
        })
    }

    /// Removes what the newest `keep_runs` runs and the refs do not reach
    /// (see the module doc), sparing files younger than `grace`; with
    /// `dry_run`, only reports it.
    pub fn gc(&self, keep_runs: usize, grace: Duration, dry_run: bool) -> Result<GcReport, StoreError> {
        let now = SystemTime::now();
        let recent = |p: &Path| recent(p, now, grace);
        let ids = self.run_ids()?;
        let (older, newest) = ids.split_at(ids.len().saturating_sub(keep_runs));
        // A run still going is kept whatever its age (its manifest is only
        // rewritten as nodes finish, so a long node leaves it untouched for
        // a while); one that died reads as died, not running, and goes.
        let mut kept: Vec<&String> = newest.iter().collect();
        let mut old: Vec<&String> = Vec::new();
        for id in older {
            if self.run_manifest(id).is_ok_and(|m| m.status == RunStatus::Running) {
                kept.push(id);
            } else {
                old.push(id);
            }
        }
        let mut live_keys = self.current_keys();
        let mut live_objects: BTreeSet<ContentHash> = BTreeSet::new();
        for id in &kept {
            let m = self.run_manifest(id)?;
            for n in &m.nodes {
                live_keys.extend(n.key);
                live_objects.extend(n.output);
                live_objects.extend(n.artifacts.values().copied());
            }
        }
        let mut report = GcReport { kept_runs: kept.len(), ..GcReport::default() };
        let remove = |p: &Path, report: &mut GcReport| -> Result<(), StoreError> {
            report.bytes += size(p);
            if !dry_run {
                std::fs::remove_file(p).map_err(|source| StoreError::Io {
                    action: "remove",
                    path: p.to_path_buf(),
                    source,
                })?;
            }
            Ok(())
        };
        for m in self.manifests() {
            let path = self.root().join("nodes").join(format!("{}.json", m.key.hex()));
            if live_keys.contains(&m.key) || recent(&path) {
                live_objects.insert(m.output);
                live_objects.extend(m.artifacts.values().copied());
            } else {
                report.manifests += 1;
                remove(&path, &mut report)?;
            }
        }
        for id in old {
            let dir = self.run_dir(id);
            if recent(&dir.join("manifest.json")) {
                continue;
            }
            for f in files_in(&dir) {
                report.bytes += size(&f);
            }
            if !dry_run {
                std::fs::remove_dir_all(&dir).map_err(|source| StoreError::Io {
                    action: "remove",
                    path: dir.clone(),
                    source,
                })?;
            }
            report.runs.push(id.to_string());
        }
        for p in files_in(&self.root().join("objects")) {
            let hash = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<ContentHash>().ok());
            match hash {
                Some(h) if live_objects.contains(&h) => report.kept_objects += 1,
                _ if recent(&p) => report.kept_objects += 1,
                _ => {
                    report.objects += 1;
                    remove(&p, &mut report)?;
                }
            }
        }
        for p in files_in(&self.root().join("tmp")) {
            if !recent(&p) {
                report.temp_files += 1;
                remove(&p, &mut report)?;
            }
        }
        Ok(report)
    }
}
