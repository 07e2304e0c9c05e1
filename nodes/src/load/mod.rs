//! `load`: records from a file (JSONL, a JSON array, or CSV with a header).
//!
//! Every record gets a stable `id`: the file's id column when it has one
//! (`id_field`, default `id`), else a hash of the record's content, so later
//! stages can join, memoize and compare by it. Records with identical content
//! and no id column share an id. The fields are read from the whole file at
//! compile time, so a downstream node that reads a field the data lacks is
//! caught by `flow validate`. The file is hashed again as it is read, and a
//! file that changed since it was hashed for the key fails the node rather
//! than filing new content under the old key.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use flow_engine::cache::{hash_json, ContentHash, HashingReader};
use flow_engine::{
    Arity, Artifact, BuildCx, CheckCx, FieldSet, Fields, Node, NodeError, PortType, Record, Shape, SourceStage, Stage,
    BATCH_SIZE, WARNINGS_TXT,
};

mod view;

pub struct Load;

/// File formats `load` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Json,
    Csv,
}

/// `kind: load`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    /// File to read, relative to the spec's folder.
    pub path: String,
    /// `jsonl`, `json` or `csv`; by default from the file extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// Column holding each record's id.
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// Only the first `limit` records (the rest of the file is not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// A seeded random subset of `n` records, in file order: the same
    /// records on every machine, and a larger `n` keeps every record a
    /// smaller one picked (as `kind: sample` picks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<LoadSample>,
}

/// `sample: {n: 50, seed: 7}` on `load`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadSample {
    /// How many records to keep (all of them when the file has fewer).
    pub n: u64,
    /// Another seed picks another subset.
    #[serde(default)]
    pub seed: u64,
}

fn default_id_field() -> String {
    "id".into()
}

impl LoadConfig {
    fn format(&self) -> Option<Format> {
        self.format.or_else(|| {
            let ext = Path::new(&self.path).extension()?.to_str()?.to_ascii_lowercase();
            match ext.as_str() {
                "jsonl" | "ndjson" => Some(Format::Jsonl),
                "json" => Some(Format::Json),
                "csv" => Some(Format::Csv),
                _ => None,
            }
        })
    }
}

impl crate::Face for Load {
    const VIEW: Option<&'static crate::view::View> = Some(&view::VIEW);
}

impl Node for Load {
    type Config = LoadConfig;
    const KIND: &'static str = "load";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "records from a JSONL, JSON-array or CSV file";
    const INPUTS: Arity = Arity::None;
    const SHAPE: Shape = Shape::Source;

    fn check(config: &LoadConfig, cx: &mut CheckCx<'_>) -> PortType {
        let open = PortType::records(FieldSet::Open);
        if config.limit == Some(0) {
            cx.error(
                &cx.field("limit"),
                "`limit: 0` keeps no record",
                Some("set `limit` to the number of records to read, or remove it".into()),
            );
        }
        match &config.sample {
            Some(s) if s.n == 0 => cx.error(
                &cx.field("sample"),
                "`sample: {n: 0}` keeps no record",
                Some("set `n` to the number of records to keep".into()),
            ),
            Some(_) if config.limit.is_some() => cx.error(
                &cx.field("sample"),
                "`limit` and `sample` both pick a subset",
                Some(
                    "keep one: `limit: N` for the first N records, `sample: {n: N, seed: S}` for a seeded random N"
                        .into(),
                ),
            ),
            _ => {}
        }
        let Some(format) = config.format() else {
            cx.error(
                &cx.field("path"),
                format!("cannot tell the format of `{}`", config.path),
                Some("name the file .jsonl, .json or .csv, or set `format: jsonl | json | csv`".into()),
            );
            return open;
        };
        let Some(path) = cx.input_file(&cx.field("path"), &config.path) else { return open };
        // Read once per content: a plan over the same bytes takes the list
        // (and the count) from the stat cache instead of reading the file again.
        let what = format!("load.fields.v2.{format:?}");
        match cx.read_input(&path, &what, || all_fields(&path, format)) {
            Ok((fields, count)) => {
                // Counted while the fields were read: progress shows a total.
                let kept =
                    [config.limit, config.sample.as_ref().map(|s| s.n)].into_iter().flatten().fold(count, u64::min);
                cx.output_records(flow_engine::OutputRecords::Exactly(kept));
                PortType::records(FieldSet::Known(fields))
            }
            Err(e) => {
                cx.error(
                    &cx.field("path"),
                    e.to_string(),
                    Some("fix the data file; each record must be a JSON object".into()),
                );
                open
            }
        }
    }

    fn build(config: &LoadConfig, cx: &BuildCx) -> Result<Stage, NodeError> {
        let format = config.format().ok_or_else(|| NodeError::new("unknown format"))?;
        let mut reader = Reader::open(&cx.resolve(&config.path), format, &config.id_field)?;
        reader.expect = cx.file(&config.path).map(|f| f.hash);
        reader.left = config.limit.unwrap_or(u64::MAX);
        Ok(Stage::Source(match &config.sample {
            Some(s) => Box::new(Sampled { reader, n: s.n, seed: s.seed, picked: None }),
            None => Box::new(reader),
        }))
    }
}

/// Every field name in the file (plus `id`), checking that it parses, and
/// how many records it holds.
fn all_fields(path: &Path, format: Format) -> Result<(BTreeSet<String>, u64), NodeError> {
    let shown = path.display();
    let mut fields = BTreeSet::from(["id".to_string()]);
    let mut count = 0u64;
    match format {
        Format::Jsonl => {
            let file = File::open(path).map_err(|e| NodeError::new(format!("cannot open {shown}: {e}")))?;
            // Keys only: values are skipped, not built.
            let mut buf = BufReader::with_capacity(256 * 1024, file);
            let mut line = String::new();
            let mut n = 0;
            loop {
                line.clear();
                n += 1;
                if buf.read_line(&mut line).map_err(|e| NodeError::new(format!("{shown}:{n}: {e}")))? == 0 {
                    break;
                }
                if line.trim().is_empty() {
                    continue;
                }
                let text = if n == 1 { without_bom(&line) } else { &line };
                let keys: HashMap<String, serde::de::IgnoredAny> = serde_json::from_str(text)
                    .map_err(|e| NodeError::new(format!("{shown}:{n}: expected a JSON object: {e}")))?;
                count += 1;
                for k in keys.into_keys() {
                    if !fields.contains(&k) {
                        fields.insert(k);
                    }
                }
            }
        }
        Format::Json | Format::Csv => {
            let mut r = Reader::open(path, format, "id")?;
            fields.extend(r.header.iter().cloned());
            while let Some(rec) = r.next_record()? {
                count += 1;
                if format == Format::Json {
                    fields.extend(rec.keys().cloned());
                }
            }
        }
    }
    Ok((fields, count))
}

/// A first line without its UTF-8 byte order mark, which editors on
/// Windows write and JSON does not allow.
fn without_bom(line: &str) -> &str {
    line.strip_prefix('\u{feff}').unwrap_or(line)
}

type Source = BufReader<HashingReader<File>>;

enum Inner {
    Lines(Source, String),
    Array(std::vec::IntoIter<serde_json::Value>),
    Csv(csv::Reader<Source>, csv::StringRecord),
}

/// Reads records one at a time and gives each its id.
struct Reader {
    path: PathBuf,
    inner: Inner,
    /// CSV columns (empty for JSON).
    header: Vec<String>,
    id_field: String,
    line: usize,
    /// The content hash the node key was computed from, checked at the end.
    expect: Option<ContentHash>,
    /// For JSON arrays, read whole at open: the hash of what was read.
    read_hash: Option<ContentHash>,
    /// Records still to read under `limit:`.
    left: u64,
    /// Ids seen, by hash (8 bytes a record, whatever the id's length).
    seen: std::collections::HashSet<u64>,
    /// Records whose id an earlier record has, and the first of them.
    repeated: u64,
    first_repeat: Option<(String, usize)>,
}

impl Reader {
    fn open(path: &Path, format: Format, id_field: &str) -> Result<Self, NodeError> {
        let shown = path.display();
        let file = File::open(path).map_err(|e| NodeError::new(format!("cannot open {shown}: {e}")))?;
        let buf = BufReader::with_capacity(256 * 1024, HashingReader::new(file));
        let mut header = Vec::new();
        let mut read_hash = None;
        let inner = match format {
            Format::Jsonl => Inner::Lines(buf, String::new()),
            Format::Json => {
                let mut buf = buf;
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut buf, &mut bytes)
                    .map_err(|e| NodeError::new(format!("cannot read {shown}: {e}")))?;
                let text = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&bytes);
                let v: serde_json::Value =
                    serde_json::from_slice(text).map_err(|e| NodeError::new(format!("{shown}: invalid JSON: {e}")))?;
                read_hash = Some(buf.get_ref().hash());
                match v {
                    serde_json::Value::Array(items) => Inner::Array(items.into_iter()),
                    _ => return Err(NodeError::new(format!("{shown}: expected a JSON array of objects"))),
                }
            }
            Format::Csv => {
                let mut r = csv::ReaderBuilder::new().from_reader(buf);
                header = r
                    .headers()
                    .map_err(|e| NodeError::new(format!("{shown}: invalid CSV header: {e}")))?
                    .iter()
                    .map(str::to_string)
                    .collect();
                Inner::Csv(r, csv::StringRecord::new())
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            inner,
            header,
            id_field: id_field.to_string(),
            line: 0,
            expect: None,
            read_hash,
            left: u64::MAX,
            seen: Default::default(),
            repeated: 0,
            first_repeat: None,
        })
    }

    /// At the end of the file: was it the file the key was computed from?
    fn check_unchanged(&self) -> Result<(), NodeError> {
        let Some(expect) = self.expect else { return Ok(()) };
        let read = match &self.inner {
            Inner::Lines(buf, _) => buf.get_ref().hash(),
            Inner::Csv(r, _) => r.get_ref().get_ref().hash(),
            Inner::Array(_) => self.read_hash.expect("set at open"),
        };
        if read == expect {
            Ok(())
        } else {
            Err(NodeError::new(format!(
                "{} changed while it was being read (after the spec was compiled); run again",
                self.path.display()
            )))
        }
    }

    fn note_id(&mut self, id: &str) {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let h = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(id);
        if !self.seen.insert(h) {
            self.repeated += 1;
            self.first_repeat.get_or_insert_with(|| (id.to_string(), self.line));
        }
    }

    /// A warning when ids repeat: `compare` then refuses the data, and
    /// records that share an id read as one in joins and reports.
    fn warnings(&self) -> Vec<Artifact> {
        let Some((id, line)) = &self.first_repeat else { return Vec::new() };
        let at = match self.inner {
            Inner::Lines(..) => format!(" on line {line}"),
            Inner::Array(_) => format!(", item {line}"),
            Inner::Csv(..) => String::new(),
        };
        let text = format!(
            "{} records of {} repeat an earlier record's id (the first: `{id}`{at}); give each record its own `{}` (records with no id column and the same content share one)\n",
            self.repeated,
            self.path.display(),
            self.id_field,
        );
        vec![Artifact { name: WARNINGS_TXT.into(), bytes: text.into_bytes() }]
    }

    fn next_record(&mut self) -> Result<Option<Fields>, NodeError> {
        let shown = self.path.display();
        let mut fields = match &mut self.inner {
            Inner::Lines(buf, line) => loop {
                line.clear();
                self.line += 1;
                let n = buf.read_line(line).map_err(|e| NodeError::new(format!("{shown}:{}: {e}", self.line)))?;
                if n == 0 {
                    return Ok(None);
                }
                if line.trim().is_empty() {
                    continue;
                }
                let text = if self.line == 1 { without_bom(line) } else { line };
                match serde_json::from_str::<serde_json::Value>(text) {
                    Ok(serde_json::Value::Object(m)) => break m,
                    Ok(_) => return Err(NodeError::new(format!("{shown}:{}: expected a JSON object", self.line))),
                    Err(e) => return Err(NodeError::new(format!("{shown}:{}: invalid JSON: {e}", self.line))),
                }
            },
            Inner::Array(items) => {
                self.line += 1;
                match items.next() {
                    None => return Ok(None),
                    Some(serde_json::Value::Object(m)) => m,
                    Some(_) => {
                        return Err(NodeError::new(format!("{shown}: item {} is not a JSON object", self.line)));
                    }
                }
            }
            Inner::Csv(reader, row) => {
                let more = reader.read_record(row).map_err(|e| NodeError::new(format!("{shown}: invalid CSV: {e}")))?;
                if !more {
                    return Ok(None);
                }
                self.header
                    .iter()
                    .zip(row.iter())
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.to_string())))
                    .collect()
            }
        };
        let id = match fields.get(&self.id_field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => hash_json(&fields).hex()[..16].to_string(),
            Some(other) => other.to_string(),
        };
        self.note_id(&id);
        fields.insert("id".into(), serde_json::Value::String(id));
        Ok(Some(fields))
    }
}

impl SourceStage for Reader {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<Record>>, NodeError>> {
        Box::pin(async move {
            let mut batch = Vec::with_capacity(BATCH_SIZE);
            while batch.len() < BATCH_SIZE {
                // Under `limit:` the rest is not read, nor checked against
                // the key's hash (that would read it all).
                if self.left == 0 {
                    break;
                }
                self.left -= 1;
                match self.next_record()? {
                    Some(r) => batch.push(Arc::new(r)),
                    None => {
                        self.check_unchanged()?;
                        break;
                    }
                }
            }
            Ok(if batch.is_empty() { None } else { Some(batch) })
        })
    }

    fn finish(&mut self) -> Result<Vec<Artifact>, NodeError> {
        Ok(self.warnings())
    }
}

/// `sample:`: every record is read, then the seeded pick is emitted.
struct Sampled {
    reader: Reader,
    n: u64,
    seed: u64,
    picked: Option<std::vec::IntoIter<Record>>,
}

impl SourceStage for Sampled {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<Record>>, NodeError>> {
        Box::pin(async move {
            if self.picked.is_none() {
                let mut all = Vec::new();
                while let Some(batch) = self.reader.next_batch().await? {
                    all.extend(batch);
                }
                self.picked = Some(crate::sample::pick(&all, self.n, Some(self.seed)).into_iter());
            }
            let batch: Vec<Record> = self.picked.as_mut().expect("picked above").take(BATCH_SIZE).collect();
            Ok((!batch.is_empty()).then_some(batch))
        })
    }

    fn finish(&mut self) -> Result<Vec<Artifact>, NodeError> {
        Ok(self.reader.warnings())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(path: &Path, format: Format, id: &str) -> Vec<Fields> {
        let mut r = Reader::open(path, format, id).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(rec);
        }
        out
    }

    /// The ids a load node with `extra` config emits from a 100-line file.
    fn load_ids(extra: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let lines: String = (0..100).map(|i| format!("{{\"id\": \"r{i}\"}}\n")).collect();
        std::fs::write(dir.path().join("a.jsonl"), lines).unwrap();
        let config: LoadConfig = serde_yaml::from_str(&format!("{{path: a.jsonl{extra}}}")).unwrap();
        let cx = BuildCx::new("cases", dir.path().to_path_buf());
        let Stage::Source(mut src) = Load::build(&config, &cx).unwrap() else { panic!("a source") };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut ids = Vec::new();
        while let Some(batch) = rt.block_on(src.next_batch()).unwrap() {
            ids.extend(batch.iter().map(|r| r["id"].as_str().unwrap().to_string()));
        }
        ids
    }

    #[test]
    fn limit_reads_the_first_records_and_sample_a_seeded_nested_subset() {
        assert_eq!(load_ids(", limit: 3"), ["r0", "r1", "r2"]);
        assert_eq!(load_ids(", limit: 500").len(), 100);
        let ten = load_ids(", sample: {n: 10, seed: 7}");
        assert_eq!(ten.len(), 10);
        assert_eq!(ten, load_ids(", sample: {n: 10, seed: 7}"), "the same seed picks the same records");
        assert_ne!(ten, load_ids(", sample: {n: 10, seed: 8}"));
        assert_ne!(ten, load_ids(", limit: 10"), "not the first ten");
        let twenty = load_ids(", sample: {n: 20, seed: 7}");
        assert!(ten.iter().all(|id| twenty.contains(id)), "a larger sample keeps the smaller one's records");
        let position = |id: &String| id[1..].parse::<u32>().unwrap();
        assert!(twenty.windows(2).all(|w| position(&w[0]) < position(&w[1])), "in file order: {twenty:?}");
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_data() {
        let dir = tempfile::tempdir().unwrap();
        for (name, format, text) in [
            ("b.jsonl", Format::Jsonl, "\u{feff}{\"id\": \"c1\", \"q\": \"x\"}\n"),
            ("b.json", Format::Json, "\u{feff}[{\"id\": \"c1\", \"q\": \"x\"}]"),
            ("b.csv", Format::Csv, "\u{feff}id,q\nc1,x\n"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let recs = read_all(&path, format, "id");
            assert_eq!((recs[0]["id"].as_str(), recs[0]["q"].as_str()), (Some("c1"), Some("x")), "{name}");
            let counted = (BTreeSet::from(["id".into(), "q".into()]), 1);
            assert_eq!(all_fields(&path, format).unwrap(), counted, "{name}");
        }
    }

    #[test]
    fn reads_three_formats_with_stable_ids() {
        let dir = tempfile::tempdir().unwrap();
        let jl = dir.path().join("a.jsonl");
        std::fs::write(&jl, "{\"id\": \"c1\", \"q\": \"x\"}\n\n{\"q\": \"y\"}\n").unwrap();
        let recs = read_all(&jl, Format::Jsonl, "id");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0]["id"], "c1");
        let hashed = recs[1]["id"].as_str().unwrap().to_string();
        assert_eq!(hashed.len(), 16);
        assert_eq!(read_all(&jl, Format::Jsonl, "id")[1]["id"], hashed.as_str(), "content ids are stable");

        let js = dir.path().join("a.json");
        std::fs::write(&js, "[{\"n\": 7, \"q\": \"x\"}]").unwrap();
        assert_eq!(read_all(&js, Format::Json, "n")[0]["id"], "7");

        let csv = dir.path().join("a.csv");
        std::fs::write(&csv, "case,q\nk1,\"hello, world\"\n").unwrap();
        let recs = read_all(&csv, Format::Csv, "case");
        assert_eq!(recs[0]["q"], "hello, world");
        assert_eq!(recs[0]["id"], "k1");
    }

    #[test]
    fn a_file_changed_since_it_was_hashed_fails_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let jl = dir.path().join("a.jsonl");
        std::fs::write(&jl, "{\"q\": 1}\n{\"q\": 2}\n").unwrap();
        let run = |expect: ContentHash| {
            let mut r = Reader::open(&jl, Format::Jsonl, "id").unwrap();
            r.expect = Some(expect);
            tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
                let mut n = 0;
                while let Some(b) = r.next_batch().await? {
                    n += b.len();
                }
                Ok::<usize, NodeError>(n)
            })
        };
        assert_eq!(run(flow_engine::cache::hash_file(&jl).unwrap()).unwrap(), 2);
        let e = run(ContentHash::of(b"what it was at compile time")).unwrap_err().to_string();
        assert!(e.contains("changed while it was being read"), "{e}");
    }

    #[test]
    fn fields_come_from_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let jl = dir.path().join("a.jsonl");
        let mut text = "{\"q\": 1}\n".repeat(500);
        text.push_str("{\"q\": 1, \"late\": true}\n");
        std::fs::write(&jl, text).unwrap();
        let (fields, count) = all_fields(&jl, Format::Jsonl).unwrap();
        assert_eq!(fields.into_iter().collect::<Vec<_>>(), ["id", "late", "q"]);
        assert_eq!(count, 501, "counted for progress");
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let jl = dir.path().join("bad.jsonl");
        std::fs::write(&jl, "{\"a\": 1}\n[1]\n").unwrap();
        let mut r = Reader::open(&jl, Format::Jsonl, "id").unwrap();
        assert!(r.next_record().unwrap().is_some());
        let e = r.next_record().unwrap_err().to_string();
        assert!(e.ends_with("bad.jsonl:2: expected a JSON object"), "{e}");
    }
}
