#!/usr/bin/env bash
# Entry point of deploy/docker/postgres.Dockerfile: initialises the cluster once, then runs
# PostgreSQL in the foreground (it receives the container's signals).
set -euo pipefail
bin=/usr/lib/postgresql/15/bin
password_file=${JML_POSTGRES_PASSWORD_FILE:?JML_POSTGRES_PASSWORD_FILE names the superuser password file}
if [[ ! -s $PGDATA/PG_VERSION ]]; then
  "$bin/initdb" -D "$PGDATA" -U jml --pwfile="$password_file" --auth=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "CREATE DATABASE lifecycle" | "$bin/postgres" --single -D "$PGDATA" -j postgres >/dev/null
  echo "initialised $PGDATA: superuser jml, database lifecycle"
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql
