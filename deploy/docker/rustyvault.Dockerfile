# RustyVault, the Vault-compatible target of the PAM connector, for compose.
FROM rust:1.85-bookworm AS build
RUN cargo install rusty_vault --locked --root /out
FROM debian:bookworm-slim
COPY --from=build /out/bin/ /usr/local/bin/
COPY deploy/docker/rustyvault.hcl /etc/rustyvault/config.hcl
EXPOSE 8200
CMD ["rvault", "server", "--config", "/etc/rustyvault/config.hcl"]
