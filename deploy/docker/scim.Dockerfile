# scim2-server 0.8.3 (PyPI), the SCIM 2.0 target of the SCIM connector, for
# docker-compose.yml: installed and served by deploy/local/scim.sh (the same version and
# service provider configuration the tests run against: in memory, ETags, cursor and index
# pagination), behind the bearer token read from /secrets/scim-token (never on the command
# line), on 8080. Python from Debian, the server from PyPI in a virtualenv; runs as uid 10002.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10002 --user-group --no-create-home scim \
 && mkdir -p /opt/lifecycle-mesh /var/lib/scim && chown scim:scim /var/lib/scim
COPY deploy/local/lib.sh deploy/local/scim.sh /opt/lifecycle-mesh/
ENV JML_SCIM_VENV=/opt/scim2-server
RUN bash /opt/lifecycle-mesh/scim.sh install && rm -rf /root/.cache
USER 10002
# Not /: python's `import secrets` (scim.sh) would find the /secrets mount first.
WORKDIR /var/lib/scim
EXPOSE 8080
CMD ["bash", "/opt/lifecycle-mesh/scim.sh", "serve", "/var/lib/scim"]
