#!/usr/bin/env bash
# Rolling replacement as Cluster API does it (issue 10): three control-plane machines
# (network namespaces, each with a real etcd member and a real kube-apiserver 1.20) replaced
# one by one by machines with new names and new addresses, through
#   - cpe lb --discover kubernetes, seeded with the first machine only, and
#   - HAProxy with the static list of the original three (it cannot follow a replacement),
# each in a fresh testbed. A client sends GET /version through the endpoint every 50 ms on
# fresh connections and kubectl get --raw /readyz runs in a loop. Printed per load balancer:
# failed requests, failed kubectl runs, and per new machine the time from its API server's
# first /readyz 200 to its first proxied connection (cpe lb's /status).
#
# Needs root and: etcd, etcdctl, kubectl, haproxy, curl (scripts/test.sh installs them), and the
# kube-apiserver of scripts/kube-apiserver.sh (built on the first run, ~6 min). Usage:
#   bench/replace.sh                 # both load balancers
#   bench/replace.sh --lbs cpe
#
# Last run (2026-12-02, the example in a debug build, 2 shared cores under load 20+):
#   cpe lb --discover kubernetes: 0 of 3,242 /version failed, 0 of 358 kubectl; first /readyz 200
#     -> first proxied connection 629 ms, 49.6 s, 313 ms (the 49.6 s: the discovery watch sat on a
#     removed machine's API server, which sends nothing once its etcd member is gone)
#   haproxy (static list): 136 of 1,124 failed, 1 of 99 kubectl: every request after the last
#     original machine left; the new machines never got a connection.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "bench/replace.sh needs root (network namespaces)" >&2
  exit 2
fi
CPE_KUBE_APISERVER=$(scripts/kube-apiserver.sh)
export CPE_KUBE_APISERVER
cargo build --release -q -p cpe --bin cpe
cargo build --release -q -p cpe-testkit --example replace_bench
echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cores, $("$CPE_KUBE_APISERVER" --version), etcd: $(etcd --version | head -1), $(haproxy -v | head -1)"
exec target/release/examples/replace_bench --cpe target/release/cpe "$@"
