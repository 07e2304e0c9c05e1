//! What one fix changed: a bad output and its fixed version, measured.
//!
//! Texts are read as words (whitespace-separated tokens holding a letter or
//! digit, lower-cased and stripped of surrounding punctuation), so "Sorry,"
//! and "sorry" are one term. Per pair: the character edit distance and
//! similarity (strsim), the words deleted and inserted (runs of a word-level
//! longest-common-subsequence diff), the length ratio in words, the
//! structure of each side (JSON, bulleted or numbered list, plain; ratings
//! such as `3.8/5`) and its tone markers. The same readings drive the rule
//! induction and, for ratings and lists, the post-processing of outputs.

use std::collections::HashSet;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Rating scales recognised in `v/scale` and `v out of scale`. Narrow on
/// purpose: `3/4` is more often a fraction or a date than a rating.
pub const SCALES: &[u32] = &[5, 10, 100];

/// Past this many words per side the diff is a bag-of-words difference
/// (the LCS table would be too large).
const MAX_DIFF_WORDS: usize = 1500;

/// Past this many character pairs the edit distance is counted in words.
const MAX_CHAR_CELLS: usize = 50_000_000;

/// Words that say nothing on their own: never a term rule by themselves
/// (a phrase may contain them).
const STOPWORDS: &[&str] = &[
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been", "before", "being",
    "but", "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "he", "her", "here", "him",
    "his", "how", "i", "if", "in", "into", "is", "it", "it's", "its", "just", "me", "more", "most", "my", "no", "not",
    "of", "on", "or", "our", "out", "over", "she", "so", "some", "than", "that", "the", "their", "them", "then",
    "there", "these", "they", "this", "those", "to", "up", "us", "very", "was", "we", "were", "what", "when", "where",
    "which", "who", "why", "will", "with", "would", "you", "your",
];

/// A word in a text: as written (surrounding punctuation stripped) and
/// normalized (lower case).
#[derive(Debug, Clone)]
pub struct Word {
    pub norm: String,
    pub orig: String,
    /// The token ends a sentence or clause (`.`, `!`, `?`, `:`, `;`): a
    /// deleted or inserted run stops there.
    pub ends: bool,
}

/// The layout of a text. One per text: JSON, then the longer list, else
/// plain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Json,
    Bullets,
    Numbered,
    Plain,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Json, Format::Bullets, Format::Numbered, Format::Plain];

    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Bullets => "bullets",
            Format::Numbered => "numbered",
            Format::Plain => "plain",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// A tone marker counted in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Marker {
    /// sorry, apologize, apologies...
    Apology,
    /// maybe, perhaps, I think, it seems...
    Hedge,
    /// `!` ending a sentence.
    Exclamation,
    /// Pictographs and dingbats (U+1F000–1FAFF, U+2600–27BF).
    Emoji,
}

impl Marker {
    pub const ALL: [Marker; 4] = [Marker::Apology, Marker::Hedge, Marker::Exclamation, Marker::Emoji];

    pub fn name(self) -> &'static str {
        match self {
            Marker::Apology => "apology",
            Marker::Hedge => "hedge",
            Marker::Exclamation => "exclamation",
            Marker::Emoji => "emoji",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }
}

const APOLOGY_WORDS: &[&str] =
    &["sorry", "apologize", "apologise", "apologies", "apologizing", "apologising", "apologized", "apologised"];
const HEDGE_WORDS: &[&str] = &["maybe", "perhaps", "possibly", "probably", "might", "arguably", "presumably"];
const HEDGE_PHRASES: &[[&str; 2]] =
    &[["i", "think"], ["i", "believe"], ["it", "seems"], ["i", "guess"], ["not", "sure"], ["i", "suppose"]];

/// A rating in a text, like `3.8/5` or `7 out of 10`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rating {
    pub value: f64,
    pub scale: u32,
    pub text: String,
}

/// One side of a pair, read.
#[derive(Debug, Clone)]
pub struct Text {
    pub raw: String,
    pub words: Vec<Word>,
    pub format: Format,
    pub ratings: Vec<Rating>,
    /// Counts per marker, in [`Marker::ALL`] order.
    pub tone: [usize; 4],
    norms: HashSet<String>,
}

impl Text {
    pub fn new(raw: &str) -> Self {
        let words = words(raw);
        let norms = words.iter().map(|w| w.norm.clone()).collect();
        let tone = Marker::ALL.map(|m| count_marker(raw, &words, m));
        Self { raw: raw.to_string(), format: format_of(raw), ratings: ratings(raw), tone, words, norms }
    }

    pub fn word_count(&self) -> usize {
        self.words.len()
    }

    pub fn tone(&self, m: Marker) -> usize {
        self.tone[m as usize]
    }

    /// Whether the words `term` occur here, in a row.
    pub fn contains(&self, term: &[String]) -> bool {
        match term {
            [] => false,
            [w] => self.norms.contains(w),
            _ => {
                self.norms.contains(&term[0])
                    && self.words.windows(term.len()).any(|win| win.iter().zip(term).all(|(a, b)| &a.norm == b))
            }
        }
    }

    /// The term as first written here (original case), if it occurs.
    pub fn written(&self, term: &[String]) -> Option<String> {
        let n = term.len();
        self.words.windows(n).find(|win| win.iter().zip(term).all(|(a, b)| &a.norm == b)).map(|win| {
            let parts: Vec<&str> = win.iter().map(|w| w.orig.as_str()).collect();
            parts.join(" ")
        })
    }

    fn scales(&self) -> Vec<u32> {
        let mut s: Vec<u32> = self.ratings.iter().map(|r| r.scale).collect();
        s.sort_unstable();
        s.dedup();
        s
    }
}

/// A run of words the fix deleted or inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Normalized.
    pub words: Vec<String>,
    /// As written.
    pub text: String,
}

/// One feedback pair, measured.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The record's `id`, else `#<n>` (1-based position).
    pub id: String,
    pub input_prompt: Option<String>,
    pub context: Value,
    pub bad: Text,
    pub fixed: Text,
    pub edit_distance: usize,
    /// `chars`, or `words` for very long texts.
    pub edit_unit: &'static str,
    /// Normalized Levenshtein similarity, 0..=1.
    pub similarity: f64,
    /// Fixed words / bad words; `None` when the bad output has no words.
    pub length_ratio: Option<f64>,
    pub deleted: Vec<Change>,
    pub inserted: Vec<Change>,
    /// Cosine distance (1 − cosine) between the embeddings of the bad and
    /// the fixed output, when `synthesize` has an `embeddings:` backend:
    /// how far the fix moved the meaning, where the edit distance says how
    /// much text it changed.
    pub vector_distance: Option<f64>,
}

impl Pair {
    pub fn new(id: String, input_prompt: Option<String>, context: Value, bad: &str, fixed: &str) -> Self {
        let bad = Text::new(bad);
        let fixed = Text::new(fixed);
        let (a, b) = (bad.raw.chars().count(), fixed.raw.chars().count());
        let (edit_distance, edit_unit, similarity) = if a.saturating_mul(b) <= MAX_CHAR_CELLS {
            let d = strsim::levenshtein(&bad.raw, &fixed.raw);
            (d, "chars", strsim::normalized_levenshtein(&bad.raw, &fixed.raw))
        } else {
            let (x, y): (Vec<&str>, Vec<&str>) = (
                bad.words.iter().map(|w| w.norm.as_str()).collect(),
                fixed.words.iter().map(|w| w.norm.as_str()).collect(),
            );
            let d = strsim::generic_levenshtein(&x, &y);
            (d, "words", 1.0 - d as f64 / x.len().max(y.len()).max(1) as f64)
        };
        let length_ratio = (bad.word_count() > 0).then(|| fixed.word_count() as f64 / bad.word_count() as f64);
        let (deleted, inserted) = diff(&bad.words, &fixed.words);
        Self {
            id,
            input_prompt,
            context,
            bad,
            fixed,
            edit_distance,
            edit_unit,
            similarity,
            length_ratio,
            deleted,
            inserted,
            vector_distance: None,
        }
    }

    /// Rating scales the fix moved to: scales of the fixed output's ratings
    /// when the bad output rated on another scale, or not at all.
    pub fn new_scales(&self) -> Vec<u32> {
        let before = self.bad.scales();
        let after = self.fixed.scales();
        after.into_iter().filter(|s| before != [*s]).collect()
    }

    /// The measurements, as `rules.json` shows them.
    pub fn to_json(&self) -> Value {
        let tone = |t: &Text| -> Value {
            Marker::ALL.iter().filter(|m| t.tone(**m) > 0).map(|m| (m.name().to_string(), json!(t.tone(*m)))).collect()
        };
        let texts = |c: &[Change]| c.iter().map(|c| c.text.clone()).collect::<Vec<_>>();
        let ratings = |t: &Text| t.ratings.iter().map(|r| r.text.clone()).collect::<Vec<_>>();
        json!({
            "id": self.id,
            "edit_distance": self.edit_distance,
            "edit_unit": self.edit_unit,
            "similarity": round3(self.similarity),
            "vector_distance": self.vector_distance.map(round3),
            "words": {"bad": self.bad.word_count(), "fixed": self.fixed.word_count()},
            "length_ratio": self.length_ratio.map(round3),
            "deleted": texts(&self.deleted),
            "inserted": texts(&self.inserted),
            "format": {"bad": self.bad.format.name(), "fixed": self.fixed.format.name()},
            "ratings": {"bad": ratings(&self.bad), "fixed": ratings(&self.fixed)},
            "tone": {"bad": tone(&self.bad), "fixed": tone(&self.fixed)},
        })
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Whether a normalized word may be a term rule on its own: it has a
/// letter, and is no stopword (numbers and ratings vary from answer to
/// answer).
pub fn is_content_word(w: &str) -> bool {
    w.chars().any(char::is_alphabetic) && w.chars().count() >= 2 && !STOPWORDS.contains(&w)
}

/// Tokens of a text: whitespace-separated, with a list number at the start
/// of a line (`1.`, `2)`) matched as group 1, so it is not read as a word.
pub fn token_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?m)(^[ \t]*[0-9]+[.)](?:[ \t]|$))|\S+").expect("valid regex"))
}

/// The word tokens of a text: whitespace-separated, holding a letter or a
/// digit, list numbers at line starts left out.
pub fn word_tokens(text: &str) -> impl Iterator<Item = regex::Match<'_>> {
    token_re()
        .captures_iter(text)
        .filter(|c| c.get(1).is_none())
        .filter_map(|c| c.get(0))
        .filter(|m| m.as_str().chars().any(char::is_alphanumeric))
}

/// The words of a text (see [`word_tokens`]), surrounding punctuation
/// stripped.
pub fn words(text: &str) -> Vec<Word> {
    word_tokens(text)
        .map(|m| {
            let tok = m.as_str();
            let orig = tok.trim_matches(|c: char| !c.is_alphanumeric());
            let ends = tok.trim_end_matches(['"', '\'', ')', ']', '*']).ends_with(['.', '!', '?', ':', ';']);
            Word { norm: orig.to_lowercase(), orig: orig.to_string(), ends }
        })
        .collect()
}

/// The number of words of a text, as rules count them.
pub fn word_count(text: &str) -> usize {
    word_tokens(text).count()
}

/// Whether a text is a JSON object or array (it is then left as it is by
/// the post-processing).
pub fn is_json(text: &str) -> bool {
    let t = text.trim();
    (t.starts_with('{') || t.starts_with('[')) && serde_json::from_str::<Value>(t).is_ok()
}

fn line_re(which: Format) -> &'static Regex {
    static BULLET: OnceLock<Regex> = OnceLock::new();
    static NUMBERED: OnceLock<Regex> = OnceLock::new();
    match which {
        Format::Numbered => {
            NUMBERED.get_or_init(|| Regex::new(r"^([ \t]*)[0-9]+[.)][ \t]+(.*)$").expect("valid regex"))
        }
        _ => BULLET.get_or_init(|| Regex::new(r"^([ \t]*)[-*•][ \t]+(.*)$").expect("valid regex")),
    }
}

/// The lines of `text` that are items of a list of `style` (bullets or
/// numbered).
pub fn list_items(text: &str, style: Format) -> usize {
    text.split('\n').filter(|l| line_re(style).is_match(l)).count()
}

/// The regex of a list line of `style`: group 1 the indent, group 2 the item.
pub fn list_line(style: Format) -> &'static Regex {
    line_re(style)
}

fn format_of(text: &str) -> Format {
    if is_json(text) {
        return Format::Json;
    }
    let (b, n) = (list_items(text, Format::Bullets), list_items(text, Format::Numbered));
    match (b, n) {
        (_, n) if n >= 2 && n >= b => Format::Numbered,
        (b, _) if b >= 2 => Format::Bullets,
        _ => Format::Plain,
    }
}

/// The rating regex: group 1 the value, 2 the separator, 3 the scale.
pub fn rating_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?i)\b([0-9]+(?:\.[0-9]+)?)(\s*(?:/|out of)\s*)([0-9]+)\b").expect("valid regex"))
}

/// A rating match's value and scale, when it is one (a known scale, the
/// value within it).
pub fn rating_of(value: &str, scale: &str) -> Option<(f64, u32)> {
    let v: f64 = value.parse().ok()?;
    let s: u32 = scale.parse().ok()?;
    (SCALES.contains(&s) && v <= s as f64).then_some((v, s))
}

fn ratings(text: &str) -> Vec<Rating> {
    rating_re()
        .captures_iter(text)
        .filter_map(|c| {
            let (value, scale) = rating_of(&c[1], &c[3])?;
            Some(Rating { value, scale, text: c[0].to_string() })
        })
        .collect()
}

/// The emoji class removed by the `emoji` tone rule.
pub fn emoji_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"[\x{1F300}-\x{1FAFF}\x{1F000}-\x{1F2FF}\x{2600}-\x{27BF}\x{FE0F}\x{200D}]").expect("valid regex")
    })
}

/// `!` ending a sentence (group 1: a `.` or `?` before it; group 2: what
/// follows).
pub fn exclamation_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"([.?]?)!+(\s|$)").expect("valid regex"))
}

fn count_marker(raw: &str, words: &[Word], m: Marker) -> usize {
    match m {
        Marker::Apology => words.iter().filter(|w| APOLOGY_WORDS.contains(&w.norm.as_str())).count(),
        Marker::Hedge => {
            let single = words.iter().filter(|w| HEDGE_WORDS.contains(&w.norm.as_str())).count();
            let pairs = words
                .windows(2)
                .filter(|p| HEDGE_PHRASES.iter().any(|h| p[0].norm == h[0] && p[1].norm == h[1]))
                .count();
            single + pairs
        }
        Marker::Exclamation => exclamation_re().find_iter(raw).count(),
        Marker::Emoji => emoji_re().find_iter(raw).filter(|m| !matches!(m.as_str(), "\u{FE0F}" | "\u{200D}")).count(),
    }
}

/// The runs of words deleted from `a` and inserted into `b`, by a longest
/// common subsequence of the normalized words; a run stops at the end of a
/// sentence, so `Sorry! The` is two.
fn diff(a: &[Word], b: &[Word]) -> (Vec<Change>, Vec<Change>) {
    if a.len() > MAX_DIFF_WORDS || b.len() > MAX_DIFF_WORDS {
        let in_b: HashSet<&str> = b.iter().map(|w| w.norm.as_str()).collect();
        let in_a: HashSet<&str> = a.iter().map(|w| w.norm.as_str()).collect();
        let one = |w: &Word| Change { words: vec![w.norm.clone()], text: w.orig.clone() };
        let deleted = a.iter().filter(|w| !in_b.contains(w.norm.as_str())).map(one).collect();
        let inserted = b.iter().filter(|w| !in_a.contains(w.norm.as_str())).map(one).collect();
        return (dedup(deleted), dedup(inserted));
    }
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: the LCS length of a[i..] and b[j..].
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[at(i, j)] = if a[i].norm == b[j].norm {
                lcs[at(i + 1, j + 1)] + 1
            } else {
                lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
            };
        }
    }
    let (mut deleted, mut inserted) = (Vec::new(), Vec::new());
    let (mut del, mut ins): (Vec<&Word>, Vec<&Word>) = (Vec::new(), Vec::new());
    let flush = |run: &mut Vec<&Word>, out: &mut Vec<Change>| {
        if !run.is_empty() {
            let words = run.iter().map(|w| w.norm.clone()).collect();
            let text = run.iter().map(|w| w.orig.as_str()).collect::<Vec<_>>().join(" ");
            out.push(Change { words, text });
            run.clear();
        }
    };
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i].norm == b[j].norm {
            flush(&mut del, &mut deleted);
            flush(&mut ins, &mut inserted);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[at(i, j + 1)] >= lcs[at(i + 1, j)]) {
            ins.push(&b[j]);
            if b[j].ends {
                flush(&mut ins, &mut inserted);
            }
            j += 1;
        } else {
            del.push(&a[i]);
            if a[i].ends {
                flush(&mut del, &mut deleted);
            }
            i += 1;
        }
    }
    flush(&mut del, &mut deleted);
    flush(&mut ins, &mut inserted);
    (deleted, inserted)
}

fn dedup(changes: Vec<Change>) -> Vec<Change> {
    let mut seen = HashSet::new();
    changes.into_iter().filter(|c| seen.insert(c.words.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(bad: &str, fixed: &str) -> Pair {
        Pair::new("p".into(), None, Value::Null, bad, fixed)
    }

    #[test]
    fn measures_a_fix() {
        let p = pair(
            "I apologize for the inconvenience! Your order ships Monday, maybe.",
            "- Your order ships Monday.\n- Track it online.",
        );
        let texts: Vec<&str> = p.deleted.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["I apologize for the inconvenience", "maybe"]);
        let texts: Vec<&str> = p.inserted.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["Track it online"]);
        assert_eq!(p.bad.word_count(), 10);
        assert_eq!(p.fixed.word_count(), 7);
        assert_eq!(p.length_ratio, Some(0.7));
        assert_eq!(p.bad.format, Format::Plain);
        assert_eq!(p.fixed.format, Format::Bullets);
        assert_eq!(p.bad.tone(Marker::Apology), 1);
        assert_eq!(p.bad.tone(Marker::Hedge), 1);
        assert_eq!(p.bad.tone(Marker::Exclamation), 1);
        assert_eq!(p.fixed.tone, [0; 4]);
        assert!(p.similarity > 0.0 && p.similarity < 1.0);
        assert_eq!(p.edit_unit, "chars");
    }

    #[test]
    fn reads_structure_ratings_and_tone() {
        assert_eq!(format_of("{\"a\": 1}"), Format::Json);
        assert_eq!(format_of("1. one\n2) two\n- x"), Format::Numbered);
        assert_eq!(format_of("* one\n• two"), Format::Bullets);
        assert_eq!(format_of("- only one"), Format::Plain);
        let r = ratings("I'd say 3.8/5, or 7 out of 10; not 3/4 or 12/5.");
        assert_eq!(r.iter().map(|r| (r.value, r.scale)).collect::<Vec<_>>(), [(3.8, 5), (7.0, 10)]);
        let t = Text::new("Great!! I think it works 🎉 well. Not sure!");
        assert_eq!(t.tone(Marker::Exclamation), 2);
        assert_eq!(t.tone(Marker::Hedge), 2);
        assert_eq!(t.tone(Marker::Emoji), 1);
        let p = pair("Score: 8/10", "Score: 4/5");
        assert_eq!(p.new_scales(), [5]);
        assert_eq!(pair("Score: 4/5", "Score: 4.5/5").new_scales(), Vec::<u32>::new());
    }

    #[test]
    fn finds_terms_in_a_row() {
        let t = Text::new("Sorry, but the refund policy applies.");
        let term = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(t.contains(&term("sorry but")));
        assert!(t.contains(&term("refund policy")));
        assert!(!t.contains(&term("policy refund")));
        assert_eq!(t.written(&term("refund policy")).as_deref(), Some("refund policy"));
        assert_eq!(t.written(&term("sorry")).as_deref(), Some("Sorry"));
    }
}
