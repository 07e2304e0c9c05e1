//! Text checks: equality, substrings, prefixes and suffixes, a regex, a
//! label from a set, and bounds on the word count and the length. Each is
//! pass/fail (score 1 or 0); those that fail for a reason worth reading
//! (what was missing, what the label was) say it.

use std::borrow::Cow;

use flow_engine::{NodeError, Record, Template};

use super::{arg, regex_error, shorten, template, Score, ScoreError, Verdict};
use crate::evaluate::config::{MetricConfig, MetricType};

pub enum TextCheck {
    Exact { expected: Template, fold: bool, trim: bool },
    Contains { value: Template, fold: bool },
    ContainsAny { values: Vec<Template>, fold: bool },
    ContainsAll { values: Vec<Template>, fold: bool },
    StartsWith { value: Template, fold: bool, trim: bool },
    EndsWith { value: Template, fold: bool, trim: bool },
    Regex(Pattern),
    LabelIn { labels: Vec<String>, fold: bool },
    WordCount { min: Option<u64>, max: Option<u64> },
    Length { min: Option<u64>, max: Option<u64> },
}

pub enum Pattern {
    Fixed(regex::Regex),
    Templated(Template),
}

/// Case folding for the checks that ignore case.
fn folded(s: &str, fold: bool) -> Cow<'_, str> {
    if fold {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

impl TextCheck {
    pub fn new(m: &MetricConfig) -> Result<Self, NodeError> {
        let fold = !m.case_sensitive.unwrap_or(true);
        let trim = m.trim.unwrap_or(true);
        let value = || template(arg(m, &m.value, "value")?);
        let values = || arg(m, &m.values, "values")?.iter().map(|v| template(v)).collect::<Result<Vec<_>, _>>();
        Ok(match m.kind {
            MetricType::ExactMatch => {
                TextCheck::Exact { expected: template(arg(m, &m.expected, "expected")?)?, fold, trim }
            }
            MetricType::Contains => TextCheck::Contains { value: value()?, fold },
            MetricType::Icontains => TextCheck::Contains { value: value()?, fold: true },
            MetricType::ContainsAny => TextCheck::ContainsAny { values: values()?, fold },
            MetricType::ContainsAll => TextCheck::ContainsAll { values: values()?, fold },
            MetricType::StartsWith => TextCheck::StartsWith { value: value()?, fold, trim },
            MetricType::EndsWith => TextCheck::EndsWith { value: value()?, fold, trim },
            MetricType::Regex => {
                let pattern = arg(m, &m.pattern, "pattern")?;
                TextCheck::Regex(if pattern.contains("{{") {
                    Pattern::Templated(template(pattern)?)
                } else {
                    Pattern::Fixed(regex::Regex::new(pattern).map_err(|e| NodeError::new(regex_error(&e)))?)
                })
            }
            MetricType::LabelIn => TextCheck::LabelIn { labels: arg(m, &m.labels, "labels")?.clone(), fold },
            MetricType::WordCount => TextCheck::WordCount { min: m.min, max: m.max },
            MetricType::Length => TextCheck::Length { min: m.min, max: m.max },
            other => unreachable!("`{}` is no text check", other.name()),
        })
    }

    pub fn score(&self, text: &str, record: &Record) -> Verdict {
        Ok(match self {
            TextCheck::Exact { expected, fold, trim } => {
                let want = expected.render(record)?;
                let (a, b) = if *trim { (text.trim(), want.trim()) } else { (text, &*want) };
                Score::flag(folded(a, *fold) == folded(b, *fold))
            }
            TextCheck::Contains { value, fold } => {
                let needle = value.render(record)?;
                Score::flag(folded(text, *fold).contains(&*folded(&needle, *fold)))
            }
            TextCheck::ContainsAny { values, fold } | TextCheck::ContainsAll { values, fold } => {
                let hay = folded(text, *fold);
                let mut found = Vec::new();
                let mut missing = Vec::new();
                for v in values {
                    let needle = v.render(record)?;
                    if hay.contains(&*folded(&needle, *fold)) {
                        found.push(needle);
                    } else {
                        missing.push(needle);
                    }
                }
                let list = |v: &[Cow<'_, str>]| v.iter().map(|s| format!("`{}`", shorten(s, 40))).collect::<Vec<_>>();
                if matches!(self, TextCheck::ContainsAll { .. }) {
                    Score::failing_because(missing.is_empty(), || format!("missing: {}", list(&missing).join(", ")))
                } else {
                    Score::failing_because(!found.is_empty(), || format!("none of: {}", list(&missing).join(", ")))
                }
            }
            TextCheck::StartsWith { value, fold, trim } | TextCheck::EndsWith { value, fold, trim } => {
                let affix = value.render(record)?;
                let hay = if *trim { text.trim() } else { text };
                let (hay, affix) = (folded(hay, *fold), folded(&affix, *fold));
                Score::flag(if matches!(self, TextCheck::StartsWith { .. }) {
                    hay.starts_with(&*affix)
                } else {
                    hay.ends_with(&*affix)
                })
            }
            TextCheck::Regex(Pattern::Fixed(re)) => Score::flag(re.is_match(text)),
            TextCheck::Regex(Pattern::Templated(t)) => {
                let re = regex::Regex::new(&t.render_with(record, regex::escape)?).map_err(ScoreError::Regex)?;
                Score::flag(re.is_match(text))
            }
            TextCheck::LabelIn { labels, fold } => {
                let label = folded(text.trim(), *fold);
                let pass = labels.iter().any(|l| folded(l.trim(), *fold) == label);
                Score::failing_because(pass, || {
                    format!("`{}` is not one of: {}", shorten(text.trim(), 60), shorten(&labels.join(", "), 200))
                })
            }
            TextCheck::WordCount { min, max } => bounded(text.split_whitespace().count() as u64, *min, *max, "words"),
            TextCheck::Length { min, max } => bounded(text.chars().count() as u64, *min, *max, "characters"),
        })
    }
}

/// A count within `min..=max`, with the count as the value.
fn bounded(n: u64, min: Option<u64>, max: Option<u64>, unit: &str) -> Score {
    let below = min.filter(|m| n < *m);
    let above = max.filter(|m| n > *m);
    Score::failing_because(below.is_none() && above.is_none(), || match (below, above) {
        (Some(m), _) => format!("{n} {unit}, fewer than {m}"),
        (_, Some(m)) => format!("{n} {unit}, more than {m}"),
        _ => unreachable!("it failed"),
    })
    .with_value(n as f64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::*;

    #[test]
    fn equality_substrings_and_affixes() {
        let r = rec(json!({"output": " Paris is the capital ", "expected": "paris is the capital", "city": "Par.s"}));
        let v = |yaml: &str| {
            let s = score(yaml, &r).unwrap();
            (s.score, s.pass)
        };
        assert_eq!(v("{type: exact_match, expected: '{{expected}}'}"), (0.0, false));
        assert_eq!(v("{type: exact_match, expected: '{{expected}}', case_sensitive: false}"), (1.0, true));
        assert_eq!(v("{type: exact_match, expected: 'Paris is the capital', trim: false}"), (0.0, false));
        assert_eq!(v("{type: contains, value: capital}"), (1.0, true));
        assert_eq!(v("{type: contains, value: PARIS}"), (0.0, false));
        assert_eq!(v("{type: icontains, value: PARIS}"), (1.0, true));
        assert_eq!(v("{type: contains, value: PARIS, case_sensitive: false}"), (1.0, true));
        assert_eq!(v("{type: starts_with, value: Paris}"), (1.0, true));
        assert_eq!(v("{type: starts_with, value: Paris, trim: false}"), (0.0, false));
        assert_eq!(v("{type: starts_with, value: paris}"), (0.0, false));
        assert_eq!(v("{type: starts_with, value: paris, case_sensitive: false}"), (1.0, true));
        assert_eq!(v("{type: ends_with, value: capital}"), (1.0, true));
        assert_eq!(v("{type: ends_with, value: Capital}"), (0.0, false));
        assert_eq!(v("{type: ends_with, value: 'capital '}"), (0.0, false), "trimmed output, untrimmed value");
        assert_eq!(v("{type: regex, pattern: '^\\s*P\\w+'}"), (1.0, true));
        // Inserted values are escaped: `Par.s` must match literally.
        assert_eq!(v("{type: regex, pattern: '{{city}}'}"), (0.0, false));
    }

    #[test]
    fn any_and_all_say_what_is_missing() {
        let r = rec(json!({"output": "Refunds take 5 days; contact support.", "word": "refund"}));
        let s = score("{type: contains_all, values: [Refunds, support, manager]}", &r).unwrap();
        assert_eq!((s.pass, s.reason.as_deref()), (false, Some("missing: `manager`")));
        assert!(score("{type: contains_all, values: [Refunds, support]}", &r).unwrap().pass);
        assert!(!score("{type: contains_all, values: ['{{word}}', support]}", &r).unwrap().pass);
        assert!(score("{type: contains_all, values: ['{{word}}', support], case_sensitive: false}", &r).unwrap().pass);
        assert!(score("{type: contains_any, values: [manager, days]}", &r).unwrap().pass);
        let s = score("{type: contains_any, values: [manager, weeks]}", &r).unwrap();
        assert_eq!((s.score, s.reason.as_deref()), (0.0, Some("none of: `manager`, `weeks`")));
    }

    #[test]
    fn labels_are_trimmed_and_optionally_folded() {
        let labels = "{type: label_in, labels: [positive, negative, neutral]}";
        assert_eq!(verdict(labels, " positive\n"), (1.0, true));
        assert_eq!(verdict(labels, "Positive"), (0.0, false));
        assert_eq!(verdict(labels, "positively"), (0.0, false));
        assert_eq!(
            verdict("{type: label_in, labels: [positive, negative], case_sensitive: false}", "Positive"),
            (1.0, true)
        );
        let s = score(labels, &rec(json!({"output": "maybe"}))).unwrap();
        assert_eq!(s.reason.as_deref(), Some("`maybe` is not one of: positive, negative, neutral"));
    }

    #[test]
    fn counts_within_bounds() {
        // Words are runs of non-whitespace: 5 here, whatever the spacing.
        let five = "one  two\tthree\nfour five";
        assert_eq!(verdict("{type: word_count, max: 5}", five), (1.0, true));
        assert_eq!(verdict("{type: word_count, max: 4}", five), (0.0, false));
        assert_eq!(verdict("{type: word_count, min: 6}", five), (0.0, false));
        assert_eq!(verdict("{type: word_count, min: 5, max: 5}", five), (1.0, true));
        let s = score("{type: word_count, min: 6}", &rec(json!({"output": five}))).unwrap();
        assert_eq!((s.value, s.reason.as_deref()), (Some(5.0), Some("5 words, fewer than 6")));
        assert_eq!(verdict("{type: word_count, min: 1}", "   "), (0.0, false));
        // Characters, not bytes: `é` and `日` are one each.
        assert_eq!(verdict("{type: length, max: 3}", "é日x"), (1.0, true));
        assert_eq!(verdict("{type: length, max: 2}", "é日x"), (0.0, false));
        let s = score("{type: length, max: 2}", &rec(json!({"output": "é日x"}))).unwrap();
        assert_eq!((s.value, s.reason.as_deref()), (Some(3.0), Some("3 characters, more than 2")));
    }
}
