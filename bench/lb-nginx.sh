#!/usr/bin/env bash
# `cpe lb` against HAProxy with a real web server behind both: Debian's nginx (one worker,
# three listen ports = three backends, as a control plane has three API servers), HAProxy
# 2.6 configured as a platform engineer would for a control plane (TCP mode, nbthread 2,
# leastconn, HTTP checks every 250 ms, TCP keepalive both sides) and `cpe lb` with the same
# three backends and checks. wrk drives keep-alive requests, new connections
# (`Connection: close`) and bulk transfers through each proxy.
#
# The steady figure on a shared 2-core machine is CPU per request: the proxy's own
# utime+stime from /proc/PID/stat over the run, divided by the requests wrk completed
# (bulk: per MB). Requests/s is printed next to it. The two proxies run back to back in
# every round, in alternating order, and the ratio cpe/HAProxy is taken within each round
# (paired), then the median over rounds.
#
# Usage: [ROUNDS=5] [CONNS=64] bench/lb-nginx.sh [DURATION_SECONDS] [--guard RATIO]
#   --guard RATIO: exit 1 when cpe's keep-alive or new-connection CPU per request is more
#   than RATIO x HAProxy's (paired median). CI runs a short version with a loose ratio: it
#   only catches a large regression, never the noise of a shared machine.
# Needs: nginx, haproxy, wrk (scripts/test.sh installs them), cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=4
GUARD=
while [ $# -gt 0 ]; do
  case $1 in
    --guard) GUARD=$2; shift 2;;
    *) DUR=$1; shift;;
  esac
done
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-5}
PORTS=(19101 19102 19103)
HAP=127.0.0.1:19111
CPE=127.0.0.1:19112
CPE_ADMIN=127.0.0.1:19113
WORK=$(mktemp -d /tmp/cpe-bench-nginx.XXXXXX)
chmod 755 "$WORK"   # nginx's workers read the bulk file
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for t in nginx haproxy wrk; do
  command -v "$t" >/dev/null || { echo "bench/lb-nginx.sh: $t is not installed (scripts/test.sh installs it)" >&2; exit 2; }
done
ulimit -n "$(ulimit -Hn)"

echo "building (release)..." >&2
cargo build --release -q -p cpe --bin cpe
BIN=target/release/cpe

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

cat > "$WORK/haproxy.cfg" <<CFG
global
  maxconn 8000
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
"$BIN" --log warn lb --listen "$CPE" "${backends[@]}" --health-check http \
  --health-path /readyz --admin "$CPE_ADMIN" > "$WORK/cpe.log" 2>&1 & CPE_PID=$!; PIDS+=($CPE_PID)

for a in 127.0.0.1:${PORTS[0]} $HAP $CPE; do
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/${a%:*}/${a#*:}") 2>/dev/null && break; sleep 0.1; done
done
sleep 1.5   # every backend UP in both proxies (rise 2 x 250 ms)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

# run TARGET MODE -> "requests MB/s cpu_us_per_unit throughput p99ms" (throughput: requests/s, bulk MB/s)
run() {
  local target=$1 mode=$2 addr pid path=/ extra=() conns=$CONNS
  case $target in
    haproxy) addr=$HAP; pid=$HAP_PID;;
    cpe) addr=$CPE; pid=$CPE_PID;;
    direct) addr=127.0.0.1:${PORTS[0]}; pid=;;
  esac
  case $mode in
    close) extra=(-H 'Connection: close');;
    bulk) path=/bulk; conns=4;;
  esac
  local t0=0 t1=0
  [ -n "$pid" ] && t0=$(cpu_ticks "$pid")
  wrk -t2 -c"$conns" -d"${DUR}s" --latency "${extra[@]}" "http://$addr$path" > "$WORK/wrk.out" 2>&1 || true
  [ -n "$pid" ] && t1=$(cpu_ticks "$pid")
  awk -v ticks=$((t1 - t0)) -v tck="$TCK" -v mode="$mode" '
    / requests in / {req=$1}
    /^Requests\/sec/ {rps=$2}
    /^Transfer\/sec/ {v=$2; u=substr(v,length(v)-1); n=substr(v,1,length(v)-2);
       if (u=="GB") n*=1024; else if (u=="KB") n/=1024; else if (u!="MB") n=n/1048576; mbs=n}
    $1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; p99=v}
    END {
      cpu_us = ticks / tck * 1e6
      unit = (mode == "bulk") ? mbs * '"$DUR"' : req
      # For bulk the throughput figure is MB/s, not requests/s.
      printf "%d %.1f %.2f %.1f %.2f\n", req, mbs, (unit > 0 ? cpu_us / unit : 0), (mode == "bulk" ? mbs : rps), p99
    }' "$WORK/wrk.out"
}

declare -A S
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="haproxy cpe"; else order="cpe haproxy"; fi
  for mode in keepalive close bulk; do
    read -r _ _ _ drps _ < <(run direct "$mode")
    S[direct.$mode.rps]+="$drps "
    if [ "$mode" = bulk ]; then per=MB; rate="MB/s"; else per=request; rate="/s"; fi
    line="round $round/$ROUNDS $mode: direct $drps $rate"
    for target in $order; do
      read -r _ _ cpu rps p99 < <(run "$target" "$mode")
      S[$target.$mode.cpu]+="$cpu "; S[$target.$mode.rps]+="$rps "; S[$target.$mode.p99]+="$p99 "
      line+="; $target $rps $rate, $cpu µs CPU per $per, p99 ${p99} ms"
    done
    echo "$line" >&2
  done
done

python3 - "$DUR" "$CONNS" "$ROUNDS" "${GUARD:-}" <<PY
import sys, statistics
dur, conns, rounds, guard = sys.argv[1:5]
S = {k: [float(x) for x in v.split()] for k, v in (l.split("=", 1) for l in """$(for k in "${!S[@]}"; do echo "$k=${S[$k]}"; done)""".split("\n") if l)}
med = lambda xs: statistics.median(xs) if xs else float("nan")
print(f"nginx (1 worker, 3 ports) behind HAProxy 2.6 (nbthread 2, leastconn, checks) and cpe lb (3 backends, checks);")
print(f"loopback, {dur}s per run, {rounds} rounds, proxies alternating; wrk -t2 -c{conns} (bulk -c4, 64 MiB answers)")
print(f"{'figure':44} {'direct':>9} {'haproxy':>9} {'cpe lb':>9}   cpe/haproxy paired: median (range)")
rows = [("keep-alive: CPU µs per request", "keepalive", "cpu"), ("keep-alive: requests/s", "keepalive", "rps"),
        ("keep-alive: p99 ms", "keepalive", "p99"),
        ("new connection: CPU µs per request", "close", "cpu"), ("new connection: requests/s", "close", "rps"),
        ("bulk: CPU µs per MB", "bulk", "cpu"), ("bulk: MB/s", "bulk", "rps")]
verdict = {}
for name, mode, fig in rows:
    h, c = S.get(f"haproxy.{mode}.{fig}", []), S.get(f"cpe.{mode}.{fig}", [])
    d = S.get(f"direct.{mode}.rps", []) if fig == "rps" else []
    pairs = [a / b for a, b in zip(c, h) if b]
    dm = f"{med(d):9.0f}" if d else f"{'-':>9}"
    rng = f"{med(pairs):.2f} ({min(pairs):.2f}-{max(pairs):.2f})" if pairs else "-"
    print(f"{name:44} {dm} {med(h):9.1f} {med(c):9.1f}   {rng}")
    verdict[(mode, fig)] = med(pairs) if pairs else float("nan")
ka, nc = verdict[("keepalive", "cpu")], verdict[("close", "cpu")]
print(f"VERDICT cpu-per-request cpe/haproxy: keep-alive {ka:.2f}, new-connection {nc:.2f} (<= 1.00: at or below HAProxy); keep-alive req/s {verdict[('keepalive', 'rps')]:.2f}")
if guard:
    g = float(guard)
    if ka > g or nc > g:
        print(f"REGRESSION: cpe lb uses more than {g}x HAProxy's CPU per request")
        sys.exit(1)
    print(f"guard: within {g}x HAProxy's CPU per request")
PY
