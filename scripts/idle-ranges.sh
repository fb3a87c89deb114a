#!/usr/bin/env bash
# What idle consensus-bucket ranges cost: starts the demo cluster (release build, default
# timings) in a scratch directory, makes RANGES ranges of one bucket by splitting it, lets the
# groups go quiet, then reports each member's CPU (user + system, as a share of one core) and
# resident memory over WINDOW seconds. Run it with RANGES=1 for the baseline of an idle member.
#
#   scripts/idle-ranges.sh [RANGES] [WINDOW]      (defaults: 1000 ranges, 60 s)
set -euo pipefail

ranges=${1:-1000}
window=${2:-60}
settle=${SETTLE:-30}
cd "$(dirname "$0")/.."
export PROTOC=${PROTOC:-$HOME/.cargo/bin/protox}
cargo build --release -q -p quorate
bin=$PWD/target/release/quorate
data=$(mktemp -d)
log=${LOG:-$data.log}
"$bin" demo --data-dir "$data/members" --fresh >"$log" 2>&1 &
demo=$!
trap 'kill -INT $demo 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT

q() { "$bin" --endpoints 127.0.0.1:2379 --command-timeout 20 "$@"; }
for _ in $(seq 1 100); do
  q bucket list >/dev/null 2>&1 && break
  sleep 0.2
done
q bucket create idle --type consensus >/dev/null
start=$(date +%s)
for i in $(seq 1 $((ranges - 1))); do
  q range split idle "$(printf 'k%06d' "$i")" >/dev/null || {
    echo "split $i failed; the members' log is $log" >&2
    exit 1
  }
done
made=$(q range list idle | tail -n +2 | wc -l)
echo "ranges: $made (splits took $(($(date +%s) - start)) s); settling ${settle} s"
sleep "$settle"

ticks=$(getconf CLK_TCK)
declare -A before
pids=()
for name in n1 n2 n3; do
  pid=$(pgrep -f "quorate node --name $name " | head -1)
  pids+=("$pid")
  before[$pid]=$(awk '{print $14 + $15}' "/proc/$pid/stat")
done
sleep "$window"
echo "member  cpu(% of a core)  rss(MiB)"
for i in 0 1 2; do
  pid=${pids[$i]}
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  rss=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$pid/status")
  awk -v a="$after" -v b="${before[$pid]}" -v t="$ticks" -v w="$window" -v n="n$((i + 1))" \
    -v r="$rss" 'BEGIN { printf "%-7s %16.2f  %8d\n", n, 100 * (a - b) / t / w, r }'
done
