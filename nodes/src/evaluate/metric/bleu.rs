//! Sentence BLEU with sacreBLEU's defaults, so the figures are the ones
//! `sacrebleu.sentence_bleu(hypothesis, [reference])` prints: the `13a`
//! tokenizer (mteval-v13a's, as WMT uses), n-grams up to 4, case kept,
//! `exp` smoothing (each order with no match counts as 1 / 2^k of its
//! n-grams) and the effective order (orders the hypothesis is too short
//! for are left out). The test compares with figures sacreBLEU printed
//! (`scripts/metric-references.py`).

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;

const MAX_ORDER: usize = 4;

/// Python's `str.isspace`, which `str.split()` splits on: Unicode
/// whitespace and the four ASCII separators (0x1c..=0x1f).
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// sacreBLEU's `Tokenizer13a`: the language-independent part, then
/// `TokenizerRegexp`'s four substitutions, then single spaces.
pub fn tokenize_13a(line: &str) -> Vec<String> {
    static RULES: OnceLock<[(Regex, &str); 4]> = OnceLock::new();
    let rules = RULES.get_or_init(|| {
        let re = |p: &str| Regex::new(p).expect("a valid pattern");
        [
            // Symbols: { | } ~ [ \ ] ^ _ ` space ! " # $ % & ( ) * + : ; < = > ? @ /
            (re(r"([\x7B-\x7E\x5B-\x60\x20-\x26\x28-\x2B\x3A-\x40/])"), " $1 "),
            // A period or comma not after a digit...
            (re(r"([^0-9])([.,])"), "$1 $2 "),
            // ...or not before one.
            (re(r"([.,])([^0-9])"), " $1 $2"),
            // A dash after a digit.
            (re(r"([0-9])(-)"), "$1 $2 "),
        ]
    });
    let mut line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if line.contains('&') {
        line = line.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    }
    let mut line = format!(" {line} ");
    for (re, with) in rules {
        line = re.replace_all(&line, *with).into_owned();
    }
    line.split(is_space).filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// Counts of every n-gram, 1 ≤ n ≤ 4.
fn ngrams(tokens: &[String]) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_ORDER {
        for w in tokens.windows(n) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// sacreBLEU's sentence BLEU of `hypothesis` against one `reference`, in
/// 0..=100.
pub fn sentence_bleu(hypothesis: &str, reference: &str) -> f64 {
    // sacreBLEU strips trailing whitespace before tokenizing.
    let hyp = tokenize_13a(hypothesis.trim_end_matches(is_space));
    let refs = tokenize_13a(reference.trim_end_matches(is_space));
    let (hyp_counts, ref_counts) = (ngrams(&hyp), ngrams(&refs));
    let mut correct = [0usize; MAX_ORDER];
    let mut total = [0usize; MAX_ORDER];
    for (gram, count) in &hyp_counts {
        let n = gram.len() - 1;
        total[n] += count;
        correct[n] += (*count).min(ref_counts.get(gram).copied().unwrap_or(0));
    }
    compute(&correct, &total, hyp.len(), refs.len())
}

/// `BLEU.compute_bleu` with `smooth_method="exp"` and `effective_order=True`.
fn compute(correct: &[usize; MAX_ORDER], total: &[usize; MAX_ORDER], sys_len: usize, ref_len: usize) -> f64 {
    let bp = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    if correct.iter().all(|c| *c == 0) {
        return 0.0;
    }
    let mut precisions = [0.0f64; MAX_ORDER];
    let mut smooth = 1.0;
    let mut order = MAX_ORDER;
    for n in 0..MAX_ORDER {
        if total[n] == 0 {
            break;
        }
        order = n + 1;
        precisions[n] = if correct[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total[n] as f64)
        } else {
            100.0 * correct[n] as f64 / total[n] as f64
        };
    }
    // sacreBLEU's `my_log` floors log(0) at -9999999999.
    let log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
    bp * (precisions[..order].iter().map(|p| log(*p)).sum::<f64>() / order as f64).exp()
}

#[cfg(test)]
mod tests {
    use super::super::testing::references;
    use super::*;

    #[test]
    fn tokenizes_as_13a() {
        let r = references();
        let cases = r["tokenize_13a"].as_array().unwrap();
        assert!(cases.len() >= 10);
        for c in cases {
            let want: Vec<&str> = c["tokens"].as_str().unwrap().split(' ').filter(|t| !t.is_empty()).collect();
            assert_eq!(tokenize_13a(c["text"].as_str().unwrap()), want, "{}", c["text"]);
        }
    }

    #[test]
    fn matches_sacrebleu_on_the_reference_corpus() {
        let r = references();
        let cases = r["bleu"].as_array().unwrap();
        assert!(cases.len() >= 20);
        for c in cases {
            let (hyp, reference) = (c["hypothesis"].as_str().unwrap(), c["reference"].as_str().unwrap());
            let want = c["score"].as_f64().unwrap();
            let got = sentence_bleu(hyp, reference);
            assert!((got - want).abs() < 1e-9, "BLEU({hyp:?}, {reference:?}) = {got}, sacreBLEU says {want}");
        }
    }

    #[test]
    fn by_hand() {
        // Identical sentences of four tokens or more: 100.
        assert!((sentence_bleu("the cat sat on the mat", "the cat sat on the mat") - 100.0).abs() < 1e-9);
        // No shared token: 0.
        assert_eq!(sentence_bleu("a b c d", "e f g h"), 0.0);
        assert_eq!(sentence_bleu("", "a reference"), 0.0);
        // Two tokens, both right: the effective order is 2, so 100 again.
        assert!((sentence_bleu("hello world", "hello world") - 100.0).abs() < 1e-9);
    }
}
