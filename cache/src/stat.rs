//! The stat cache: an input file's content hash, and what was read from it
//! (a `load` node's field list), remembered under the file's stat (size,
//! modification and change times, inode, device), as git's index and DVC's
//! state database do. Planning a run over a 200 MB input then costs a
//! `stat`, not a read of 200 MB: the file is hashed again only when its
//! stat changed, and when the bytes turn out the same (a `touch`, a copy
//! over itself) what was derived from them is kept.
//!
//! A file written just before it was hashed may be written again within
//! the same timestamp tick (a second on some filesystems) with the same
//! size, and the stat would not tell. So, like git's "racily clean"
//! entries, an entry is trusted only when the file's modification time was
//! at least [`RACY`] older than the moment it was hashed; a younger file is
//! hashed again until it has aged.
//!
//! The cache is one JSON file (`.flow/stat-cache.json`), replaced
//! atomically (temp file + rename) when it changed. A damaged or unknown
//! one is ignored and rebuilt: at worst, files are hashed again. Two runs
//! writing it at once lose entries, never correctness.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{hash_file, write_atomic, ContentHash};

/// A file modified less than this before it was hashed is hashed again
/// next time (coarse filesystem timestamps: FAT's are 2 s apart).
pub const RACY: Duration = Duration::from_secs(2);

/// The most files remembered; past it, the longest-unhashed are dropped.
const MAX_FILES: usize = 10_000;

/// The format's version: a file with another is ignored.
const VERSION: u32 = 1;

/// What identifies a file's version without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    pub size: u64,
    /// Nanoseconds since the Unix epoch (negative before it).
    pub mtime_ns: i128,
    /// The inode's change time (0 where the platform has none): a write
    /// that puts the modification time back still changes it.
    pub ctime_ns: i128,
    pub inode: u64,
    pub device: u64,
}

impl FileStat {
    /// The stat of `path`.
    pub fn of(path: &Path) -> io::Result<Self> {
        Ok(Self::from_metadata(&std::fs::metadata(path)?))
    }

    #[cfg(unix)]
    fn from_metadata(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
            inode: m.ino(),
            device: m.dev(),
        }
    }

    #[cfg(not(unix))]
    fn from_metadata(m: &std::fs::Metadata) -> Self {
        let mtime_ns = m.modified().map(epoch_ns).unwrap_or(0);
        Self { size: m.len(), mtime_ns, ctime_ns: 0, inode: 0, device: 0 }
    }
}

/// Nanoseconds since the Unix epoch.
fn epoch_ns(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// One file's entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    stat: FileStat,
    hash: ContentHash,
    /// When the file was stat'ed before hashing, in ns since the epoch.
    hashed_ns: i128,
    /// What was read from these bytes, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    derived: BTreeMap<String, Value>,
}

impl Entry {
    /// Whether the file's stat is `stat` and was already old when hashed.
    fn trusted(&self, stat: &FileStat) -> bool {
        self.stat == *stat && stat.mtime_ns.saturating_add(RACY.as_nanos() as i128) <= self.hashed_ns
    }
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    files: BTreeMap<PathBuf, Entry>,
}

/// The stat cache of one workspace (see the module doc).
pub struct StatCache {
    path: PathBuf,
    files: Mutex<BTreeMap<PathBuf, Entry>>,
    changed: AtomicBool,
}

impl StatCache {
    /// The cache kept at `path`: empty when there is none, or when it is
    /// damaged or from another version of flow.
    pub fn open(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let files = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<OnDisk>(&bytes).ok())
            .filter(|d| d.version == VERSION)
            .map(|d| d.files)
            .unwrap_or_default();
        Self { path, files: Mutex::new(files), changed: AtomicBool::new(false) }
    }

    /// The content hash of the file at `path`: remembered when its stat
    /// says it did not change, else read and remembered.
    pub fn hash(&self, path: &Path) -> io::Result<ContentHash> {
        let key = key_of(path);
        let stat = FileStat::of(path)?;
        if let Some(e) = self.lock().get(&key).filter(|e| e.trusted(&stat)) {
            return Ok(e.hash);
        }
        let hashed_ns = epoch_ns(SystemTime::now());
        let hash = hash_file(path)?;
        // Changed while it was read: not an entry to remember.
        if FileStat::of(path)? != stat {
            return Ok(hash);
        }
        let mut files = self.lock();
        let derived = match files.remove(&key) {
            Some(old) if old.hash == hash => old.derived,
            _ => BTreeMap::new(),
        };
        files.insert(key, Entry { stat, hash, hashed_ns, derived });
        self.changed.store(true, Ordering::Relaxed);
        Ok(hash)
    }

    /// What was stored as `what` for the file at `path` with content
    /// `hash` ([`StatCache::hash`] first).
    pub fn derived(&self, path: &Path, hash: &ContentHash, what: &str) -> Option<Value> {
        let files = self.lock();
        let e = files.get(&key_of(path)).filter(|e| e.hash == *hash)?;
        e.derived.get(what).cloned()
    }

    /// Stores `value` as `what` for the file at `path` with content `hash`.
    pub fn set_derived(&self, path: &Path, hash: &ContentHash, what: &str, value: Value) {
        let mut files = self.lock();
        if let Some(e) = files.get_mut(&key_of(path)).filter(|e| e.hash == *hash) {
            e.derived.insert(what.to_string(), value);
            self.changed.store(true, Ordering::Relaxed);
        }
    }

    /// Writes the cache if it changed, atomically.
    pub fn save(&self) -> io::Result<()> {
        if !self.changed.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let mut files = self.lock().clone();
        if files.len() > MAX_FILES {
            let mut times: Vec<i128> = files.values().map(|e| e.hashed_ns).collect();
            times.sort_unstable();
            let cut = times[files.len() - MAX_FILES];
            files.retain(|_, e| e.hashed_ns >= cut);
        }
        let bytes = serde_json::to_vec(&OnDisk { version: VERSION, files }).expect("entries serialize");
        write_atomic(&self.path, &bytes)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<PathBuf, Entry>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The name a file is remembered under: its canonical path, so the same
/// file reached from another folder or through a link is one entry.
fn key_of(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aged(path: &Path, ago: Duration) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - ago).unwrap();
    }

    #[test]
    fn an_unchanged_file_is_not_read_again_and_a_changed_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let (data, at) = (dir.path().join("data.jsonl"), dir.path().join("stat-cache.json"));
        std::fs::write(&data, b"one\n").unwrap();
        aged(&data, Duration::from_secs(60));
        let cache = StatCache::open(&at);
        let h = cache.hash(&data).unwrap();
        assert_eq!(h, ContentHash::of(b"one\n"));
        cache.set_derived(&data, &h, "fields", serde_json::json!(["id"]));
        cache.save().unwrap();

        // The entry is trusted: a stand-in entry with another hash under
        // the same stat is what comes back, so the file was not read.
        let cache = StatCache::open(&at);
        let fake = ContentHash::of(b"not the bytes");
        cache.lock().get_mut(&key_of(&data)).unwrap().hash = fake;
        assert_eq!(cache.hash(&data).unwrap(), fake);

        // A touch: hashed again, the same bytes, what was derived kept.
        let cache = StatCache::open(&at);
        aged(&data, Duration::from_secs(30));
        assert_eq!(cache.hash(&data).unwrap(), h);
        assert_eq!(cache.derived(&data, &h, "fields"), Some(serde_json::json!(["id"])));

        // Other bytes of the same size: a new hash, nothing derived.
        std::fs::write(&data, b"two\n").unwrap();
        aged(&data, Duration::from_secs(30));
        let h2 = cache.hash(&data).unwrap();
        assert_eq!(h2, ContentHash::of(b"two\n"));
        assert_eq!(cache.derived(&data, &h2, "fields"), None);
        assert_eq!(cache.derived(&data, &h, "fields"), None);
    }

    #[test]
    fn a_file_written_just_before_it_was_hashed_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data.jsonl");
        std::fs::write(&data, b"fresh\n").unwrap();
        let cache = StatCache::open(dir.path().join("stat-cache.json"));
        let h = cache.hash(&data).unwrap();
        let fake = ContentHash::of(b"not the bytes");
        cache.lock().get_mut(&key_of(&data)).unwrap().hash = fake;
        assert_eq!(cache.hash(&data).unwrap(), h, "a racy entry was trusted");
    }

    #[test]
    fn a_damaged_cache_is_ignored_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let (data, at) = (dir.path().join("data.jsonl"), dir.path().join("stat-cache.json"));
        std::fs::write(&data, b"one\n").unwrap();
        for damaged in [&b"{not json"[..], b"", b"{\"version\": 99, \"files\": {}}", b"[1, 2]"] {
            std::fs::write(&at, damaged).unwrap();
            let cache = StatCache::open(&at);
            assert_eq!(cache.hash(&data).unwrap(), ContentHash::of(b"one\n"));
            cache.save().unwrap();
            let text = std::fs::read_to_string(&at).unwrap();
            assert!(serde_json::from_str::<OnDisk>(&text).is_ok(), "{text}");
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "a temp file was left: {left:?}");
    }

    #[test]
    fn nothing_is_written_when_nothing_changed() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("stat-cache.json");
        StatCache::open(&at).save().unwrap();
        assert!(!at.exists());
    }
}
