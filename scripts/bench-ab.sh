#!/usr/bin/env bash
# A/B bench of two Quorate builds (for example before and after a change) on this machine:
# each round starts a fresh 3-member cluster of one build on loopback, runs the consensus and
# quorum rows (put, quorum-put at one/quorum/all, linearizable get, quorum-get at
# one/quorum/all), stops it, then does the same for the other build — alternating which goes
# first, so neither always runs on a warmer machine. Appends one JSON summary line per run to
# OUT, labelled "old" or "new" with the round number; compare with
# `quorate bench report OUT --baseline old --candidate new` or by hand.
#
# Usage: scripts/bench-ab.sh OLD_BINARY NEW_BINARY OUT
# Settings (environment): ROUNDS (2), CLIENTS (16), CONNS (3), DURATION (5s), WARMUP (1s),
# KEY_SPACE (2000), BASE_PORT (25000), WORKLOADS (the rows, separated by ";", e.g.
# "put;get --consistency l").
set -euo pipefail
OLD=$1 NEW=$2 OUT=$3
ROUNDS=${ROUNDS:-2} CLIENTS=${CLIENTS:-16} CONNS=${CONNS:-3} DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s} KEY_SPACE=${KEY_SPACE:-2000} BASE_PORT=${BASE_PORT:-25000}
: >"$OUT"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_cluster() { # binary workdir
  local bin=$1 work=$2 cluster="" i
  ENDPOINTS=""
  for i in 1 2 3; do
    cluster+="${cluster:+,}q$i=http://127.0.0.1:$((BASE_PORT + 10 * i + 1))"
    ENDPOINTS+="${ENDPOINTS:+,}127.0.0.1:$((BASE_PORT + 10 * i))"
  done
  for i in 1 2 3; do
    local client=$((BASE_PORT + 10 * i)) peer=$((BASE_PORT + 10 * i + 1)) metrics=$((BASE_PORT + 10 * i + 2))
    QUORATE_LOG=warn "$bin" node --name "q$i" --data-dir "$work/q$i" \
      --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --listen-metrics-urls "http://127.0.0.1:$metrics" \
      --initial-cluster "$cluster" --initial-cluster-state new >"$work/q$i.log" 2>&1 &
    PIDS+=($!)
  done
  local e
  for e in ${ENDPOINTS//,/ }; do
    until "$bin" --endpoints="$e" get ready >/dev/null 2>&1; do sleep 0.2; done
  done
}

DEFAULT_WORKLOADS="put;quorum-put --level one;quorum-put --level quorum;quorum-put --level all"
DEFAULT_WORKLOADS+=";get --consistency l;quorum-get --level one;quorum-get --level quorum;quorum-get --level all"
IFS=';' read -ra WORKLOADS <<<"${WORKLOADS:-$DEFAULT_WORKLOADS}"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
  for which in $order; do
    if [ "$which" = old ]; then bin=$OLD; else bin=$NEW; fi
    work=$(mktemp -d)
    PIDS=()
    start_cluster "$bin" "$work"
    for w in "${WORKLOADS[@]}"; do
      echo "round $round $which $w" >&2
      # shellcheck disable=SC2086 # $w is a subcommand with its flags
      "$bin" --endpoints="$ENDPOINTS" bench $w --clients "$CLIENTS" --conns "$CONNS" \
        --duration "$DURATION" --warmup "$WARMUP" --key-space "$KEY_SPACE" \
        --label "$which" --round "$round" --no-progress >>"$OUT"
    done
    cleanup
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
  done
done
