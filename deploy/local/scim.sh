#!/usr/bin/env bash
# The real SCIM 2.0 service provider for the SCIM connector's tests: `scim2-server`
# from PyPI (in-memory, RFC 7643/7644, ETags, filters, RFC 9865 cursor pagination),
# served on a free loopback port behind a random bearer token.
#
#   deploy/local/scim.sh install          create the venv and install scim2-server[cursor]
#   deploy/local/scim.sh start RUN_DIR    start it; writes RUN_DIR/scim.env:
#                                           JML_TEST_SCIM_URL         base URL (ends in /v2)
#                                           JML_TEST_SCIM_TOKEN_FILE  file holding the bearer token
#   deploy/local/scim.sh stop RUN_DIR     stop it
#   deploy/local/scim.sh serve DIR        the container entry point (deploy/docker/scim.Dockerfile):
#                                         the same server in the foreground on
#                                         $JML_SCIM_HOST:$JML_SCIM_PORT (default 0.0.0.0:8080), behind
#                                         the token in $JML_SCIM_TOKEN_FILE (default /secrets/scim-token)
#
# scim2-server lives in its own venv (JML_SCIM_VENV, default
# ~/.local/share/lifecycle-mesh/scim2-server-venv): the `cursor` extra needs a newer
# `cryptography` than other tools on the machine may want, and Debian 12's system
# python refuses pip installs (PEP 668). The token never appears on a command line:
# a two-line launcher reads it from RUN_DIR/scim/token (mode 0600).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

SCIM2_SERVER_SPEC='scim2-server[cursor]==0.8.3'
VENV=${JML_SCIM_VENV:-$HOME/.local/share/lifecycle-mesh/scim2-server-venv}

install() {
  if [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import scim2_server.cursor, scim2_server.testserver.cli' 2>/dev/null; then
    return 0
  fi
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$SCIM2_SERVER_SPEC"
}

# The service provider configuration served: every RFC 7644 feature, plus cursor and
# index pagination (RFC 9865) so that List is stable while other tests write.
service_provider_config() {
  cat <<'JSON'
{
  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
  "patch": {"supported": true},
  "bulk": {"supported": true, "maxOperations": 1000, "maxPayloadSize": 1048576},
  "filter": {"supported": true, "maxResults": 1000},
  "changePassword": {"supported": true},
  "sort": {"supported": true},
  "etag": {"supported": true},
  "pagination": {"cursor": true, "index": true, "defaultPaginationMethod": "index",
                 "defaultPageSize": 100, "maxPageSize": 1000, "cursorTimeout": 3600}
}
JSON
}

start() {
  local run_dir=${1:?usage: scim.sh start RUN_DIR}
  install
  local data="$run_dir/scim"
  mkdir -p "$data"
  run_dir=$(cd "$run_dir" && pwd); data="$run_dir/scim"
  stop_pidfile "$data/pid"
  local port; port=$(free_port)
  (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > "$data/token")
  service_provider_config > "$data/service-provider-config.json"
  SCIM2_SERVER_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))') \
  nohup "$VENV/bin/python" -c '
import sys
from scim2_server.testserver.cli import main
token = open(sys.argv[1]).read().strip()
sys.argv = ["scim2-server", "--bearer-token", token] + sys.argv[2:]
main()' "$data/token" --hostname 127.0.0.1 --port "$port" \
    --service-provider-config "$data/service-provider-config.json" \
    >"$data/server.log" 2>&1 &
  echo $! > "$data/pid"
  wait_for_port "$port" 60
  local url="http://127.0.0.1:$port/v2"
  local deadline=$((SECONDS + 60))
  until python3 - "$url" "$data/token" <<'PY' 2>/dev/null
import sys, urllib.request
url, token = sys.argv[1], open(sys.argv[2]).read().strip()
request = urllib.request.Request(url + "/ServiceProviderConfig", headers={"Authorization": "Bearer " + token})
with urllib.request.urlopen(request, timeout=2) as response:
    sys.exit(0 if response.status == 200 else 1)
PY
  do
    if (( SECONDS >= deadline )); then echo "scim2-server did not answer; see $data/server.log" >&2; return 1; fi
    sleep 0.2
  done
  cat > "$run_dir/scim.env" <<ENV
export JML_TEST_SCIM_URL=$url
export JML_TEST_SCIM_TOKEN_FILE=$data/token
ENV
}

serve() {
  local data=${1:?usage: scim.sh serve DIR}
  mkdir -p "$data"
  service_provider_config >"$data/service-provider-config.json"
  SCIM2_SERVER_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
  export SCIM2_SERVER_SECRET
  exec "$VENV/bin/python" -c '
import sys
from scim2_server.testserver.cli import main
token = open(sys.argv[1]).read().strip()
sys.argv = ["scim2-server", "--bearer-token", token] + sys.argv[2:]
main()' "${JML_SCIM_TOKEN_FILE:-/secrets/scim-token}" --hostname "${JML_SCIM_HOST:-0.0.0.0}" \
    --port "${JML_SCIM_PORT:-8080}" --service-provider-config "$data/service-provider-config.json"
}

stop() {
  local run_dir=${1:?usage: scim.sh stop RUN_DIR}
  stop_pidfile "$run_dir/scim/pid"
  rm -f "$run_dir/scim.env"
}

case ${1:-} in
  install) install ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  serve) serve "${2:-}" ;;
  *) echo "usage: $0 install | start RUN_DIR | stop RUN_DIR | serve DIR" >&2; exit 2 ;;
esac
