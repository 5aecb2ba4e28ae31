#!/usr/bin/env bash
# The one-shot set-up jobs of docker-compose.yml, run in the image init.Dockerfile builds.
#
#   init.sh secrets   writes /secrets once: a throwaway CA and mutual-TLS certificates whose
#                     DNS names are the compose service names (make-dev-certs.sh), client
#                     certificates for the callers of deploy/docker/config/callers.yaml
#                     (hr-integration, alice, jmlctl), the SCIM bearer token, the LDAP admin,
#                     Samba AD Administrator and PostgreSQL passwords (random, mode 0640, group 10001 so the mesh's uid
#                     10001 and the target servers, given group 10001, can read them). Idempotent.
#   init.sh targets   initialises and unseals RustyVault through its API (the unseal key and
#                     root token are kept in /secrets/vault/, never printed), enables userpass,
#                     and seeds SCIM and IAM with the groups the policy grants (seed.py).
set -euo pipefail
SECRETS=/secrets

secrets() {
  mkdir -p "$SECRETS"
  if [[ ! -f $SECRETS/certs/ca.pem ]]; then
    make-dev-certs.sh "$SECRETS/certs" coordinator coordinator-1 coordinator-2 coordinator-3 \
      connector-ldap connector-scim connector-iam connector-vault jmlctl hr-integration alice
  fi
  umask 027
  [[ -f $SECRETS/scim-token ]] || python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >"$SECRETS/scim-token"
  [[ -f $SECRETS/ldap-admin-password ]] || python3 -c 'import secrets; print(secrets.token_hex(16), end="")' \
    >"$SECRETS/ldap-admin-password"
  [[ -f $SECRETS/postgres-password ]] || python3 -c 'import secrets; print(secrets.token_hex(16), end="")' \
    >"$SECRETS/postgres-password"
  # Active Directory refuses a password without three character classes.
  [[ -f $SECRETS/samba-ad-admin-password ]] || python3 -c 'import secrets; print("Jml-" + secrets.token_hex(12) + "-Ad9", end="")' \
    >"$SECRETS/samba-ad-admin-password"
  chgrp -R 10001 "$SECRETS" && chmod -R g+rX "$SECRETS"
  echo "secrets ready in $SECRETS"
}

# vault_api METHOD PATH [JSON] [TOKEN_FILE]: one call to RustyVault's API; prints the body.
vault_api() {
  python3 - "$@" <<'PY'
import sys, urllib.request, urllib.error
method, path = sys.argv[1], sys.argv[2]
body = sys.argv[3].encode() if len(sys.argv) > 3 and sys.argv[3] else None
request = urllib.request.Request(f"http://rustyvault:8200/v1/{path}", data=body, method=method)
request.add_header("Content-Type", "application/json")
if len(sys.argv) > 4:
    request.add_header("X-Vault-Token", open(sys.argv[4]).read().strip())
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        sys.stdout.write(response.read().decode())
except urllib.error.HTTPError as error:
    sys.stderr.write(f"{method} {path}: HTTP {error.code}\n")
    sys.exit(1)
PY
}

targets() {
  local vault=$SECRETS/vault
  mkdir -p "$vault"
  for _ in $(seq 120); do vault_api GET sys/init >/dev/null 2>&1 && break; sleep 1; done
  if [[ $(vault_api GET sys/init) != *'"initialized":true'* ]]; then
    local init_json
    init_json=$(vault_api PUT sys/init '{"secret_shares":1,"secret_threshold":1}')
    (umask 027
      python3 -c 'import json,sys; print(json.load(sys.stdin)["keys"][0])' <<<"$init_json" >"$vault/unseal-key"
      python3 -c 'import json,sys; print(json.load(sys.stdin)["root_token"])' <<<"$init_json" >"$vault/root-token")
  fi
  vault_api PUT sys/unseal "{\"key\":\"$(cat "$vault/unseal-key")\"}" >/dev/null
  if [[ $(vault_api GET sys/auth "" "$vault/root-token") != *'"userpass/"'* ]]; then
    vault_api POST sys/auth/userpass '{"type":"userpass","description":"Lifecycle Mesh"}' "$vault/root-token" >/dev/null
  fi
  chgrp -R 10001 "$vault" && chmod -R g+rX "$vault"
  JML_TEST_SCIM_URL=http://scim:8080/v2 JML_TEST_SCIM_TOKEN_FILE=$SECRETS/scim-token JML_TEST_MOTO_URL=http://moto:5000 \
    python3 /usr/local/bin/seed.py --scim-groups staff,engineering,sales --iam-groups staff,engineering,sales
  echo "targets initialised and seeded"
}

case ${1:-} in
  secrets) secrets ;;
  targets) targets ;;
  *) echo "usage: init.sh secrets | targets" >&2; exit 2 ;;
esac
