#!/usr/bin/env bash
# Faults across hosts (run by .ci/run after compose-test.sh, whose images it uses): the mesh of
# docker-compose.yml with three coordinator replicas on PostgreSQL (compose.partitions.yml),
# every process a container on its own address, and one container cut off one network with
# `docker network disconnect` (not killed), then reconnected. After each cut, what every
# target shows is read with its own client inside its container (compose-lib.sh):
#
#   A. a connector unreachable while events flow: connector-scim cut off the `mesh` network.
#      A joiner's SCIM task waits and retries, is listed overdue once its 20 s deadline passes,
#      and converges after the heal; LDAP, IAM and Vault verify meanwhile.
#   B. a target cut off from its connector mid-conversation: slapd cut off the `targets`
#      network, so the connector's open LDAP connections go silent, and a joiner dispatched
#      into it. The LDAP task is never verified while slapd does not show the account; after
#      the heal it verifies and slapd shows exactly one account, a member of each group once
#      (nothing applied twice).
#   C. a replica cut off from PostgreSQL but not from the connectors: a joiner is dispatched
#      while slapd is cut, so the LDAP call of the replica holding the lane stays in flight and
#      is retried; that replica is then cut off the `store` network. Its lane is taken over
#      after the 4 s lease with a bumped epoch (the `lanes` table says so), the new holder
#      finishes the joiner once slapd is back, and no command of the stale holder reaches a
#      target: the LDAP connector refuses each one carrying the old epoch (counted from its
#      log) and every target shows the joiner's state once.
#
#   deploy/docker/partition-test.sh [build-images.sh options; images are built when missing]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
project=jml-partitions-$$
compose_files=(-f "$here/compose.partitions.yml")
# shellcheck source=compose-lib.sh
source "$here/compose-lib.sh"

if ! docker image inspect lifecycle-mesh:dev lifecycle-mesh-postgres:dev >/dev/null 2>&1; then
  log "building the images"
  "$here/build-images.sh" "$@"
fi

down() {
  local status=$?
  if (( status != 0 )); then
    "${compose[@]}" ps >&2 || true
    "${compose[@]}" logs --no-color --tail 40 coordinator-1 coordinator-2 connector-ldap connector-scim >&2 || true
  fi
  "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  exit "$status"
}
trap down EXIT INT TERM

# cut NETWORK SERVICE / heal NETWORK SERVICE: one container off / back on one network (with
# its service name as DNS alias, as compose gave it).
cut() { docker network disconnect "$(network "$1")" "$(container "$2")"; echo "    cut  $2 off $1"; }
heal() { docker network connect --alias "$2" "$(network "$1")" "$(container "$2")"; echo "    heal $2 on $1"; }

# submit EVENT_ID KIND PERSON USERNAME DEPARTMENT [COORDINATOR]: an event from hr-integration.
submit() {
  local event_id=$1 kind=$2 person=$3 username=$4 department=$5 via=${6:-}
  local env=()
  [[ -n $via ]] && env=(-e "JML_COORDINATOR=https://$via:50050")
  "${compose[@]}" run --rm -T "${env[@]}" -e JML_CERT_FILE=/secrets/certs/hr-integration.pem \
    -e JML_KEY_FILE=/secrets/certs/hr-integration.key jmlctl submit --event-id "$event_id" --kind "$kind" \
    --person "$person" --source workday --attr "username=$username" --attr "display_name=Test $username" \
    --attr "email=$username@example.org" --attr "department=$department" --attr "title=Tester" \
    --attr "location=London" --attr "employment_type=employee" 2> >(quiet_run)
}
task_state() { task_field "$1" "$2" state; }
verified() { [[ $(event_state "$1") == verified ]]; }
tasks_verified() {
  local event=$1; shift
  local json; json=$(status_json "$event")
  python3 -c '
import json, sys
tasks = {t["target_id"]: t["state"] for t in json.loads(sys.argv[1])["tasks"]}
sys.exit(0 if all(tasks.get(t) == "verified" for t in sys.argv[2:]) else 1)' "$json" "$@"
}
overdue_lists() { jmlctl overdue --json | python3 -c '
import json, sys
sys.exit(0 if any(t["event_id"] == sys.argv[1] and t["target_id"] == sys.argv[2] for t in json.load(sys.stdin)) else 1)' "$1" "$2"; }
retried() { local attempts; attempts=$(task_field "$1" "$2" attempts); [[ $attempts -ge ${3:-2} ]]; }

log "${compose[*]} up -d (three replicas on PostgreSQL)"
"${compose[@]}" up -d 2>&1 | grep -v "^Creating\|^Starting" || true
wait_for_coordinator
run=$$

# ---- A ----------------------------------------------------------------------------------
log "A: connector-scim unreachable (off the mesh network) while events flow"
cut mesh connector-scim
submit "pa-joiner-$run" joiner "P-pa-$run" "pa$run" Sales
wait_until 120 "A: ldap, aws and vault verify while connector-scim is cut" \
  tasks_verified "pa-joiner-$run" ldap aws vault
expect "A: ldap shows pa" "$(ldap_facts "pa$run")" 'f["count"] == 1 and f["groups"] == "sales,staff"'
expect "A: iam shows pa" "$(facts iam "pa$run")" 'f["exists"] and f["groups"] == ["sales", "staff"]'
expect "A: vault shows pa" "$(facts vault "pa$run")" 'f["exists"] and "pam-read" in f["policies"]'
wait_until 60 "A: the scim task retries" retried "pa-joiner-$run" scim 2
[[ $(task_state "pa-joiner-$run" scim) != verified ]] || fail "A: scim verified while its connector is cut off"
expect "A: scim does not show pa yet" "$(facts scim "pa$run@example.org")" 'not f["exists"]'
wait_until 90 "A: the scim task is listed overdue at its 20 s deadline" overdue_lists "pa-joiner-$run" scim
echo "    ok   A: the scim task is overdue while cut (retrying, attempts $(task_field "pa-joiner-$run" scim attempts))"
heal mesh connector-scim
wait_until 180 "A: the joiner converges after the heal" verified "pa-joiner-$run"
expect "A: scim shows pa after the heal" "$(facts scim "pa$run@example.org")" \
  'f["exists"] and f["count"] == 1 and f["active"] and f["groups"] == ["sales", "staff"]'
expect "A: the scim task records the breach" "{\"breached\": $(task_field "pa-joiner-$run" scim deadline_breached)}" 'f["breached"]'

# ---- B ----------------------------------------------------------------------------------
log "B: slapd cut off from connector-ldap (off the targets network), a joiner dispatched into the cut"
cut targets slapd
submit "pb-joiner-$run" joiner "P-pb-$run" "pb$run" Sales
wait_until 90 "B: the ldap task fails an attempt while slapd is cut" retried "pb-joiner-$run" ldap 2
state=$(task_state "pb-joiner-$run" ldap)
shown=$(ldap_facts "pb$run")
echo "    B: while cut, the ldap task is $state; slapd shows $shown"
[[ $state != verified ]] || holds "$shown" 'f["count"] == 1 and f["groups"] == "sales,staff"' \
  || fail "B: the ldap task verified what slapd does not show"
wait_until 60 "B: the other targets verify meanwhile" tasks_verified "pb-joiner-$run" scim aws vault
heal targets slapd
wait_until 180 "B: the joiner converges after the heal" verified "pb-joiner-$run"
expect "B: slapd shows pb once, each group once" "$(ldap_facts "pb$run")" \
  'f["count"] == 1 and not f["locked"] and f["groups"] == "sales,staff"'
in_container slapd bash -c 'ldapsearch -x -LLL -o ldif-wrap=no -H ldap://127.0.0.1:1389 -D cn=admin,dc=example,dc=org \
  -y /secrets/ldap-admin-password -b ou=groups,dc=example,dc=org "(|(cn=sales)(cn=staff))" member' \
  | grep -ci "^member: uid=pb$run," | { read -r n; [[ $n == 2 ]] || fail "B: pb is a member $n times of sales and staff, not once each"; }
echo "    ok   B: pb is one member of sales and of staff"

# ---- C ----------------------------------------------------------------------------------
log "C: the replica holding a lane cut off from PostgreSQL (not from the connectors), its LDAP call in flight"
pg() { in_container postgres env PGPASSWORD="$(in_container postgres cat /secrets/postgres-password </dev/null)" "$@"; }
lane_row() {
  pg psql -h 127.0.0.1 -U jml -d lifecycle -tA -F' ' \
    -c "SELECT coalesce(claimed_by, '-'), epoch FROM lanes WHERE person_id = 'P-pc-$run' AND target_id = 'ldap'" </dev/null
}
refusals_before=$("${compose[@]}" logs --no-color connector-ldap | grep -c "apply refused" || true)
cut targets slapd
submit "pc-joiner-$run" joiner "P-pc-$run" "pc$run" Sales coordinator-1
wait_until 60 "C: the joiner's ldap task is dispatched" retried "pc-joiner-$run" ldap 1
claimed() { local row; row=$(lane_row); [[ -n $row && ${row%% *} != - ]]; }
wait_until 30 "C: the ldap lane is held" claimed
before=$(lane_row)
stale=${before%% *}
echo "    C: the ldap lane before the cut (holder, epoch): $before"
# Ask a replica that keeps its database while the holder is cut off.
for ask in coordinator-1 coordinator-2 coordinator-3; do [[ $ask != "$stale" ]] && break; done
jmlctl_env=(-e "JML_COORDINATOR=https://$ask:50050")
cut store "$stale"
took_over() { local row; row=$(lane_row); [[ ${row%% *} != "$stale" && ${row%% *} != - && ${row##* } -gt ${before##* } ]]; }
wait_until 60 "C: the lane is taken over after the lease, with a higher epoch" took_over
after=$(lane_row)
echo "    ok   C: the ldap lane after the takeover (holder, epoch): $after"
# The new holder dispatches (its attempt is stored) before slapd is healed, so the stale
# holder's in-flight retries arrive after the new epoch reached connector-ldap (each refused).
attempts=$(task_field "pc-joiner-$run" ldap attempts)
wait_until 60 "C: the new holder dispatches the ldap task" retried "pc-joiner-$run" ldap $((attempts + 1))
heal targets slapd
wait_until 180 "C: the joiner converges on the remaining replicas" verified "pc-joiner-$run"
expect "C: slapd shows pc once" "$(ldap_facts "pc$run")" 'f["count"] == 1 and f["groups"] == "sales,staff"'
expect "C: scim shows pc" "$(facts scim "pc$run@example.org")" 'f["exists"] and f["count"] == 1 and f["groups"] == ["sales", "staff"]'
expect "C: iam shows pc" "$(facts iam "pc$run")" 'f["exists"] and f["groups"] == ["sales", "staff"]'
expect "C: vault shows pc" "$(facts vault "pc$run")" 'f["exists"] and "pam-read" in f["policies"]'
refusals=$(( $("${compose[@]}" logs --no-color connector-ldap | grep -c "apply refused" || true) - refusals_before ))
echo "    C: connector-ldap refused $refusals command(s) of the stale holder $stale (lease epoch below ${after##* })"
heal store "$stale"
# Healed, the stale holder learns at its next renewal that it lost the lane; its writes are fenced.
wait_until 30 "C: the lane stays with the new holder after the heal" took_over
expect "C: the joiner is still verified after $stale is back" "{\"state\": \"$(event_state "pc-joiner-$run")\"}" \
  'f["state"] == "verified"'

log "audit chain"
jmlctl audit verify
log "passed"
