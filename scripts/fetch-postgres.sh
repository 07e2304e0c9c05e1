#!/usr/bin/env bash
# A Postgres server with pgvector for the `query` tests, from PyPI's
# `pgserver` wheel (it ships the postgres binaries and vector.so), unpacked
# into target/pg (git-ignored). Nothing is installed system-wide.
#   scripts/fetch-postgres.sh      # then: cargo test --test cli query::
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/pg
if [ -x "$dest/pgserver/pginstall/bin/postgres" ]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The tests' venv where there is one (.ci/run makes it): a system Python
# may have no pip.
py=python3
if [ -x target/py/bin/python ]; then py=target/py/bin/python; fi
"$py" -m pip download -q --no-deps --only-binary=:all: \
  --platform manylinux2014_x86_64 --python-version 3.11 \
  pgserver==0.1.4 -d "$tmp"
mkdir -p "$dest"
"$py" - "$tmp"/pgserver-*.whl "$dest" <<'PY'
import os, stat, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.filename.startswith(("pgserver/pginstall/", "pgserver.libs/")):
            path = z.extract(info, dest)
            mode = info.external_attr >> 16
            if mode:
                os.chmod(path, stat.S_IMODE(mode))
PY
"$dest/pgserver/pginstall/bin/postgres" --version
