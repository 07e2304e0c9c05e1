#!/usr/bin/env python3
"""Reference figures for `evaluate`'s `bleu` and `rouge_l` metrics.

Prints, as JSON, what the reference implementations compute on a fixed
corpus: sacreBLEU's `sentence_bleu` (its defaults: 13a tokenizer, exp
smoothing, effective order), its 13a tokenizer, and Google's `rouge-score`
ROUGE-L F-measure (default tokenizer, no stemmer). The Rust tests read the
committed output, so CI needs no Python:

    python3 -m venv /tmp/refs && /tmp/refs/bin/pip install sacrebleu rouge-score
    /tmp/refs/bin/python scripts/metric-references.py \
        > nodes/src/evaluate/testdata/metric-references.json
"""

import json

import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

# (hypothesis, reference): exact, partial, reordered, too short for 4-grams,
# repeated words (clipped counts), case, punctuation and numbers (13a keeps
# 3.14 and 1,000 whole, splits 2-3 after a digit), entities, apostrophes,
# non-ASCII, newlines, trailing whitespace, empty sides.
PAIRS = [
    ("the cat sat on the mat", "the cat sat on the mat"),
    ("the cat sat on the mat", "the cat is on the mat"),
    ("the cat on mat", "the cat sat on the mat"),
    ("mat the on sat cat the", "the cat sat on the mat"),
    ("hello world", "hello world"),
    ("hello", "hello world"),
    ("hello there world", "hello world"),
    ("the the the the the the the", "the cat is on the mat"),
    ("The Cat sat on the Mat.", "the cat sat on the mat."),
    ("Paris is the capital of France.", "The capital of France is Paris."),
    ("It costs $3.14, or 1,000 yen.", "It costs $3.14 or 1,000 yen."),
    ("Pages 2-3 and 10-12 are missing.", "Pages 2 - 3 and 10 - 12 are missing."),
    ("Tom &amp; Jerry &lt;3 &quot;cartoons&quot;", "Tom & Jerry <3 \"cartoons\""),
    ("Don't stop; it's fine!", "Do not stop, it is fine!"),
    ("Le café est très bon.", "Le café est bon."),
    ("日本語 の テキスト です", "日本語 の 文章 です"),
    ("line one\nline two", "line one line two"),
    ("hyphen-\nated word", "hyphenated word"),
    ("trailing spaces   \t", "trailing spaces"),
    ("<skipped> kept words", "kept words"),
    ("", "a reference"),
    ("a hypothesis", ""),
    ("a b c d e f g h", "a b c d x f g h"),
    ("we shipped the fix on monday and the tests pass", "the fix shipped on monday and all tests pass"),
    ("The quick brown fox jumps over the lazy dog", "A quick brown dog jumps over the lazy fox"),
    ("42", "42"),
    ("42", "The answer is 42."),
    ("(a) [b] {c} <d> e/f g|h ~i ^j `k` _l @m #n", "(a) [b] {c} <d> e/f g|h ~i ^j `k` _l @m #n"),
    ("x.y,z 1.5,2 .5 5. a,1", "x . y , z 1.5,2 . 5 5 . a , 1"),
]

TOKENIZE = [
    "Hello, world!",
    "It costs $3.14, or 1,000 yen.",
    "Pages 2-3 and 10-12.",
    "Tom &amp; Jerry &lt;3 &quot;x&quot; &gt;",
    "Don't stop; it's fine!",
    "hyphen-\nated\nlines",
    "(a) [b] {c} <d> e/f g|h ~i ^j `k` _l @m #n %o *p +q =r ?s",
    "x.y,z 1.5,2 .5 5. a,1 end.",
    "  leading and   inner   spaces  ",
    "<skipped>gone",
    "tabs\tand\x1cseparators\x1fhere",
    "e-mail 3-d a-b-c",
]

ROUGE = [
    ("the cat sat on the mat", "the cat sat on the mat"),
    ("the cat sat on the mat", "the cat on mat"),
    ("the cat sat on the mat", "mat the on sat cat the"),
    ("The capital of France is Paris.", "Paris is the capital of France."),
    ("Refunds take five business days.", "A refund takes 5 business days"),
    ("It's Café-Time, 2024!", "its cafe time 2024"),
    ("Hello", "hello world"),
    ("a b c d e f", "f e d c b a"),
    ("a b a b a b", "b a b a"),
    ("", "anything"),
    ("anything", ""),
    ("...", "!!!"),
    ("日本語 の テキスト", "日本語 の テキスト"),
    ("Numbers 3.14 and 1,000", "numbers 3 14 and 1 000"),
    ("we shipped the fix on monday and the tests pass", "the fix shipped on monday and all tests pass"),
    ("The quick brown fox jumps over the lazy dog", "A quick brown dog jumps over the lazy fox"),
    ("UPPER lower MiXeD", "upper LOWER mixed"),
    ("one two three four five six seven", "one three five seven"),
    ("repeat repeat repeat", "repeat"),
    ("snake_case and kebab-case", "snake case and kebab case"),
    ("tab\tseparated\nnew lines", "tab separated new lines"),
    ("x", "y"),
]


def main():
    tok = Tokenizer13a()
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    out = {
        "generator": "scripts/metric-references.py",
        "sacrebleu": sacrebleu.__version__,
        "bleu": [
            {"hypothesis": h, "reference": r, "score": sacrebleu.sentence_bleu(h, [r]).score}
            for h, r in PAIRS
        ],
        "tokenize_13a": [{"text": t, "tokens": tok(t.rstrip())} for t in TOKENIZE],
        "rouge_l": [
            {"target": t, "prediction": p, "fmeasure": scorer.score(t, p)["rougeL"].fmeasure}
            for t, p in ROUGE
        ],
    }
    print(json.dumps(out, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
