//! A shared store in an S3-compatible bucket (`--store s3://bucket/prefix`),
//! behind the local `.flow/`: shards on other machines and later runs see
//! each other's node entries and call answers through it.
//!
//! ```text
//! <prefix>/objects/<hash>        content-addressed bytes, as in .flow/objects
//! <prefix>/nodes/<key>.json      node manifests, by node key
//! <prefix>/memo/<name>.sqlite    segments of call memos (the answers one run added)
//! ```
//!
//! Every entry is deterministic for its name (an object for its hash, a
//! manifest for its key, a segment for its content), so writes are
//! create-if-absent (`If-None-Match: *`): the first writer wins, a second
//! finds it there, and no lock is needed. The local `.flow/` stays in
//! front: a node entry or object fetched once is kept there, and lookups of
//! the call memo stay local (segments are imported when a run starts and
//! written when it ends).
//!
//! Credentials come from the standard AWS variables only (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL` for another S3-compatible server); they live in the
//! client and are never part of a key, a manifest or a message.

use std::future::Future;
use std::io::{Read, Write};
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, WriteMultipart};

/// Objects past this size go up in parts of it (S3's parts are 5 MiB at
/// least), read from their file a part at a time, so an upload holds a
/// few parts in memory, not the object.
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts in flight at once during an upload.
const PARTS_IN_FLIGHT: usize = 2;

/// A failed operation on the bucket.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The `--store` value is not a store this build can open.
    #[error("`{url}` is not a store flow can use: {why}")]
    BadUrl { url: String, why: String },
    /// A request to the bucket failed.
    #[error("{action} {path} in {store}: {source}")]
    Request { action: &'static str, path: String, store: String, source: Box<object_store::Error> },
    /// The client's async runtime could not be started.
    #[error("starting the store's client: {0}")]
    Runtime(std::io::Error),
}

/// A bucket (and prefix) holding a shared store.
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket/prefix`, as shown in messages (no credentials: they are
    /// never in the URL).
    url: String,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish()
    }
}

impl Remote {
    /// Opens `s3://bucket[/prefix]` with the credentials, region and
    /// endpoint of the AWS environment variables. An `http://` endpoint (a
    /// local S3-compatible server) is allowed as such.
    pub fn connect(url: &str) -> Result<Self, RemoteError> {
        let bad = |why: &str| RemoteError::BadUrl { url: url.to_string(), why: why.to_string() };
        let rest =
            url.strip_prefix("s3://").ok_or_else(|| bad("only s3:// stores are supported (s3://bucket/prefix)"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket named (s3://bucket/prefix)"));
        }
        if bucket.contains('@') || bucket.contains(':') {
            return Err(bad("credentials go in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, not in the URL"));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let endpoint = std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT")).unwrap_or_default();
        if endpoint.starts_with("http://") {
            builder = builder.with_allow_http(true);
        }
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            builder = builder.with_region("us-east-1");
        }
        let s3 = builder.build().map_err(|e| bad(&e.to_string()))?;
        let prefix = prefix.trim_matches('/');
        let store: Arc<dyn ObjectStore> =
            if prefix.is_empty() { Arc::new(s3) } else { Arc::new(PrefixStore::new(s3, prefix)) };
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(RemoteError::Runtime)?;
        Ok(Self { store, url: format!("s3://{bucket}/{prefix}").trim_end_matches('/').to_string(), runtime })
    }

    /// The store as written on the command line.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `f` to completion on the client's own runtime, on a thread of
    /// its own: the store is called from the engine's async tasks, where a
    /// runtime cannot be entered again.
    fn block<T: Send>(&self, f: impl Future<Output = T> + Send) -> T {
        std::thread::scope(|s| s.spawn(|| self.runtime.block_on(f)).join().expect("store client thread"))
    }

    fn failed(&self, action: &'static str, path: &str) -> impl FnOnce(object_store::Error) -> RemoteError + '_ {
        let path = path.to_string();
        move |source| RemoteError::Request { action, path, store: self.url.clone(), source: Box::new(source) }
    }

    /// The bytes at `path`, or none.
    pub fn get(&self, path: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        let at = ObjectPath::from(path);
        self.block(async {
            match self.store.get(&at).await {
                Ok(r) => r.bytes().await.map(|b| Some(b.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .map_err(self.failed("read", path))
    }

    /// Streams the bytes at `path` into `out`, a chunk at a time; whether
    /// anything was there.
    pub fn get_into(&self, path: &str, out: &mut (impl Write + Send)) -> Result<bool, RemoteError> {
        use futures::TryStreamExt;
        let at = ObjectPath::from(path);
        let write = |e: std::io::Error| object_store::Error::Generic { store: "local file", source: Box::new(e) };
        self.block(async {
            let mut chunks = match self.store.get(&at).await {
                Ok(r) => r.into_stream(),
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(e),
            };
            while let Some(chunk) = chunks.try_next().await? {
                out.write_all(&chunk).map_err(write)?;
            }
            Ok(true)
        })
        .map_err(self.failed("read", path))
    }

    /// Writes the file `from` at `path`, in parts past [`PART_BYTES`]. For
    /// content-addressed entries (an object named by its hash): a second
    /// writer writes the same bytes, so no condition is needed.
    pub fn put_file(&self, path: &str, from: &std::path::Path) -> Result<(), RemoteError> {
        let at = ObjectPath::from(path);
        let local = |e: std::io::Error| object_store::Error::Generic { store: "local file", source: Box::new(e) };
        self.block(async {
            let mut file = std::fs::File::open(from).map_err(local)?;
            let size = file.metadata().map_err(local)?.len();
            if size <= PART_BYTES as u64 {
                let mut bytes = Vec::with_capacity(size as usize);
                file.read_to_end(&mut bytes).map_err(local)?;
                return self.store.put(&at, PutPayload::from(bytes)).await.map(|_| ());
            }
            let upload = self.store.put_multipart(&at).await?;
            let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            let mut buf = vec![0u8; 1024 * 1024];
            let sent = loop {
                if let Err(e) = parts.wait_for_capacity(PARTS_IN_FLIGHT).await {
                    break Err(e);
                }
                match file.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) => parts.write(&buf[..n]),
                    Err(e) => break Err(local(e)),
                }
            };
            match sent {
                Ok(()) => parts.finish().await.map(|_| ()),
                Err(e) => {
                    // No half-written upload left behind (its parts are billed).
                    let _ = parts.abort().await;
                    Err(e)
                }
            }
        })
        .map_err(self.failed("write", path))
    }

    /// Whether something is at `path`.
    pub fn exists(&self, path: &str) -> Result<bool, RemoteError> {
        let at = ObjectPath::from(path);
        self.block(async {
            match self.store.head(&at).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .map_err(self.failed("look up", path))
    }

    /// Writes `bytes` at `path` unless something is there already (the
    /// first writer wins); whether this call wrote it.
    pub fn put_new(&self, path: &str, bytes: Vec<u8>) -> Result<bool, RemoteError> {
        let at = ObjectPath::from(path);
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        self.block(async {
            match self.store.put_opts(&at, PutPayload::from(bytes), opts).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .map_err(self.failed("write", path))
    }

    /// The names (last path segment) of the entries under `prefix`.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError> {
        use futures::TryStreamExt;
        let at = ObjectPath::from(prefix);
        let mut names: Vec<String> = self
            .block(async {
                self.store
                    .list(Some(&at))
                    .map_ok(|m| m.location.filename().unwrap_or_default().to_string())
                    .try_collect()
                    .await
            })
            .map_err(self.failed("list", prefix))?;
        names.sort();
        Ok(names)
    }
}

/// The call memo and the shared store: what this workspace has not yet
/// written there, and what others wrote that it has not read.
impl crate::Store {
    fn remote_state(&self, remote: &Remote, what: &str) -> std::path::PathBuf {
        let id = &crate::ContentHash::of(remote.url().as_bytes()).hex()[..16];
        self.root().join("remote").join(format!("{id}.{what}"))
    }

    /// Imports the memo segments in the shared store that this workspace
    /// has not read yet (answers that shards elsewhere paid for). How many
    /// answers were added.
    pub fn pull_memo(&self, memo: &crate::CallMemo) -> Result<u64, crate::StoreError> {
        let Some(remote) = self.remote() else { return Ok(0) };
        let list = self.remote_state(remote, "imported");
        let mut read: std::collections::BTreeSet<String> =
            std::fs::read_to_string(&list).unwrap_or_default().lines().map(str::to_string).collect();
        let mut added = 0;
        for name in remote.list("memo")? {
            if read.contains(&name) || !name.ends_with(".sqlite") {
                continue;
            }
            let dir = self.root().join("tmp");
            std::fs::create_dir_all(&dir).map_err(|e| io(e, "create", &dir))?;
            let mut tmp = tempfile::Builder::new()
                .prefix(&crate::process::temp_prefix())
                .tempfile_in(&dir)
                .map_err(|e| io(e, "create temp file in", &dir))?;
            if !remote.get_into(&format!("memo/{name}"), tmp.as_file_mut())? {
                continue;
            }
            added += memo.import(tmp.path()).map_err(|e| memo_err(e, remote))?.0;
            read.insert(name);
        }
        let text: String = read.iter().map(|n| format!("{n}\n")).collect();
        crate::write_atomic(&list, text.as_bytes()).map_err(|e| io(e, "write", &list))?;
        Ok(added)
    }

    /// Writes the answers this workspace stored since its last push to the
    /// shared store as one segment (imported answers too, the first time:
    /// the segment is deduplicated where it is read). How many.
    pub fn push_memo(&self, memo: &crate::CallMemo) -> Result<u64, crate::StoreError> {
        let Some(remote) = self.remote() else { return Ok(0) };
        let mark = self.remote_state(remote, "pushed");
        let since: i64 = std::fs::read_to_string(&mark).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
        let dir = self.root().join("tmp");
        std::fs::create_dir_all(&dir).map_err(|e| io(e, "create", &dir))?;
        let path = dir.join(format!("{}segment.sqlite", crate::process::temp_prefix()));
        let result = memo.export_since(since, &path).map_err(|e| memo_err(e, remote));
        let pushed = result.and_then(|(n, upto)| {
            if n > 0 {
                let hash = crate::hash_file(&path).map_err(|e| io(e, "read", &path))?;
                let name = format!("memo/{}.sqlite", hash.hex());
                if !remote.exists(&name)? {
                    remote.put_file(&name, &path)?;
                }
                // Its own segment is read already.
                let list = self.remote_state(remote, "imported");
                let mut text = std::fs::read_to_string(&list).unwrap_or_default();
                text.push_str(&format!("{}\n", &name["memo/".len()..]));
                crate::write_atomic(&list, text.as_bytes()).map_err(|e| io(e, "write", &list))?;
            }
            crate::write_atomic(&mark, upto.to_string().as_bytes()).map_err(|e| io(e, "write", &mark))?;
            Ok(n)
        });
        let _ = std::fs::remove_file(&path);
        pushed
    }

    /// Marks everything in the memo as written to the shared store: after
    /// a pull, the answers just imported are not written back.
    pub fn mark_memo_pushed(&self, memo: &crate::CallMemo) -> Result<(), crate::StoreError> {
        let Some(remote) = self.remote() else { return Ok(()) };
        let mark = self.remote_state(remote, "pushed");
        let upto = memo.watermark().map_err(|e| memo_err(e, remote))?;
        crate::write_atomic(&mark, upto.to_string().as_bytes()).map_err(|e| io(e, "write", &mark))
    }
}

fn io(source: std::io::Error, action: &'static str, path: &std::path::Path) -> crate::StoreError {
    crate::StoreError::Io { action, path: path.to_path_buf(), source }
}

fn memo_err(e: crate::MemoError, remote: &Remote) -> crate::StoreError {
    crate::StoreError::Memo { store: remote.url().to_string(), message: e.to_string() }
}
