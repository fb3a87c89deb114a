#!/usr/bin/env bash
# Runs the whole test suite; README and .ci/run both call this.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo nextest run --workspace --no-fail-fast "$@"
