#!/usr/bin/env bash
# RustyVault (a Vault-API compatible server, crates.io `rusty_vault`, binary
# `rvault`) on loopback, for the Vault connector's integration tests.
#
#   rustyvault.sh install          cargo-installs rvault into the cache (once; reused between runs)
#   rustyvault.sh start RUN_DIR    file storage under RUN_DIR/rustyvault/, initialised (1 share,
#                                  threshold 1) and unsealed through the HTTP API, userpass auth
#                                  enabled; writes RUN_DIR/rustyvault.env
#   rustyvault.sh stop RUN_DIR     stops it
#
# Environment written to RUN_DIR/rustyvault.env:
#   JML_TEST_VAULT_ADDR        http://127.0.0.1:PORT
#   JML_TEST_VAULT_TOKEN       the root token (test-only server; also in JML_TEST_VAULT_TOKEN_FILE)
#   JML_TEST_VAULT_TOKEN_FILE  RUN_DIR/rustyvault/root-token (mode 0600)
# The unseal key is kept in RUN_DIR/rustyvault/unseal-key (mode 0600) and never printed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

cache_dir="${JML_CACHE_DIR:-$HOME/.cache/lifecycle-mesh}/rusty_vault"
rvault_bin="$cache_dir/bin/rvault"
rusty_vault_version="0.2.1"

install() {
  if [[ -x $rvault_bin ]]; then return 0; fi
  # rusty_vault links OpenSSL and builds aws-lc; it needs a C toolchain and cmake.
  apt_install build-essential pkg-config libssl-dev cmake python3 ca-certificates
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is required to install rusty_vault (install Rust from rustup or the Debian 'cargo' package)" >&2
    return 1
  fi
  mkdir -p "$cache_dir"
  echo "installing rusty_vault $rusty_vault_version into $cache_dir (compiles for several minutes)" >&2
  # No debug info: the install is the longest step of a fresh CI run.
  CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=true \
  CARGO_TARGET_DIR="$cache_dir/target" cargo install rusty_vault --version "=$rusty_vault_version" --locked \
    --root "$cache_dir" --quiet
  rm -rf "$cache_dir/target"
}

# vault_api METHOD PATH [JSON] [TOKEN_FILE]: one call to the HTTP API on $port; prints the body.
vault_api() {
  python3 - "$port" "$@" <<'PY'
import json, sys, urllib.request, urllib.error
port, method, path = sys.argv[1], sys.argv[2], sys.argv[3]
body = sys.argv[4].encode() if len(sys.argv) > 4 and sys.argv[4] else None
request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/{path}", data=body, method=method)
request.add_header("Content-Type", "application/json")
if len(sys.argv) > 5:
    with open(sys.argv[5]) as f:
        request.add_header("X-Vault-Token", f.read().strip())
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        sys.stdout.write(response.read().decode())
except urllib.error.HTTPError as error:
    sys.stderr.write(f"{method} {path}: HTTP {error.code}: {error.read().decode()[:300]}\n")
    sys.exit(1)
PY
}

start() {
  local run_dir=$1
  [[ -x $rvault_bin ]] || install
  local dir="$run_dir/rustyvault"
  mkdir -p "$dir/data"
  chmod 700 "$dir"
  if [[ -f $dir/rvault.pid ]] && kill -0 "$(cat "$dir/rvault.pid")" 2>/dev/null; then
    echo "rustyvault already running (pid $(cat "$dir/rvault.pid"))" >&2
    return 0
  fi
  port=$(free_port)
  cat >"$dir/config.hcl" <<EOF
storage "file" {
  path = "$dir/data"
}
listener "tcp" {
  address = "127.0.0.1:$port"
  tls_disable = true
}
api_addr = "http://127.0.0.1:$port"
log_level = "warn"
work_dir = "$dir"
daemon = false
EOF
  (cd "$dir" && exec "$rvault_bin" server --config "$dir/config.hcl" >"$dir/rvault.log" 2>&1) &
  echo $! >"$dir/rvault.pid"
  wait_for_port "$port" 60

  local init_json
  init_json=$(vault_api GET sys/init)
  if [[ $init_json != *'"initialized":true'* ]]; then
    init_json=$(vault_api PUT sys/init '{"secret_shares":1,"secret_threshold":1}')
    (umask 077
      python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["keys"][0])' <<<"$init_json" >"$dir/unseal-key"
      python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["root_token"])' <<<"$init_json" >"$dir/root-token")
  fi
  vault_api PUT sys/unseal "{\"key\":\"$(cat "$dir/unseal-key")\"}" >/dev/null
  local auth_mounts
  auth_mounts=$(vault_api GET sys/auth "" "$dir/root-token")
  if [[ $auth_mounts != *'"userpass/"'* ]]; then
    vault_api POST sys/auth/userpass '{"type":"userpass","description":"Lifecycle Mesh tests"}' "$dir/root-token" >/dev/null
  fi

  {
    echo "export JML_TEST_VAULT_ADDR=http://127.0.0.1:$port"
    echo "export JML_TEST_VAULT_TOKEN=$(cat "$dir/root-token")"
    echo "export JML_TEST_VAULT_TOKEN_FILE=$dir/root-token"
  } >"$run_dir/rustyvault.env"
  chmod 600 "$run_dir/rustyvault.env"
}

stop() {
  local run_dir=$1
  stop_pidfile "$run_dir/rustyvault/rvault.pid"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:?usage: rustyvault.sh start RUN_DIR}" ;;
  stop) stop "${2:?usage: rustyvault.sh stop RUN_DIR}" ;;
  *) echo "usage: $0 install | start RUN_DIR | stop RUN_DIR" >&2; exit 2 ;;
esac
