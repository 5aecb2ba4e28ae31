#!/usr/bin/env bash
# Makes the base image every Dockerfile here starts from, `debian:bookworm-slim`, from Debian
# packages, for a container engine that cannot pull from a registry.
#
#   deploy/docker/base-image.sh            import the image unless the engine already has it
#   deploy/docker/base-image.sh --refresh  debootstrap again (new point release, security fixes)
#
# `debootstrap --variant=minbase bookworm` builds a root file system (dpkg, apt, bash,
# coreutils: about 130 MB unpacked), configured the way Debian's own slim image is: no
# documentation, man pages or translations installed by later `apt-get install`s, apt lists and
# package caches cleaned after each run, the bookworm, bookworm-updates and bookworm-security
# suites in /etc/apt/sources.list.d/debian.sources. It is packed as a tarball cached under
# $JML_CACHE_DIR/docker/ (a CI rerun only re-imports it, a few seconds) and `docker import`ed as
# `debian:bookworm-slim` with the slim image's PATH and `bash` as the command. The Dockerfiles
# are therefore the ones a user with a registry builds unchanged.
#
# Where HTTPS goes through an intercepting proxy (as on the machines this project is built on),
# pip and cargo inside image builds must trust the proxy's CA like the host does: the bundle
# named by JML_DOCKER_BUILD_CA (default: $PIP_CERT, else $SSL_CERT_FILE, when set) is copied into
# the image as /etc/ssl/jml-build-ca.pem and named there by PIP_CERT and CARGO_HTTP_CAINFO.
# Without one, nothing is added.
#
# Needs root (debootstrap) and the Debian mirror ($JML_DEBIAN_MIRROR, default deb.debian.org).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../local/lib.sh
source "$here/../local/lib.sh"

IMAGE=debian:bookworm-slim
SUITE=bookworm
MIRROR=${JML_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache_dir=${JML_CACHE_DIR:-$HOME/.cache/lifecycle-mesh}/docker
tarball=$cache_dir/debian-$SUITE-slim.tar
build_ca=${JML_DOCKER_BUILD_CA:-${PIP_CERT:-${SSL_CERT_FILE:-}}}

refresh=false
[[ ${1:-} == --refresh ]] && refresh=true

if ! $refresh && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE is already in the engine"
  exit 0
fi

make_rootfs() {
  apt_install debootstrap
  mkdir -p "$cache_dir"
  local root
  root=$(mktemp -d "$cache_dir/rootfs.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$root'" RETURN
  echo "debootstrap --variant=minbase $SUITE from $MIRROR (a few minutes)" >&2
  debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$cache_dir/debootstrap.log" 2>&1 || {
    tail -n 30 "$cache_dir/debootstrap.log" >&2
    return 1
  }

  # What Debian's slim image configures (docker-library/debian's slimify and apt settings).
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
  printf 'Apt::AutoRemove::SuggestsImportant "false";\n' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # Nothing host-specific or cached stays in the image.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* "$root"/tmp/* \
    "$root"/usr/share/doc/*/[!c]* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
  : >"$root/etc/hostname"
  : >"$root/etc/resolv.conf"
  rm -f "$root/etc/machine-id" && : >"$root/etc/machine-id"
  if [[ -n $build_ca && -s $build_ca ]]; then
    install -D -m 0644 "$build_ca" "$root/etc/ssl/jml-build-ca.pem"
  fi
  tar --numeric-owner --xattrs -C "$root" -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
  echo "root file system cached in $tarball ($(du -h "$tarball" | cut -f1))" >&2
}

if $refresh || [[ ! -s $tarball ]]; then
  make_rootfs
fi

changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
if tar -tf "$tarball" ./etc/ssl/jml-build-ca.pem >/dev/null 2>&1; then
  changes+=(--change 'ENV PIP_CERT=/etc/ssl/jml-build-ca.pem' --change 'ENV CARGO_HTTP_CAINFO=/etc/ssl/jml-build-ca.pem')
fi
docker import "${changes[@]}" \
  --change 'CMD ["bash"]' \
  --message "debootstrap --variant=minbase $SUITE ($MIRROR), deploy/docker/base-image.sh" \
  "$tarball" "$IMAGE" >/dev/null
echo "imported $IMAGE from $tarball"
