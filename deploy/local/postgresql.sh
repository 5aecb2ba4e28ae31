#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback for the coordinator's PostgreSQL store tests,
# the replica tests and the benchmarks.
#
#   postgresql.sh install          apt-installs Debian's `postgresql` (idempotent, no prompts)
#   postgresql.sh start RUN_DIR    initdb's a private cluster under RUN_DIR/postgresql/ (owned by the
#                                  invoking user, or by `postgres` when run as root, since initdb
#                                  refuses root), SCRAM password authentication, TCP on a free
#                                  loopback port only, its unix socket in RUN_DIR/postgresql/socket,
#                                  creates the database `lifecycle`, waits until it answers, and
#                                  writes RUN_DIR/postgresql.env (JML_TEST_POSTGRES_URL, mode 600)
#   postgresql.sh stop RUN_DIR     stops it (idempotent)
#
# The Debian package's own cluster (if any) is neither used nor touched.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DB_NAME=lifecycle
DB_USER=jml

cmd_install() {
  apt_install postgresql
}

# The newest installed server's bin directory.
pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n $dir && -x $dir/initdb ]] || {
    echo "postgresql.sh: no PostgreSQL server found: run postgresql.sh install" >&2
    return 1
  }
  echo "$dir"
}

# as_owner CMD...: runs CMD as the cluster's owner (postgres when we are root).
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

cmd_start() {
  local run_dir=${1:?usage: postgresql.sh start RUN_DIR}
  mkdir -p "$run_dir"
  run_dir=$(cd "$run_dir" && pwd)
  local dir=$run_dir/postgresql env_file=$run_dir/postgresql.env bin
  bin=$(pg_bin)
  cmd_stop "$run_dir"
  if [[ -L $dir ]]; then rm -rf "$(readlink -f "$dir")"; fi
  rm -rf "$dir"
  if [[ $(id -u) -eq 0 ]] && ! runuser -u postgres -- test -x "$run_dir"; then
    # RUN_DIR is not reachable by the postgres user (e.g. under /root): keep
    # the cluster in a private directory it can reach, linked from RUN_DIR.
    ln -s "$(mktemp -d /var/tmp/jml-postgresql.XXXXXX)" "$dir"
  fi
  mkdir -p "$dir/socket"
  dir=$(readlink -f "$dir")
  chmod 700 "$dir"
  local password port
  password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  port=$(free_port)
  (umask 077 && printf '%s\n' "$password" >"$dir/password")
  if [[ $(id -u) -eq 0 ]]; then chown -R postgres: "$dir"; fi
  as_owner "$bin/initdb" -D "$dir/data" -U "$DB_USER" --pwfile="$dir/password" --auth=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    return 1
  }
  cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/socket'
max_connections = 200
shared_buffers = 128MB
log_min_messages = warning
EOF
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null || {
    tail -n 20 "$dir/server.log" >&2 || true
    return 1
  }
  PGPASSWORD=$password "$bin/psql" -q -h 127.0.0.1 -p "$port" -U "$DB_USER" -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE DATABASE $DB_NAME" >/dev/null
  (
    umask 077
    cat >"$env_file" <<EOF
export JML_TEST_POSTGRES_URL=postgres://$DB_USER:$password@127.0.0.1:$port/$DB_NAME
EOF
  )
}

cmd_stop() {
  local run_dir=${1:?usage: postgresql.sh stop RUN_DIR}
  local dir
  dir=$(readlink -f "$run_dir/postgresql")
  rm -f "$run_dir/postgresql.env"
  [[ -f $dir/data/postmaster.pid ]] || return 0
  local bin
  bin=$(pg_bin)
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  *)
    echo "usage: $0 install | start RUN_DIR | stop RUN_DIR" >&2
    exit 2
    ;;
esac
