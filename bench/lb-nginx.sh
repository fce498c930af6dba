#!/usr/bin/env bash
# `cpe lb` against HAProxy with a real web server behind both: Debian's nginx (one worker,
# three listen ports = three backends, as a control plane has three API servers), HAProxy
# 2.6 configured for a control plane (TCP mode, nbthread 2, leastconn, HTTP checks every
# 250 ms, TCP keepalive both sides) and `cpe lb` with the same backends and checks; CPU per
# request from /proc next to requests/s, p99 and bulk, paired per round (alternating
# order), then medians. The setup and the measuring live in bench/lb/compare.sh (shared
# with bench/lb.sh).
#
# Usage: [ROUNDS=5] [CONNS=64] [PERF=1] bench/lb-nginx.sh [DURATION_SECONDS] [--guard RATIO]
#   --guard RATIO: exit 1 when cpe's keep-alive or new-connection CPU per request is more
#   than RATIO x HAProxy's (paired median). CI runs a short version with a loose ratio: it
#   only catches a large regression, never the noise of a shared machine.
# Needs: nginx, haproxy, wrk (scripts/test.sh installs them), cargo.
exec "$(dirname "$0")/lb/compare.sh" --backend nginx "$@"
