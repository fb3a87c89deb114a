#!/usr/bin/env bash
# Runs clippy (with --lint-only) or the whole test suite; README and .ci/run both call this.
# It first installs what a fresh machine with only Rust lacks: Debian's etcdctl (the
# third-party client of the compatibility tests) and etcd (the reference the differential
# test compares against), protox (the etcd-client crate's build script needs a protoc) and
# cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if ! command -v etcdctl >/dev/null 2>&1 || ! command -v etcd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq etcd-client etcd-server >/dev/null
fi
if ! command -v protox >/dev/null 2>&1; then
  cargo install protox --features bin --locked
fi
if ! command -v cargo-nextest >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
export PROTOC="${PROTOC:-$(command -v protox)}"

if [ "${1:-}" = "--lint-only" ]; then
  exec cargo clippy --workspace --all-targets -- -D warnings
fi
# Includes the simulations: 1,000 seeds each of the in-memory quorum cluster and of the range
# side (SIM_SEEDS changes it).
cargo nextest run --workspace --no-fail-fast "$@"
