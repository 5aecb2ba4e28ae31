# moto's server (PyPI `moto[server]`, the AWS API emulator), the AWS IAM connector's target in
# docker-compose.yml, installed and served by deploy/local/moto.sh (the same version range the
# tests run against) on 5000. State in memory. Python from Debian, moto in a virtualenv; runs
# as uid 10003. Also carries boto3 (a moto dependency): the compose test reads IAM with it.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10003 --user-group --no-create-home moto \
 && mkdir -p /opt/lifecycle-mesh
COPY deploy/local/lib.sh deploy/local/moto.sh /opt/lifecycle-mesh/
ENV JML_MOTO_VENV=/opt/moto
# The venv, not Debian's python: pip refuses the system python (PEP 668), so moto.sh falls back.
RUN bash /opt/lifecycle-mesh/moto.sh install && rm -rf /root/.cache
USER 10003
EXPOSE 5000
CMD ["bash", "/opt/lifecycle-mesh/moto.sh", "serve"]
