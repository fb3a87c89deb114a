#!/usr/bin/env bash
# Consensus-bucket ranges under load, on the demo cluster (release build, default timings):
# for each count in RANGES, a fresh cluster, one bucket split by hand into that many ranges,
# and `quorate bench range-put` against all three members (JSON summary lines to OUT). Then,
# on the last cluster: the time of one split of a loaded range; after a fourth member joins,
# the time until replicas are balanced (every member within one of the others, no learner in
# flight); and the time to move a range of BIG_MIB MiB onto it (a member holding it drained:
# learner, snapshot, promotion).
#
#   scripts/bench-ranges.sh        (RANGES="1 8 64" CLIENTS=64 DURATION=10s BIG_MIB=64 OUT=dir)
set -euo pipefail

ranges_list=${RANGES:-1 8 64}
clients=${CLIENTS:-64}
duration=${DURATION:-10s}
big_mib=${BIG_MIB:-64}
cd "$(dirname "$0")/.."
export PROTOC=${PROTOC:-$HOME/.cargo/bin/protox}
cargo build --release -q -p quorate
bin=$PWD/target/release/quorate
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
data=$(mktemp -d)
endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379
demo=
n4=
stop_all() {
  [ -n "$n4" ] && kill -INT "$n4" 2>/dev/null || true
  [ -n "$demo" ] && kill -INT "$demo" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap 'stop_all; rm -rf "$data"' EXIT

q() { "$bin" --endpoints "$endpoints" --command-timeout 30 "$@"; }
now_ms() { date +%s%3N; }
start_demo() {
  rm -rf "$data/members"
  "$bin" demo --data-dir "$data/members" --fresh >"$data/demo.log" 2>&1 &
  demo=$!
  for _ in $(seq 1 150); do
    q bucket list >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "the demo cluster did not start; its log is $data/demo.log" >&2
  exit 1
}

for n in $ranges_list; do
  stop_all
  start_demo
  "$bin" --endpoints "$endpoints" bench range-put --ranges "$n" --clients "$clients" \
    --conns 3 --duration "$duration" --warmup 2s --no-progress --label "ranges-$n" \
    | tee -a "$out/range-put.json"
done

# One split of a loaded range: the first range of the bench bucket, in its middle.
at=$(printf 'bench/%08d' $((10000 / n / 2)))
t0=$(now_ms)
q range split bench-ranges "$at" >/dev/null
echo "split of a loaded range: $(($(now_ms) - t0)) ms"

# A range of BIG_MIB MiB (32 KiB values), then a fourth member joins.
q bucket create big --type consensus --range-max-bytes $((4 * big_mib << 20)) >/dev/null
python3 - "$bin" "$endpoints" "$big_mib" <<'EOF'
import subprocess, sys, os
bin, endpoints, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
value = os.urandom(16 * 1024).hex()  # 32 KiB of text
procs = []
for i in range(mib * 32):
    procs.append(subprocess.Popen([bin, "--endpoints", endpoints, "kv", "put", "big",
                                   "big-%06d" % i, value], stdout=subprocess.DEVNULL))
    if len(procs) >= 16:
        for p in procs:
            assert p.wait() == 0
        procs = []
for p in procs:
    assert p.wait() == 0
EOF
q range list big
# Whether every member holds as many replicas as the others, give or take one, with no
# learner in flight (over both buckets).
balanced() {
  { q range list big -w json; echo; q range list bench-ranges -w json; } 2>/dev/null | python3 -c '
import json, sys
lists = [json.loads(l) for l in sys.stdin.read().split("\n") if l.strip()]
counts, learners = {}, False
for r in [r for l in lists for r in l]:
    learners |= bool(r["learners"])
    for m in r["replicas"]:
        counts[m] = counts.get(m, 0) + 1
sys.exit(0 if len(counts) == 4 and max(counts.values()) - min(counts.values()) <= 1 and not learners else 1)'
}
q member add http://127.0.0.1:42380 >/dev/null
t0=$(now_ms)
"$bin" node --name n4 --data-dir "$data/members/n4" \
  --listen-client-urls http://127.0.0.1:42379 --advertise-client-urls http://127.0.0.1:42379 \
  --listen-peer-urls http://127.0.0.1:42380 --initial-advertise-peer-urls http://127.0.0.1:42380 \
  --listen-metrics-urls http://127.0.0.1:42381 \
  --initial-cluster n1=http://127.0.0.1:2380,n2=http://127.0.0.1:22380,n3=http://127.0.0.1:32380,n4=http://127.0.0.1:42380 \
  --initial-cluster-state existing >"$data/n4.log" 2>&1 &
n4=$!
n4_id=
for _ in $(seq 1 1200); do
  [ -z "$n4_id" ] && n4_id=$(q member list -w json | python3 -c '
import json, sys
print(next((m["id"] for m in json.load(sys.stdin)["members"] if m["name"] == "n4"), ""))')
  if balanced; then
    echo "balanced after the join: $(($(now_ms) - t0)) ms"
    break
  fi
  sleep 0.25
done
balanced || { echo "not balanced within 5 minutes" >&2; exit 1; }

# The move of the big range: drain one of its replicas' members (not n4); the only member
# that can take it is n4, which must be sent the whole range by snapshot.
from=$(q range list big -w json | N4="$n4_id" python3 -c '
import json, os, sys
print(next(m for m in json.load(sys.stdin)[0]["replicas"] if m != os.environ["N4"]))')
t0=$(now_ms)
q member drain "$from" >/dev/null
for _ in $(seq 1 1200); do
  if q range list big -w json | N4="$n4_id" python3 -c '
import json, os, sys
r = json.load(sys.stdin)[0]
sys.exit(0 if os.environ["N4"] in r["replicas"] and not r["learners"] else 1)'; then
    echo "a ${big_mib} MiB range moved (drain of $from, learner on n4, snapshot, promotion): $(($(now_ms) - t0)) ms"
    exit 0
  fi
  sleep 0.25
done
echo "the big range did not move within 5 minutes" >&2
exit 1
