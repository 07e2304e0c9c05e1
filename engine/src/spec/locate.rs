//! Where each key and value of a YAML document sits in its source.
//!
//! serde_yaml gives values without positions; this index, built from
//! yaml-rust2's marked events in a second cheap pass, maps a path in the
//! document (`nodes.scores.metrics[1].threshold`) to the line and column of
//! its key and of its value, so every diagnostic can point at the source.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diag::Loc;

/// One step into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path into a YAML document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct YamlPath(pub Vec<Seg>);

impl YamlPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }

    pub fn key(&self, k: impl Into<String>) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.into()));
        p
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// Appends a serde_path_to_error path (`metrics[1].threshold`).
    pub fn join_serde(&self, path: &serde_path_to_error::Path) -> Self {
        let mut p = self.clone();
        for seg in path.iter() {
            match seg {
                serde_path_to_error::Segment::Seq { index } => p.0.push(Seg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => p.0.push(Seg::Key(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => p.0.push(Seg::Key(variant.clone())),
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        p
    }

    pub fn parent(&self) -> Self {
        let mut p = self.clone();
        p.0.pop();
        p
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Seg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    key: Option<Loc>,
    value: Option<Loc>,
}

/// Positions of keys and values by path.
#[derive(Debug, Default)]
pub struct LocationIndex {
    entries: HashMap<YamlPath, Entry>,
}

impl LocationIndex {
    /// Builds the index; a document that does not parse gives an empty index
    /// (serde_yaml reports the syntax error itself).
    pub fn build(text: &str) -> Self {
        let mut b = Builder { index: LocationIndex::default(), stack: Vec::new() };
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut b, false).is_err() {
            return LocationIndex::default();
        }
        b.index
    }

    /// Where the value at `path` starts (falls back to its key, then to the
    /// nearest ancestor that has a position).
    pub fn value(&self, path: &YamlPath) -> Option<Loc> {
        self.find(path, |e| e.value.or(e.key))
    }

    /// Where the key of the map entry at `path` is (falls back to the value).
    pub fn key(&self, path: &YamlPath) -> Option<Loc> {
        self.find(path, |e| e.key.or(e.value))
    }

    fn find(&self, path: &YamlPath, pick: impl Fn(&Entry) -> Option<Loc>) -> Option<Loc> {
        let mut p = path.clone();
        loop {
            if let Some(loc) = self.entries.get(&p).and_then(&pick) {
                return Some(loc);
            }
            p.0.pop()?;
        }
    }
}

enum Frame {
    Map { path: YamlPath, key: Option<String> },
    Seq { path: YamlPath, next: usize },
}

struct Builder {
    index: LocationIndex,
    stack: Vec<Frame>,
}

fn loc(mark: Marker, width: usize) -> Loc {
    // yaml-rust2 lines are 1-based and columns 0-based.
    Loc { line: mark.line(), col: mark.col() + 1, width }
}

impl Builder {
    /// The path a value about to start would have, if it is a value (not a key).
    fn value_path(&mut self) -> Option<YamlPath> {
        match self.stack.last_mut() {
            None => Some(YamlPath::root()),
            Some(Frame::Map { path, key }) => key.take().map(|k| path.key(k)),
            Some(Frame::Seq { path, next }) => {
                *next += 1;
                Some(path.index(*next - 1))
            }
        }
    }

    fn set_value(&mut self, path: YamlPath, l: Loc) {
        self.index.entries.entry(path).or_default().value = Some(l);
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, style, ..) => {
                let width = text.chars().count()
                    + match style {
                        TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => 2,
                        _ => 0,
                    };
                let width = if matches!(style, TScalarStyle::Literal | TScalarStyle::Folded) { 1 } else { width };
                // A scalar is a key when the enclosing map is waiting for one.
                if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                    if key.is_none() {
                        let p = path.key(text.clone());
                        self.index.entries.entry(p).or_default().key = Some(loc(mark, width));
                        *key = Some(text);
                        return;
                    }
                }
                if let Some(p) = self.value_path() {
                    self.set_value(p, loc(mark, width));
                }
            }
            Event::Alias(_) => {
                if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                    if key.is_none() {
                        *key = Some(String::new());
                        return;
                    }
                }
                let _ = self.value_path();
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let p = self.value_path().unwrap_or_default();
                self.set_value(p.clone(), loc(mark, 1));
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { path: p, key: None }
                } else {
                    Frame::Seq { path: p, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_values() {
        let text = "flow: 1\nnodes:\n  scores:\n    kind: evaluate\n    metrics:\n      - type: regex\n        pattern: \"a+\"\n";
        let idx = LocationIndex::build(text);
        let nodes = YamlPath::root().key("nodes");
        assert_eq!(idx.key(&nodes.key("scores")), Some(Loc { line: 3, col: 3, width: 6 }));
        assert_eq!(idx.value(&nodes.key("scores").key("kind")), Some(Loc { line: 4, col: 11, width: 8 }));
        let pat = nodes.key("scores").key("metrics").index(0).key("pattern");
        assert_eq!(idx.value(&pat), Some(Loc { line: 7, col: 18, width: 4 }));
        assert_eq!(pat.to_string(), "nodes.scores.metrics[0].pattern");
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(idx.value(&pat.key("nope")), Some(Loc { line: 7, col: 18, width: 4 }));
    }

    #[test]
    fn flow_style_collections() {
        let idx = LocationIndex::build("a: {b: [1, 22]}\n");
        let p = YamlPath::root().key("a").key("b").index(1);
        assert_eq!(idx.value(&p), Some(Loc { line: 1, col: 12, width: 2 }));
    }
}
