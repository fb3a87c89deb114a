#!/usr/bin/env bash
# Side-by-side bench of Quorate and etcd 3.4 on this machine: starts a 3-member etcd and a
# 3-member Quorate on loopback (both fsync their logs, as by default), runs every workload of
# `quorate bench` against each in alternating order (etcd, Quorate, then Quorate, etcd in
# the next round, so neither always runs on a warmer machine), then prints a table of medians
# with Quorate/etcd ratios and writes an SVG plot. Stops and removes everything it started.
#
# Settings (environment): ROUNDS (3), DURATION (10s), WARMUP (2s), CLIENTS ("1 16 64 256"),
# WORKLOADS ("put get-l get-s mixed txn lease watch"), WATCHERS (16), OUT (bench-results/<time>),
# QUORATE_BIN (default: build target/release/quorate), BASE_PORT (24000).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CLIENTS=${CLIENTS:-"1 16 64 256"}
WORKLOADS=${WORKLOADS:-"put get-l get-s mixed txn lease watch"}
WATCHERS=${WATCHERS:-16}
OUT=${OUT:-bench-results/$(date +%Y%m%d-%H%M%S)}
BASE_PORT=${BASE_PORT:-24000}

if ! command -v etcd >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
QUORATE=${QUORATE_BIN:-}
if [ -z "$QUORATE" ]; then
  cargo build --release -p quorate
  QUORATE=target/release/quorate
fi
QUORATE=$(realpath "$QUORATE")

mkdir -p "$OUT"
OUT=$(realpath "$OUT")
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Ports: etcd member i uses BASE_PORT+10i (client) and +1 (peer); Quorate member i uses
# BASE_PORT+100+10i (client), +1 (peer), +2 (metrics).
ETCD_CLUSTER="" QUORATE_CLUSTER="" ETCD_ENDPOINTS="" QUORATE_ENDPOINTS=""
for i in 1 2 3; do
  ETCD_CLUSTER+="${ETCD_CLUSTER:+,}e$i=http://127.0.0.1:$((BASE_PORT + 10 * i + 1))"
  ETCD_ENDPOINTS+="${ETCD_ENDPOINTS:+,}127.0.0.1:$((BASE_PORT + 10 * i))"
  QUORATE_CLUSTER+="${QUORATE_CLUSTER:+,}q$i=http://127.0.0.1:$((BASE_PORT + 100 + 10 * i + 1))"
  QUORATE_ENDPOINTS+="${QUORATE_ENDPOINTS:+,}127.0.0.1:$((BASE_PORT + 100 + 10 * i))"
done

for i in 1 2 3; do
  client=$((BASE_PORT + 10 * i)) peer=$((BASE_PORT + 10 * i + 1))
  etcd --name "e$i" --data-dir "$WORK/e$i" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$ETCD_CLUSTER" --initial-cluster-state new --initial-cluster-token bench \
    --logger zap --log-level error >"$OUT/etcd-e$i.log" 2>&1 &
  PIDS+=($!)
  client=$((BASE_PORT + 100 + 10 * i)) peer=$((BASE_PORT + 100 + 10 * i + 1)) metrics=$((BASE_PORT + 100 + 10 * i + 2))
  QUORATE_LOG=warn "$QUORATE" node --name "q$i" --data-dir "$WORK/q$i" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --listen-metrics-urls "http://127.0.0.1:$metrics" \
    --initial-cluster "$QUORATE_CLUSTER" --initial-cluster-state new >"$OUT/quorate-q$i.log" 2>&1 &
  PIDS+=($!)
done

# Both clusters answer a linearizable read on every member before the bench starts.
ready() {
  local endpoints=$1 deadline=$((SECONDS + 60))
  for endpoint in ${endpoints//,/ }; do
    until "$QUORATE" --endpoints="$endpoint" get bench-ready >/dev/null 2>&1; do
      if [ $SECONDS -gt $deadline ]; then
        echo "cluster at $endpoints did not become ready; logs in $OUT" >&2
        exit 1
      fi
      sleep 0.2
    done
  done
}
ready "$ETCD_ENDPOINTS"
ready "$QUORATE_ENDPOINTS"

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (modified)')"
  echo "cpus: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
  echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "kernel: $(uname -sr)"
  echo "etcd: $(etcd --version | head -1)"
  echo "settings: ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CLIENTS=\"$CLIENTS\" WATCHERS=$WATCHERS"
} >"$OUT/machine.txt"
"$QUORATE" bench floor --dir "$WORK" >"$OUT/floor.json"

RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
run_one() {
  local system=$1 endpoints=$2 workload=$3 clients=$4 round=$5
  local conns=$(((clients + 7) / 8))
  [ "$conns" -gt 32 ] && conns=32
  local args=(--clients "$clients" --conns "$conns" --duration "$DURATION" --warmup "$WARMUP"
    --label "$system" --round "$round" --no-progress)
  local command
  case $workload in
    get-l) command=(get --consistency l) ;;
    get-s) command=(get --consistency s) ;;
    watch) command=(watch --watchers "$WATCHERS") ;;
    *) command=("$workload") ;;
  esac
  echo "round $round: $system $workload, $clients clients" >&2
  "$QUORATE" --endpoints="$endpoints" bench "${command[@]}" "${args[@]}" >>"$RESULTS"
}
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order="etcd quorate"; else order="quorate etcd"; fi
  for workload in $WORKLOADS; do
    for clients in $CLIENTS; do
      for system in $order; do
        if [ "$system" = etcd ]; then endpoints=$ETCD_ENDPOINTS; else endpoints=$QUORATE_ENDPOINTS; fi
        run_one "$system" "$endpoints" "$workload" "$clients" "$round"
      done
    done
  done
done

"$QUORATE" bench report "$RESULTS" --baseline etcd --candidate quorate --svg "$OUT/compare.svg" | tee "$OUT/table.md"
echo "floor: $(cat "$OUT/floor.json")"
echo "results in $OUT (results.jsonl, table.md, compare.svg, machine.txt, floor.json)"
