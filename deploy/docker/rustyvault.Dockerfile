# RustyVault 0.2.1 (crates.io `rusty_vault`, binary `rvault`), the Vault-API target of the
# PAM connector, for docker-compose.yml. It starts sealed and uninitialised: the
# `targets-init` service of the compose file initialises and unseals it through the API
# (deploy/docker/init.sh), as deploy/local/rustyvault.sh does on one machine.
FROM rust:1-bookworm AS build
# rusty_vault links OpenSSL and builds aws-lc: a C toolchain and cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev cmake \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install rusty_vault --version =0.2.1 --locked --root /out

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/rustyvault/data
COPY --from=build /out/bin/rvault /usr/local/bin/rvault
COPY deploy/docker/rustyvault.hcl /etc/rustyvault/config.hcl
WORKDIR /var/lib/rustyvault
EXPOSE 8200
CMD ["rvault", "server", "--config", "/etc/rustyvault/config.hcl"]
