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
#                   Samba AD, PostgreSQL): .ci/run builds them in the background while cargo builds
#   --mesh-only     only the images of workspace binaries (the mesh, the trace receiver)
#
# The binaries are staged, without debug info, in .docker-bin/ (ignored by git); RustyVault's
# `rvault` comes from the cache deploy/local/rustyvault.sh installs into ($JML_CACHE_DIR).
# Images: lifecycle-mesh:dev (coordinator, jmlctl, connectors), lifecycle-mesh-init:dev,
# -slapd, -samba-ad, -scim, -moto, -rustyvault, -postgres and -otlp-receiver, all tagged :dev.
# The docker builds run three at a time (JML_DOCKER_BUILD_JOBS); a failed one is named with the
# last lines of its output.
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

docker info >/dev/null 2>&1 || { echo "FAILED: no Docker Engine answers (docker info): start it, or set DOCKER_HOST" >&2; exit 1; }
log "base image debian:bookworm-slim"
"$here/base-image.sh"

mesh_bins=(coordinator jmlctl connector-ldap connector-scim connector-iam connector-vault connector-memory otlp-receiver)
mkdir -p .docker-bin
if $mesh; then
  rm -rf .docker-bin/mesh
  mkdir -p .docker-bin/mesh
  if $cargo; then
    log "cargo build ${profile_args[*]} (workspace binaries)"
    cargo build --locked -q "${profile_args[@]}" --workspace --bins
  fi
  target_dir=${CARGO_TARGET_DIR:-$root/target}/$profile
  for bin in "${mesh_bins[@]}"; do
    [[ -x $target_dir/$bin ]] || { echo "FAILED: $target_dir/$bin is not built (cargo build --workspace --bins, or leave out --no-cargo)" >&2; exit 1; }
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

# build IMAGE DOCKERFILE: one image, its output in a log that is shown when it fails.
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
build() {
  local image=$1 dockerfile=$2 started=$SECONDS
  local log_file=$logs/${image%%:*}.log
  if docker build -f "deploy/docker/$dockerfile" -t "$image" \
    --build-arg BINARIES=host --build-arg BUILD_IMAGE=debian:bookworm-slim . >"$log_file" 2>&1; then
    log "built $image ($dockerfile, $((SECONDS - started)) s)"
  else
    {
      echo "FAILED: docker build -f deploy/docker/$dockerfile -t $image (the last lines of its output):"
      grep -v 'DEPRECATED\|BuildKit is currently disabled\|environment-variable\|^ *$' "$log_file" | tail -n 25
    } >&2
    return 1
  fi
}
# The builds run $JML_DOCKER_BUILD_JOBS at a time (default 3): most of their time is apt and
# pip downloads and unpacking, which overlap well even on two cores.
jobs_max=${JML_DOCKER_BUILD_JOBS:-3}
pids=()
images=()
start_build() {
  while (( $(jobs -rp | wc -l) >= jobs_max )); do sleep 0.5; done
  build "$@" &
  pids+=($!)
  images+=("$1")
}
if $mesh; then
  start_build lifecycle-mesh:dev Dockerfile
  start_build lifecycle-mesh-otlp-receiver:dev otlp-receiver.Dockerfile
fi
if $targets; then
  # The longest first.
  start_build lifecycle-mesh-samba-ad:dev samba-ad.Dockerfile
  start_build lifecycle-mesh-moto:dev moto.Dockerfile
  start_build lifecycle-mesh-scim:dev scim.Dockerfile
  start_build lifecycle-mesh-slapd:dev slapd.Dockerfile
  start_build lifecycle-mesh-postgres:dev postgres.Dockerfile
  start_build lifecycle-mesh-init:dev init.Dockerfile
  start_build lifecycle-mesh-rustyvault:dev rustyvault.Dockerfile
fi
failed=()
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${images[$i]}")
done
if (( ${#failed[@]} )); then
  echo "FAILED: ${#failed[@]} image(s) did not build: ${failed[*]} (see above)" >&2
  exit 1
fi
log "images built"
