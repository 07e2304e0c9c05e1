#!/usr/bin/env bash
# `cargo fmt`, and the kinds' folders too: `nodes/src/lib.rs` declares them
# through its `kinds!` macro, which `cargo fmt` does not look into.
# `scripts/fmt.sh --check` only checks (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
check=()
if [ "${1:-}" = "--check" ]; then check=(--check); fi
cargo fmt --all -- "${check[@]}"
kinds=$(sed -n '/^kinds!\[/,/^\];/p' nodes/src/lib.rs | grep -o '^ *[a-z_]*::' | tr -d ' :')
files=()
for k in $kinds; do
  if [ -f "nodes/src/$k/mod.rs" ]; then files+=("nodes/src/$k/mod.rs"); else files+=("nodes/src/$k.rs"); fi
done
rustfmt --edition 2021 --config-path rustfmt.toml "${check[@]}" "${files[@]}"
