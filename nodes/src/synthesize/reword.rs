//! The optional LLM pass: a backend rewords (and may merge) the induced
//! rules, shown the measured statistics as evidence. The induction stays
//! the guard: a rewording is taken only for a rule id the answer names, and
//! only when it keeps what the rule says (its number, its term, its format
//! word, a negation for a rule that forbids); every other rule keeps its
//! induced text. An answer that is not the JSON asked for changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use regex::Regex;
use serde_json::{json, Value};

use crate::backend::{Answer, Message};

use super::analysis::Pair;
use super::rules::{term_pattern, Rule, RuleKind};

/// The line before the rules (a JSON array on the next line) in the
/// prompt; the `sim` backend rewords what follows it.
pub const RULES_MARKER: &str = "Rules to reword (JSON):";

/// How `provider: sim` rewords: each rule keeps its text, with its support.
pub const SIM_ANSWER: Answer = Answer { marker: RULES_MARKER, answer: sim_reword };

const SYSTEM: &str = "You turn measured feedback into short, direct rules for an assistant's system prompt. \
Reply with only a JSON object.";

/// The chat asking to reword the active `rules`.
pub fn messages(pairs: &[Pair], rules: &[Rule]) -> Vec<Message> {
    let n = pairs.len().max(1) as f64;
    let similarity = pairs.iter().map(|p| p.similarity).sum::<f64>() / n;
    let ratios: Vec<f64> = pairs.iter().filter_map(|p| p.length_ratio).collect();
    let ratio = ratios.iter().sum::<f64>() / ratios.len().max(1) as f64;
    let mut formats: BTreeMap<&str, usize> = BTreeMap::new();
    for p in pairs {
        *formats.entry(p.fixed.format.name()).or_default() += 1;
    }
    let formats: Vec<String> = formats.iter().map(|(f, c)| format!("{f} {c}")).collect();
    let mut user = String::from(
        "Reword each rule below as one short, direct instruction. You may merge rules that say the same thing. \
Keep every number and every quoted term exactly as written, and keep what each rule forbids or requires.\n\n",
    );
    let _ = writeln!(
        user,
        "Evidence from {} feedback pairs (a bad answer and its fix): mean similarity {similarity:.2}, \
mean length ratio (fixed / bad words) {ratio:.2}; formats of the fixed answers: {}.",
        pairs.len(),
        formats.join(", ")
    );
    let shown: Vec<&Pair> = pairs.iter().take(3).collect();
    if !shown.is_empty() {
        user.push_str("Examples:\n");
        for p in shown {
            let _ = write!(user, "- ");
            if let Some(q) = &p.input_prompt {
                let _ = write!(user, "prompt: {}; ", clip(q));
            }
            if !p.context.is_null() {
                let _ = write!(user, "context: {}; ", clip(&p.context.to_string()));
            }
            let _ = writeln!(user, "bad: {} -> fixed: {}", clip(&p.bad.raw), clip(&p.fixed.raw));
        }
    }
    user.push_str(
        "\nReply with only a JSON object {\"rules\": [{\"ids\": [\"<rule id>\", ...], \"text\": \"<instruction>\"}, ...]} \
covering every rule id below.\n\n",
    );
    let listed: Vec<Value> = rules
        .iter()
        .filter(|r| r.active)
        .map(|r| json!({"id": r.id, "kind": r.kind.name(), "text": r.induced_text, "support": r.support}))
        .collect();
    let _ = write!(user, "{RULES_MARKER}\n{}\n", Value::Array(listed));
    vec![Message { role: "system".into(), content: SYSTEM.into() }, Message { role: "user".into(), content: user }]
}

fn clip(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = one.chars().take(160).collect();
    let cut = if cut.len() < one.len() { format!("{cut}...") } else { cut };
    serde_json::to_string(&cut).expect("json")
}

/// Why an answer, or one rewording in it, is not taken; the text goes into
/// [`Outcome`].
#[derive(Debug, thiserror::Error)]
pub enum RewordError {
    #[error("the answer holds no JSON object")]
    NoJson,
    #[error("the answer holds no complete JSON object")]
    Incomplete,
    #[error("the answer is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("the answer has no `rules` list")]
    NoRules,
    /// A rewording without the number, term, format word or negation of
    /// its rule.
    #[error("the rewording {text:?} drops what the rule says")]
    DropsMeaning { text: String },
}

/// What the rewording did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Outcome {
    /// Rules whose text was replaced.
    pub reworded: usize,
    /// Active rules that kept their induced text, with why.
    pub kept: BTreeMap<String, String>,
    /// Why the whole answer was not used, if it was not.
    pub unusable: Option<String>,
}

/// Applies the answer `text` to `rules`, guarded.
pub fn apply(rules: &mut [Rule], text: &str) -> Outcome {
    let mut out = Outcome::default();
    let active: BTreeSet<String> = rules.iter().filter(|r| r.active).map(|r| r.id.clone()).collect();
    let entries = match parse(text) {
        Ok(e) => e,
        Err(why) => {
            let why = why.to_string();
            out.unusable = Some(why.clone());
            out.kept = active.into_iter().map(|id| (id, why.clone())).collect();
            return out;
        }
    };
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    for (ids, text) in entries {
        for id in ids {
            if active.contains(&id) && !texts.contains_key(&id) {
                texts.insert(id, text.clone());
            }
        }
    }
    for r in rules.iter_mut().filter(|r| r.active) {
        match texts.get(&r.id) {
            None => {
                out.kept.insert(r.id.clone(), "the answer left it out".into());
            }
            Some(t) => match keeps_meaning(r, t) {
                Ok(()) => {
                    r.text = t.clone();
                    r.reworded = true;
                    out.reworded += 1;
                }
                Err(why) => {
                    out.kept.insert(r.id.clone(), why.to_string());
                }
            },
        }
    }
    out
}

/// `(rule ids, text)` entries of an answer.
fn parse(text: &str) -> Result<Vec<(Vec<String>, String)>, RewordError> {
    let start = text.find('{').ok_or(RewordError::NoJson)?;
    let end = text.rfind('}').filter(|e| *e > start).ok_or(RewordError::Incomplete)?;
    let v: Value = serde_json::from_str(&text[start..=end]).map_err(RewordError::NotJson)?;
    let list = v.get("rules").and_then(Value::as_array).ok_or(RewordError::NoRules)?;
    let mut out = Vec::new();
    for e in list {
        let text = e.get("text").and_then(Value::as_str).map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "));
        let Some(text) = text.filter(|t| !t.is_empty() && t.chars().count() <= 400) else { continue };
        let ids: Vec<String> = match (e.get("ids"), e.get("id")) {
            (Some(Value::Array(a)), _) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
            (_, Some(Value::String(s))) => vec![s.clone()],
            _ => continue,
        };
        out.push((ids, text));
    }
    Ok(out)
}

/// Whether `text` still says what rule `r` says.
fn keeps_meaning(r: &Rule, text: &str) -> Result<(), RewordError> {
    let lower = text.to_lowercase();
    let p = &r.params;
    let number = |key: &str| p.get(key).and_then(Value::as_u64).unwrap_or(0).to_string();
    let has_number = |n: &str| Regex::new(&format!(r"\b{n}\b")).is_ok_and(|re| re.is_match(text));
    let any = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    let forbids = any(&["not", "never", "avoid", "no ", "without", "omit", "don't", "drop", "remove", "skip"]);
    let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
    let ok = match r.kind {
        RuleKind::MaxWords => has_number(&number("max_words")),
        RuleKind::MinWords => has_number(&number("min_words")),
        RuleKind::RatingScale => has_number(&number("scale")),
        RuleKind::Avoid | RuleKind::Include => {
            let words: Vec<String> = s("term").split(' ').map(String::from).collect();
            let has_term = Regex::new(&term_pattern(&words)).is_ok_and(|re| re.is_match(text));
            has_term && (r.kind == RuleKind::Include || forbids)
        }
        RuleKind::Format => match s("format") {
            "json" => any(&["json"]),
            "bullets" => any(&["bullet"]),
            "numbered" => any(&["number"]),
            _ => any(&["plain", "prose", "sentences"]),
        },
        RuleKind::Tone => {
            let named = match s("marker") {
                "apology" => any(&["apolog", "sorry"]),
                "hedge" => any(&["hedg", "direct", "certain", "sure", "confiden"]),
                "exclamation" => any(&["exclamation", "!"]),
                _ => any(&["emoji"]),
            };
            named && (s("direction") != "avoid" || forbids)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(RewordError::DropsMeaning { text: text.to_string() })
    }
}

/// A `synthesize` rewording: each rule listed (the JSON array on the line
/// after the marker) keeps its text, with its support appended.
fn sim_reword(_: &str, rest: &str, _: f64) -> Value {
    let first = rest.lines().map(str::trim).find(|l| !l.is_empty());
    let listed: Vec<Value> = first.and_then(|l| serde_json::from_str(l).ok()).unwrap_or_default();
    let rules: Vec<Value> = listed
        .iter()
        .map(|r| {
            let text = r["text"].as_str().unwrap_or("").trim_end_matches('.');
            json!({"ids": [r["id"]], "text": format!("{text}, as {} feedback pairs show.", r["support"])})
        })
        .collect();
    json!({ "rules": rules })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthesize::induce::{induce, Settings};
    use serde_json::Value;

    fn induced() -> (Vec<Pair>, Vec<Rule>) {
        let pairs: Vec<Pair> = [
            ("Sorry for the wait! It ships Monday and arrives soon after that.", "It ships Monday."),
            ("Sorry for the wait! Refunds take a week to show up on your card.", "Refunds take a week."),
        ]
        .iter()
        .enumerate()
        .map(|(i, (b, f))| Pair::new(format!("p{i}"), None, Value::Null, b, f))
        .collect();
        let rules = induce(&pairs, &Settings::default());
        (pairs, rules)
    }

    #[test]
    fn the_prompt_lists_active_rules_after_the_marker() {
        let (pairs, rules) = induced();
        let m = messages(&pairs, &rules);
        let after = m[1].content.split(RULES_MARKER).nth(1).unwrap();
        let listed: Value = serde_json::from_str(after.trim()).unwrap();
        assert_eq!(listed.as_array().unwrap().len(), rules.iter().filter(|r| r.active).count());
        assert!(m[1].content.contains("Evidence from 2 feedback pairs"));
    }

    #[test]
    fn the_induction_guards_the_rewording() {
        let (_, mut rules) = induced();
        let ids: Vec<String> = rules.iter().map(|r| r.id.clone()).collect();
        assert!(
            ids.contains(&"avoid:sorry for the wait".to_string()) && ids.contains(&"max_words".to_string()),
            "{ids:?}"
        );
        let answer = json!({"rules": [
            {"ids": ["avoid:sorry for the wait", "tone:avoid:apology"], "text": "Never open with \"Sorry for the wait\" or any apology."},
            {"id": "max_words", "text": "Be brief."},
            {"id": "no-such-rule", "text": "Whatever."},
        ]});
        let out = apply(&mut rules, &answer.to_string());
        let text = |id: &str| rules.iter().find(|r| r.id == id).unwrap().text.clone();
        assert_eq!(text("avoid:sorry for the wait"), "Never open with \"Sorry for the wait\" or any apology.");
        assert_eq!(text("tone:avoid:apology"), "Never open with \"Sorry for the wait\" or any apology.");
        assert_eq!(text("max_words"), "Keep the answer to at most 4 words.", "the number was dropped");
        assert!(out.kept["max_words"].contains("drops what the rule says"));
        assert_eq!(out.reworded, 2);

        let (_, mut rules) = induced();
        let before = rules.clone();
        let out = apply(&mut rules, "Sure, here are the rules: be nice.");
        assert_eq!(rules, before);
        assert!(out.unusable.unwrap().contains("no JSON object"));
    }
}
