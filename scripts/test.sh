#!/usr/bin/env bash
# Runs every test of cpe, the privileged end-to-end ones included, after installing what
# they need. This is the README's test command and what CI runs (.ci/run).
#
# Needs root (network namespaces, addresses, raw sockets); installs Debian packages when
# they are missing. Nothing is skipped silently: an end-to-end test that cannot get what it
# needs fails and says why.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  iproute2 iputils-ping iputils-arping tcpdump nftables procps psmisc curl  # hosts as namespaces
  etcd-server etcd-client                                                   # VIP election, etcdctl watch
  haproxy keepalived wrk nginx                                              # peers for the benchmarks, the CI guard
  umoci file podman runc                                                    # release image (crates/e2e/tests/e2e/release.rs)
)

if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the end-to-end tests need root (network namespaces, raw sockets); run it as root" >&2
  exit 2
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# kubectl: the machine image ships it; Debian's own client is the fallback.
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
if [ ${#missing[@]} -gt 0 ]; then
  echo "scripts/test.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# A real kube-apiserver (1.20) for the discovery tests (crates/e2e/tests/discovery.rs): built
# once from Debian's kubernetes source package (~6 min on 2 cores) and cached under
# /var/cache/cpe-test. If the build fails the run goes on: those tests then fail, saying so.
if CPE_KUBE_APISERVER=$(scripts/kube-apiserver.sh); then
  export CPE_KUBE_APISERVER
else
  echo "scripts/test.sh: building kube-apiserver failed (see above); the discovery tests will fail" >&2
fi

cargo test --workspace --locked "$@"
