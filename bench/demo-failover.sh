#!/usr/bin/env bash
# Runs `cpe demo --quick` RUNS times (default 5) and prints, from its summaries, how long the
# load balancer took to take a backend out of rotation after a graceful stop (/readyz 503)
# and after a kill, how long to put a restarted one back, and the failed requests.
# Figures depend on the LB's health timing (default: every 250 ms, fall 2, rise 2) and on
# the demo polling the LB's state every 20 ms. Needs no root.
#
#   bench/demo-failover.sh [RUNS]        (builds target/release/cpe first)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
cargo build --release -q -p cpe
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq "$runs"); do
  target/release/cpe demo --quick --view plain >>"$out"
done
stats() { # label, then values on stdin
  sort -n | awk -v l="$1" '{v[NR]=$1} END {
    if (NR == 0) { printf "%-34s no data\n", l; exit }
    printf "%-34s n=%d  min %.2fs  median %.2fs  max %.2fs\n", l, NR, v[1], v[int((NR+1)/2)], v[NR] }'
}
grep 'gracefully' "$out" | grep -o 'out of rotation after [0-9.]*' | awk '{print $5}' | stats "graceful stop -> out of rotation"
grep ' kill ' "$out" | grep -o 'out of rotation after [0-9.]*' | awk '{print $5}' | stats "kill -> out of rotation"
grep 'restart ' "$out" | grep -o 'back in rotation after [0-9.]*' | awk '{print $5}' | stats "restart -> back in rotation"
grep '^demo result:' "$out" | awk '{
  for (i = 3; i <= NF; i++) { split($i, kv, "="); s[kv[1]] += kv[2] } }
  END { printf "requests %d, failed %d (in flight on the killed server %d, other %d), retried %d\n",
        s["requests"], s["failed"], s["in_flight_on_killed"], s["other_failures"], s["retried"] }'
