//! Spill files: the records a barrier stage collects past its memory bound,
//! written to `.flow/tmp/` and read back in order (or one by one, by
//! position).
//!
//! A barrier (`compare`, `extract`, `synthesize`, `train`) must see all its
//! input before it starts, and an input may be larger than memory. The
//! records are written in a small binary form of JSON, not as JSON text:
//! numbers keep their exact kind and bits (a float read back from text may
//! differ in its last bit), and decoding skips number parsing, which is most
//! of the cost of reading embeddings back. A spill file is a temp file named
//! like every temp file of the store (`flow-<pid>-<start>-…`): it is removed
//! when dropped, and [`Store::sweep_temp`] removes one a killed process left.
//!
//! The format, per value: a tag byte, then for `u64`/`i64`/`f64` 8 bytes
//! little-endian, for a string its length (LEB128) and UTF-8 bytes, for an
//! array its length and items, for an object its length and (key, value)
//! pairs. A record is an object. The file lives only as long as the run that
//! wrote it, so the format carries no version.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Number, Value};

use crate::Store;

/// Errors writing or reading a spill file.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("{action} spill file {}: {source}; hint: barrier input past its memory bound is spilled to .flow/tmp/, which needs free disk space", .path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    /// The file does not hold what was written (it was changed under us).
    #[error("spill file {} is corrupt at byte {offset}: {what}", .path.display())]
    Corrupt { path: PathBuf, offset: u64, what: &'static str },
}

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const U64: u8 = 3;
const I64: u8 = 4;
const F64: u8 = 5;
const STRING: u8 = 6;
const ARRAY: u8 = 7;
const OBJECT: u8 = 8;

impl Store {
    /// A new spill file in `.flow/tmp/`, removed when the [`SpillWriter`]
    /// (or the [`SpillFile`] it becomes) is dropped.
    pub fn spill_writer(&self) -> Result<SpillWriter, SpillError> {
        let dir = self.root().join("tmp");
        let io = |action, source| SpillError::Io { action, path: dir.clone(), source };
        std::fs::create_dir_all(&dir).map_err(|e| io("create", e))?;
        let prefix = format!("{}spill-", crate::process::temp_prefix());
        let tmp = tempfile::Builder::new().prefix(&prefix).tempfile_in(&dir).map_err(|e| io("create", e))?;
        let file = tmp.reopen().map_err(|e| io("open", e))?;
        Ok(SpillWriter {
            tmp,
            out: BufWriter::with_capacity(256 * 1024, file),
            offsets: Vec::new(),
            at: 0,
            buf: Vec::new(),
        })
    }
}

/// Records being appended to a spill file.
pub struct SpillWriter {
    tmp: tempfile::NamedTempFile,
    out: BufWriter<File>,
    /// Where each record starts.
    offsets: Vec<u64>,
    at: u64,
    buf: Vec<u8>,
}

impl SpillWriter {
    /// Appends one record.
    pub fn push(&mut self, record: &Map<String, Value>) -> Result<(), SpillError> {
        self.buf.clear();
        encode_object(&mut self.buf, record);
        self.out.write_all(&self.buf).map_err(|e| self.io("write", e))?;
        self.offsets.push(self.at);
        self.at += self.buf.len() as u64;
        Ok(())
    }

    /// Records written so far.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.at
    }

    /// Flushes the file and makes it readable.
    pub fn finish(mut self) -> Result<SpillFile, SpillError> {
        self.out.flush().map_err(|e| self.io("write", e))?;
        Ok(SpillFile { tmp: self.tmp, offsets: self.offsets, bytes: self.at })
    }

    fn io(&self, action: &'static str, source: io::Error) -> SpillError {
        SpillError::Io { action, path: self.tmp.path().to_path_buf(), source }
    }
}

/// A finished spill file: its records in the order written.
pub struct SpillFile {
    tmp: tempfile::NamedTempFile,
    offsets: Vec<u64>,
    bytes: u64,
}

impl std::fmt::Debug for SpillFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillFile").field("path", &self.path()).field("records", &self.len()).finish()
    }
}

impl SpillFile {
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The file's size.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Reads the records back, in order.
    pub fn reader(&self) -> Result<SpillReader<'_>, SpillError> {
        let file = self.open()?;
        Ok(SpillReader { spill: self, input: BufReader::with_capacity(256 * 1024, file), next: 0, buf: Vec::new() })
    }

    /// Record `i` (from 0).
    ///
    /// # Panics
    ///
    /// If there is no record `i`.
    pub fn get(&self, i: usize) -> Result<Map<String, Value>, SpillError> {
        let start = self.offsets[i];
        let end = self.offsets.get(i + 1).copied().unwrap_or(self.bytes);
        let mut file = self.open()?;
        file.seek(SeekFrom::Start(start)).map_err(|e| self.io("read", e))?;
        let mut buf = vec![0; (end - start) as usize];
        file.read_exact(&mut buf).map_err(|e| self.io("read", e))?;
        self.decode(&buf, start)
    }

    fn open(&self) -> Result<File, SpillError> {
        self.tmp.reopen().map_err(|e| self.io("open", e))
    }

    fn decode(&self, buf: &[u8], offset: u64) -> Result<Map<String, Value>, SpillError> {
        let mut d = Decoder { buf, at: 0 };
        let corrupt = |what| SpillError::Corrupt { path: self.path().to_path_buf(), offset, what };
        match d.byte() {
            Some(OBJECT) => {}
            _ => return Err(corrupt("a record is not an object")),
        }
        let map = d.object().map_err(corrupt)?;
        if d.at != buf.len() {
            return Err(corrupt("bytes after the record"));
        }
        Ok(map)
    }

    fn io(&self, action: &'static str, source: io::Error) -> SpillError {
        SpillError::Io { action, path: self.path().to_path_buf(), source }
    }
}

/// The records of a [`SpillFile`], in order.
pub struct SpillReader<'a> {
    spill: &'a SpillFile,
    input: BufReader<File>,
    next: usize,
    buf: Vec<u8>,
}

impl Iterator for SpillReader<'_> {
    type Item = Result<Map<String, Value>, SpillError>;

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.spill;
        let start = *s.offsets.get(self.next)?;
        let end = s.offsets.get(self.next + 1).copied().unwrap_or(s.bytes);
        self.next += 1;
        self.buf.resize((end - start) as usize, 0);
        if let Err(e) = self.input.read_exact(&mut self.buf) {
            self.next = s.offsets.len(); // nothing more can be read
            return Some(Err(s.io("read", e)));
        }
        Some(s.decode(&self.buf, start))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.spill.offsets.len() - self.next;
        (left, Some(left))
    }
}

fn encode_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn encode_str(out: &mut Vec<u8>, s: &str) {
    encode_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn encode_object(out: &mut Vec<u8>, map: &Map<String, Value>) {
    out.push(OBJECT);
    encode_len(out, map.len());
    for (k, v) in map {
        encode_str(out, k);
        encode(out, v);
    }
}

fn encode(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.push(U64);
                out.extend_from_slice(&u.to_le_bytes());
            } else if let Some(i) = n.as_i64() {
                out.push(I64);
                out.extend_from_slice(&i.to_le_bytes());
            } else {
                out.push(F64);
                out.extend_from_slice(&n.as_f64().unwrap_or(f64::NAN).to_bits().to_le_bytes());
            }
        }
        Value::String(s) => {
            out.push(STRING);
            encode_str(out, s);
        }
        Value::Array(items) => {
            out.push(ARRAY);
            encode_len(out, items.len());
            items.iter().for_each(|item| encode(out, item));
        }
        Value::Object(map) => encode_object(out, map),
    }
}

/// Nesting past this is refused on decode: the encoder only ever writes what
/// serde_json parsed (128 levels at most), so deeper is corruption.
const MAX_DEPTH: usize = 256;

struct Decoder<'a> {
    buf: &'a [u8],
    at: usize,
}

type Decoded<T> = Result<T, &'static str>;

impl Decoder<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> Decoded<&[u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or("truncated")?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn len(&mut self) -> Decoded<usize> {
        let mut n = 0usize;
        for shift in (0..64).step_by(7) {
            let b = self.byte().ok_or("truncated")?;
            n |= ((b & 0x7f) as usize) << shift;
            if b & 0x80 == 0 {
                // Every item takes a byte at least.
                return if n <= self.buf.len() { Ok(n) } else { Err("a length past the end") };
            }
        }
        Err("a length too long")
    }

    fn word(&mut self) -> Decoded<[u8; 8]> {
        Ok(self.bytes(8)?.try_into().expect("8 bytes"))
    }

    fn string(&mut self) -> Decoded<String> {
        let n = self.len()?;
        let bytes = self.bytes(n)?;
        std::str::from_utf8(bytes).map(str::to_string).map_err(|_| "a string that is not UTF-8")
    }

    fn object(&mut self) -> Decoded<Map<String, Value>> {
        self.object_at(0)
    }

    fn object_at(&mut self, depth: usize) -> Decoded<Map<String, Value>> {
        let n = self.len()?;
        let mut map = Map::new();
        for _ in 0..n {
            let k = self.string()?;
            let v = self.value(depth + 1)?;
            map.insert(k, v);
        }
        Ok(map)
    }

    fn value(&mut self, depth: usize) -> Decoded<Value> {
        if depth > MAX_DEPTH {
            return Err("nested too deep");
        }
        Ok(match self.byte().ok_or("truncated")? {
            NULL => Value::Null,
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            U64 => Value::Number(u64::from_le_bytes(self.word()?).into()),
            I64 => Value::Number(i64::from_le_bytes(self.word()?).into()),
            F64 => {
                let f = f64::from_bits(u64::from_le_bytes(self.word()?));
                Value::Number(Number::from_f64(f).ok_or("a number that is not finite")?)
            }
            STRING => Value::String(self.string()?),
            ARRAY => {
                let n = self.len()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            OBJECT => Value::Object(self.object_at(depth)?),
            _ => return Err("an unknown tag"),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join(".flow"));
        store.create().unwrap();
        (dir, store)
    }

    fn tmp_files(store: &Store) -> usize {
        std::fs::read_dir(store.root().join("tmp")).unwrap().count()
    }

    #[test]
    fn records_read_back_exactly_in_order_and_by_position() {
        let (_dir, store) = store();
        let records: Vec<Map<String, Value>> = vec![
            json!({"id": "a", "n": 1, "neg": -7, "big": u64::MAX, "f": 0.1, "e": 1e-300, "tiny": 5e-324}),
            json!({"nested": {"list": [1, 2.5, "x", null, true, false, [], {}], "é": "ünïcode ✓"}}),
            json!({}),
            json!({"embedding": (0..384).map(|i| (i as f64 * 0.37).sin()).collect::<Vec<_>>()}),
        ]
        .into_iter()
        .map(|v| v.as_object().unwrap().clone())
        .collect();
        let mut w = store.spill_writer().unwrap();
        for r in &records {
            w.push(r).unwrap();
        }
        assert_eq!(w.len(), 4);
        let file = w.finish().unwrap();
        assert!(file.path().starts_with(store.root().join("tmp")));
        let back: Vec<_> = file.reader().unwrap().map(Result::unwrap).collect();
        assert_eq!(back, records);
        // Float bits survive (JSON text would have to be parsed back).
        assert_eq!(back[0]["f"].as_f64().unwrap().to_bits(), 0.1f64.to_bits());
        assert!(back[0]["n"].is_u64() && back[0]["neg"].is_i64() && back[0]["f"].is_f64());
        assert_eq!(file.get(3).unwrap(), records[3]);
        assert_eq!(file.get(0).unwrap(), records[0]);
        assert_eq!(tmp_files(&store), 1);
        drop(file);
        assert_eq!(tmp_files(&store), 0, "a spill file is removed when dropped");
    }

    #[test]
    fn an_unfinished_spill_leaves_nothing_and_is_named_for_the_sweep() {
        let (_dir, store) = store();
        let mut w = store.spill_writer().unwrap();
        w.push(json!({"a": 1}).as_object().unwrap()).unwrap();
        drop(w);
        assert_eq!(tmp_files(&store), 0);
        // Named as a process's temp file: the sweep knows a dead one's.
        let w = store.spill_writer().unwrap();
        let name = w.tmp.path().file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with(&crate::process::temp_prefix()), "{name}");
        assert!(!crate::process::temp_owner_is_dead(&name), "ours is alive");
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_panic() {
        let (_dir, store) = store();
        let mut w = store.spill_writer().unwrap();
        w.push(json!({"s": "hello", "x": [1, 2, 3]}).as_object().unwrap()).unwrap();
        let file = w.finish().unwrap();
        let good = std::fs::read(file.path()).unwrap();
        for cut in 0..good.len() {
            let mut bad = good.clone();
            bad[cut] ^= 0xff;
            std::fs::write(file.path(), &bad).unwrap();
            // Either it still decodes (a flipped byte inside the string) or
            // it is named corrupt.
            if let Err(e) = file.get(0) {
                assert!(e.to_string().contains("is corrupt at byte 0"), "{e}");
            }
        }
    }
}
