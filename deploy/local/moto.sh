#!/usr/bin/env bash
# A throwaway moto server (AWS API emulator) on loopback for the AWS IAM connector's tests and
# benchmarks.
#
#   moto.sh install            installs moto[server] from PyPI (idempotent, no prompts): into the
#                              current python3 when it already has it or pip may install into it,
#                              else into a virtualenv at $JML_MOTO_VENV
#                              (default ~/.local/share/lifecycle-mesh/moto-venv)
#   moto.sh start RUN_DIR      starts moto_server on a free loopback port (log and pid under
#                              RUN_DIR/moto/), waits until it answers, and writes RUN_DIR/moto.env
#   moto.sh stop RUN_DIR       stops it (idempotent)
#   moto.sh serve              the container entry point (deploy/docker/moto.Dockerfile): the same
#                              server in the foreground on $JML_MOTO_HOST:$JML_MOTO_PORT
#                              (default 0.0.0.0:5000)
#
# moto keeps its state in memory: a restart starts from an empty AWS account (123456789012).
# RUN_DIR/moto.env exports:
#   JML_TEST_MOTO_URL          http://127.0.0.1:PORT, the endpoint_url for the connector and tests
#   AWS_ACCESS_KEY_ID          dummy credentials moto accepts, found by the standard AWS
#   AWS_SECRET_ACCESS_KEY      credential provider chain (never real ones)
#   AWS_REGION                 us-east-1 (IAM is global; the region only scopes request signing)
#   AWS_DEFAULT_REGION         the same, for older AWS tools
#   AWS_EC2_METADATA_DISABLED  true: no instance-metadata probing while tests run
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MOTO_SPEC='moto[server]>=5,<6'
VENV=${JML_MOTO_VENV:-${HOME}/.local/share/lifecycle-mesh/moto-venv}

# The python that has moto's server, or nothing.
moto_python() {
  local candidate
  for candidate in "$VENV/bin/python" python3; do
    if command -v "$candidate" >/dev/null 2>&1 \
      && "$candidate" -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

cmd_install() {
  moto_python >/dev/null && return 0
  command -v python3 >/dev/null 2>&1 || apt_install python3
  # Debian's python3 is "externally managed" (PEP 668): pip refuses to install into it, so a
  # virtualenv is the fallback.
  if python3 -m pip --version >/dev/null 2>&1 && pip_install "$MOTO_SPEC" >/dev/null 2>&1 \
    && moto_python >/dev/null; then
    return 0
  fi
  apt_install python3-venv python3-pip
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$MOTO_SPEC"
  moto_python >/dev/null || { echo "moto.sh: moto[server] did not install" >&2; return 1; }
}

cmd_start() {
  local run_dir=${1:?usage: moto.sh start RUN_DIR}
  mkdir -p "$run_dir/moto"
  run_dir=$(cd "$run_dir" && pwd)
  local dir="$run_dir/moto" env_file="$run_dir/moto.env"
  if [[ -f $dir/moto.pid ]] && kill -0 "$(cat "$dir/moto.pid")" 2>/dev/null && [[ -f $env_file ]]; then
    return 0 # already running
  fi
  stop_pidfile "$dir/moto.pid"
  local python
  python=$(moto_python) || { echo "moto.sh: moto[server] is not installed: run moto.sh install" >&2; return 1; }
  local port; port=$(free_port)
  nohup "$python" -m moto.server -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
  echo $! >"$dir/moto.pid"
  if ! wait_for_port "$port" 60; then
    tail -n 20 "$dir/moto.log" >&2 || true
    stop_pidfile "$dir/moto.pid"
    return 1
  fi
  # Ready only when it answers HTTP (moto's own API), not merely accepts connections.
  local deadline=$((SECONDS + 30))
  until python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=2)" >/dev/null 2>&1; do
    if (( SECONDS >= deadline )); then
      echo "moto.sh: moto on port $port does not answer HTTP" >&2
      tail -n 20 "$dir/moto.log" >&2 || true
      stop_pidfile "$dir/moto.pid"
      return 1
    fi
    sleep 0.2
  done
  cat >"$env_file" <<EOF
export JML_TEST_MOTO_URL=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
EOF
}

cmd_serve() {
  local python
  python=$(moto_python) || { echo "moto.sh: moto[server] is not installed: run moto.sh install" >&2; return 1; }
  exec "$python" -m moto.server -H "${JML_MOTO_HOST:-0.0.0.0}" -p "${JML_MOTO_PORT:-5000}"
}

cmd_stop() {
  local run_dir=${1:?usage: moto.sh stop RUN_DIR}
  stop_pidfile "$run_dir/moto/moto.pid"
  rm -f "$run_dir/moto.env"
}

case ${1:-} in
  install) cmd_install ;;
  start) cmd_start "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  serve) cmd_serve ;;
  *) echo "usage: $0 install | start RUN_DIR | stop RUN_DIR | serve" >&2; exit 2 ;;
esac
