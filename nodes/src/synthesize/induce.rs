//! Rules from measured pairs, deterministically.
//!
//! Every rule is a claim that some pairs back: the fix moved the answer
//! that way (shorter, to bullets, to ratings out of 5, without a phrase).
//! A candidate becomes a rule when at least `min_support` pairs back it.
//! Rules that cannot both hold — `include X` and `avoid X`, two formats,
//! two rating scales, using and avoiding a tone marker, a minimum length
//! above the maximum — are a contradiction: the one with more support is
//! kept (active) and the others are reported inactive with the reason; on
//! a tie none is applied. Output order is fixed (kind, then support, then
//! id), so the same pairs always give the same records.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::analysis::{is_content_word, round3, Format, Marker, Pair};
use super::rules::{strip_pattern, Conflict, Rule, RuleKind};

/// The thresholds of the induction.
#[derive(Debug, Clone)]
pub struct Settings {
    pub min_support: usize,
    /// A fix whose length ratio (fixed / bad words) is below this shortened
    /// the answer.
    pub shorter_below: f64,
    /// ... above this, lengthened it.
    pub longer_above: f64,
    /// At most this many `avoid` and this many `include` rules.
    pub max_terms: usize,
    /// Longest phrase (in words) a term rule may be.
    pub max_phrase_words: usize,
    /// Kinds enforced on outputs.
    pub enforce: BTreeSet<RuleKind>,
    /// A pair whose fix moved the embedding further than this (cosine
    /// distance) corrected the answer's content: it backs no rule.
    pub max_shift: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            min_support: 2,
            shorter_below: 0.8,
            longer_above: 1.25,
            max_terms: 10,
            max_phrase_words: 10,
            enforce: RuleKind::ENFORCEABLE.into_iter().collect(),
            max_shift: 0.4,
        }
    }
}

/// The pairs whose fix corrected the content (their vector distance is
/// past `max_shift`), which back no rule: a rule says how to answer, and a
/// fact put right says nothing about that.
pub fn content_fixes<'a>(pairs: &'a [Pair], s: &Settings) -> Vec<&'a Pair> {
    pairs.iter().filter(|p| p.vector_distance.is_some_and(|d| d > s.max_shift)).collect()
}

/// A rule before conflicts are settled.
struct Candidate {
    kind: RuleKind,
    id: String,
    text: String,
    params: Map<String, Value>,
    support: Vec<usize>,
    against: Vec<usize>,
    evidence: Value,
    active: bool,
    conflict: Option<Conflict>,
}

impl Candidate {
    fn new(kind: RuleKind, id: String, text: String, params: Value, support: Vec<usize>) -> Self {
        let Value::Object(params) = params else { unreachable!("params are an object") };
        Self {
            kind,
            id,
            text,
            params,
            support,
            against: Vec::new(),
            evidence: Value::Null,
            active: true,
            conflict: None,
        }
    }
}

/// The rules the pairs back (all but the [`content_fixes`]).
pub fn induce(all: &[Pair], s: &Settings) -> Vec<Rule> {
    let kept: Vec<Pair>;
    let pairs = if all.iter().any(|p| p.vector_distance.is_some_and(|d| d > s.max_shift)) {
        kept = all.iter().filter(|p| !p.vector_distance.is_some_and(|d| d > s.max_shift)).cloned().collect();
        &kept[..]
    } else {
        all
    };
    let min = s.min_support.max(1);
    let mut out: Vec<Candidate> = Vec::new();
    out.extend(length(pairs, s, min));
    out.extend(formats(pairs, min));
    out.extend(scales(pairs, min));
    out.extend(tones(pairs, min));
    out.extend(terms(pairs, s, min));
    out.sort_by(|a, b| {
        let rank = |k: RuleKind| RuleKind::ALL.iter().position(|x| *x == k);
        rank(a.kind)
            .cmp(&rank(b.kind))
            .then(b.active.cmp(&a.active))
            .then(b.support.len().cmp(&a.support.len()))
            .then(a.id.cmp(&b.id))
    });
    let ids = |v: &[usize]| v.iter().map(|&i| pairs[i].id.clone()).collect::<Vec<_>>();
    out.into_iter()
        .map(|c| Rule {
            enforced: s.enforce.contains(&c.kind) && Rule::can_enforce(c.kind, &c.params),
            id: c.id,
            kind: c.kind,
            induced_text: c.text.clone(),
            text: c.text,
            reworded: false,
            params: c.params,
            support: c.support.len(),
            pairs: ids(&c.support),
            against: ids(&c.against),
            active: c.active,
            conflict: c.conflict,
            evidence: c.evidence,
        })
        .collect()
}

/// Settles a set of mutually contradicting candidates: the most support
/// wins; on a tie at the top none is applied.
fn settle(group: &mut [&mut Candidate]) {
    if group.len() < 2 {
        return;
    }
    let best = group.iter().map(|c| c.support.len()).max().unwrap_or(0);
    let top: Vec<String> = group.iter().filter(|c| c.support.len() == best).map(|c| c.id.clone()).collect();
    let winner = (top.len() == 1).then(|| top[0].clone());
    let figures: Vec<String> = group.iter().map(|c| format!("`{}` {}", c.id, c.support.len())).collect();
    let reason = match &winner {
        Some(w) => format!("contradiction (pairs backing: {}): `{w}` has the most support", figures.join(", ")),
        None => format!("contradiction (pairs backing: {}): a tie, so none is applied", figures.join(", ")),
    };
    let all: Vec<String> = group.iter().map(|c| c.id.clone()).collect();
    for c in group.iter_mut() {
        c.active = winner.as_deref() == Some(c.id.as_str());
        let with = all.iter().filter(|i| **i != c.id).cloned().collect();
        c.conflict = Some(Conflict { with, winner: winner.clone(), reason: reason.clone() });
    }
}

fn median(mut v: Vec<usize>) -> usize {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn length(pairs: &[Pair], s: &Settings, min: usize) -> Vec<Candidate> {
    let ratio = |p: &Pair| match p.length_ratio {
        Some(r) => r,
        None if p.fixed.word_count() > 0 => f64::INFINITY,
        None => 1.0,
    };
    let shorter: Vec<usize> = (0..pairs.len()).filter(|&i| ratio(&pairs[i]) < s.shorter_below).collect();
    let longer: Vec<usize> = (0..pairs.len()).filter(|&i| ratio(&pairs[i]) > s.longer_above).collect();
    let fixed = |i: usize| pairs[i].fixed.word_count();
    let evidence = |set: &[usize]| {
        let mean = set.iter().map(|&i| ratio(&pairs[i]).min(10.0)).sum::<f64>() / set.len().max(1) as f64;
        json!({
            "mean_length_ratio": round3(mean),
            "fixed_words": {"min": set.iter().map(|&i| fixed(i)).min(), "median": median(set.iter().map(|&i| fixed(i)).collect()), "max": set.iter().map(|&i| fixed(i)).max()},
            "bad_words_median": median(set.iter().map(|&i| pairs[i].bad.word_count()).collect()),
        })
    };
    let mut out = Vec::new();
    if shorter.len() >= min {
        // The longest fixed answer among the shortened ones: no fix of
        // theirs would be cut.
        let n = shorter.iter().map(|&i| fixed(i)).max().unwrap_or(1).max(1);
        let mut c = Candidate::new(
            RuleKind::MaxWords,
            "max_words".into(),
            format!("Keep the answer to at most {n} words."),
            json!({"max_words": n}),
            shorter.clone(),
        );
        c.against = (0..pairs.len()).filter(|i| !shorter.contains(i) && fixed(*i) > n).collect();
        c.evidence = evidence(&shorter);
        out.push(c);
    }
    if longer.len() >= min {
        let n = longer.iter().map(|&i| fixed(i)).min().unwrap_or(1).max(1);
        let mut c = Candidate::new(
            RuleKind::MinWords,
            "min_words".into(),
            format!("Write at least {n} words."),
            json!({"min_words": n}),
            longer.clone(),
        );
        c.against = (0..pairs.len()).filter(|i| !longer.contains(i) && fixed(*i) < n).collect();
        c.evidence = evidence(&longer);
        out.push(c);
    }
    if let [max, min_c] = &mut out[..] {
        if min_c.params["min_words"].as_u64() > max.params["max_words"].as_u64() {
            settle(&mut [max, min_c]);
        }
    }
    out
}

fn format_text(f: Format) -> &'static str {
    match f {
        Format::Json => "Reply with a single JSON object and nothing else.",
        Format::Bullets => "Format the answer as a bulleted list, one point per line starting with \"- \".",
        Format::Numbered => "Format the answer as a numbered list (1., 2., 3.).",
        Format::Plain => "Reply in plain sentences, without lists or JSON.",
    }
}

fn formats(pairs: &[Pair], min: usize) -> Vec<Candidate> {
    let mut by: BTreeMap<Format, Vec<usize>> = BTreeMap::new();
    for (i, p) in pairs.iter().enumerate() {
        if p.bad.format != p.fixed.format {
            by.entry(p.fixed.format).or_default().push(i);
        }
    }
    let mut out: Vec<Candidate> = Vec::new();
    for (f, support) in &by {
        if support.len() < min {
            continue;
        }
        let mut c = Candidate::new(
            RuleKind::Format,
            format!("format:{}", f.name()),
            format_text(*f).into(),
            json!({"format": f.name()}),
            support.clone(),
        );
        c.against = by.iter().filter(|(g, _)| *g != f).flat_map(|(_, v)| v.iter().copied()).collect();
        c.against.sort_unstable();
        let from: BTreeMap<&str, usize> = support.iter().fold(BTreeMap::new(), |mut m, &i| {
            *m.entry(pairs[i].bad.format.name()).or_default() += 1;
            m
        });
        c.evidence = json!({"from": from});
        out.push(c);
    }
    settle(&mut out.iter_mut().collect::<Vec<_>>());
    out
}

fn scales(pairs: &[Pair], min: usize) -> Vec<Candidate> {
    let mut by: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, p) in pairs.iter().enumerate() {
        for s in p.new_scales() {
            by.entry(s).or_default().push(i);
        }
    }
    let mut out: Vec<Candidate> = Vec::new();
    for (scale, support) in &by {
        if support.len() < min {
            continue;
        }
        let example = support
            .iter()
            .flat_map(|&i| pairs[i].fixed.ratings.iter())
            .find(|r| r.scale == *scale)
            .map(|r| r.text.clone())
            .unwrap_or_else(|| format!("4/{scale}"));
        let mut c = Candidate::new(
            RuleKind::RatingScale,
            format!("rating_scale:{scale}"),
            format!("Give ratings on a scale of {scale}, written like {example}."),
            json!({"scale": scale}),
            support.clone(),
        );
        let mut against: Vec<usize> =
            by.iter().filter(|(s, _)| *s != scale).flat_map(|(_, v)| v.iter().copied()).collect();
        against.sort_unstable();
        against.dedup();
        c.against = against;
        let before: BTreeSet<u32> =
            support.iter().flat_map(|&i| pairs[i].bad.ratings.iter().map(|r| r.scale)).collect();
        c.evidence = json!({"from_scales": before});
        out.push(c);
    }
    settle(&mut out.iter_mut().collect::<Vec<_>>());
    out
}

fn tone_text(m: Marker, avoid: bool) -> &'static str {
    match (m, avoid) {
        (Marker::Apology, true) => "Do not apologize.",
        (Marker::Hedge, true) => "State the answer directly, without hedging (no \"maybe\", \"perhaps\", \"I think\").",
        (Marker::Exclamation, true) => "Do not use exclamation marks.",
        (Marker::Emoji, true) => "Do not use emojis.",
        (Marker::Apology, false) => "Acknowledge the problem with a brief apology (\"sorry\").",
        (Marker::Hedge, false) => "Say how sure you are when the answer is uncertain (\"probably\", \"I think\").",
        (Marker::Exclamation, false) => "Use an upbeat tone; an exclamation mark is welcome.",
        (Marker::Emoji, false) => "Add a fitting emoji.",
    }
}

fn tones(pairs: &[Pair], min: usize) -> Vec<Candidate> {
    let mut out = Vec::new();
    for m in Marker::ALL {
        let avoid: Vec<usize> =
            (0..pairs.len()).filter(|&i| pairs[i].bad.tone(m) > 0 && pairs[i].fixed.tone(m) == 0).collect();
        let using: Vec<usize> =
            (0..pairs.len()).filter(|&i| pairs[i].bad.tone(m) == 0 && pairs[i].fixed.tone(m) > 0).collect();
        let mut here = Vec::new();
        for (dir, support, other) in [("avoid", &avoid, &using), ("use", &using, &avoid)] {
            if support.len() < min {
                continue;
            }
            let mut c = Candidate::new(
                RuleKind::Tone,
                format!("tone:{dir}:{}", m.name()),
                tone_text(m, dir == "avoid").into(),
                json!({"marker": m.name(), "direction": dir}),
                support.clone(),
            );
            c.against = other.clone();
            let counted: usize = support.iter().map(|&i| pairs[i].bad.tone(m) + pairs[i].fixed.tone(m)).sum();
            c.evidence = json!({"markers_in_backing_pairs": counted});
            here.push(c);
        }
        settle(&mut here.iter_mut().collect::<Vec<_>>());
        out.extend(here);
    }
    out
}

/// A term candidate and the pairs that back each direction.
struct Term {
    words: Vec<String>,
    avoid: Vec<usize>,
    include: Vec<usize>,
}

impl Term {
    fn side(&self, avoid: bool) -> &[usize] {
        if avoid {
            &self.avoid
        } else {
            &self.include
        }
    }
}

fn terms(pairs: &[Pair], s: &Settings, min: usize) -> Vec<Candidate> {
    // Candidates: each deleted or inserted run short enough to be a phrase
    // (trailing stopwords and numbers trimmed: `Simply put, you` is `simply
    // put`), and each content word of a run.
    let mut seen: BTreeSet<Vec<String>> = BTreeSet::new();
    for p in pairs {
        for c in p.deleted.iter().chain(&p.inserted) {
            let end = c.words.iter().rposition(|w| is_content_word(w)).map_or(0, |i| i + 1);
            if (2..=s.max_phrase_words).contains(&end) {
                seen.insert(c.words[..end].to_vec());
            }
            for w in c.words.iter().filter(|w| is_content_word(w)) {
                seen.insert(vec![w.clone()]);
            }
        }
    }
    // Support is counted over every pair, not only where the term was a
    // run: "sorry for the wait" counts where a longer deletion held it.
    let all: Vec<Term> = seen
        .into_iter()
        .map(|words| {
            let (mut avoid, mut include) = (Vec::new(), Vec::new());
            for (i, p) in pairs.iter().enumerate() {
                match (p.bad.contains(&words), p.fixed.contains(&words)) {
                    (true, false) => avoid.push(i),
                    (false, true) => include.push(i),
                    _ => {}
                }
            }
            Term { words, avoid, include }
        })
        .filter(|t| t.avoid.len() >= min || t.include.len() >= min)
        .collect();

    let mut out = Vec::new();
    for avoid in [true, false] {
        let support = |t: &Term| t.side(avoid).len();
        // Longest first; a term is redundant when the longer kept terms that
        // contain it already cover all of its pairs.
        let mut order: Vec<&Term> = all.iter().filter(|t| support(t) >= min).collect();
        order.sort_by(|a, b| b.words.len().cmp(&a.words.len()).then(a.words.cmp(&b.words)));
        let mut kept: Vec<&Term> = Vec::new();
        for t in order {
            let covered: BTreeSet<usize> = kept
                .iter()
                .filter(|k| k.words.windows(t.words.len()).any(|w| w == t.words.as_slice()))
                .flat_map(|k| k.side(avoid).iter().copied())
                .collect();
            if !t.side(avoid).iter().all(|i| covered.contains(i)) {
                kept.push(t);
            }
        }
        kept.sort_by(|a, b| support(b).cmp(&support(a)).then(a.words.cmp(&b.words)));
        kept.truncate(s.max_terms);
        for t in kept {
            out.push(term_candidate(pairs, t, avoid));
        }
    }
    // A term both avoided and included by enough pairs: a contradiction.
    let mut by_term: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, c) in out.iter().enumerate() {
        by_term.entry(c.params["term"].as_str().unwrap_or_default().to_string()).or_default().push(i);
    }
    for (term, idx) in by_term {
        if idx.len() == 2 {
            let (a, b) = out.split_at_mut(idx[1]);
            settle(&mut [&mut a[idx[0]], &mut b[0]]);
        } else if idx.len() == 1 && out[idx[0]].against.len() >= min {
            // The other side lost the cut by `max_terms`: add it back as the
            // loser it is, so the contradiction is reported.
            let t = all.iter().find(|t| t.words.join(" ") == term).expect("a term candidate");
            let mut other = term_candidate(pairs, t, out[idx[0]].kind == RuleKind::Include);
            settle(&mut [&mut out[idx[0]], &mut other]);
            out.push(other);
        }
    }
    out
}

fn term_candidate(pairs: &[Pair], t: &Term, avoid: bool) -> Candidate {
    let (support, against) = if avoid { (&t.avoid, &t.include) } else { (&t.include, &t.avoid) };
    let term = t.words.join(" ");
    // As first written in a backing pair.
    let written = support
        .iter()
        .find_map(|&i| if avoid { pairs[i].bad.written(&t.words) } else { pairs[i].fixed.written(&t.words) })
        .unwrap_or_else(|| term.clone());
    let (kind, id, text) = if avoid {
        (RuleKind::Avoid, format!("avoid:{term}"), format!("Never write \"{written}\"."))
    } else {
        (RuleKind::Include, format!("include:{term}"), format!("Include \"{written}\"."))
    };
    let mut params = json!({"term": term, "written": written});
    if avoid {
        params["pattern"] = json!(strip_pattern(&t.words));
    }
    let mut c = Candidate::new(kind, id, text, params, support.clone());
    c.against = against.clone();
    c.evidence = json!({"words": t.words.len()});
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn pairs(list: &[(&str, &str)]) -> Vec<Pair> {
        list.iter().enumerate().map(|(i, (b, f))| Pair::new(format!("p{}", i + 1), None, Value::Null, b, f)).collect()
    }

    fn by_id<'a>(rules: &'a [Rule], id: &str) -> &'a Rule {
        rules
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("no rule {id} in {:?}", rules.iter().map(|r| &r.id).collect::<Vec<_>>()))
    }

    #[test]
    fn a_phrase_covers_its_words_and_support_is_counted() {
        let p = pairs(&[
            ("I apologize for the inconvenience. It ships Monday.", "It ships Monday."),
            ("I apologize for the inconvenience. Refunds take a week.", "Refunds take a week."),
            ("I apologize for the delay. Call us.", "Call us."),
        ]);
        let rules = induce(&p, &Settings::default());
        let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
        assert!(ids.contains(&"avoid:i apologize for the inconvenience"), "{ids:?}");
        // "apologize" is in three pairs, two covered by the phrase: kept.
        let word = by_id(&rules, "avoid:apologize");
        assert_eq!(word.pairs, ["p1", "p2", "p3"]);
        assert!(!ids.contains(&"avoid:inconvenience"), "covered by the phrase: {ids:?}");
        let phrase = by_id(&rules, "avoid:i apologize for the inconvenience");
        assert_eq!(phrase.support, 2);
        assert_eq!(phrase.text, "Never write \"I apologize for the inconvenience\".");
        assert!(phrase.active && phrase.enforced);
        assert_eq!(by_id(&rules, "tone:avoid:apology").support, 3);
        assert!(!by_id(&rules, "tone:avoid:apology").enforced);
        assert_eq!(by_id(&rules, "max_words").params["max_words"], 4);
    }

    #[test]
    fn contradictions_are_settled_by_support() {
        let p = pairs(&[
            ("Thanks. Done.", "Done."),
            ("Thanks. Sent.", "Sent."),
            ("Thanks. Paid.", "Paid."),
            ("Done.", "Thanks. Done."),
            ("Sent.", "Thanks. Sent."),
        ]);
        let rules = induce(&p, &Settings::default());
        let avoid = by_id(&rules, "avoid:thanks");
        let include = by_id(&rules, "include:thanks");
        assert!(avoid.active && !include.active);
        assert_eq!(avoid.conflict.as_ref().unwrap().winner.as_deref(), Some("avoid:thanks"));
        assert_eq!(include.conflict.as_ref().unwrap().with, ["avoid:thanks"]);
        assert!(include.conflict.as_ref().unwrap().reason.contains("`avoid:thanks` 3, `include:thanks` 2"));

        // A tie applies neither.
        let rules = induce(&p[1..], &Settings::default());
        assert!(!by_id(&rules, "avoid:thanks").active && !by_id(&rules, "include:thanks").active);
        assert!(by_id(&rules, "avoid:thanks").conflict.as_ref().unwrap().winner.is_none());
    }

    #[test]
    fn length_bounds_contradict_only_when_they_cross() {
        let long = "word ".repeat(30);
        let short = "word ".repeat(5);
        let p = pairs(&[(&long, &short), (&long, &short), (&long, &short), (&short, &long), (&short, &long)]);
        let rules = induce(&p, &Settings::default());
        assert!(by_id(&rules, "max_words").active);
        assert!(!by_id(&rules, "min_words").active);
        assert_eq!(by_id(&rules, "max_words").params["max_words"], 5);
        let mid = "word ".repeat(4);
        let p = pairs(&[(&long, &short), (&long, &short), (&"word ".repeat(2), &mid), ("word", &mid)]);
        let rules = induce(&p, &Settings::default());
        assert!(by_id(&rules, "max_words").active && by_id(&rules, "min_words").active);
        assert_eq!(by_id(&rules, "min_words").params["min_words"], 4);
    }

    #[test]
    fn min_support_and_enforce_are_settings() {
        let p = pairs(&[("Sure! It works.", "It works."), ("Yes. It works.", "It works.")]);
        let strict = Settings { min_support: 3, ..Settings::default() };
        assert!(induce(&p, &strict).is_empty());
        let rules = induce(&p, &Settings { min_support: 1, enforce: BTreeSet::new(), ..Settings::default() });
        assert!(rules.iter().all(|r| !r.enforced));
        assert!(by_id(&rules, "tone:avoid:exclamation").support == 1);
    }

    #[test]
    fn content_corrections_back_no_rule() {
        // Two fixes put a wrong city right (the meaning moved far); three
        // drop an apology (it hardly moved).
        let mut p = pairs(&[
            ("The capital is Lyon, Paris is smaller.", "The capital is Marseille."),
            ("Lyon is the capital, not Paris.", "Marseille is the capital."),
            ("Sorry, the total is 3.", "The total is 3."),
            ("Sorry, it ships Monday.", "It ships Monday."),
            ("Sorry, we open at 9.", "We open at 9."),
        ]);
        let ids = |rules: &[Rule]| rules.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        let without = induce(&p, &Settings::default());
        assert!(ids(&without).contains(&"avoid:lyon".to_string()), "{:?}", ids(&without));
        for (pair, d) in p.iter_mut().zip([0.9, 0.85, 0.1, 0.12, 0.08]) {
            pair.vector_distance = Some(d);
        }
        let with = induce(&p, &Settings::default());
        assert!(
            !ids(&with).iter().any(|id| id.contains("lyon") || id.contains("paris") || id.contains("marseille")),
            "{:?}",
            ids(&with)
        );
        assert_eq!(by_id(&with, "avoid:sorry").pairs, ["p3", "p4", "p5"]);
        let fixes: Vec<&str> = content_fixes(&p, &Settings::default()).iter().map(|p| p.id.as_str()).collect();
        assert_eq!(fixes, ["p1", "p2"]);
        // A higher bar keeps them as evidence.
        let loose = Settings { max_shift: 0.95, ..Settings::default() };
        assert!(ids(&induce(&p, &loose)).contains(&"avoid:lyon".to_string()));
    }
}
