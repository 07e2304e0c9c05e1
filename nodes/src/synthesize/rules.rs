//! The rules a `synthesize` node emits, one record each, and how they are
//! applied: as lines of a system prompt, and — for the rules that are
//! mechanical — as post-processing of an answer.
//!
//! A `run` node with `rules:` and the generated Python hook apply the same
//! [`RuleSet`]: the hook carries its operations, in order, as data, and
//! mirrors [`RuleSet::apply`] step for step, so both turn a raw answer into
//! the same text.

use std::sync::OnceLock;

use regex::{Captures, Regex};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use flow_engine::Record;

use super::analysis::{self, emoji_re, exclamation_re, is_json, list_items, list_line, rating_of, rating_re, Format};

/// What a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// The answer's layout: json, bullets, numbered or plain.
    Format,
    /// At most this many words.
    MaxWords,
    /// At least this many words.
    MinWords,
    /// Ratings on this scale (`4.2/5`).
    RatingScale,
    /// A tone marker to avoid or to use.
    Tone,
    /// A term or phrase never to write.
    Avoid,
    /// A term or phrase to write.
    Include,
}

impl RuleKind {
    pub const ALL: [RuleKind; 7] = [
        RuleKind::Format,
        RuleKind::MaxWords,
        RuleKind::MinWords,
        RuleKind::RatingScale,
        RuleKind::Tone,
        RuleKind::Avoid,
        RuleKind::Include,
    ];

    /// Kinds that can be enforced on an output, for some parameters at
    /// least (`format` for lists, `tone` for exclamation marks and emojis).
    pub const ENFORCEABLE: [RuleKind; 5] =
        [RuleKind::Avoid, RuleKind::MaxWords, RuleKind::Format, RuleKind::RatingScale, RuleKind::Tone];

    pub fn name(self) -> &'static str {
        match self {
            RuleKind::Format => "format",
            RuleKind::MaxWords => "max_words",
            RuleKind::MinWords => "min_words",
            RuleKind::RatingScale => "rating_scale",
            RuleKind::Tone => "tone",
            RuleKind::Avoid => "avoid",
            RuleKind::Include => "include",
        }
    }
}

/// Why a rule is not active, or what it won against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// The rules it contradicts.
    pub with: Vec<String>,
    /// The rule kept, or none on a tie.
    pub winner: Option<String>,
    pub reason: String,
}

/// One rule, as a record of a `synthesize` node's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Stable: `format:bullets`, `max_words`, `avoid:<term>`...
    pub id: String,
    pub kind: RuleKind,
    /// The instruction as applied (reworded by the backend, if accepted).
    pub text: String,
    /// The instruction the induction wrote.
    pub induced_text: String,
    #[serde(default)]
    pub reworded: bool,
    /// What the rule says, for machines: `{max_words: 40}`,
    /// `{term, pattern}`, `{format}`, `{scale}`, `{marker, direction}`.
    pub params: Map<String, Value>,
    /// How many pairs back it.
    pub support: usize,
    /// Their ids.
    pub pairs: Vec<String>,
    /// Pairs whose fix points the other way (below the support needed for
    /// a rule of their own, unless `conflict` says otherwise).
    #[serde(default)]
    pub against: Vec<String>,
    /// Applied by `run` nodes and the hook; false when it lost a conflict.
    pub active: bool,
    #[serde(default)]
    pub conflict: Option<Conflict>,
    /// Enforced on outputs by post-processing (when active).
    #[serde(default)]
    pub enforced: bool,
    /// Measurements behind the rule.
    #[serde(default)]
    pub evidence: Value,
}

impl Rule {
    /// Whether post-processing can enforce this rule at all.
    pub fn can_enforce(kind: RuleKind, params: &Map<String, Value>) -> bool {
        let s = |k: &str| params.get(k).and_then(Value::as_str).unwrap_or("");
        match kind {
            RuleKind::Avoid | RuleKind::MaxWords | RuleKind::RatingScale => true,
            RuleKind::Format => matches!(s("format"), "bullets" | "numbered"),
            RuleKind::Tone => s("direction") == "avoid" && matches!(s("marker"), "exclamation" | "emoji"),
            RuleKind::MinWords | RuleKind::Include => false,
        }
    }

    pub fn to_record(&self) -> Record {
        match serde_json::to_value(self).expect("a rule serializes") {
            Value::Object(m) => std::sync::Arc::new(m),
            _ => unreachable!("a rule is an object"),
        }
    }
}

/// The fields of a rule record.
pub const RULE_FIELDS: &[&str] = &[
    "id",
    "kind",
    "text",
    "induced_text",
    "reworded",
    "params",
    "support",
    "pairs",
    "against",
    "active",
    "conflict",
    "enforced",
    "evidence",
];

/// The regex matching a term's words in a row, whole words, any case.
pub fn term_pattern(words: &[String]) -> String {
    let parts: Vec<String> = words.iter().map(|w| regex::escape(w)).collect();
    format!(r"(?i)\b{}\b", parts.join(r"\W+"))
}

/// What an `avoid` rule removes: the term and the punctuation and spaces
/// right after it (`I apologize for the delay. ` as a whole).
pub fn strip_pattern(words: &[String]) -> String {
    format!(r"{}[ \t]*[.,;:!?]*[ \t]*", term_pattern(words))
}

/// One post-processing step.
#[derive(Debug, Clone)]
enum Op {
    /// Remove every match, then tidy.
    Strip(Regex),
    /// `!` ending a sentence becomes `.`.
    NoExclamation,
    /// Remove emojis, then tidy.
    NoEmoji,
    /// Ratings on another known scale are converted to this one.
    Rescale(u32),
    /// Lists of the other style are rewritten in this one.
    List(Format),
    /// Cut past this many words: at the last sentence end in the second
    /// half of the allowance, else at the limit with `…`.
    MaxWords(usize),
}

/// Rules that cannot be applied: a record that is not a rule, an enforced
/// rule without the parameter it acts on, a pattern that is no regex.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// Record `record` (from 1) of the rules node's output.
    #[error("record {record} is not a rule: {source}")]
    NotARule { record: usize, source: serde_json::Error },
    #[error("rule `{rule}`: no `{param}`")]
    MissingParam { rule: String, param: &'static str },
    #[error("rule `{rule}`: bad pattern: {source}")]
    BadPattern { rule: String, source: regex::Error },
}

/// The active rules of a `synthesize` node, ready to apply.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// The texts of the active rules, in order, without repeats.
    pub lines: Vec<String>,
    /// Post-processing steps, in the order they run.
    ops: Vec<(String, Op)>,
}

impl RuleSet {
    /// From a `synthesize` node's records.
    pub fn from_records(records: &[Record]) -> Result<Self, RuleError> {
        let rules = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                serde_json::from_value::<Rule>(Value::Object((**r).clone()))
                    .map_err(|source| RuleError::NotARule { record: i + 1, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(&rules)
    }

    pub fn new(rules: &[Rule]) -> Result<Self, RuleError> {
        let mut lines: Vec<String> = Vec::new();
        for r in rules.iter().filter(|r| r.active) {
            let text = r.text.split_whitespace().collect::<Vec<_>>().join(" ");
            if !text.is_empty() && !lines.contains(&text) {
                lines.push(text);
            }
        }
        // Order: longest avoided phrases first (so a phrase goes whole
        // before a word of it), tone, ratings, lists, and the length last
        // so it counts the final words.
        let mut strips: Vec<(usize, String, String)> = Vec::new();
        let mut ops: Vec<(u8, String, Op)> = Vec::new();
        for r in rules.iter().filter(|r| r.active && r.enforced && Rule::can_enforce(r.kind, &r.params)) {
            let p = &r.params;
            let bad = |param: &'static str| RuleError::MissingParam { rule: r.id.clone(), param };
            match r.kind {
                RuleKind::Avoid => {
                    let pattern = p.get("pattern").and_then(Value::as_str).ok_or_else(|| bad("pattern"))?;
                    let words = p.get("term").and_then(Value::as_str).map_or(1, |t| t.split(' ').count());
                    strips.push((words, r.id.clone(), pattern.to_string()));
                }
                RuleKind::Tone => {
                    let op = if p.get("marker").and_then(Value::as_str) == Some("emoji") {
                        Op::NoEmoji
                    } else {
                        Op::NoExclamation
                    };
                    ops.push((1, r.id.clone(), op));
                }
                RuleKind::RatingScale => {
                    let s = p.get("scale").and_then(Value::as_u64).ok_or_else(|| bad("scale"))?;
                    ops.push((2, r.id.clone(), Op::Rescale(s as u32)));
                }
                RuleKind::Format => {
                    let f =
                        p.get("format").and_then(Value::as_str).and_then(Format::parse).ok_or_else(|| bad("format"))?;
                    ops.push((3, r.id.clone(), Op::List(f)));
                }
                RuleKind::MaxWords => {
                    let n = p.get("max_words").and_then(Value::as_u64).ok_or_else(|| bad("max_words"))?;
                    ops.push((4, r.id.clone(), Op::MaxWords(n.max(1) as usize)));
                }
                RuleKind::MinWords | RuleKind::Include => {}
            }
        }
        strips.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut all = Vec::new();
        for (_, id, pattern) in strips {
            let re = Regex::new(&pattern).map_err(|source| RuleError::BadPattern { rule: id.clone(), source })?;
            all.push((id, Op::Strip(re)));
        }
        ops.sort_by_key(|(rank, id, _)| (*rank, id.clone()));
        all.extend(ops.into_iter().map(|(_, id, op)| (id, op)));
        Ok(Self { lines, ops: all })
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// How many post-processing steps there are.
    pub fn enforced(&self) -> usize {
        self.ops.len()
    }

    /// The rules as a block for a prompt: a heading and a bullet list.
    pub fn block(&self) -> String {
        if self.lines.is_empty() {
            return String::new();
        }
        let mut s = String::from("Follow these rules:");
        for l in &self.lines {
            s.push_str("\n- ");
            s.push_str(l);
        }
        s
    }

    /// The post-processing steps as data, for the hook.
    pub fn ops_json(&self) -> Value {
        let ops: Vec<Value> = self
            .ops
            .iter()
            .map(|(id, op)| match op {
                Op::Strip(re) => json!({"rule": id, "op": "strip", "pattern": re.as_str()}),
                Op::NoExclamation => json!({"rule": id, "op": "no_exclamation"}),
                Op::NoEmoji => json!({"rule": id, "op": "no_emoji"}),
                Op::Rescale(s) => json!({"rule": id, "op": "rescale", "scale": s}),
                Op::List(f) => json!({"rule": id, "op": "list", "format": f.name()}),
                Op::MaxWords(n) => json!({"rule": id, "op": "max_words", "max_words": n}),
            })
            .collect();
        Value::Array(ops)
    }

    /// The answer with the enforced rules applied, and the ids of the rules
    /// that changed it. A JSON answer is left as it is.
    pub fn apply(&self, text: &str) -> (String, Vec<String>) {
        let mut applied = Vec::new();
        if self.ops.is_empty() || is_json(text) {
            return (text.to_string(), applied);
        }
        let mut cur = text.to_string();
        for (id, op) in &self.ops {
            let next = op.apply(&cur);
            if next != cur {
                applied.push(id.clone());
                cur = next;
            }
        }
        (cur, applied)
    }
}

impl Op {
    fn apply(&self, text: &str) -> String {
        match self {
            Op::Strip(re) => removed(text, re),
            Op::NoEmoji => removed(text, emoji_re()),
            Op::NoExclamation => exclamation_re()
                .replace_all(text, |c: &Captures| {
                    let end = if c[1].is_empty() { "." } else { &c[1] };
                    format!("{end}{}", &c[2])
                })
                .into_owned(),
            Op::Rescale(target) => rating_re()
                .replace_all(text, |c: &Captures| match rating_of(&c[1], &c[3]) {
                    Some((v, s)) if s != *target => {
                        format!("{}{}{target}", one_decimal(v * *target as f64 / s as f64), &c[2])
                    }
                    _ => c[0].to_string(),
                })
                .into_owned(),
            Op::List(to) => {
                let from = if *to == Format::Numbered { Format::Bullets } else { Format::Numbered };
                if list_items(text, from) < 2 {
                    return text.to_string();
                }
                let mut n = 0;
                let lines: Vec<String> = text
                    .split('\n')
                    .map(|line| match list_line(from).captures(line) {
                        Some(c) => {
                            n += 1;
                            match to {
                                Format::Numbered => format!("{}{n}. {}", &c[1], &c[2]),
                                _ => format!("{}- {}", &c[1], &c[2]),
                            }
                        }
                        None => {
                            if !line.trim().is_empty() {
                                n = 0;
                            }
                            line.to_string()
                        }
                    })
                    .collect();
                lines.join("\n")
            }
            Op::MaxWords(max) => truncate(text, *max),
        }
    }
}

/// `x` rounded half up to one decimal, without a trailing `.0`: the hook
/// computes the same digits.
fn one_decimal(x: f64) -> String {
    let r = (x * 10.0 + 0.5).floor() as i64;
    if r % 10 == 0 {
        format!("{}", r / 10)
    } else {
        format!("{}.{}", r / 10, r % 10)
    }
}

fn truncate(text: &str, max: usize) -> String {
    let toks: Vec<regex::Match> = analysis::word_tokens(text).collect();
    if toks.len() <= max {
        return text.to_string();
    }
    for i in (0..max).rev() {
        if 2 * (i + 1) < max {
            break;
        }
        if toks[i].as_str().ends_with(['.', '!', '?']) {
            return text[..toks[i].end()].to_string();
        }
    }
    format!("{}…", text[..toks[max - 1].end()].trim_end_matches([',', ';', ':']))
}

/// `text` without the matches of `re`, tidied (see [`tidy`]), or `text`
/// itself when nothing matched.
fn removed(text: &str, re: &Regex) -> String {
    let out = re.replace_all(text, "");
    if out == text {
        return text.to_string();
    }
    tidy(text, &out)
}

/// Cleans up after a removal: runs of spaces inside a line, a space before
/// punctuation, spaces at line ends, punctuation or space left at the very
/// start, and a dangling `,;:` or space at the end. A text that ended a
/// sentence still does, and one that started with a capital still does.
fn tidy(before: &str, after: &str) -> String {
    static RES: OnceLock<[Regex; 5]> = OnceLock::new();
    let [spaces, before_punct, line_end, lead, trail] = RES.get_or_init(|| {
        [r"([^\s])[ \t]{2,}", r"[ \t]+([.,;:!?])", r"[ \t]+\n", r"^[\s.,;:!?]+", r"[\s,;:]+\z"]
            .map(|p| Regex::new(p).expect("valid regex"))
    });
    let s = spaces.replace_all(after, "${1} ");
    let s = before_punct.replace_all(&s, "${1}");
    let s = line_end.replace_all(&s, "\n");
    let s = lead.replace(&s, "");
    let mut s = trail.replace(&s, "").into_owned();
    if before.trim_end().ends_with(['.', '!', '?']) && s.chars().last().is_some_and(char::is_alphanumeric) {
        s.push('.');
    }
    let capital = before.chars().find(|c| c.is_alphanumeric()).is_some_and(char::is_uppercase);
    if let Some(first) = s.chars().next().filter(|c| capital && c.is_lowercase()) {
        s = format!("{}{}", first.to_uppercase(), &s[first.len_utf8()..]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: RuleKind, id: &str, params: Value) -> Rule {
        let params = params.as_object().unwrap().clone();
        Rule {
            id: id.into(),
            kind,
            text: format!("text of {id}"),
            induced_text: format!("text of {id}"),
            reworded: false,
            enforced: Rule::can_enforce(kind, &params),
            params,
            support: 2,
            pairs: vec![],
            against: vec![],
            active: true,
            conflict: None,
            evidence: Value::Null,
        }
    }

    fn avoid(term: &str) -> Rule {
        let words: Vec<String> = term.split(' ').map(String::from).collect();
        rule(RuleKind::Avoid, &format!("avoid:{term}"), json!({"term": term, "pattern": strip_pattern(&words)}))
    }

    #[test]
    fn strips_phrases_and_tidies() {
        let set = RuleSet::new(&[avoid("sorry"), avoid("i apologize for the inconvenience")]).unwrap();
        let apply = |t: &str| set.apply(t).0;
        assert_eq!(apply("I apologize for the inconvenience. Your order ships Monday."), "Your order ships Monday.");
        assert_eq!(apply("Sure! I apologize for the inconvenience! Here it is."), "Sure! Here it is.");
        assert_eq!(apply("The answer, sorry, is 4"), "The answer, is 4");
        assert_eq!(apply("It ships Monday, sorry!"), "It ships Monday.");
        assert_eq!(apply("sorry: it ships Monday"), "it ships Monday");
        assert_eq!(apply("Sorry, it ships Monday"), "It ships Monday");
        assert_eq!(apply("Unsorry is not a word"), "Unsorry is not a word");
        let (out, applied) = set.apply("I APOLOGIZE for the  inconvenience; sorry. Done.");
        assert_eq!(out, "Done.");
        assert_eq!(applied, ["avoid:i apologize for the inconvenience", "avoid:sorry"]);
        // JSON answers are left alone.
        assert_eq!(apply("{\"a\": \"sorry\"}"), "{\"a\": \"sorry\"}");
    }

    #[test]
    fn tone_ratings_lists_and_length() {
        let rules = [
            rule(RuleKind::Tone, "tone:avoid:exclamation", json!({"marker": "exclamation", "direction": "avoid"})),
            rule(RuleKind::Tone, "tone:avoid:emoji", json!({"marker": "emoji", "direction": "avoid"})),
            rule(RuleKind::RatingScale, "rating_scale:5", json!({"scale": 5})),
            rule(RuleKind::Format, "format:numbered", json!({"format": "numbered"})),
        ];
        let set = RuleSet::new(&rules).unwrap();
        let apply = |t: &str| set.apply(t).0;
        assert_eq!(apply("Great! 🎉 Really?! Yes!!"), "Great. Really? Yes.");
        assert_eq!(
            apply("I give it 7 out of 10, or 8/10; 4/5 stays; 3/4 too."),
            "I give it 3.5 out of 5, or 4/5; 4/5 stays; 3/4 too."
        );
        assert_eq!(apply("Steps:\n- a\n- b\n\n- c\nEnd\n- d"), "Steps:\n1. a\n2. b\n\n3. c\nEnd\n1. d");
        assert_eq!(apply("- only one"), "- only one");
        assert_eq!(one_decimal(7.0 * 5.0 / 10.0), "3.5");
        assert_eq!(one_decimal(2.25), "2.3");
        assert_eq!(one_decimal(4.0), "4");

        let set = RuleSet::new(&[rule(RuleKind::MaxWords, "max_words", json!({"max_words": 6}))]).unwrap();
        assert_eq!(set.apply("One two three. Four five six seven eight.").0, "One two three.");
        assert_eq!(set.apply("One two. Three four five six seven.").0, "One two. Three four five six…");
        assert_eq!(set.apply("One, two, three, four, five, six, seven").0, "One, two, three, four, five, six…");
        assert_eq!(set.apply("- One two\n- three four five six").0, "- One two\n- three four five six");
    }

    #[test]
    fn the_block_lists_active_rules_once() {
        let mut lost = avoid("please");
        lost.active = false;
        let mut merged = rule(RuleKind::Include, "include:x", json!({"term": "x"}));
        merged.text = "text of avoid:sorry".into();
        let set = RuleSet::new(&[avoid("sorry"), lost, merged]).unwrap();
        assert_eq!(set.block(), "Follow these rules:\n- text of avoid:sorry");
        assert_eq!(set.enforced(), 1);
        assert_eq!(set.ops_json()[0]["op"], "strip");
        assert!(RuleSet::new(&[]).unwrap().block().is_empty());
    }
}
