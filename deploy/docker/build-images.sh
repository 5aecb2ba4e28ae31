#!/usr/bin/env bash
# Builds every image docker-compose.yml runs, without a registry: the base image from Debian
# packages (base-image.sh), then each Dockerfile here with the binaries compiled on this
# machine (BINARIES=host), so no Rust toolchain image is needed.
#
#   deploy/docker/build-images.sh [--profile release|debug] [--no-cargo] [--targets-only | --mesh-only]
#
#   --profile       which cargo build of the workspace binaries goes into the images (default
#                   release; CI passes debug, the build it already made)
#   --no-cargo      do not run cargo: the binaries must already be built
#   --targets-only  only the images that need no workspace binary (init, the target servers,
#                   PostgreSQL): .ci/run builds them in the background while cargo builds
#   --mesh-only     only the images of workspace binaries (the mesh, the trace receiver)
#
# The binaries are staged, without debug info, in .docker-bin/ (ignored by git); RustyVault's
# `rvault` comes from the cache deploy/local/rustyvault.sh installs into ($JML_CACHE_DIR).
# Images: lifecycle-mesh:dev (coordinator, jmlctl, connectors), lifecycle-mesh-init:dev,
# -slapd, -scim, -moto, -rustyvault, -postgres and -otlp-receiver, all tagged :dev.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
profile=release
cargo=true
targets=true
mesh=true
while (( $# )); do
  case $1 in
    --profile) profile=${2:?--profile release|debug}; shift 2 ;;
    --no-cargo) cargo=false; shift ;;
    --targets-only) mesh=false; shift ;;
    --mesh-only) targets=false; shift ;;
    *) echo "usage: $0 [--profile release|debug] [--no-cargo] [--targets-only | --mesh-only]" >&2; exit 2 ;;
  esac
done
case $profile in
  release) profile_args=(--release) ;;
  debug) profile_args=() ;;
  *) echo "--profile is release or debug" >&2; exit 2 ;;
esac
export JML_CACHE_DIR=${JML_CACHE_DIR:-$HOME/.cache/lifecycle-mesh}
# The classic builder: BuildKit needs the buildx plugin, which Debian 12 does not package.
export DOCKER_BUILDKIT=0
log() { printf '  - %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

log "base image debian:bookworm-slim"
"$here/base-image.sh"

mesh_bins=(coordinator jmlctl connector-ldap connector-scim connector-iam connector-vault connector-memory otlp-receiver)
rm -rf .docker-bin
mkdir -p .docker-bin/mesh
if $mesh; then
  if $cargo; then
    log "cargo build ${profile_args[*]} (workspace binaries)"
    cargo build --locked -q "${profile_args[@]}" --workspace --bins
  fi
  target_dir=${CARGO_TARGET_DIR:-$root/target}/$profile
  for bin in "${mesh_bins[@]}"; do
    [[ -x $target_dir/$bin ]] || { echo "$target_dir/$bin is not built (cargo build --workspace --bins)" >&2; exit 1; }
    if command -v objcopy >/dev/null 2>&1; then
      objcopy --strip-debug "$target_dir/$bin" ".docker-bin/mesh/$bin"
    else
      cp "$target_dir/$bin" ".docker-bin/mesh/$bin"
    fi
  done
fi
if $targets; then
  rvault=$JML_CACHE_DIR/rusty_vault/bin/rvault
  [[ -x $rvault ]] || "$root/deploy/local/rustyvault.sh" install
  cp "$rvault" .docker-bin/rvault
fi

build() {
  local image=$1 dockerfile=$2
  log "docker build $image ($dockerfile)"
  # (The classic builder's deprecation notice is left out of the log.)
  docker build -q -f "deploy/docker/$dockerfile" -t "$image" \
    --build-arg BINARIES=host --build-arg BUILD_IMAGE=debian:bookworm-slim . >/dev/null \
    2> >(grep -v 'DEPRECATED\|BuildKit is currently disabled\|environment-variable\|^$' >&2 || true)
}
if $mesh; then
  build lifecycle-mesh:dev Dockerfile
  build lifecycle-mesh-otlp-receiver:dev otlp-receiver.Dockerfile
fi
if $targets; then
  build lifecycle-mesh-init:dev init.Dockerfile
  build lifecycle-mesh-slapd:dev slapd.Dockerfile
  build lifecycle-mesh-scim:dev scim.Dockerfile
  build lifecycle-mesh-moto:dev moto.Dockerfile
  build lifecycle-mesh-rustyvault:dev rustyvault.Dockerfile
  build lifecycle-mesh-postgres:dev postgres.Dockerfile
fi
log "images built"
