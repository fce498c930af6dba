#!/usr/bin/env bash
# Benchmarks `cpe lb` against HAProxy (TCP mode, same health checks) and a direct
# connection, in one run on loopback, in front of the same backend:
#   keep-alive requests/s, p99 latency, new connections/s, bulk MB/s, RSS at N idle
#   proxied connections. Prints a table with ratios vs direct and vs HAProxy.
#
# Usage: [ROUNDS=3] [CONNS=64] bench/lb.sh [DURATION_SECONDS] [IDLE_CONNECTIONS]   (defaults 8, 9000)
# Needs: wrk, haproxy, python3, cargo. A proxy holds two descriptors per idle connection:
# the hard file-descriptor limit must be above 2 x IDLE + 100 (20,000 on the machines this
# was written on, hence 9,000; the table also extrapolates the RSS to 10,000 from the
# measured per-connection cost).
# On 2 shared cores the load generator, the backend and the proxy compete for the CPU:
# compare ratios from one run, not absolute figures across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-8}
IDLE=${2:-9000}
MAXCONN=$((IDLE + 500))
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-3}
BACK=127.0.0.1:19001
HAP=127.0.0.1:19002
CPE=127.0.0.1:19003
CPE_ADMIN=127.0.0.1:19004
WORK=$(mktemp -d /tmp/cpe-bench-lb.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ulimit -Hn 200000 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"

echo "building (release)..." >&2
cargo build --release -q -p cpe-lb --example bench_backend
cargo build --release -q -p cpe --bin cpe
BIN=target/release

"$BIN/examples/bench_backend" "$BACK" & PIDS+=($!)

cat > "$WORK/haproxy.cfg" <<CFG
global
  maxconn $MAXCONN
defaults
  mode tcp
  timeout connect 1s
  timeout client 1h
  timeout server 1h
  option redispatch
  retries 2
frontend fe
  bind $HAP
  default_backend be
  # TCP keepalive on both sides, as cpe lb does (30 s idle, then every 10 s): the same
  # work per connection (8 setsockopt calls; measured to cost HAProxy about 1%).
  option clitcpka
  clitcpka-idle 30s
  clitcpka-intvl 10s
backend be
  balance leastconn
  option srvtcpka
  srvtcpka-idle 30s
  srvtcpka-intvl 10s
  option httpchk GET /readyz
  server b1 $BACK check inter 250ms fall 2 rise 2
CFG
haproxy -f "$WORK/haproxy.cfg" -db > "$WORK/haproxy.log" 2>&1 & HAP_PID=$!; PIDS+=($HAP_PID)

"$BIN/cpe" --log warn lb --listen "$CPE" --backend "$BACK" --health-check http \
  --health-path /readyz --admin "$CPE_ADMIN" --max-connections "$MAXCONN" > "$WORK/cpe.log" 2>&1 & CPE_PID=$!; PIDS+=($CPE_PID)

for a in $BACK $HAP $CPE; do
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/${a%:*}/${a#*:}") 2>/dev/null && break; sleep 0.1; done
done
sleep 1

# wrk's figures: requests/s, transfer MB/s, p99 ms.
run_wrk() { # addr path extra-args...
  local addr=$1 path=$2; shift 2
  wrk -t2 -c"$CONNS" -d"${DUR}s" --latency "$@" "http://$addr$path" > "$WORK/wrk.out" 2>&1 || true
  local rps mbs p99
  rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/wrk.out")
  mbs=$(awk '/^Transfer\/sec/ {v=$2; u=substr(v,length(v)-1); n=substr(v,1,length(v)-2);
        if (u=="GB") n*=1024; else if (u=="KB") n/=1024; else if (u!="MB") n=n/1048576; printf "%.1f", n}' "$WORK/wrk.out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.2f", v}' "$WORK/wrk.out")
  echo "${rps:-0} ${mbs:-0} ${p99:-0}"
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

idle_rss() { # addr pid -> RSS MiB with $IDLE idle connections through it
  local addr=$1 pid=$2
  exec {IN}> >(python3 bench/lb/idle.py "$addr" "$IDLE" > "$WORK/idle.out")
  local idle_pid=$!
  for _ in $(seq 600); do grep -q open "$WORK/idle.out" 2>/dev/null && break; sleep 0.1; done
  sleep 2
  local r; r=$(rss_kib "$pid")
  exec {IN}>&-
  wait "$idle_pid" 2>/dev/null || true
  sleep 2
  awk -v k="$r" 'BEGIN {printf "%.1f", k/1024}'
}

# Targets alternate within each round, and each figure is the median of $ROUNDS rounds:
# other load on the machine then hits all three alike instead of whichever ran last.
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A R S
for round in $(seq "$ROUNDS"); do
  for target in direct haproxy cpe; do
    case $target in direct) addr=$BACK;; haproxy) addr=$HAP;; cpe) addr=$CPE;; esac
    echo "round $round/$ROUNDS: $target..." >&2
    read -r rps _ p99 < <(run_wrk "$addr" /)
    read -r ncps _ _ < <(run_wrk "$addr" / -H 'Connection: close')
    CONNS_SAVE=$CONNS; CONNS=4
    read -r _ bulk _ < <(run_wrk "$addr" /bulk)
    CONNS=$CONNS_SAVE
    S[$target.rps]+="$rps "; S[$target.p99]+="$p99 "; S[$target.ncps]+="$ncps "; S[$target.bulk]+="$bulk "
  done
done
for k in "${!S[@]}"; do
  R[$k]=$(echo "${S[$k]}" | median)
  echo "$k: ${S[$k]}" >&2
done
R[direct.rss]="-"
echo "measuring RSS with $IDLE idle connections..." >&2
R[haproxy.rss0]=$(awk -v k="$(rss_kib $HAP_PID)" 'BEGIN {printf "%.1f", k/1024}')
R[cpe.rss0]=$(awk -v k="$(rss_kib $CPE_PID)" 'BEGIN {printf "%.1f", k/1024}')
R[haproxy.rss]=$(idle_rss "$HAP" "$HAP_PID")
R[cpe.rss]=$(idle_rss "$CPE" "$CPE_PID")

python3 - "$DUR" "$CONNS" "$IDLE" <<PY
import sys, statistics
dur, conns, idle = sys.argv[1:4]
R = {k: v for k, v in (l.split("=", 1) for l in """$(for k in "${!R[@]}"; do echo "$k=${R[$k]}"; done)""".split("\n") if l)}
S = {k: [float(x) for x in v.split()] for k, v in (l.split("=", 1) for l in """$(for k in "${!S[@]}"; do echo "$k=${S[$k]}"; done)""".split("\n") if l)}
f = lambda k: float(R[k]) if R.get(k, "-") not in ("-", "") else None
rows = [("keep-alive req/s", "rps", True), ("p99 latency ms (keep-alive)", "p99", False),
        ("new connections/s", "ncps", True), ("bulk MB/s (4 conns, 64 MiB answers)", "bulk", True)]
print(f"loopback, {dur}s per run, median of $ROUNDS rounds (targets alternating), wrk -t2 -c{conns} (bulk -c4); one backend (bench_backend)")
print(f"{'figure':38} {'direct':>10} {'haproxy':>10} {'cpe lb':>10} {'cpe/direct':>11} {'haproxy/direct':>15} {'cpe/haproxy':>12}")
for name, k, higher in rows:
    d, h, c = f("direct."+k), f("haproxy."+k), f("cpe."+k)
    r = lambda a, b: f"{a/b:.2f}" if a and b else "-"
    print(f"{name:38} {d:>10.1f} {h:>10.1f} {c:>10.1f} {r(c,d):>11} {r(h,d):>15} {r(c,h):>12}")
print()
print("cpe lb / HAProxy within each round (the two ran back to back, so machine load that")
print("drifts between rounds cancels out): median, and the range over the rounds")
for name, k, higher in rows:
    pairs = [c / h for c, h in zip(S["cpe." + k], S["haproxy." + k]) if h]
    if pairs:
        print(f"  {name:36} {statistics.median(pairs):5.2f}  ({min(pairs):.2f}-{max(pairs):.2f})  " + " ".join(f"{x:.2f}" for x in pairs))
print()
h0, c0, h, c = f("haproxy.rss0"), f("cpe.rss0"), f("haproxy.rss"), f("cpe.rss")
print(f"{'RSS MiB, idle proxy':38} {'-':>10} {h0:>10.1f} {c0:>10.1f}")
print(f"{'RSS MiB, '+idle+' idle connections':38} {'-':>10} {h:>10.1f} {c:>10.1f} {'':>11} {'':>15} {c/h:>12.2f}")
n = int(idle)
kh, kc = (h - h0) * 1024 / n, (c - c0) * 1024 / n
print(f"{'RSS KiB per idle connection':38} {'-':>10} {kh:>10.2f} {kc:>10.2f} {'':>11} {'':>15} {kc/kh:>12.2f}")
print(f"{'RSS MiB at 10,000 (extrapolated)':38} {'-':>10} {h0 + kh*10000/1024:>10.1f} {c0 + kc*10000/1024:>10.1f}")
PY
