use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A blake3 digest, shown as 64 lowercase hex characters. Used both for
/// content (objects, input files) and for node keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// Hash of a byte slice.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Full hex form.
    pub fn hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The first 12 hex characters, for people.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.short())
    }
}

/// Text that is not the 64 hex characters of a [`ContentHash`] (a damaged
/// ref file, a hash typed by hand).
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid hash `{text}`: {source}")]
pub struct HashParseError {
    pub text: String,
    source: blake3::HexError,
}

impl FromStr for ContentHash {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, HashParseError> {
        blake3::Hash::from_hex(s)
            .map(|h| Self(*h.as_bytes()))
            .map_err(|source| HashParseError { text: s.to_string(), source })
    }
}

impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes any serializable value through its JSON form, streamed straight
/// into the hasher (no intermediate string). serde_json writes maps in key
/// order (its `Map` is a BTreeMap), so equal values give equal hashes.
pub fn hash_json<T: Serialize + ?Sized>(value: &T) -> ContentHash {
    let mut hasher = blake3::Hasher::new();
    serde_json::to_writer(&mut hasher, value).expect("serializing to a hasher cannot fail");
    ContentHash(*hasher.finalize().as_bytes())
}

/// Content hash of a file, read in blocks.
pub fn hash_file(path: &Path) -> io::Result<ContentHash> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(ContentHash(*hasher.finalize().as_bytes()))
}

/// A writer that hashes what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, hasher: blake3::Hasher::new() }
    }

    /// The hash of everything written, and the inner writer.
    pub fn finish(self) -> (ContentHash, W) {
        (ContentHash(*self.hasher.finalize().as_bytes()), self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what is read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: blake3::Hasher::new() }
    }

    /// The hash of everything read so far.
    pub fn hash(&self) -> ContentHash {
        ContentHash(*self.hasher.finalize().as_bytes())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let h = ContentHash::of(b"hello");
        assert_eq!(h.hex().parse::<ContentHash>().unwrap(), h);
        assert_eq!(h.short().len(), 12);
    }

    #[test]
    fn json_hash_ignores_insertion_order() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":[1,2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"b":[1,2],"a":1}"#).unwrap();
        assert_eq!(hash_json(&a), hash_json(&b));
        let c: serde_json::Value = serde_json::from_str(r#"{"b":[2,1],"a":1}"#).unwrap();
        assert_ne!(hash_json(&a), hash_json(&c));
    }

    #[test]
    fn hashing_writer_matches_direct_hash() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"abc").unwrap();
        w.write_all(b"def").unwrap();
        let (h, bytes) = w.finish();
        assert_eq!(h, ContentHash::of(b"abcdef"));
        assert_eq!(bytes, b"abcdef");
    }
}
