#!/usr/bin/env bash
# Builds a real kube-apiserver from Debian's `kubernetes` source package (bookworm: 1.20.x) once and
# caches it; prints the binary's path on stdout. The end-to-end discovery tests run it in network
# namespaces (crates/testkit/src/kube, docs/testkit.md). A second run finds the cached binary and
# builds nothing; two runs at once build once (a lock in the cache directory).
#
#   scripts/kube-apiserver.sh            # path of the cached or freshly built binary
#   CPE_KUBE_CACHE=/some/dir scripts/kube-apiserver.sh
#
# Needs root (apt-get) on a Debian bookworm machine the first time; about 5-6 minutes on 2 cores.
set -euo pipefail
cache=${CPE_KUBE_CACHE:-/var/cache/cpe-test/kube-apiserver}
bin="$cache/kube-apiserver"
log() { echo "kube-apiserver.sh: $*" >&2; }

if [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
# One build at a time (two test runs started together): the second waits, then finds the
# binary the first one cached.
exec 9>"$cache/.lock"
flock 9
if [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi
src_list=/etc/apt/sources.list.d/cpe-deb-src.sources
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  log "adding a deb-src entry for bookworm main ($src_list)"
  cat >"$src_list" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt-get update -qq >&2
fi
if ! command -v go >/dev/null || ! command -v dpkg-source >/dev/null || ! command -v make >/dev/null; then
  log "installing golang-go, dpkg-dev, make"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go dpkg-dev make rsync >&2
fi

work="$cache/build"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
log "fetching the kubernetes source package"
apt-get source -qq kubernetes >&2 2>&1 || { log "apt-get source kubernetes failed"; exit 1; }
tree=$(find "$work" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -1)
[[ -n "$tree" ]] || { log "no unpacked kubernetes-* tree in $work"; exit 1; }

# The 1.20 build wants a GOPATH layout with the tree at k8s.io/kubernetes.
mkdir -p "$work/.go/src/k8s.io"
ln -sfn "$tree" "$work/.go/src/k8s.io/kubernetes"
cd "$work/.go/src/k8s.io/kubernetes"
log "building cmd/kube-apiserver (CGO_ENABLED=0; 5-6 minutes on 2 cores)"
# The Go build cache goes with the tree: nothing but the binary stays behind.
export GOPATH="$work/.go" CGO_ENABLED=0 GOCACHE="$work/.gocache"
unset GOFLAGS GO111MODULE
make WHAT=cmd/kube-apiserver KUBE_BUILD_PLATFORMS=linux/amd64 >&2
out=$(find "$tree/_output" -type f -name kube-apiserver -perm -u+x | head -1)
[[ -n "$out" ]] || { log "the build produced no kube-apiserver"; exit 1; }
install -m 0755 "$out" "$bin.tmp" && mv "$bin.tmp" "$bin"
"$bin" --version >&2
rm -rf "$work"
echo "$bin"
