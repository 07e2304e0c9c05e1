//! How close the text is to a reference, by characters (`similarity`,
//! `levenshtein`) or by words (`rouge_l`, as Google's `rouge-score` computes
//! it; BLEU is in [`super::bleu`]).

use flow_engine::{NodeError, Record, Template};

use super::{arg, template, Score, Verdict};
use crate::evaluate::config::{MetricConfig, MetricType};

pub enum OverlapCheck {
    /// Normalized Levenshtein similarity, passing at the threshold.
    Similarity { expected: Template, threshold: f64 },
    /// Edit distance in characters, passing at `max` edits or fewer.
    Levenshtein { expected: Template, max: u64, fold: bool },
    /// ROUGE-L F-measure, passing at the threshold.
    RougeL { expected: Template, threshold: f64 },
}

impl OverlapCheck {
    pub fn new(m: &MetricConfig) -> Result<Self, NodeError> {
        let expected = template(arg(m, &m.expected, "expected")?)?;
        let threshold = m.threshold();
        Ok(match m.kind {
            MetricType::Similarity => OverlapCheck::Similarity { expected, threshold },
            MetricType::Levenshtein => OverlapCheck::Levenshtein {
                expected,
                max: *arg(m, &m.max_distance, "max_distance")?,
                fold: !m.case_sensitive.unwrap_or(true),
            },
            MetricType::RougeL => OverlapCheck::RougeL { expected, threshold },
            other => unreachable!("`{}` is no overlap check", other.name()),
        })
    }

    pub fn score(&self, text: &str, record: &Record) -> Verdict {
        Ok(match self {
            OverlapCheck::Similarity { expected, threshold } => {
                let s = strsim::normalized_levenshtein(text, &expected.render(record)?);
                Score::of(s, s >= *threshold)
            }
            OverlapCheck::Levenshtein { expected, max, fold } => {
                let want = expected.render(record)?;
                let d = if *fold {
                    strsim::levenshtein(&text.to_lowercase(), &want.to_lowercase())
                } else {
                    strsim::levenshtein(text, &want)
                } as u64;
                Score::failing_because(d <= *max, || format!("{d} edits, more than {max}")).with_value(d as f64)
            }
            OverlapCheck::RougeL { expected, threshold } => {
                let f = rouge_l(&expected.render(record)?, text);
                Score::of(f, f >= *threshold)
            }
        })
    }
}

/// `rouge-score`'s default tokenizer (no stemmer): lower-case, then the
/// runs of ASCII letters and digits; everything else separates.
pub fn rouge_tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_ascii_lowercase() && !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// ROUGE-L F-measure of `prediction` against `target`, as
/// `rouge_scorer.RougeScorer(["rougeL"]).score(target, prediction)`:
/// the longest common subsequence of tokens over each side's length, and
/// their harmonic mean; 0 when either side has no token.
pub fn rouge_l(target: &str, prediction: &str) -> f64 {
    let (t, p) = (rouge_tokens(target), rouge_tokens(prediction));
    if t.is_empty() || p.is_empty() {
        return 0.0;
    }
    let lcs = lcs_len(&t, &p);
    let (precision, recall) = (lcs as f64 / p.len() as f64, lcs as f64 / t.len() as f64);
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

/// Length of the longest common subsequence, in one row of memory.
fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if x == y { diagonal + 1 } else { up.max(row[j]) };
            diagonal = up;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::*;
    use super::*;

    #[test]
    fn edit_distance_by_hand() {
        // kitten → sitting: k→s, e→i, +g.
        let r = rec(json!({"output": "kitten"}));
        let s = score("{type: levenshtein, expected: sitting, max_distance: 3}", &r).unwrap();
        assert_eq!((s.pass, s.value), (true, Some(3.0)));
        let s = score("{type: levenshtein, expected: sitting, max_distance: 2}", &r).unwrap();
        assert_eq!((s.pass, s.reason.as_deref()), (false, Some("3 edits, more than 2")));
        assert_eq!(verdict("{type: levenshtein, expected: PARIS, max_distance: 0}", "paris"), (0.0, false));
        let folded = "{type: levenshtein, expected: PARIS, max_distance: 0, case_sensitive: false}";
        assert_eq!(verdict(folded, "paris"), (1.0, true));
        // Characters, not bytes: one substitution.
        assert_eq!(verdict("{type: levenshtein, expected: café, max_distance: 1}", "cafe"), (1.0, true));
        let (s, pass) = verdict("{type: similarity, expected: 'Pariss', threshold: 0.5}", " Paris ");
        assert!((s - strsim::normalized_levenshtein(" Paris ", "Pariss")).abs() < 1e-12 && pass);
    }

    #[test]
    fn matches_rouge_score_on_the_reference_corpus() {
        let r = references();
        let cases = r["rouge_l"].as_array().unwrap();
        assert!(cases.len() >= 20);
        for c in cases {
            let (target, prediction) = (c["target"].as_str().unwrap(), c["prediction"].as_str().unwrap());
            let want = c["fmeasure"].as_f64().unwrap();
            let got = rouge_l(target, prediction);
            assert!((got - want).abs() < 1e-12, "ROUGE-L({target:?}, {prediction:?}) = {got}, rouge-score says {want}");
        }
    }

    #[test]
    fn rouge_l_by_hand() {
        // target: the cat sat on the mat (6); prediction: the cat on mat (4);
        // LCS "the cat on mat" = 4: P = 1, R = 4/6, F = 2·(2/3)/(5/3) = 0.8.
        assert!((rouge_l("the cat sat on the mat", "the cat on mat") - 0.8).abs() < 1e-12);
        // Punctuation separates, case folds, non-ASCII letters drop out.
        assert_eq!(rouge_tokens("It's Café-Time, 2024!"), ["it", "s", "caf", "time", "2024"]);
        assert_eq!(rouge_l("", "anything"), 0.0);
        assert_eq!(rouge_l("...", "anything"), 0.0);
        assert_eq!(rouge_l("a b c", "d e"), 0.0);
        assert_eq!(rouge_l("A B C", "a b c"), 1.0);
        let (f, pass) = verdict("{type: rouge_l, expected: 'the cat sat on the mat'}", "the cat on mat");
        assert!((f - 0.8).abs() < 1e-12 && pass);
        assert!(!verdict("{type: rouge_l, expected: 'the cat sat on the mat', threshold: 0.9}", "the cat on mat").1);
    }
}
