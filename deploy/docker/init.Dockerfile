# The one-shot set-up jobs of docker-compose.yml (deploy/docker/init.sh): dev certificates
# and secrets, RustyVault initialisation and unsealing, seeding the targets.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates openssl python3 iptables \
 && rm -rf /var/lib/apt/lists/*
COPY deploy/certs/make-dev-certs.sh /usr/local/bin/make-dev-certs.sh
COPY deploy/quickstart/seed.py /usr/local/bin/seed.py
COPY deploy/docker/init.sh /usr/local/bin/init.sh
# Not /: python's `import secrets` would find the /secrets volume first.
WORKDIR /var/tmp
ENTRYPOINT ["bash", "/usr/local/bin/init.sh"]
