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
#   C. a stale holder's command reaching a connector after the takeover, refused: the three
#      replicas' packets to connector-ldap are dropped by a firewall rule inside connector-ldap's
#      network namespace (iptables from a helper container sharing it, with NET_ADMIN; the mesh
#      image holds no firewall and no capability), and a joiner is submitted. The replica that
#      claims its LDAP lane stores the dispatch and sends the Apply under its lease epoch E,
#      which TCP holds in retransmission. That replica is cut off the `store` network (PostgreSQL)
#      while its command is in flight; the others' packets pass again. After the 4 s lease
#      another replica takes the lane over with epoch E+1 and its Apply creates the account
#      (slapd shows it). Then the stale holder's packets pass: its held Apply, still inside its
#      30 s call timeout, reaches connector-ldap after the new holder's and is refused with
#      STALE_LEASE ("apply refused: lease epoch E is stale", read from connector-ldap's log);
#      slapd shows the account once, unchanged; the audit chain records both dispatches
#      (replica, epoch); after the heal the lane stays with the new holder.
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

if ! docker image inspect lifecycle-mesh:dev lifecycle-mesh-postgres:dev lifecycle-mesh-init:dev >/dev/null 2>&1; then
  log "building the images"
  "$here/build-images.sh" "$@"
fi

down() {
  local status=$?
  if (( status != 0 )); then
    "${compose[@]}" ps >&2 || true
    "${compose[@]}" logs --no-color --tail 40 coordinator-1 coordinator-2 connector-ldap connector-scim >&2 || true
  fi
  stop_jmlctl
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
  local env=("${jmlctl_env[@]}")
  [[ -n $via ]] && env=(-e "JML_COORDINATOR=https://$via:50050")
  docker exec "${env[@]}" -e JML_CERT_FILE=/secrets/certs/hr-integration.pem \
    -e JML_KEY_FILE=/secrets/certs/hr-integration.key "$jmlctl_box" jmlctl submit --event-id "$event_id" --kind "$kind" \
    --person "$person" --source workday --attr "username=$username" --attr "display_name=Test $username" \
    --attr "email=$username@example.org" --attr "department=$department" --attr "title=Tester" \
    --attr "location=London" --attr "employment_type=employee" </dev/null
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

# One joiner accepted by each replica: accepting an event asks every connector's Describe, so
# each replica has its connections to the connectors open before anything is cut (case C
# holds a connection's packets; a connection not yet open would fail fast instead).
log "warm-up: a joiner through each replica"
for n in 1 2 3; do
  wait_until 120 "coordinator-$n accepts a joiner" submit "pw-joiner-$run-$n" joiner "P-pw-$run-$n" "pw$run$n" Sales coordinator-$n
done
for n in 1 2 3; do wait_until 120 "the warm-up joiner through coordinator-$n is verified" verified "pw-joiner-$run-$n"; done
expect "warm-up: ldap shows pw${run}1" "$(ldap_facts "pw${run}1")" 'f["count"] == 1 and f["groups"] == "sales,staff"'

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
expect "B: scim shows pb meanwhile" "$(facts scim "pb$run@example.org")" 'f["exists"] and f["count"] == 1 and f["groups"] == ["sales", "staff"]'
expect "B: iam shows pb meanwhile" "$(facts iam "pb$run")" 'f["exists"] and f["groups"] == ["sales", "staff"]'
expect "B: vault shows pb meanwhile" "$(facts vault "pb$run")" 'f["exists"] and "pam-read" in f["policies"]'
heal targets slapd
wait_until 180 "B: the joiner converges after the heal" verified "pb-joiner-$run"
expect "B: slapd shows pb once, each group once" "$(ldap_facts "pb$run")" \
  'f["count"] == 1 and not f["locked"] and f["groups"] == "sales,staff"'
in_container slapd bash -c 'ldapsearch -x -LLL -o ldif-wrap=no -H ldap://127.0.0.1:1389 -D cn=admin,dc=example,dc=org \
  -y /secrets/ldap-admin-password -b ou=groups,dc=example,dc=org "(|(cn=sales)(cn=staff))" member' \
  | grep -ci "^member: uid=pb$run," | { read -r n; [[ $n == 2 ]] || fail "B: pb is a member $n times of sales and staff, not once each"; }
echo "    ok   B: pb is one member of sales and of staff"

# ---- C ----------------------------------------------------------------------------------
log "C: a stale holder's Apply in flight to connector-ldap when its lane is taken over"
# sql QUERY: one query to PostgreSQL with its own client (psql inside the postgres container).
sql() {
  in_container postgres bash -c 'PGPASSWORD=$(cat /secrets/postgres-password) exec psql -h 127.0.0.1 -U jml \
    -d lifecycle -tA -F" " -c "$1"' _ "$1" </dev/null
}
lane_row() { sql "SELECT coalesce(claimed_by, '-'), epoch FROM lanes WHERE person_id = 'P-pc-$run' AND target_id = 'ldap'"; }
ldap_task() { sql "SELECT state, attempts FROM tasks WHERE event_id = 'pc-joiner-$run' AND target_id = 'ldap'"; }
# firewall SERVICE IPTABLES_ARGS...: iptables inside SERVICE's network namespace, run by a
# helper container of the init image that shares it (NET_ADMIN is granted to the helper only).
firewall() {
  local service=$1; shift
  docker run --rm --network "container:$(container "$service")" --cap-add NET_ADMIN --entrypoint iptables \
    lifecycle-mesh-init:dev -w "$@"
}
replicas=(coordinator-1 coordinator-2 coordinator-3)
declare -A mesh_ip
for replica in "${replicas[@]}"; do
  mesh_ip[$replica]=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$(network mesh)\").IPAddress}}" \
    "$(container "$replica")")
done
hold() { firewall connector-ldap -I INPUT -s "${mesh_ip[$1]}" -p tcp --dport 50051 -j DROP; echo "    hold $1's packets to connector-ldap"; }
release() { firewall connector-ldap -D INPUT -s "${mesh_ip[$1]}" -p tcp --dport 50051 -j DROP; echo "    pass $1's packets to connector-ldap"; }
refusals() { docker logs "$(container connector-ldap)" 2>&1 | grep "apply refused" || true; }
refusals_before=$(refusals | wc -l)

for replica in "${replicas[@]}"; do hold "$replica"; done
submit "pc-joiner-$run" joiner "P-pc-$run" "pc$run" Sales coordinator-1
sent_under_lease() {
  local lane task
  lane=$(lane_row) task=$(ldap_task)
  [[ -n $lane && ${lane%% *} != - && ${task%% *} == dispatched && ${task##* } -ge 1 ]]
}
wait_until 60 "C: a replica holds the ldap lane and has stored the dispatch of its Apply" sent_under_lease
before=$(lane_row)
stale=${before%% *} epoch=${before##* }
held_at=$SECONDS
echo "    C: $stale holds the ldap lane under epoch $epoch; its Apply is held in flight"
for replica in "${replicas[@]}"; do [[ $replica == "$stale" ]] || release "$replica"; done
# Ask a replica that keeps its database while the holder is cut off.
for ask in "${replicas[@]}"; do [[ $ask != "$stale" ]] && break; done
jmlctl_env=(-e "JML_COORDINATOR=https://$ask:50050")
cut store "$stale"
took_over() { local row; row=$(lane_row); [[ ${row%% *} != "$stale" && ${row%% *} != - && ${row##* } -gt $epoch ]]; }
wait_until 30 "C: the lane is taken over after the 4 s lease, with a higher epoch" took_over
after=$(lane_row)
echo "    ok   C: the ldap lane after the takeover (holder, epoch): $after"
ldap_verified() { [[ $(ldap_task) == "verified "* ]]; }
wait_until 30 "C: the new holder's Apply verifies the ldap task" ldap_verified
expect "C: slapd shows pc, written by the new holder" "$(ldap_facts "pc$run")" 'f["count"] == 1 and f["groups"] == "sales,staff"'
# What slapd holds of pc and its groups (entryCSN changes with every write), before the stale
# holder's Apply can arrive.
csns() {
  in_container slapd bash -c 'ldapsearch -x -LLL -o ldif-wrap=no -H ldap://127.0.0.1:1389 -D cn=admin,dc=example,dc=org \
    -y /secrets/ldap-admin-password -b dc=example,dc=org "(|(uid=$1)(cn=sales)(cn=staff))" entryCSN | grep -i "^entryCSN:" | sort' \
    _ "pc$run" </dev/null
}
csns_before=$(csns)
# Now the stale holder's packets pass: TCP retransmits its held Apply (still inside the 30 s
# call timeout), which reaches connector-ldap after the new holder's epoch did.
release "$stale"
refused() { (( $(refusals | wc -l) > refusals_before )); }
wait_until 45 "C: connector-ldap refuses the stale holder's held Apply with STALE_LEASE (none seen: did TCP give the \
held Apply up, or did it outlast the 30 s call timeout?)" refused
refusal=$(refusals | tail -n +"$((refusals_before + 1))" | head -n 1 | sed 's/\x1b\[[0-9;]*m//g')
echo "    C: connector-ldap: ${refusal##*connector.apply}"
[[ $refusal == *"lease epoch $epoch is stale: epoch ${after##* } was already seen"* ]] \
  || fail "C: the refusal is not of the stale holder's epoch $epoch below ${after##* }: $refusal"
echo "    ok   C: the stale holder's Apply (epoch $epoch) was refused (STALE_LEASE) after the takeover, about" \
  "$((SECONDS - held_at)) s after it was sent (TCP retransmits it at about 12.6 s and 25.4 s; its call times out at 30 s)"
expect "C: slapd still shows pc once, unchanged" "$(ldap_facts "pc$run")" 'f["count"] == 1 and not f["locked"] and f["groups"] == "sales,staff"'
[[ $(csns) == "$csns_before" ]] || fail "C: slapd's entries of pc, sales or staff changed after the stale holder's Apply arrived"
echo "    ok   C: no write reached slapd after the stale holder's Apply arrived (entryCSN of pc, sales, staff unchanged)"
in_container slapd bash -c 'ldapsearch -x -LLL -o ldif-wrap=no -H ldap://127.0.0.1:1389 -D cn=admin,dc=example,dc=org \
  -y /secrets/ldap-admin-password -b ou=groups,dc=example,dc=org "(|(cn=sales)(cn=staff))" member' </dev/null \
  | grep -ci "^member: uid=pc$run," | { read -r n; [[ $n == 2 ]] || fail "C: pc is a member $n times of sales and staff, not once each"; }
# The audit chain (what `jmlctl evidence` and `audit verify` stand on) records both dispatches.
dispatches=$(sql "SELECT payload FROM audit WHERE event_id = 'pc-joiner-$run' AND action = 'task.dispatched' ORDER BY seq")
expect "C: the audit chain records the stale holder's dispatch under epoch $epoch and the new holder's above it" \
  "$(python3 -c '
import json, sys
rows = [json.loads(line) for line in sys.stdin if line.strip()]
print(json.dumps([[r.get("replica"), r.get("lease_epoch")] for r in rows if r.get("target_id") == "ldap"]))' <<<"$dispatches")" \
  "[\"$stale\", $epoch] in f and any(r != \"$stale\" and e > $epoch for r, e in f)"
heal store "$stale"
wait_until 120 "C: the joiner converges on the remaining replicas" verified "pc-joiner-$run"
expect "C: scim shows pc" "$(facts scim "pc$run@example.org")" 'f["exists"] and f["count"] == 1 and f["groups"] == ["sales", "staff"]'
expect "C: iam shows pc" "$(facts iam "pc$run")" 'f["exists"] and f["groups"] == ["sales", "staff"]'
expect "C: vault shows pc" "$(facts vault "pc$run")" 'f["exists"] and "pam-read" in f["policies"]'
# Healed, the stale holder learns at its next renewal that it lost the lane.
wait_until 30 "C: the lane stays with the new holder after the heal" took_over

log "audit chain"
jmlctl audit verify
log "passed"
