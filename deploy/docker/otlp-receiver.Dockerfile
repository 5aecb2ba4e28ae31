# The project's own OTLP/gRPC trace receiver (crates/mesh-harness, binary `otlp-receiver`, the
# receiver tests/e2e/tracing.rs exports to), the trace backend of docker-compose.yml where no
# Jaeger image can be pulled: it listens on 4317 and prints every span it receives as one JSON
# line (service, name, trace and span ids, attributes), so `docker compose logs otlp-receiver`
# shows each event's trace. A test receiver, not a trace store: with a registry, point
# OTEL_EXPORTER_OTLP_ENDPOINT at Jaeger or an OpenTelemetry Collector instead.
# BINARIES and BUILD_IMAGE as in deploy/docker/Dockerfile.
ARG BUILD_IMAGE=rust:1-bookworm
FROM ${BUILD_IMAGE} AS binaries
ARG BINARIES=source
WORKDIR /src
COPY . .
RUN set -eu; mkdir -p /out; \
    if [ "$BINARIES" = host ]; then cp .docker-bin/mesh/otlp-receiver /out/; \
    else cargo build --release --locked -p mesh-harness --bin otlp-receiver; cp target/release/otlp-receiver /out/; fi

FROM debian:bookworm-slim
COPY --from=binaries /out/otlp-receiver /usr/local/bin/otlp-receiver
USER 65534:65534
EXPOSE 4317
CMD ["otlp-receiver", "0.0.0.0:4317"]
