#!/usr/bin/env bash
# The node-local load balancer (`cpe lb --node-local`) against a direct connection and
# against HAProxy configured the same way, in one run: loopback frontend (127.0.0.1 and
# [::1], one port), the same three backends (Debian's nginx, one worker, three ports: a
# control plane's three API servers), HTTP health checks on /readyz every 250 ms, rise 2
# fall 2, leastconn, one thread (nbthread 1: the node-local preset runs one worker).
#
# The workload is a node's own API clients (bench/node-local/clients.py): 50 long-lived
# keep-alive connections — 40 sending a small GET every 200 ms (kubelet, kube-proxy, CNI
# agents), 10 that make one request and then wait as watches do — plus one connection
# that sends small requests back to back, whose latency gives p50/p90/p99. With all 51
# connections open, the proxy's resident memory (VmRSS) is read. Then `wrk -t1 -c50`
# keep-alive requests give the CPU each proxy spends per request (utime+stime from
# /proc/PID/stat over the run, divided by the requests completed).
# `cpe lb` with the default preset (one worker per CPU) runs too, for its memory.
#
# Usage: [ROUNDS=3] [CPE_BIN=path] bench/node-local.sh [DURATION_SECONDS] [--guard-rss MIB]
#   --guard-rss MIB: exit 1 when the node-local RSS with 50 clients exceeds MIB (15).
# Needs: nginx, haproxy, wrk, python3 (scripts/test.sh installs them), cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=4
GUARD=
while [ $# -gt 0 ]; do
  case $1 in
    --guard-rss) GUARD=$2; shift 2;;
    *) DUR=$1; shift;;
  esac
done
ROUNDS=${ROUNDS:-3}
PORTS=(19201 19202 19203)
HAP_PORT=19211
CPE_PORT=19212
CPE_ADMIN=127.0.0.1:19213
DEF=127.0.0.1:19214
DEF_ADMIN=127.0.0.1:19215
WORK=$(mktemp -d /tmp/cpe-bench-node-local.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for t in nginx haproxy wrk python3; do
  command -v "$t" >/dev/null || { echo "bench/node-local.sh: $t is not installed (scripts/test.sh installs it)" >&2; exit 2; }
done

if [ -n "${CPE_BIN:-}" ]; then BIN=$CPE_BIN; else
  echo "building (release)..." >&2
  cargo build --release -q -p cpe --bin cpe
  BIN=target/release/cpe
fi

{
  echo "daemon off; worker_processes 1; pid $WORK/nginx.pid; error_log $WORK/nginx.err warn;"
  [ "$(id -u)" = 0 ] && echo "user root;"
  echo "events { worker_connections 8192; }"
  echo "http { access_log off; keepalive_requests 100000000; keepalive_timeout 600s;"
  for d in client_body proxy fastcgi uwsgi scgi; do echo "  ${d}_temp_path $WORK/$d;"; done
  echo "  server {"
  for p in "${PORTS[@]}"; do echo "    listen 127.0.0.1:$p reuseport;"; done
  echo "    location = /readyz { return 200 'ok'; }"
  echo "    location = / { default_type application/json; return 200 '{\"kind\":\"Status\",\"status\":\"Success\"}'; }"
  echo "  }"
  echo "}"
} > "$WORK/nginx.conf"
nginx -c "$WORK/nginx.conf" -p "$WORK" > "$WORK/nginx.log" 2>&1 & PIDS+=($!)

cat > "$WORK/haproxy.cfg" <<CFG
global
  maxconn 1024
  nbthread 1
defaults
  mode tcp
  timeout connect 1s
  timeout client 1h
  timeout server 1h
  option redispatch
  retries 2
frontend fe
  bind 127.0.0.1:$HAP_PORT
  bind [::1]:$HAP_PORT
  default_backend be
  option clitcpka
  clitcpka-idle 30s
  clitcpka-intvl 10s
backend be
  balance leastconn
  option srvtcpka
  srvtcpka-idle 30s
  srvtcpka-intvl 10s
  option httpchk GET /readyz
  default-server check inter 250ms fall 2 rise 2
  server b1 127.0.0.1:${PORTS[0]}
  server b2 127.0.0.1:${PORTS[1]}
  server b3 127.0.0.1:${PORTS[2]}
CFG
haproxy -f "$WORK/haproxy.cfg" -db > "$WORK/haproxy.log" 2>&1 & HAP_PID=$!; PIDS+=($HAP_PID)

backends=()
for p in "${PORTS[@]}"; do backends+=(--backend "127.0.0.1:$p"); done
checks=(--health-check http --health-path /readyz)
"$BIN" --log warn lb --node-local --listen "127.0.0.1:$CPE_PORT" --admin "$CPE_ADMIN" \
  "${backends[@]}" "${checks[@]}" > "$WORK/cpe.log" 2>&1 & CPE_PID=$!; PIDS+=($CPE_PID)
"$BIN" --log warn lb --listen "$DEF" --admin "$DEF_ADMIN" \
  "${backends[@]}" "${checks[@]}" > "$WORK/cpe-default.log" 2>&1 & DEF_PID=$!; PIDS+=($DEF_PID)

for a in 127.0.0.1:${PORTS[0]} 127.0.0.1:$HAP_PORT 127.0.0.1:$CPE_PORT $DEF; do
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/${a%:*}/${a#*:}") 2>/dev/null && break; sleep 0.1; done
done
sleep 1.5   # every backend UP in every proxy (rise 2 x 250 ms)
# Both loopback families answer (curl: the same request over [::1]).
for port in $HAP_PORT $CPE_PORT; do
  curl -fsS -o /dev/null "http://[::1]:$port/" || { echo "[::1]:$port does not answer" >&2; exit 1; }
done
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
threads() { awk '/^Threads/ {print $2}' "/proc/$1/status"; }
IDLE_CPE=$(rss_kib $CPE_PID); IDLE_HAP=$(rss_kib $HAP_PID); IDLE_DEF=$(rss_kib $DEF_PID)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

# clients TARGET ADDR PID -> "p50 p90 p99 failed rss_kib"
clients() {
  local out=$WORK/clients.$1 rss=0
  python3 bench/node-local/clients.py "$2" --hold 1.5 > "$out" 2>&1 & local cp=$!
  for _ in $(seq 600); do [ -s "$out" ] && break; sleep 0.1; done
  [ -n "$3" ] && rss=$(rss_kib "$3")
  wait $cp || true
  echo "$(head -1 "$out") $rss"
}

# cpu TARGET ADDR PID -> "cpu_us_per_request requests_per_s"
cpu() {
  local t0=0 t1=0
  [ -n "$3" ] && t0=$(cpu_ticks "$3")
  wrk -t1 -c50 -d"${DUR}s" "http://$2/" > "$WORK/wrk.out" 2>&1 || true
  [ -n "$3" ] && t1=$(cpu_ticks "$3")
  awk -v ticks=$((t1 - t0)) -v tck="$TCK" '
    / requests in / {req=$1} /^Requests\/sec/ {rps=$2}
    END {printf "%.2f %.0f\n", (req > 0 ? ticks / tck * 1e6 / req : 0), rps}' "$WORK/wrk.out"
}

declare -A S
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="direct haproxy cpe"; else order="direct cpe haproxy"; fi
  line="round $round/$ROUNDS:"
  for target in $order; do
    case $target in
      direct) addr=127.0.0.1:${PORTS[0]}; pid=;;
      haproxy) addr=127.0.0.1:$HAP_PORT; pid=$HAP_PID;;
      cpe) addr=127.0.0.1:$CPE_PORT; pid=$CPE_PID;;
    esac
    read -r p50 p90 p99 failed rss < <(clients "$target" "$addr" "$pid")
    read -r cpu rps < <(cpu "$target" "$addr" "$pid")
    S[$target.p50]+="$p50 "; S[$target.p90]+="$p90 "; S[$target.p99]+="$p99 "
    S[$target.failed]+="$failed "; S[$target.rss]+="$rss "; S[$target.cpu]+="$cpu "; S[$target.rps]+="$rps "
    line+=" $target p50 ${p50}µs p99 ${p99}µs rss ${rss}KiB cpu ${cpu}µs/req;"
  done
  read -r _ _ _ _ drss < <(clients default "$DEF" "$DEF_PID")
  S[default.rss]+="$drss "
  echo "$line default-preset rss ${drss}KiB" >&2
done
S[threads]="$(threads $CPE_PID) $(threads $DEF_PID) $(threads $HAP_PID)"

python3 - "$DUR" "$ROUNDS" "$IDLE_CPE" "$IDLE_HAP" "$IDLE_DEF" "${GUARD:-}" <<PY
import sys, statistics
dur, rounds, idle_cpe, idle_hap, idle_def, guard = sys.argv[1:7]
S = {k: [float(x) for x in v.split()] for k, v in (l.split("=", 1) for l in """$(for k in "${!S[@]}"; do echo "$k=${S[$k]}"; done)""".split("\n") if l)}
med = lambda xs: statistics.median(xs) if xs else float("nan")
mib = lambda k: float(k) / 1024
print("node-local: nginx (1 worker, 3 ports) behind HAProxy 2.6 (nbthread 1, leastconn, checks 250ms) and")
print("cpe lb --node-local (1 worker, same backends and checks), both on 127.0.0.1+[::1]; loopback;")
print(f"{rounds} rounds; 50 keep-alive clients (40 polling every 200 ms, 10 watch-like) + 1 sampler")
print(f"(3000 sequential small requests); CPU: wrk -t1 -c50 keep-alive, {dur}s; medians over rounds")
print(f"{'figure':40} {'direct':>9} {'haproxy':>9} {'cpe':>9}")
def row(name, key, fmt="{:9.1f}"):
    cells = []
    for t in ("direct", "haproxy", "cpe"):
        xs = S.get(f"{t}.{key}", [])
        cells.append(fmt.format(med(xs)) if xs and not (t == "direct" and key in ("rss", "cpu")) else f"{'-':>9}")
    print(f"{name:40} {' '.join(cells)}")
row("latency p50 µs (small request)", "p50")
row("latency p90 µs", "p90")
row("latency p99 µs", "p99")
for t in ("haproxy", "cpe"):
    for q in ("p50", "p99"):
        added = [a - b for a, b in zip(S[f"{t}.{q}"], S["direct." + q])]
        S[f"{t}.added_{q}"] = added
print(f"{'added latency p50 µs (vs direct)':40} {'-':>9} {med(S['haproxy.added_p50']):9.1f} {med(S['cpe.added_p50']):9.1f}")
print(f"{'added latency p99 µs (vs direct)':40} {'-':>9} {med(S['haproxy.added_p99']):9.1f} {med(S['cpe.added_p99']):9.1f}")
row("failed requests (sum over rounds)", "failed", "{:9.0f}")
row("CPU µs per request (wrk -c50)", "cpu", "{:9.2f}")
row("requests/s (wrk -c50, 1 thread)", "rps", "{:9.0f}")
print(f"{'RSS MiB idle':40} {'-':>9} {mib(idle_hap):9.1f} {mib(idle_cpe):9.1f}")
print(f"{'RSS MiB with 51 clients connected':40} {'-':>9} {mib(med(S['haproxy.rss'])):9.1f} {mib(med(S['cpe.rss'])):9.1f}")
th = S["threads"]
print(f"cpe lb default preset (one worker per CPU, {int(th[1])} threads): RSS idle {mib(idle_def):.1f} MiB, with 51 clients {mib(med(S['default.rss'])):.1f} MiB; node-local threads: {int(th[0])}")
rss = mib(med(S['cpe.rss']))
print(f"VERDICT node-local RSS with 50 clients {rss:.1f} MiB (target < 15); added p50 {med(S['cpe.added_p50']):.0f} µs vs HAProxy {med(S['haproxy.added_p50']):.0f} µs; CPU/request cpe/haproxy {med(S['cpe.cpu'])/med(S['haproxy.cpu']):.2f}")
if guard and rss > float(guard):
    print(f"OVER: node-local RSS {rss:.1f} MiB > {guard} MiB")
    sys.exit(1)
PY
