#!/usr/bin/env bash
# Runs clippy (with --lint-only) or the whole test suite; README and .ci/run both call this.
set -euo pipefail
cd "$(dirname "$0")/.."
export PROTOC="${PROTOC:-$(command -v protox || echo "$HOME/.cargo/bin/protox")}"
if [ "${1:-}" = "--lint-only" ]; then
  exec cargo clippy --workspace --all-targets -- -D warnings
fi
cargo nextest run --workspace --no-fail-fast "$@"
