#!/usr/bin/env bash
# The one place where the load-balancer benchmarks set up their peers and measure:
# `cpe lb` against HAProxy 2.6 and a direct connection, in one run on loopback, with the
# same backend(s) behind both proxies. bench/lb.sh and bench/lb-nginx.sh call it.
#
# Backends (--backend):
#   nginx  Debian's nginx, one worker, three listen ports = three backends (a control
#          plane has three API servers);
#   tokio  bench_backend (crates/lb/examples), a minimal tokio HTTP/1.1 server on one port.
# HAProxy is configured as a platform engineer would for a control plane: TCP mode,
# nbthread 2, leastconn, HTTP checks every 250 ms (fall 2 rise 2), TCP keepalive on both
# sides (30 s idle, 10 s interval, as cpe lb does). cpe lb gets the same backends and
# checks. wrk drives keep-alive requests, new connections (`Connection: close`) and bulk
# transfers (64 MiB answers) through each.
#
# The steady figure on a shared 2-core machine is CPU per request: the proxy's own
# utime+stime from /proc/PID/stat over the run, divided by the requests wrk completed
# (bulk: per MB). Requests/s, p99 and MB/s are printed next to it. The two proxies run
# back to back in every round, in alternating order, and each ratio cpe/HAProxy is taken
# within the round (paired), then the median over the rounds. With PERF=1 each proxy run
# is also counted by `perf stat` (context switches and CPU migrations per request).
#
# CPE_BIN=PATH runs that cpe binary instead of building one. CPE_B=PATH adds a second
# cpe binary (another build, for an A/B of a change) as a third
# proxy in every round, with its own column and ratio to HAProxy.
#
# Usage: [ROUNDS=5] [CONNS=64] [PERF=1] [CPE_B=PATH] bench/lb/compare.sh --backend nginx|tokio
#          [--idle N] [--guard RATIO] [DURATION_SECONDS]
#   --idle N: afterwards, RSS of each proxy idle and holding N idle proxied connections
#     (bench/lb/idle.py); needs a hard descriptor limit above 2 x N + 100.
#   --guard RATIO: exit 1 when cpe's keep-alive or new-connection CPU per request is more
#     than RATIO x HAProxy's (paired median).
# Needs: wrk, haproxy, python3, cargo; nginx for --backend nginx (scripts/test.sh installs
# them).
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=4
GUARD=
IDLE=
BACKEND=nginx
while [ $# -gt 0 ]; do
  case $1 in
    --guard) GUARD=$2; shift 2;;
    --idle) IDLE=$2; shift 2;;
    --backend) BACKEND=$2; shift 2;;
    *) DUR=$1; shift;;
  esac
done
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-5}
case $BACKEND in
  # Ports as the two scripts always used them.
  nginx) PORTS=(19101 19102 19103); HAP=127.0.0.1:19111; CPE=127.0.0.1:19112; CPE_ADMIN=127.0.0.1:19113;;
  tokio) PORTS=(19001); HAP=127.0.0.1:19002; CPE=127.0.0.1:19003; CPE_ADMIN=127.0.0.1:19004;;
  *) echo "bench/lb/compare.sh: --backend must be nginx or tokio, not '$BACKEND'" >&2; exit 2;;
esac
MAXCONN=$(( ${IDLE:-0} + 500 > 8000 ? ${IDLE:-0} + 500 : 8000 ))
WORK=$(mktemp -d /tmp/cpe-bench-lb-$BACKEND.XXXXXX)
chmod 755 "$WORK"   # nginx's workers read the bulk file
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
needs="haproxy wrk python3"
[ "$BACKEND" = nginx ] && needs+=" nginx"
[ -n "${PERF:-}" ] && needs+=" perf"
for t in $needs; do
  command -v "$t" >/dev/null || { echo "bench/lb/compare.sh: $t is not installed (scripts/test.sh installs it)" >&2; exit 2; }
done
ulimit -Hn 200000 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"

echo "building (release)..." >&2
[ "$BACKEND" = tokio ] && cargo build --release -q -p cpe-lb --example bench_backend
if [ -z "${CPE_BIN:-}" ]; then cargo build --release -q -p cpe --bin cpe; fi
BIN=${CPE_BIN:-target/release/cpe}

if [ "$BACKEND" = nginx ]; then
  mkdir -p "$WORK/www"
  head -c $((64 << 20)) /dev/zero > "$WORK/www/bulk"
  chmod -R a+rX "$WORK/www"
  {
    echo "daemon off; worker_processes 1; pid $WORK/nginx.pid; error_log $WORK/nginx.err warn;"
    [ "$(id -u)" = 0 ] && echo "user root;"
    echo "events { worker_connections 8192; }"
    echo "http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000000; keepalive_timeout 600s;"
    for d in client_body proxy fastcgi uwsgi scgi; do echo "  ${d}_temp_path $WORK/$d;"; done
    echo "  server {"
    for p in "${PORTS[@]}"; do echo "    listen 127.0.0.1:$p reuseport;"; done
    echo "    root $WORK/www;"
    echo "    location = /readyz { return 200 'ok'; }"
    echo "    location = / { default_type application/json; return 200 '{\"kind\":\"Status\",\"status\":\"Success\"}'; }"
    echo "  }"
    echo "}"
  } > "$WORK/nginx.conf"
  nginx -c "$WORK/nginx.conf" -p "$WORK" > "$WORK/nginx.log" 2>&1 & PIDS+=($!)
  DESC="nginx (1 worker, 3 ports = 3 backends)"
else
  target/release/examples/bench_backend "127.0.0.1:${PORTS[0]}" & PIDS+=($!)
  DESC="bench_backend (tokio, 1 backend)"
fi

{
  cat <<CFG
global
  maxconn $MAXCONN
  nbthread 2
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
  default-server check inter 250ms fall 2 rise 2
CFG
  i=0; for p in "${PORTS[@]}"; do i=$((i + 1)); echo "  server b$i 127.0.0.1:$p"; done
} > "$WORK/haproxy.cfg"
haproxy -f "$WORK/haproxy.cfg" -db > "$WORK/haproxy.log" 2>&1 & HAP_PID=$!; PIDS+=($HAP_PID)

backends=()
for p in "${PORTS[@]}"; do backends+=(--backend "127.0.0.1:$p"); done
"$BIN" --log warn lb --listen "$CPE" "${backends[@]}" --health-check http \
  --health-path /readyz --admin "$CPE_ADMIN" --max-connections "$MAXCONN" \
  > "$WORK/cpe.log" 2>&1 & CPE_PID=$!; PIDS+=($CPE_PID)

CPEB=
if [ -n "${CPE_B:-}" ]; then
  CPEB=127.0.0.1:$(( ${CPE##*:} + 10 ))
  "$CPE_B" --log warn lb --listen "$CPEB" "${backends[@]}" --health-check http \
    --health-path /readyz --max-connections "$MAXCONN" \
    > "$WORK/cpeb.log" 2>&1 & CPEB_PID=$!; PIDS+=($CPEB_PID)
fi

for a in 127.0.0.1:${PORTS[0]} $HAP $CPE $CPEB; do
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/${a%:*}/${a#*:}") 2>/dev/null && break; sleep 0.1; done
done
sleep 1.5   # every backend UP in both proxies (rise 2 x 250 ms)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

# run TARGET MODE -> "cpu_us_per_unit throughput p99ms cs_per_unit" (throughput:
# requests/s, bulk MB/s; cs: context switches per request or MB with PERF=1, else -)
run() {
  local target=$1 mode=$2 addr pid path=/ extra=() conns=$CONNS perf_pid=
  case $target in
    haproxy) addr=$HAP; pid=$HAP_PID;;
    cpe) addr=$CPE; pid=$CPE_PID;;
    cpeb) addr=$CPEB; pid=$CPEB_PID;;
    direct) addr=127.0.0.1:${PORTS[0]}; pid=;;
  esac
  case $mode in
    close) extra=(-H 'Connection: close');;
    bulk) path=/bulk; conns=4;;
  esac
  local t0=0 t1=0
  rm -f "$WORK/perf.out"
  if [ -n "$pid" ] && [ -n "${PERF:-}" ]; then
    perf stat -x, -e context-switches,cpu-migrations -p "$pid" -o "$WORK/perf.out" & perf_pid=$!
  fi
  [ -n "$pid" ] && t0=$(cpu_ticks "$pid")
  wrk -t2 -c"$conns" -d"${DUR}s" --latency "${extra[@]}" "http://$addr$path" > "$WORK/wrk.out" 2>&1 || true
  [ -n "$pid" ] && t1=$(cpu_ticks "$pid")
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
  local cs=-
  [ -s "$WORK/perf.out" ] && cs=$(awk -F, '$3=="context-switches" {print $1}' "$WORK/perf.out")
  awk -v ticks=$((t1 - t0)) -v tck="$TCK" -v mode="$mode" -v cs="$cs" -v dur="$DUR" '
    / requests in / {req=$1}
    /^Requests\/sec/ {rps=$2}
    /^Transfer\/sec/ {v=$2; u=substr(v,length(v)-1); n=substr(v,1,length(v)-2);
       if (u=="GB") n*=1024; else if (u=="KB") n/=1024; else if (u!="MB") n=n/1048576; mbs=n}
    $1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; p99=v}
    END {
      cpu_us = ticks / tck * 1e6
      unit = (mode == "bulk") ? mbs * dur : req
      # For bulk the throughput figure is MB/s, not requests/s.
      printf "%.2f %.1f %.2f %s\n", (unit > 0 ? cpu_us / unit : 0), (mode == "bulk" ? mbs : rps), p99,
        (cs == "-" || unit == 0) ? "-" : sprintf("%.3f", cs / unit)
    }' "$WORK/wrk.out"
}

declare -A S
for round in $(seq "$ROUNDS"); do
  if [ -n "$CPEB" ]; then
    case $((round % 3)) in 1) order="haproxy cpe cpeb";; 2) order="cpe cpeb haproxy";; 0) order="cpeb haproxy cpe";; esac
  elif [ $((round % 2)) = 1 ]; then order="haproxy cpe"; else order="cpe haproxy"; fi
  load=$(cut -d' ' -f1 /proc/loadavg)
  for mode in keepalive close bulk; do
    read -r _ drps _ _ < <(run direct "$mode")
    S[direct.$mode.rps]+="$drps "
    if [ "$mode" = bulk ]; then per=MB; rate="MB/s"; else per=request; rate="/s"; fi
    line="round $round/$ROUNDS (load $load) $mode: direct $drps $rate"
    for target in $order; do
      read -r cpu rps p99 cs < <(run "$target" "$mode")
      S[$target.$mode.cpu]+="$cpu "; S[$target.$mode.rps]+="$rps "; S[$target.$mode.p99]+="$p99 "
      [ "$cs" != - ] && S[$target.$mode.cs]+="$cs "
      line+="; $target $rps $rate, $cpu µs CPU per $per, p99 ${p99} ms"
      [ "$cs" != - ] && line+=", $cs switches per $per"
    done
    echo "$line" >&2
  done
  S[load]+="$load "
done

if [ -n "$IDLE" ]; then
  rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
  idle_rss() { # addr pid -> RSS MiB with $IDLE idle connections through it
    local addr=$1 pid=$2
    exec {IN}> >(python3 bench/lb/idle.py "$addr" "$IDLE" > "$WORK/idle.out")
    local idle_pid=$!
    for _ in $(seq 600); do grep -q open "$WORK/idle.out" 2>/dev/null && break; sleep 0.1; done
    sleep 2
    rss_mib "$pid"
    exec {IN}>&-
    wait "$idle_pid" 2>/dev/null || true
    sleep 2
  }
  echo "measuring RSS with $IDLE idle connections..." >&2
  S[haproxy.rss0]=$(rss_mib $HAP_PID); S[cpe.rss0]=$(rss_mib $CPE_PID)
  S[haproxy.rss]=$(idle_rss "$HAP" "$HAP_PID"); S[cpe.rss]=$(idle_rss "$CPE" "$CPE_PID")
fi

python3 - "$DUR" "$CONNS" "$ROUNDS" "${GUARD:-}" "$DESC" "${IDLE:-}" <<PY
import sys, statistics
dur, conns, rounds, guard, desc, idle = sys.argv[1:7]
S = {k: [float(x) for x in v.split()] for k, v in (l.split("=", 1) for l in """$(for k in "${!S[@]}"; do echo "$k=${S[$k]}"; done)""".split("\n") if l)}
med = lambda xs: statistics.median(xs) if xs else float("nan")
print(f"{desc} behind HAProxy 2.6 (nbthread 2, leastconn, checks, TCP keepalive) and cpe lb (same backends, checks);")
print(f"loopback, {dur}s per run, {rounds} rounds, proxies alternating; wrk -t2 -c{conns} (bulk -c4, 64 MiB answers);")
print("load average (1 min) at each round: " + " ".join(f"{x:.2f}" for x in S.get("load", [])))
print(f"{'figure':40} {'direct':>8} {'haproxy':>9} {'cpe lb':>9}   cpe/haproxy paired: median (range) | per round")
rows = [("keep-alive: CPU µs per request", "keepalive", "cpu"), ("keep-alive: requests/s", "keepalive", "rps"),
        ("keep-alive: p99 ms", "keepalive", "p99"), ("keep-alive: context switches per request", "keepalive", "cs"),
        ("new connection: CPU µs per request", "close", "cpu"), ("new connection: requests/s", "close", "rps"),
        ("new connection: context switches per req", "close", "cs"),
        ("bulk: CPU µs per MB", "bulk", "cpu"), ("bulk: MB/s", "bulk", "rps")]
verdict = {}
for name, mode, fig in rows:
    h, c = S.get(f"haproxy.{mode}.{fig}", []), S.get(f"cpe.{mode}.{fig}", [])
    if not h and not c:
        continue
    d = S.get(f"direct.{mode}.rps", []) if fig == "rps" else []
    pairs = [a / b for a, b in zip(c, h) if b]
    dm = f"{med(d):8.0f}" if d else f"{'-':>8}"
    rng = f"{med(pairs):.2f} ({min(pairs):.2f}-{max(pairs):.2f})" if pairs else "-"
    nd = 3 if fig == "cs" else 1
    print(f"{name:40} {dm} {med(h):9.{nd}f} {med(c):9.{nd}f}   {rng:17} | " + " ".join(f"{x:.2f}" for x in pairs))
    b = S.get(f"cpeb.{mode}.{fig}", [])
    if b:
        bp = [x / y for x, y in zip(b, h) if y]
        bc = [x / y for x, y in zip(b, c) if y]
        print(f"{'  CPE_B':40} {'':8} {'':9} {med(b):9.{nd}f}   {med(bp):.2f} ({min(bp):.2f}-{max(bp):.2f}) | " + " ".join(f"{x:.2f}" for x in bp) + f"   CPE_B/cpe {med(bc):.2f}")
    verdict[(mode, fig)] = med(pairs) if pairs else float("nan")
if idle:
    h0, c0, h, c = S["haproxy.rss0"][0], S["cpe.rss0"][0], S["haproxy.rss"][0], S["cpe.rss"][0]
    n = int(idle)
    kh, kc = (h - h0) * 1024 / n, (c - c0) * 1024 / n
    print(f"{'RSS MiB, idle proxy':40} {'-':>8} {h0:9.1f} {c0:9.1f}")
    print(f"{'RSS MiB, ' + idle + ' idle connections':40} {'-':>8} {h:9.1f} {c:9.1f}   {c / h:.2f}")
    print(f"{'RSS KiB per idle connection':40} {'-':>8} {kh:9.2f} {kc:9.2f}   {kc / kh:.2f}")
    print(f"{'RSS MiB at 10,000 (extrapolated)':40} {'-':>8} {h0 + kh * 10000 / 1024:9.1f} {c0 + kc * 10000 / 1024:9.1f}")
ka, nc = verdict[("keepalive", "cpu")], verdict[("close", "cpu")]
print(f"VERDICT ({desc}) cpu-per-request cpe/haproxy: keep-alive {ka:.2f}, new-connection {nc:.2f} (<= 1.00: at or below HAProxy); keep-alive req/s {verdict[('keepalive', 'rps')]:.2f}; bulk MB/s {verdict[('bulk', 'rps')]:.2f}")
if guard:
    g = float(guard)
    if ka > g or nc > g:
        print(f"REGRESSION: cpe lb uses more than {g}x HAProxy's CPU per request")
        sys.exit(1)
    print(f"guard: within {g}x HAProxy's CPU per request")
PY
