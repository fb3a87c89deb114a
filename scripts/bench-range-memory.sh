#!/usr/bin/env bash
# Consensus-bucket data on disk, memory bounded by the range cache (issue #34): three members
# (release build) with `--range-cache-mib CACHE`, loaded by `quorate bench range-put` with
# 64 KiB values until about LOAD_MIB MiB are live; each member's resident memory before, after
# the load and after a restart; the time from the restart (SIGKILL of every member, start
# again) until a first read and until a scan of every key are served, at two sizes (half the load, then all of it); every key
# read back after each restart and the replicas checked (`range check`).
#
#   scripts/bench-range-memory.sh      (CACHE=64 LOAD_MIB=512 BIN=target/release/quorate;
#                                       CACHE= for a build from before the flag)
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${CACHE-64}
load_mib=${LOAD_MIB:-512}
export PROTOC=${PROTOC:-$HOME/.cargo/bin/protox}
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p quorate
  bin=$PWD/target/release/quorate
else
  bin=$BIN
fi
data=$(mktemp -d)
ports=(23101 23102 23103)
peers=(23201 23202 23203)
cluster=""
for i in 0 1 2; do cluster="$cluster${cluster:+,}m$i=http://127.0.0.1:${peers[$i]}"; done
endpoints=127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}
pids=(0 0 0)
start() {
  local i=$1 state=$2 c=http://127.0.0.1:${ports[$1]} p=http://127.0.0.1:${peers[$1]}
  QUORATE_LOG=warn "$bin" node --name "m$i" --data-dir "$data/m$i" \
    --listen-client-urls "$c" --advertise-client-urls "$c" \
    --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
    --listen-metrics-urls "http://127.0.0.1:$((23301 + i))" \
    --initial-cluster "$cluster" --initial-cluster-state "$state" \
    ${cache:+--range-cache-mib "$cache"} >>"$data/m$i.log" 2>&1 &
  pids[$i]=$!
}
stop_all() { for i in 0 1 2; do kill -9 "${pids[$i]}" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap 'stop_all; rm -rf "$data"' EXIT
q() { "$bin" --endpoints "$endpoints" --command-timeout 60 "$@"; }
rss() { for i in 0 1 2; do printf '%s ' "$(($(ps -o rss= -p "${pids[$i]}") / 1024))"; done; }
now_ms() { date +%s%3N; }
keys() { q kv scan bench-ranges --keys-only -w json | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("kvs", [])))'; }
restart() {
  stop_all
  local t0 t1
  t0=$(now_ms)
  for i in 0 1 2; do start "$i" existing; done
  until q kv scan bench-ranges --limit 1 --keys-only >/dev/null 2>&1; do sleep 0.05; done
  t1=$(now_ms)
  until out=$(keys 2>/dev/null); do sleep 0.1; done
  echo "restart: first read served after $((t1 - t0)) ms, a scan of every key after $(($(now_ms) - t0)) ms; keys $out (before: $1); rss MiB $(rss)"
  [ "$out" = "$1" ] || { echo "keys lost or gained across the restart" >&2; exit 1; }
  until q range check bench-ranges >/dev/null 2>&1; do sleep 0.5; done
  echo "range check: every range's replicas agree"
}
load() {
  # Distinct keys of 64 KiB: about $1 MiB live once each is written.
  local space=$(($1 * 16))
  q bench range-put --ranges 8 --clients 16 --conns 3 --value-size 65536 --key-space "$space" \
    --duration "${2:-40s}" --warmup 0s | tail -3
}

for i in 0 1 2; do start "$i" new; done
until q bucket list >/dev/null 2>&1; do sleep 0.2; done
echo "commit $(git rev-parse --short HEAD); cache $cache MiB; rss MiB before: $(rss)"
load $((load_mib / 2)) 30s
n=$(keys)
echo "after loading ~$((load_mib / 2)) MiB: $n keys; rss MiB $(rss); data $(du -sm "$data" | cut -f1) MiB on disk"
du -sm "$data"/m0/* "$data"/m0/*/* 2>/dev/null | sort -n | tail -5
restart "$n"
load "$load_mib" 60s
n=$(keys)
echo "after loading ~$load_mib MiB: $n keys; rss MiB $(rss); data $(du -sm "$data" | cut -f1) MiB on disk"
restart "$n"
