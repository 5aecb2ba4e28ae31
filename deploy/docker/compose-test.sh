#!/usr/bin/env bash
# The compose route, end to end (run by .ci/run): builds the images (build-images.sh), starts
# docker-compose.yml, submits the sample joiner, mover and leaver with
# `docker-compose run jmlctl` (each caller authenticated by its client certificate; alice
# approves the privileged grant), checks after each what every target server shows, read with
# its own client inside its container (ldapsearch; scim2-server's HTTP API; boto3 against moto;
# RustyVault's HTTP API), reads the Samba AD DC's domain with ldapsearch over LDAPS, checks that
# each event's spans reached the trace receiver in one trace, verifies the audit chain, and ends
# with `down -v` (also on failure). jmlctl runs by `docker exec` in one `jmlctl` container.
#
#   deploy/docker/compose-test.sh [build-images.sh options, e.g. --profile debug --no-cargo]
#
# Uses `docker compose` when the plugin is installed, else `docker-compose` (1.29 here).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
project=jml-compose-test-$$
compose_files=()
# shellcheck source=compose-lib.sh
source "$here/compose-lib.sh"

log "building the images"
"$here/build-images.sh" "$@"

down() {
  local status=$?
  if (( status != 0 )); then
    echo "--- container states and the last log lines of each service" >&2
    "${compose[@]}" ps >&2 || true
    "${compose[@]}" logs --no-color --tail 30 >&2 || true
  fi
  stop_jmlctl
  "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  exit "$status"
}
trap down EXIT INT TERM

log "${compose[*]} up -d"
"${compose[@]}" up -d 2>&1 | grep -v "^Creating\|^Starting" || true

log "waiting for the coordinator to answer (TLS, operator certificate)"
wait_for_coordinator

log "Samba AD DC: the domain, read with ldapsearch over LDAPS (its CA, the name samba-ad)"
samba_healthy() { [[ $(docker inspect -f '{{.State.Health.Status}}' "$(container samba-ad)") == healthy ]]; }
wait_until 180 "samba-ad provisioned and seeded" samba_healthy
ad_facts=$(in_container samba-ad bash -c '
  export LDAPTLS_CACERT=/var/lib/jml-samba-ad/dc/tls/ca.pem LDAPTLS_REQCERT=demand
  search() { ldapsearch -x -LLL -o ldif-wrap=no -H ldaps://samba-ad:636 -D "CN=Administrator,CN=Users,DC=jml,DC=test" \
    -y /secrets/samba-ad-admin-password "$@"; }
  managed=$(search -b OU=Managed,DC=jml,DC=test -s base dn | grep -c "^dn:")
  groups=$(search -b OU=Groups,DC=jml,DC=test "(objectClass=group)" sAMAccountName | sed -n "s/^sAMAccountName: //p" | sort | paste -sd, -)
  printf "{\"managed\": %s, \"groups\": \"%s\"}\n" "${managed:-0}" "$groups"' </dev/null)
expect "samba-ad: OU=Managed and the 18 catalogue groups" "$ad_facts" \
  'f["managed"] == 1 and len(f["groups"].split(",")) == 18 and {"staff", "engineering", "sales"} <= set(f["groups"].split(","))'

# run_event FILE [APPROVER]: submits as hr-integration, approves what awaits approval, waits.
run_event() {
  local file=$1 approver=${2:-} event_id
  event_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["event_id"])' "$file")
  log "submitting $event_id as hr-integration"
  jmlctl_as hr-integration submit --file "/events/$(basename "$file")"
  if [[ -n $approver ]]; then
    local awaiting="" deadline=$((SECONDS + 120))
    until [[ -n $awaiting ]]; do
      (( SECONDS < deadline )) || fail "$event_id: nothing awaited approval"
      awaiting=$(status_json "$event_id" | python3 -c '
import json, sys
print(" ".join(t["target_id"] for t in json.load(sys.stdin)["tasks"] if t["state"] == "awaiting_approval"))')
      [[ -n $awaiting ]] || sleep 1
    done
    for target in $awaiting; do
      jmlctl_as "$approver" approve "$event_id" "$target" --comment "compose test: production operations"
    done
  fi
  local deadline=$((SECONDS + 180)) state
  while true; do
    state=$(event_state "$event_id")
    [[ $state == in_progress || $state == awaiting_approval || $state == planned ]] || break
    (( SECONDS < deadline )) || fail "$event_id still $state after 180 s"
    sleep 2
  done
  local verdict=0
  status_json "$event_id" | python3 deploy/quickstart/outcome.py || verdict=$?
  # 3: only a credential revocation the target cannot prove is left (SCIM, RustyVault).
  [[ $verdict == 0 || $verdict == 3 ]] || fail "$event_id ended $state"
}

run_event deploy/quickstart/events/joiner.json alice
log "joiner: what each target shows"
expect "ldap ada" "$(ldap_facts ada)" 'f["exists"] and not f["locked"] and f["groups"] == "engineering,staff"'
expect "scim ada@example.org" "$(facts scim ada@example.org)" 'f["exists"] and f["active"] and f["groups"] == ["engineering", "staff"]'
expect "iam ada" "$(facts iam ada)" 'f["exists"] and f["groups"] == ["engineering", "staff"]'
expect "vault ada" "$(facts vault ada)" 'f["exists"] and "pam-ops" in f["policies"]'

run_event deploy/quickstart/events/mover.json
log "mover: what each target shows"
expect "ldap ada" "$(ldap_facts ada)" 'f["exists"] and not f["locked"] and f["groups"] == "sales,staff"'
expect "scim ada@example.org" "$(facts scim ada@example.org)" 'f["exists"] and f["active"] and f["groups"] == ["sales", "staff"]'
expect "iam ada" "$(facts iam ada)" 'f["exists"] and f["groups"] == ["sales", "staff"]'
expect "vault ada" "$(facts vault ada)" 'f["exists"] and "pam-read" in f["policies"] and "pam-ops" not in f["policies"]'

run_event deploy/quickstart/events/leaver.json
log "leaver: what each target shows"
expect "ldap ada" "$(ldap_facts ada)" 'f["exists"] and f["locked"] and f["groups"] == ""'
expect "scim ada@example.org" "$(facts scim ada@example.org)" 'f["exists"] and not f["active"] and f["groups"] == []'
expect "iam ada" "$(facts iam ada)" 'f["exists"] and f["groups"] == [] and not f["login_profile"] and f["active_access_keys"] == 0'
expect "vault ada" "$(facts vault ada)" 'not f["exists"] or not (set(f["policies"]) & {"pam-ops", "pam-read"})'

log "traces: each event's spans in one trace at the receiver"
for event_id in quickstart-joiner-ada quickstart-mover-ada quickstart-leaver-ada; do
  trace_id=$(status_json "$event_id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["trace_id"])')
  [[ -n $trace_id ]] || fail "$event_id has no trace id"
  deadline=$((SECONDS + 60))
  until docker logs "$(container otlp-receiver)" 2>&1 | python3 -c '
import json, sys
trace_id = sys.argv[1]
services = set()
for line in sys.stdin:
    start = line.find("{")
    if start < 0:
        continue
    try:
        span = json.loads(line[start:])
    except ValueError:
        continue
    if span.get("trace_id") == trace_id and span.get("name") == "connector.apply":
        services.add(span["service"])
wanted = {"connector-ldap", "connector-scim", "connector-iam", "connector-vault"}
sys.exit(0 if wanted <= services else 1)' "$trace_id"; do
    (( SECONDS < deadline )) || fail "$event_id: not every connector's connector.apply span reached the receiver in trace $trace_id"
    sleep 2
  done
  echo "    ok   $event_id: trace $trace_id holds every connector's connector.apply"
done

log "audit chain"
jmlctl audit verify
log "passed"
