#!/usr/bin/env bash
# Benchmarks `cpe lb` against HAProxy and a direct connection on loopback, twice:
#   1. in front of bench_backend (crates/lb/examples, a minimal tokio HTTP/1.1 server),
#      then RSS of each proxy holding IDLE idle proxied connections;
#   2. in front of a real web server: Debian's nginx on three ports (three backends).
# HAProxy 2.6 is configured as for a control plane (TCP mode, nbthread 2, leastconn, HTTP
# checks every 250 ms, TCP keepalive both sides); cpe lb gets the same backends and checks.
# Each part prints, per round and as paired medians (cpe/HAProxy within each round, the
# proxies alternating), CPU µs per request from /proc next to requests/s, p99, new
# connections and bulk MB/s, and a VERDICT line. The setup and the measuring live in
# bench/lb/compare.sh (one place for both parts and for bench/lb-nginx.sh).
#
# Usage: [ROUNDS=5] [CONNS=64] [PERF=1] bench/lb.sh [DURATION_SECONDS] [IDLE_CONNECTIONS]
#   (defaults 5, 9000). A proxy holds two descriptors per idle connection: the hard
#   file-descriptor limit must be above 2 x IDLE + 100 (20,000 on the machines this was
#   written on, hence 9,000; the table also extrapolates the RSS to 10,000).
# Needs: wrk, haproxy, nginx, python3, cargo (scripts/test.sh installs them).
# On 2 shared cores the load generator, the backend and the proxy compete for the CPU:
# compare the paired ratios and CPU per request from one run, not absolute figures.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5}
IDLE=${2:-9000}
echo "== bench_backend (tokio) behind both, then RSS at $IDLE idle connections ==" >&2
bench/lb/compare.sh --backend tokio --idle "$IDLE" "$DUR"
echo
echo "== nginx (three ports) behind both ==" >&2
bench/lb/compare.sh --backend nginx "$DUR"
