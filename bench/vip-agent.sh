#!/usr/bin/env bash
# The cpe vip agent's own timings on one machine (namespaces, real etcd, real kernel):
# takeover after a health failure, hand-over on SIGTERM, drop at the lease deadline when
# partitioned from etcd, repair of a deleted address, guard after SIGKILL. Runs the
# vip_agent tests RUNS times (default 3) and prints the figures each run measured.
# The three-machine comparison with keepalived is bench/vip.sh.
#
#   sudo bench/vip-agent.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
cargo build -q --release -p cpe --bin cpe
cargo build -q --release -p cpe-e2e --tests
for i in $(seq 1 "$runs"); do
  echo "== run $i"
  cargo test -q --release -p cpe-e2e --test e2e vip_agent -- --nocapture --test-threads 1 2>&1 \
    | grep -E "after|->" | grep -v "^\s*$"
done
