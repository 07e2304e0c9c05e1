#!/usr/bin/env bash
# An S3-compatible server for the `--store s3://...` tests: moto in server
# mode (PyPI's moto[server]; it honours If-None-Match on PUT), in a venv
# under target/moto (git-ignored). Nothing is installed system-wide.
#   scripts/fetch-moto.sh      # then: cargo test --test cli store::
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/moto
if [ -x "$dest/bin/moto_server" ] && "$dest/bin/python" -c 'import boto3' >/dev/null 2>&1; then
  exit 0
fi
python3 -m venv "$dest"
"$dest/bin/pip" install -q 'moto[server]==5.1.0'
