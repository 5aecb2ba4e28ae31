#!/usr/bin/env bash
# Shared shell functions for the scripts that install, start and stop the real
# target servers on loopback (deploy/local/<target>.sh). Sourced, not run.
#
# Convention for every deploy/local/<target>.sh:
#   <target>.sh install          install what is missing, without prompts (idempotent)
#   <target>.sh start RUN_DIR    start on a free loopback port, data under RUN_DIR/<target>/,
#                                wait until ready, write RUN_DIR/<target>.env (export lines)
#   <target>.sh stop RUN_DIR     stop what start started (idempotent)
set -euo pipefail

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for_port PORT [SECONDS]: waits until something listens on 127.0.0.1:PORT.
wait_for_port() {
  local port=$1 deadline=$((SECONDS + ${2:-30}))
  until python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(s.connect_ex(('127.0.0.1',$port)))" 2>/dev/null; do
    if (( SECONDS >= deadline )); then echo "timed out waiting for 127.0.0.1:$port" >&2; return 1; fi
    sleep 0.2
  done
}

# stop_pidfile FILE: TERM the process in FILE, then KILL after 5 s.
stop_pidfile() {
  local file=$1
  [[ -f $file ]] || return 0
  local pid; pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# apt_install PKG...: installs Debian packages that are missing, without prompts.
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  (( ${#missing[@]} == 0 )) && return 0
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo -E)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 || true
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# pip_install SPEC...: installs PyPI packages for the current user's python3.
pip_install() {
  python3 -m pip install -q --disable-pip-version-check "$@"
}
