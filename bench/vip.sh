#!/usr/bin/env bash
# VIP failover: cpe vip against keepalived, same testbed, same scenarios, same client.
#
# Three control-plane machines (network namespaces on a bridge, each with an etcd member,
# the stand-in API server `cpe test-apiserver` and the VIP agent) and a client sending an
# HTTPS request to VIP:6443/readyz every 20 ms. Each scenario injects one failure into the
# VIP holder, measures what the client saw, repairs, and goes on. Printed per scenario and
# agent: the client-seen outage (median and worst of RUNS runs), failed requests, the
# slowest request, whether two machines ever held the VIP at once, whether the client's
# neighbour entry followed the new holder, and whether the VIP settled on a healthy machine.
#
# Needs root and: etcd, etcdctl, keepalived, nftables, tcpdump, curl (scripts/test.sh
# installs them). Usage:
#   bench/vip.sh                        # 3 runs, both agents, every scenario
#   RUNS=5 bench/vip.sh --scenarios link-cut,agent-sigterm --agents cpe
#   bench/vip.sh --load-balance         # cpe vip --load-balance (issue 11, agent `cpe-lb`):
#                                       # every agent runs the load balancer on :6444, the
#                                       # holder redirects VIP:6443 to it (nftables); against
#                                       # keepalived+HAProxy (kubeadm's recipe) unless
#                                       # --agents says otherwise
#   RUNS=3 bench/vip.sh --load-balance --scenarios apiserver-killed,readyz-503,link-cut
#   bench/vip.sh --agents cpe --scenarios none --safety overload,resign,prefer   # issue 11
# Extra arguments go to the runner (crates/testkit/examples/vip_bench.rs).
# The JSON of every run lands in bench/vip/last.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "bench/vip.sh needs root (network namespaces)" >&2
  exit 2
fi
cargo build --release -q -p cpe
cargo build --release -q -p cpe-testkit --example vip_bench
echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cores, keepalived: $(keepalived --version 2>&1 | head -1), etcd: $(etcd --version | head -1)"
extra=()
args=()
lb=0
agents_given=0
for a in "$@"; do
  case "$a" in
    --load-balance) lb=1; extra+=(--cpe-arg --load-balance) ;;
    --agents) agents_given=1; args+=("$a") ;;
    *) args+=("$a") ;;
  esac
done
if [ "$lb" = 1 ] && [ "$agents_given" = 0 ]; then
  extra+=(--agents cpe-lb,keepalived-haproxy)
fi
echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg) (other builds may share the cores: compare agents within one run)"
exec target/release/examples/vip_bench --cpe target/release/cpe --runs "${RUNS:-3}" \
  --json bench/vip/last.jsonl "${extra[@]}" "${args[@]}"
