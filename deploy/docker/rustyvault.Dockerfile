# RustyVault 0.2.1 (crates.io `rusty_vault`, binary `rvault`), the Vault-API target of the
# PAM connector, for docker-compose.yml. It starts sealed and uninitialised: the
# `targets-init` service of the compose file initialises and unseals it through the API
# (deploy/docker/init.sh), as deploy/local/rustyvault.sh does on one machine. Runs as uid 10004.
#
# Where `rvault` comes from is the build argument BINARIES (as in deploy/docker/Dockerfile):
#   source (default)  `cargo install rusty_vault` in BUILD_IMAGE (default rust:1-bookworm)
#   host              .docker-bin/rvault, staged by deploy/docker/build-images.sh from the binary
#                     deploy/local/rustyvault.sh installs into $JML_CACHE_DIR; pass
#                     BUILD_IMAGE=debian:bookworm-slim so nothing is pulled.
ARG BUILD_IMAGE=rust:1-bookworm
FROM ${BUILD_IMAGE} AS binaries
ARG BINARIES=source
COPY . /src
RUN set -eu; mkdir -p /out/bin; \
    if [ "$BINARIES" = host ]; then \
      cp /src/.docker-bin/rvault /out/bin/rvault; \
    else \
      apt-get update; \
      apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev cmake; \
      cargo install rusty_vault --version =0.2.1 --locked --root /out; \
    fi

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10004 --user-group --home-dir /var/lib/rustyvault rustyvault \
 && mkdir -p /var/lib/rustyvault/data && chown -R rustyvault:rustyvault /var/lib/rustyvault
COPY --from=binaries /out/bin/rvault /usr/local/bin/rvault
COPY deploy/docker/rustyvault.hcl /etc/rustyvault/config.hcl
USER 10004
WORKDIR /var/lib/rustyvault
EXPOSE 8200
CMD ["rvault", "server", "--config", "/etc/rustyvault/config.hcl"]
