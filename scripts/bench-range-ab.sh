#!/usr/bin/env bash
# Same-run A/B of consensus-bucket puts between two builds: for each range count, a fresh
# `quorate demo` cluster per build in turn, `quorate bench range-put --ranges N --clients 64
# --conns 3 --duration 10s` (256-byte values); ROUNDS rounds. One JSON summary line per run.
#
#   scripts/bench-range-ab.sh BUILD_A BUILD_B      (RANGES="1 8 64" ROUNDS=2)
set -euo pipefail
endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379
one() {
  local bin=$1 n=$2 data demo
  data=$(mktemp -d)
  "$bin" demo --data-dir "$data/m" --fresh >"$data/demo.log" 2>&1 &
  demo=$!
  for _ in $(seq 1 150); do "$bin" --endpoints "$endpoints" bucket list >/dev/null 2>&1 && break; sleep 0.2; done
  "$bin" --endpoints "$endpoints" --command-timeout 30 bench range-put --ranges "$n" --clients 64 \
    --conns 3 --duration 10s --label "$bin" -w json 2>/dev/null | tail -1
  kill -INT "$demo"; wait "$demo" 2>/dev/null || true
  rm -rf "$data"
}
for round in $(seq 1 "${ROUNDS:-2}"); do
  for n in ${RANGES:-1 8 64}; do
    one "$1" "$n"
    one "$2" "$n"
  done
done
