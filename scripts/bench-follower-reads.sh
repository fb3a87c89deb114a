#!/usr/bin/env bash
# Linearizable against follower reads of a consensus bucket, on the demo cluster (release
# build, default timings): for each count in RANGES a fresh cluster, the bench bucket split
# into that many ranges and filled, then `quorate bench range-get --consistency linearizable`
# and `--consistency follower` alternating for ROUNDS rounds (JSON summary lines to OUT).
#
#   scripts/bench-follower-reads.sh   (RANGES="1 8" CLIENTS=64 DURATION=10s ROUNDS=2 OUT=dir)
set -euo pipefail

ranges_list=${RANGES:-1 8}
clients=${CLIENTS:-64}
duration=${DURATION:-10s}
rounds=${ROUNDS:-2}
cd "$(dirname "$0")/.."
export PROTOC=${PROTOC:-$HOME/.cargo/bin/protox}
cargo build --release -q -p quorate
bin=$PWD/target/release/quorate
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
data=$(mktemp -d)
endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379
demo=
stop_demo() {
  [ -n "$demo" ] && kill -INT "$demo" 2>/dev/null || true
  wait 2>/dev/null || true
  demo=
}
trap 'stop_demo; rm -rf "$data"' EXIT

for n in $ranges_list; do
  stop_demo
  rm -rf "$data/members"
  "$bin" demo --data-dir "$data/members" --fresh >"$data/demo.log" 2>&1 &
  demo=$!
  for _ in $(seq 1 150); do
    "$bin" --endpoints "$endpoints" bucket list >/dev/null 2>&1 && break
    sleep 0.2
  done
  for round in $(seq 1 "$rounds"); do
    for consistency in linearizable follower; do
      "$bin" --endpoints "$endpoints" bench range-get --ranges "$n" --consistency "$consistency" \
        --clients "$clients" --conns 3 --duration "$duration" --warmup 2s --no-progress \
        --label "ranges-$n" --round "$round" | tee -a "$out/range-get.json"
    done
  done
done
echo "results: $out/range-get.json"
