#!/usr/bin/env bash
# How long `cpe plan` and `cpe render` take: a typical definition, and the largest file a
# definition may be (1 MiB; the corpus file lists 20000 machines). Reruns with:
#   bench/plan.sh            (builds the release binary first)
# There is no peer to compare with: Konvoy's checks run inside its CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p cpe
cpe=target/release/cpe
hyperfine -N --warmup 3 --runs 50 \
  "$cpe plan -f examples/virtual-ip-3.yaml" \
  "$cpe render -f examples/virtual-ip-3.yaml --kind capi"
hyperfine -N --warmup 1 --runs 10 \
  "$cpe plan -f crates/config/tests/corpus/many-machines.yaml --output json"
