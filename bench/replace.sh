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
