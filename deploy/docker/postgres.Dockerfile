# PostgreSQL 15 from Debian's `postgresql` package: the shared store of several coordinator
# replicas (docker-compose.yml's `replicas` profile and the partition tests). On the first
# start (deploy/docker/postgres-entrypoint.sh) it initialises a cluster on the volume at
# /var/lib/postgresql/data with the superuser `jml` (password from
# JML_POSTGRES_PASSWORD_FILE, SCRAM), creates the database `lifecycle`, and accepts SCRAM
# logins from the network; then runs the server in the foreground as `postgres` on 5432.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
COPY deploy/docker/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data
USER postgres
WORKDIR /var/lib/postgresql
EXPOSE 5432
CMD ["bash", "/usr/local/bin/postgres-entrypoint.sh"]
