//! `.flow/` on disk:
//!
//! ```text
//! .flow/objects/ab/<hash>          content-addressed bytes (outputs, artifacts)
//! .flow/nodes/<key>.json           node manifests, by node key
//! .flow/refs/<spec>/<node>         the key last stored for a node of a spec
//! .flow/memo.sqlite                the call memo (backend responses; SQLite, WAL)
//! .flow/locks/<spec>.lock          held by the run of a spec (an OS file lock)
//! .flow/runs/<run-id>/manifest.json, and each node's artifacts beside it
//! .flow/tmp/                       objects being written
//! ```

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{write_atomic, ContentHash, HashingWriter, NodeManifest, NodeStatus, Remote, RunManifest};

/// Errors reading or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    /// A JSON record in the store could not be read.
    #[error("corrupt record {path}: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    /// No run with this id (or no runs at all).
    #[error("no run `{0}` in this workspace")]
    NoSuchRun(String),
    /// The shared store (`--store`) failed.
    #[error(transparent)]
    Remote(Box<crate::RemoteError>),
    /// The call memo could not be synced with the shared store.
    #[error("syncing the call memo with {store}: {message}")]
    Memo { store: String, message: String },
    /// Bytes fetched from the shared store are not the object they are
    /// named for.
    #[error("object {hash} in {store} does not hold what its name says (its content hashes to {got})")]
    RemoteMismatch { hash: String, got: String, store: String },
    /// Another flow process is running this spec in this workspace.
    #[error(
        "spec `{spec}` is already being run in {} by another flow process{}; hint: wait for it to finish and run again",
        workspace.display(),
        pid.as_deref().map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    AlreadyRunning { spec: String, workspace: PathBuf, pid: Option<String> },
}

impl From<crate::RemoteError> for StoreError {
    fn from(e: crate::RemoteError) -> Self {
        StoreError::Remote(Box::new(e))
    }
}

/// Where an object lives in the shared store.
fn remote_object(hash: &ContentHash) -> String {
    format!("objects/{}", hash.hex())
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { action, path: path.to_path_buf(), source }
}

/// A `.flow/` directory. Opening does not create anything: reads on a store
/// that does not exist find nothing, so `flow plan` writes nothing.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// The shared store behind this one (`--store`), if any.
    remote: Option<Arc<Remote>>,
}

impl Store {
    pub fn open(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), remote: None }
    }

    /// This store in front of `remote`: node entries and objects missing
    /// here are looked up there (and kept here once fetched), and what a
    /// run stores is written there too (see [`crate::Remote`]).
    pub fn with_remote(mut self, remote: Remote) -> Self {
        self.remote = Some(Arc::new(remote));
        self
    }

    /// The shared store behind this one.
    pub fn remote(&self) -> Option<&Remote> {
        self.remote.as_deref()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn exists(&self) -> bool {
        self.root.is_dir()
    }

    /// Creates the folder layout (idempotent).
    pub fn create(&self) -> Result<(), StoreError> {
        for sub in ["objects", "nodes", "refs", "runs", "tmp"] {
            let p = self.root.join(sub);
            std::fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        Ok(())
    }

    /// Removes the temp files of processes that were killed while writing
    /// them (SIGKILL leaves its objects half-written): a run's start tidies
    /// up after the last one. Files of live processes (another spec's run in
    /// this workspace) are left alone. How many were removed.
    pub fn sweep_temp(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(self.root.join("tmp")) else { return 0 };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_str().is_some_and(crate::process::temp_owner_is_dead) && std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    pub fn object_path(&self, hash: &ContentHash) -> PathBuf {
        let hex = hash.hex();
        self.root.join("objects").join(&hex[..2]).join(&hex)
    }

    pub fn has_object(&self, hash: &ContentHash) -> bool {
        self.object_path(hash).is_file()
    }

    /// Whether the object is here or in the shared store.
    fn has_object_anywhere(&self, hash: &ContentHash) -> bool {
        self.has_object(hash) || self.remote.as_ref().is_some_and(|r| r.exists(&remote_object(hash)).unwrap_or(false))
    }

    /// Brings an object missing here from the shared store, checking that
    /// its bytes hash to its name; the bytes when this store does not exist
    /// (`flow plan` writes nothing), else none (it is in place).
    fn fetch_object(&self, hash: &ContentHash) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(remote) = &self.remote else { return Ok(None) };
        if self.has_object(hash) {
            return Ok(None);
        }
        let mismatch = |got: ContentHash| StoreError::RemoteMismatch {
            hash: hash.hex(),
            got: got.hex(),
            store: remote.url().into(),
        };
        if !self.exists() {
            let Some(bytes) = remote.get(&remote_object(hash))? else { return Ok(None) };
            let got = ContentHash::of(&bytes);
            return if got == *hash { Ok(Some(bytes)) } else { Err(mismatch(got)) };
        }
        // Streamed to a temp file, hashed on the way, kept only if it is
        // what its name says.
        let mut w = self.object_writer()?;
        if !remote.get_into(&remote_object(hash), &mut w)? {
            return Ok(None);
        }
        match w.finish_if(|got| got == hash)? {
            (_, true) => Ok(None),
            (got, false) => Err(mismatch(got)),
        }
    }

    pub fn open_object(&self, hash: &ContentHash) -> Result<File, StoreError> {
        self.fetch_object(hash)?;
        let p = self.object_path(hash);
        File::open(&p).map_err(io_err("open object", &p))
    }

    pub fn read_object(&self, hash: &ContentHash) -> Result<Vec<u8>, StoreError> {
        if let Some(bytes) = self.fetch_object(hash)? {
            return Ok(bytes);
        }
        let p = self.object_path(hash);
        std::fs::read(&p).map_err(io_err("read object", &p))
    }

    /// Stores bytes as an object and returns their hash.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<ContentHash, StoreError> {
        let mut w = self.object_writer()?;
        w.write_all(bytes).map_err(io_err("write object", &self.root))?;
        w.finish()
    }

    /// A writer for a new object; its hash is known when it is finished.
    /// Dropped unfinished, it leaves nothing behind.
    pub fn object_writer(&self) -> Result<ObjectWriter, StoreError> {
        let tmp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(io_err("create", &tmp_dir))?;
        let tmp = tempfile::Builder::new()
            .prefix(&crate::process::temp_prefix())
            .tempfile_in(&tmp_dir)
            .map_err(io_err("create temp file in", &tmp_dir))?;
        let file = tmp.reopen().map_err(io_err("open", tmp.path()))?;
        Ok(ObjectWriter {
            store: self.clone(),
            tmp,
            // Buffer first, hash after: the hasher then sees 256 KiB blocks,
            // not each small write (serde_json writes a few bytes at a time).
            out: BufWriter::with_capacity(256 * 1024, HashingWriter::new(file)),
        })
    }

    fn manifest_path(&self, key: &ContentHash) -> PathBuf {
        self.root.join("nodes").join(format!("{}.json", key.hex()))
    }

    /// The manifest for a node key, if that key finished here or in the
    /// shared store (kept here once fetched).
    pub fn node_manifest(&self, key: &ContentHash) -> Result<Option<NodeManifest>, StoreError> {
        let p = self.manifest_path(key);
        if let Some(m) = read_json_opt(&p)? {
            return Ok(Some(m));
        }
        let Some(remote) = &self.remote else { return Ok(None) };
        let path = format!("nodes/{}.json", key.hex());
        let Some(bytes) = remote.get(&path)? else { return Ok(None) };
        let m: NodeManifest =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt { path: path.into(), source })?;
        if m.key != *key {
            return Ok(None);
        }
        if self.exists() {
            write_atomic(&p, &bytes).map_err(io_err("write", &p))?;
        }
        Ok(Some(m))
    }

    /// Whether every object a manifest names is still stored, here or in
    /// the shared store (a manifest whose objects were removed is not a
    /// usable cache entry).
    pub fn is_complete(&self, m: &NodeManifest) -> bool {
        self.has_object_anywhere(&m.output) && m.artifacts.values().all(|h| self.has_object_anywhere(h))
    }

    /// Files a node manifest (atomically) and points the node's ref at it;
    /// with a shared store, writes its objects and then the manifest there
    /// too (a manifest is never there before its objects).
    pub fn put_node_manifest(&self, m: &NodeManifest) -> Result<(), StoreError> {
        let p = self.manifest_path(&m.key);
        let bytes = serde_json::to_vec_pretty(m).expect("manifest serializes");
        write_atomic(&p, &bytes).map_err(io_err("write", &p))?;
        let r = self.ref_path(&m.spec, &m.node);
        write_atomic(&r, m.key.hex().as_bytes()).map_err(io_err("write", &r))?;
        if let Some(remote) = &self.remote {
            // One with calls to re-send is not reused, and the first entry
            // written under a key stays: only whole ones go there.
            if m.retryable_errors == 0 {
                for hash in std::iter::once(&m.output).chain(m.artifacts.values()) {
                    let path = remote_object(hash);
                    if !remote.exists(&path)? {
                        self.fetch_object(hash)?;
                        remote.put_file(&path, &self.object_path(hash))?;
                    }
                }
                remote.put_new(&format!("nodes/{}.json", m.key.hex()), bytes)?;
            }
        }
        Ok(())
    }

    fn ref_path(&self, spec: &str, node: &str) -> PathBuf {
        self.root.join("refs").join(file_safe(spec)).join(file_safe(node))
    }

    /// The manifest last stored for this node of this spec, whatever its key:
    /// what `flow plan` compares against to say why a node will run.
    pub fn last_manifest(&self, spec: &str, node: &str) -> Result<Option<NodeManifest>, StoreError> {
        let r = self.ref_path(spec, node);
        let Ok(text) = std::fs::read_to_string(&r) else {
            return Ok(None);
        };
        match text.trim().parse::<ContentHash>() {
            Ok(key) => self.node_manifest(&key),
            Err(_) => Ok(None),
        }
    }

    /// The call memo's file, `.flow/memo.sqlite`.
    pub fn memo_path(&self) -> PathBuf {
        self.root.join("memo.sqlite")
    }

    /// The memo older flows kept (redb), imported on first use.
    fn legacy_memo_path(&self) -> PathBuf {
        self.root.join("memo.redb")
    }

    /// The call memo of this workspace, to read and record answers in;
    /// created on first use, when an older flow's memo is imported. What
    /// opening it did (a damaged memo set aside, an import) is in its
    /// [`crate::CallMemo::notices`].
    pub fn call_memo(&self) -> Result<crate::CallMemo, crate::MemoError> {
        let mut memo = crate::CallMemo::open(&self.memo_path())?;
        let legacy = self.legacy_memo_path();
        if legacy.is_file() {
            memo.import_redb(&legacy)?;
        }
        Ok(memo)
    }

    /// The call memo opened read-only, taking no writer's lock (`flow plan`
    /// while a run records): `None` when there is none yet; nothing is
    /// created or repaired.
    pub fn read_call_memo(&self) -> Result<Option<crate::CallMemo>, crate::MemoError> {
        let path = self.memo_path();
        if path.is_file() {
            return crate::CallMemo::open_read_only(&path).map(Some);
        }
        let legacy = self.legacy_memo_path();
        if legacy.is_file() {
            return Err(crate::MemoError::NotImported { path: legacy });
        }
        Ok(None)
    }

    /// Takes the run lock of spec `spec`, held until the [`RunLock`] is
    /// dropped. Two runs of one spec would race over its node refs and run
    /// its nodes twice, so the second is refused
    /// ([`StoreError::AlreadyRunning`]); runs of other specs go on beside
    /// it. An OS file lock: it goes with the process, however that ends.
    pub fn lock_run(&self, spec: &str) -> Result<RunLock, StoreError> {
        let dir = self.root.join("locks");
        std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let path = dir.join(format!("{}.lock", file_safe(spec)));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("open", &path))?;
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for the message of a run refused.
                let _ = file.set_len(0).and_then(|()| write!(file, "{}", std::process::id()));
                Ok(RunLock { _file: file })
            }
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = Some(pid.trim().to_string()).filter(|p| !p.is_empty());
                Err(StoreError::AlreadyRunning { spec: spec.to_string(), workspace: self.root.clone(), pid })
            }
            Err(TryLockError::Error(e)) => Err(io_err("lock", &path)(e)),
        }
    }

    /// `.flow/runs/<run-id>/`.
    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.root.join("runs").join(run_id)
    }

    pub fn write_run_manifest(&self, m: &RunManifest) -> Result<(), StoreError> {
        let p = self.run_dir(&m.run_id).join("manifest.json");
        let bytes = serde_json::to_vec_pretty(m).expect("manifest serializes");
        write_atomic(&p, &bytes).map_err(io_err("write", &p))
    }

    /// Run ids, oldest first (ids sort by start time).
    pub fn run_ids(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.root.join("runs");
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        let mut ids: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("manifest.json").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// A run's manifest, [settled](RunManifest::settled): a run whose
    /// process died reads as [`RunStatus::Died`](crate::RunStatus::Died).
    pub fn run_manifest(&self, run_id: &str) -> Result<RunManifest, StoreError> {
        read_json_opt::<RunManifest>(&self.run_dir(run_id).join("manifest.json"))?
            .map(|m| m.settled(std::time::SystemTime::now()))
            .ok_or_else(|| StoreError::NoSuchRun(run_id.to_string()))
    }

    /// The output of node `node` as run `run_id` stored it, or, with `None`,
    /// as the newest run that has one stored it. A node has an output in a
    /// run where it ran or was cached (a failed or cancelled node has none).
    /// `Ok(None)` when there is no such output; an unknown run id is
    /// [`StoreError::NoSuchRun`]. `flow show`, `flow compare` and a
    /// `compare` node's stored baseline all find outputs this way.
    pub fn node_output(&self, node: &str, run_id: Option<&str>) -> Result<Option<StoredOutput>, StoreError> {
        let ids = match run_id {
            Some(id) => vec![id.to_string()],
            None => self.run_ids()?.into_iter().rev().collect(),
        };
        for id in ids {
            let m = self.run_manifest(&id)?;
            if let Some((output, records)) = output_of(&m, node) {
                return Ok(Some(StoredOutput { run_id: id, node: node.to_string(), output, records }));
            }
        }
        Ok(None)
    }

    /// The nodes that have an output in run `run_id`, or in any run (`None`),
    /// each named once: what a did-you-mean offers when
    /// [`Store::node_output`] finds nothing.
    pub fn nodes_with_output(&self, run_id: Option<&str>) -> Result<Vec<String>, StoreError> {
        let ids = match run_id {
            Some(id) => vec![id.to_string()],
            None => self.run_ids()?,
        };
        let mut names: Vec<String> = Vec::new();
        for id in ids {
            let m = self.run_manifest(&id)?;
            for n in &m.nodes {
                if output_of(&m, &n.name).is_some() && !names.contains(&n.name) {
                    names.push(n.name.clone());
                }
            }
        }
        Ok(names)
    }
}

/// The run lock of one spec (see [`Store::lock_run`]); released when
/// dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// A node's output as one run stored it (see [`Store::node_output`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOutput {
    pub run_id: String,
    pub node: String,
    /// The output object (JSONL).
    pub output: ContentHash,
    pub records: u64,
}

/// A node's output in a run: complete, or the records a failed node wrote
/// before it failed.
fn output_of(m: &RunManifest, node: &str) -> Option<(ContentHash, u64)> {
    let n = m.node(node)?;
    let kept = matches!(n.status, NodeStatus::Ran | NodeStatus::Cached | NodeStatus::Failed);
    n.output.filter(|_| kept).map(|o| (o, n.records_out))
}

fn read_json_opt<T: serde::de::DeserializeOwned>(p: &Path) -> Result<Option<T>, StoreError> {
    match std::fs::read(p) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Corrupt { path: p.to_path_buf(), source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", p)(e)),
    }
}

/// A name usable as one path component on every OS: unreserved characters
/// kept, the rest percent-encoded.
fn file_safe(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') && !(out.is_empty() && b == b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An object being written: bytes go to a temp file and are hashed on the
/// way; `finish` moves the file to its content address.
pub struct ObjectWriter {
    store: Store,
    tmp: tempfile::NamedTempFile,
    out: BufWriter<HashingWriter<File>>,
}

impl ObjectWriter {
    pub fn finish(self) -> Result<ContentHash, StoreError> {
        self.finish_if(|_| true).map(|(hash, _)| hash)
    }

    /// Moves the object to its content address if `keep` says so of its
    /// hash (else the temp file goes): the hash, and whether it was kept.
    fn finish_if(self, keep: impl FnOnce(&ContentHash) -> bool) -> Result<(ContentHash, bool), StoreError> {
        let hashing = self.out.into_inner().map_err(|e| io_err("flush", self.tmp.path())(e.into_error()))?;
        let (hash, file) = hashing.finish();
        if !keep(&hash) {
            return Ok((hash, false));
        }
        file.sync_all().map_err(io_err("sync", self.tmp.path()))?;
        let dest = self.store.object_path(&hash);
        if dest.is_file() {
            // Same content already stored; the temp file is removed on drop.
            return Ok((hash, true));
        }
        let parent = dest.parent().expect("object path has a parent");
        std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        self.tmp.persist(&dest).map_err(|e| io_err("store object", &dest)(e.error))?;
        Ok((hash, true))
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_content_addressed_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join(".flow"));
        store.create().unwrap();
        let a = store.put_bytes(b"{\"x\":1}\n").unwrap();
        let b = store.put_bytes(b"{\"x\":1}\n").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, ContentHash::of(b"{\"x\":1}\n"));
        assert_eq!(store.read_object(&a).unwrap(), b"{\"x\":1}\n");
        assert_eq!(std::fs::read_dir(dir.path().join(".flow/tmp")).unwrap().count(), 0);
    }

    #[test]
    fn an_unfinished_object_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join(".flow"));
        store.create().unwrap();
        let mut w = store.object_writer().unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path().join(".flow/tmp")).unwrap().count(), 0);
        assert!(!store.has_object(&ContentHash::of(b"partial")));
    }

    #[test]
    fn manifests_and_refs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join(".flow"));
        assert!(store.last_manifest("demo", "load").unwrap().is_none());
        store.create().unwrap();
        let out = store.put_bytes(b"").unwrap();
        let m = NodeManifest {
            key: ContentHash::of(b"key"),
            kind: "load".into(),
            node: "ns.load[x=1]".into(),
            spec: "demo".into(),
            fields: serde_json::json!({"kind": "load"}),
            output: out,
            records: 0,
            artifacts: Default::default(),
            created: "2026-01-01T00:00:00Z".into(),
            retryable_errors: 0,
        };
        store.put_node_manifest(&m).unwrap();
        assert_eq!(store.node_manifest(&m.key).unwrap(), Some(m.clone()));
        assert_eq!(store.last_manifest("demo", "ns.load[x=1]").unwrap(), Some(m));
        assert!(store.last_manifest("other", "ns.load[x=1]").unwrap().is_none());
    }

    #[test]
    fn a_spec_runs_once_at_a_time_and_other_specs_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join(".flow"));
        let a = store.lock_run("a").unwrap();
        let b = store.lock_run("b").unwrap();
        match store.lock_run("a") {
            Err(e @ StoreError::AlreadyRunning { .. }) => {
                let text = e.to_string();
                let pid = std::process::id();
                assert!(
                    text.starts_with(&format!(
                        "spec `a` is already being run in {} by another flow process (pid {pid})",
                        store.root().display()
                    )),
                    "{text}"
                );
                assert!(text.ends_with("hint: wait for it to finish and run again"), "{text}");
            }
            other => panic!("a second run of `a` was not refused: {other:?}"),
        }
        drop(a);
        let _again = store.lock_run("a").unwrap();
        drop(b);
    }

    #[test]
    fn file_safe_names() {
        assert_eq!(file_safe("scores"), "scores");
        assert_eq!(file_safe("a/b c"), "a%2Fb%20c");
        assert_eq!(file_safe(".."), "%2E.");
    }

    #[test]
    fn node_output_finds_the_newest_run_with_one() {
        use crate::{NodeOutcome, RunStatus};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join(".flow"));
        assert_eq!(store.node_output("scores", None).unwrap(), None);
        store.create().unwrap();
        let run = |id: &str, nodes: Vec<NodeOutcome>| RunManifest {
            run_id: id.into(),
            spec: "demo".into(),
            spec_path: "demo.yaml".into(),
            started: "2026-01-01T00:00:00Z".into(),
            finished: None,
            status: RunStatus::Succeeded,
            process: None,
            params: Default::default(),
            shard: None,
            error: None,
            calls: None,
            nodes,
        };
        let node = |name: &str, status, bytes: &[u8]| NodeOutcome {
            output: Some(ContentHash::of(bytes)),
            records_out: 1,
            ..NodeOutcome::new(name.into(), "evaluate".into(), status, None)
        };
        store.write_run_manifest(&run("r1", vec![node("scores", NodeStatus::Ran, b"1")])).unwrap();
        store.write_run_manifest(&run("r2", vec![node("scores", NodeStatus::Cached, b"2")])).unwrap();
        store.write_run_manifest(&run("r3", vec![node("scores", NodeStatus::Failed, b"3")])).unwrap();
        // A failed node's records (what it wrote before failing) count; a
        // cancelled node's do not.
        store.write_run_manifest(&run("r4", vec![node("scores", NodeStatus::Cancelled, b"4")])).unwrap();
        let latest = store.node_output("scores", None).unwrap().unwrap();
        assert_eq!((latest.run_id.as_str(), latest.output), ("r3", ContentHash::of(b"3")));
        assert_eq!(store.node_output("scores", Some("r1")).unwrap().unwrap().output, ContentHash::of(b"1"));
        assert_eq!(store.node_output("scores", Some("r4")).unwrap(), None);
        assert!(matches!(store.node_output("scores", Some("r9")), Err(StoreError::NoSuchRun(id)) if id == "r9"));
        assert_eq!(store.nodes_with_output(Some("r4")).unwrap(), Vec::<String>::new());
        assert_eq!(store.nodes_with_output(None).unwrap(), ["scores"]);
    }
}
