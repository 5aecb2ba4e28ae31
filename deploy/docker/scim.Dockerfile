# scim2-server 0.8.3 (PyPI), the SCIM 2.0 target of the SCIM connector, for
# docker-compose.yml: in memory, cursor pagination on, behind the bearer token that the
# `secrets-init` service writes to /secrets/scim-token (never on the command line).
FROM python:3.11-slim
RUN pip install --no-cache-dir 'scim2-server[cursor]==0.8.3'
EXPOSE 8080
CMD ["python", "-c", "import sys; from scim2_server.testserver.cli import main; token = open('/secrets/scim-token').read().strip(); sys.argv = ['scim2-server', '--bearer-token', token, '--hostname', '0.0.0.0', '--port', '8080']; main()"]
