#!/usr/bin/env bash
# Builds a cpe release into target/release/:
#   cpe-<version>-linux-amd64.tar.gz  the static binary, systemd units, examples, shell
#                                     completions, man pages, docs, SHA256SUMS of its files
#   cpe-<version>-oci.tar             an OCI image (oci-archive) FROM scratch with /cpe only,
#                                     tagged cpe:<version>: what `cpe render` names
#   cpe-<version>-SHA256SUMS          checksums of the two
#
# Usage:
#   scripts/release.sh                    everything (the static build takes minutes)
#   scripts/release.sh image BINARY DIR   only the OCI archive, from a given static binary,
#                                         into DIR (what crates/e2e/tests/e2e/release.rs runs)
#
# Nothing is downloaded but Debian packages (umoci, file) and crates: the static binary is
# the host target (x86_64-unknown-linux-gnu) linked with +crt-static against Debian's
# libc.a, so no rustup target is needed. `--target` keeps build scripts and proc macros
# dynamic (crt-static applies to the target only). No container daemon: umoci writes the
# image layout, tar packs it.
#
# Environment: REGISTRY (default ghcr.io/cpe-dev) goes into the archive's
# io.containerd.image.name annotation, so `ctr images import` and `podman load` name the
# image exactly as `cpe render` does by default; SOURCE_DATE_EPOCH (default: the last commit's time) fixes
# every timestamp, so two builds of one commit give the same archives.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
REGISTRY=${REGISTRY:-ghcr.io/cpe-dev}
SOURCE_URL=https://github.com/cpe-dev/cpe
packages=(umoci file)

need_packages() {
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" != 0 ]; then
    echo "scripts/release.sh: needs the Debian packages ${missing[*]} (run as root to install them)" >&2
    exit 2
  fi
  echo "scripts/release.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# The version of the workspace ([workspace.package] version in Cargo.toml).
version() {
  sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1
}

revision() {
  git rev-parse --short=12 HEAD 2>/dev/null || echo unknown
}

: "${SOURCE_DATE_EPOCH:=$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

# Reproducible tar: names sorted, owners and times fixed.
det_tar() {
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" "$@"
}

# image BINARY OUTDIR: OUTDIR/cpe-<version>-oci.tar from a static binary.
build_image() {
  local bin=$1 out=$2 v rev work ref
  v=$(version)
  rev=$(revision)
  ref="cpe:$v"
  work=$(mktemp -d)
  mkdir -p "$out"
  # A copy with a fixed time and mode, so the layer's bytes depend on the binary only.
  install -m 0755 "$bin" "$work/cpe"
  touch -d "@$SOURCE_DATE_EPOCH" "$work/cpe"
  umoci init --layout "$work/layout"
  umoci new --image "$work/layout:$v"
  # unpack + repack, not `umoci insert`: umoci 0.4.7's insert leaves the layer's tar
  # without its final padding and end-of-archive blocks (GNU tar: "Unexpected EOF").
  umoci unpack --image "$work/layout:$v" "$work/bundle" >/dev/null
  install -m 0755 "$work/cpe" "$work/bundle/rootfs/cpe"
  touch -d "@$SOURCE_DATE_EPOCH" "$work/bundle/rootfs/cpe" "$work/bundle/rootfs"
  umoci repack --image "$work/layout:$v" --history.created "$CREATED" \
    --history.created_by "scripts/release.sh: the static cpe binary" "$work/bundle"
  umoci config --image "$work/layout:$v" --created "$CREATED" --history.created "$CREATED" \
    --os linux --architecture amd64 \
    --config.entrypoint /cpe --config.cmd version \
    --config.label "org.opencontainers.image.title=cpe" \
    --config.label "org.opencontainers.image.version=$v" \
    --config.label "org.opencontainers.image.revision=$rev" \
    --config.label "org.opencontainers.image.source=$SOURCE_URL" \
    --config.label "org.opencontainers.image.created=$CREATED" \
    --config.label "org.opencontainers.image.licenses=Apache-2.0" \
    --manifest.annotation "org.opencontainers.image.version=$v" \
    --manifest.annotation "org.opencontainers.image.revision=$rev" \
    --manifest.annotation "org.opencontainers.image.source=$SOURCE_URL" \
    --manifest.annotation "org.opencontainers.image.created=$CREATED"
  umoci gc --layout "$work/layout"
  # The references the archive carries: `cpe:<version>` (the OCI ref name), and the full
  # name REGISTRY/cpe:<version> that `ctr images import` and `podman load` give the image,
  # which is what `cpe render` names by default. umoci's tags cannot hold a `:`, so the
  # index (not content-addressed) is written here.
  local index="$work/layout/index.json"
  sed -i "s|\"org.opencontainers.image.ref.name\":\"$v\"|\"io.containerd.image.name\":\"$REGISTRY/$ref\",\"org.opencontainers.image.ref.name\":\"$ref\"|" "$index"
  grep -q "\"org.opencontainers.image.ref.name\":\"$ref\"" "$index" || {
    echo "scripts/release.sh: could not name the image in $index: $(cat "$index")" >&2
    exit 1
  }
  det_tar -C "$work/layout" -cf "$out/cpe-$v-oci.tar" oci-layout index.json blobs
  rm -rf "$work"
  echo "$out/cpe-$v-oci.tar ($ref, $(du -h "$out/cpe-$v-oci.tar" | cut -f1))"
}

# Static: `file` says so and `ldd` finds nothing to load; it runs, and it resolves a name
# (static glibc resolves through its built-in files and dns back ends, see docs/install.md).
check_static() {
  local bin=$1
  file -L "$bin" | grep -Eq 'statically linked|static-pie linked' || {
    echo "scripts/release.sh: $bin is not statically linked" >&2
    exit 1
  }
  # ldd says "not a dynamic executable" (static) or "statically linked" (static-pie):
  # any "=>" line is a shared library it would load.
  if ldd "$bin" 2>&1 | grep -q '=>'; then
    echo "scripts/release.sh: ldd finds shared libraries in $bin:" >&2
    ldd "$bin" >&2
    exit 1
  fi
  "$bin" version
  "$bin" plan -f examples/external-lb-3.yaml >/dev/null
  "$bin" preflight --control-plane-endpoint-host localhost --control-plane-replicas 1 \
    --only endpoint-resolves >/dev/null 2>&1 || true
}

release() {
  need_packages
  local v out bin name
  v=$(version)
  out=target/release
  name="cpe-$v-linux-amd64"
  echo "scripts/release.sh: cpe $v ($(revision)), static build for $TARGET"
  local start=$SECONDS
  RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target "$TARGET" -p cpe
  echo "scripts/release.sh: static build took $((SECONDS - start)) s"
  # The shipped copy without debug information (the release profile keeps line tables
  # for backtraces during development; they are most of the file's size).
  mkdir -p "target/$TARGET/dist"
  bin="target/$TARGET/dist/cpe"
  objcopy --strip-debug "target/$TARGET/release/cpe" "$bin"
  check_static "$bin"

  dist=$(mktemp -d) # global: the EXIT trap removes it
  trap 'rm -rf "$dist"' EXIT
  local d="$dist/$name"
  mkdir -p "$d/systemd" "$d/examples" "$d/docs" "$out"
  install -m 0755 "$bin" "$d/cpe"
  cp examples/*.yaml "$d/examples/"
  cp README.md "$d/"
  cp docs/install.md "$d/docs/"
  [ -d deploy ] && cp -r deploy "$d/deploy"
  # The units as `cpe render` writes them for the examples: external-lb-3 for the load
  # balancer, virtual-ip-3 for the VIP agent. Both read /etc/cpe/endpoint.yaml.
  "$bin" render -f examples/external-lb-3.yaml --kind systemd >"$d/systemd/cpe-lb.service"
  "$bin" render -f examples/virtual-ip-3.yaml --kind systemd >"$d/systemd/cpe-vip.service"
  "$bin" generate completions "$d/completions" >/dev/null
  "$bin" generate man "$d/man/man1" >/dev/null
  (cd "$d" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort |
    xargs sha256sum >SHA256SUMS)
  find "$d" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  det_tar -C "$dist" -cf - "$name" | gzip -n -9 >"$out/$name.tar.gz"
  echo "$out/$name.tar.gz ($(du -h "$out/$name.tar.gz" | cut -f1))"

  build_image "$bin" "$out"
  (cd "$out" && sha256sum "$name.tar.gz" "cpe-$v-oci.tar" >"cpe-$v-SHA256SUMS")
  echo "$out/cpe-$v-SHA256SUMS:"
  cat "$out/cpe-$v-SHA256SUMS"
}

case "${1:-}" in
  "") release ;;
  image)
    [ $# -eq 3 ] || { echo "usage: scripts/release.sh image BINARY OUTDIR" >&2; exit 2; }
    need_packages
    build_image "$2" "$3"
    ;;
  -h|--help) sed -n '2,24p' "$0" ;;
  *) echo "usage: scripts/release.sh [image BINARY OUTDIR]" >&2; exit 2 ;;
esac
