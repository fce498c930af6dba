#!/usr/bin/env bash
# Chaos: a long seeded run of overlapping faults against cpe vip, then keepalived, on the
# VIP testbed (three machines as network namespaces, each with an etcd member, an API server
# and the agent; a client sending an HTTPS request through the VIP every 20 ms and keeping a
# watch stream open; with --front-lb through a load balancer on a host of its own in front of
# the machines instead), each judged by the checker of crates/testkit/src/chaos. The API server
# is the stand-in `cpe test-apiserver` by default, or a real kube-apiserver 1.20 on each
# machine's address against its own etcd member with --api kube (a ConfigMap watch and a
# writer then make the watch stream).
# Prints per agent: availability (% of client requests that succeeded), the client-seen
# outage per fault kind (p50/p90/max, ms), and every rule broken with the history around it.
# See docs/chaos.md.
#
# Needs root and: etcd, etcdctl, keepalived, nftables, iproute2 (tc), tcpdump, curl
# (haproxy for keepalived with --front-lb); with --api kube the kube-apiserver binary:
# $CPE_KUBE_APISERVER, else the cache of scripts/kube-apiserver.sh
# (/var/cache/cpe-test/kube-apiserver/kube-apiserver).
# Usage:
#   bench/chaos.sh --minutes 30                 # random seed (printed), both agents
#   bench/chaos.sh --minutes 5 --seed 15 --agents cpe
#   bench/chaos.sh --minutes 30 --seed 769871270 --agents cpe --kinds v1   # the recorded run
#   bench/chaos.sh --minutes 10 --machines 5          # five control-plane machines
#   bench/chaos.sh --minutes 10 --load-balance        # cpe vip --load-balance
#   bench/chaos.sh --minutes 3 --front-lb             # cpe lb (keepalived: HAProxy) on a host of
#                                                     # its own in front; not with --load-balance
#                                                     # nor --api kube
#   bench/chaos.sh --minutes 5 --seed 4242 --agents cpe --api kube   # real kube-apiservers
#   bench/chaos.sh --seed N --minutes M --print-schedule   # the schedule only
# Extra arguments go to the runner (crates/testkit/examples/chaos_bench.rs).
# Histories land in bench/out/chaos/<agent>-<seed>.json (<agent>-front-lb-<seed>.json with
# --front-lb, <agent>-kube-<seed>.json with --api kube) and the run's logs beside them in
# <the same name>-logs/ (git-ignored); exit status 1 if the cpe run broke a rule.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "bench/chaos.sh needs root (network namespaces)" >&2
  exit 2
fi
cargo build --release -q -p cpe --bin cpe
cargo build --release -q -p cpe-testkit --example chaos_bench
kube=""
case " $* " in
  *" --api kube "*)
    kube=", kube-apiserver: $("${CPE_KUBE_APISERVER:-/var/cache/cpe-test/kube-apiserver/kube-apiserver}" --version 2>&1 | head -1)" ;;
esac
echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), keepalived: $(keepalived --version 2>&1 | head -1), etcd: $(etcd --version | head -1)$kube"
exec target/release/examples/chaos_bench --cpe target/release/cpe --out bench/out/chaos "$@"
