#!/usr/bin/env bash
# Compares the storage engines a range replica could keep its data in (redb, which Quorate
# uses, and fjall, an LSM), each in its own process, alternating, twice per shape:
#   scripts/engine-bench.sh [DIR]     (DIR: where the data goes, default a temp dir under .)
# Figures and the choice they led to: docs/benchmarks.md, "Range storage engine".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CARGO_TARGET_DIR="$here/../target/engine-bench"
cargo build --release --quiet --manifest-path "$here/engine-bench/Cargo.toml"
bin="$CARGO_TARGET_DIR/release/engine-bench"
export ENGINE_BENCH_DIR=${1:-.}
for round in 1 2; do
  for engine in redb fjall; do
    echo "# round $round: 256-byte values, 200,000 keys, 1,000,000 puts, 64 MiB cache"
    "$bin" "$engine" 256 200000 1000000 64
    echo "# round $round: 64 KiB values, 2,000 keys, 8,000 puts, 64 MiB cache"
    "$bin" "$engine" 65536 2000 8000 64
  done
done
