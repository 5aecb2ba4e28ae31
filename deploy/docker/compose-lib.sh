#!/usr/bin/env bash
# Shared by compose-test.sh and partition-test.sh (sourced, after `project` and `here` are
# set): the compose command, jmlctl as each caller, and what each target server shows, read
# with its own client inside its container.
started=$SECONDS
log() { printf '\n==> %s (%s, +%ss)\n' "$*" "$(date -u +%H:%M:%S)" "$((SECONDS - started))"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

# `docker compose` when the plugin is installed, else `docker-compose` (1.29 here).
docker info >/dev/null 2>&1 || fail "no Docker Engine answers (docker info): start it, or set DOCKER_HOST"
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  fail "no compose tool: install the docker compose plugin or docker-compose (Debian: apt-get install docker-compose)"
fi
compose+=(-p "$project" -f "$root/docker-compose.yml" "${compose_files[@]}")
export COMPOSE_INTERACTIVE_NO_CLI=1

# container SERVICE: the container id of a service (not of a `run`), from the labels compose
# puts on it: the engine answers at once, where `compose ps` starts a python process each time.
container() {
  docker ps -aq --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=$1" --filter label=com.docker.compose.oneoff=False
}
# network NAME: the compose network's full name.
network() { echo "${project}_$1"; }

# jmlctl as the operator (auditor, the default certificate) or as another caller, run with
# `docker exec` in one long-lived container of the `jmlctl` service (start_jmlctl, after `up`):
# a `compose run` per call costs seconds here, and the tests make hundreds of calls.
# (compose 1.29 says "Creating ..._run ... done" on stderr for each run: left out.)
quiet_run() { grep -v '^Creating .*_run' >&2 || true; }
jmlctl_box=""
start_jmlctl() {
  jmlctl_box=$("${compose[@]}" run -d --entrypoint sleep jmlctl infinity 2> >(quiet_run) | tail -n 1)
  [[ -n $jmlctl_box ]] || fail "the jmlctl container did not start"
}
stop_jmlctl() { [[ -z $jmlctl_box ]] || docker rm -f "$jmlctl_box" >/dev/null 2>&1 || true; }
# jmlctl_env: extra `docker exec` options for every jmlctl call (e.g. which replica to ask).
jmlctl_env=()
jmlctl() { docker exec "${jmlctl_env[@]}" "$jmlctl_box" jmlctl "$@" </dev/null; }
jmlctl_as() {
  local who=$1; shift
  docker exec "${jmlctl_env[@]}" -e "JML_CERT_FILE=/secrets/certs/$who.pem" -e "JML_KEY_FILE=/secrets/certs/$who.key" \
    "$jmlctl_box" jmlctl "$@" </dev/null
}
status_json() { jmlctl status "$1" --json; }
event_state() { status_json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }
# task_field EVENT TARGET FIELD: one field of one task of an event's status.
task_field() {
  status_json "$1" | python3 -c '
import json, sys
task = next(t for t in json.load(sys.stdin)["tasks"] if t["target_id"] == sys.argv[1])
value = task.get(sys.argv[2])
print(json.dumps(value) if isinstance(value, (dict, list, bool)) else value)' "$2" "$3"
}

wait_for_coordinator() {
  [[ -n $jmlctl_box ]] || start_jmlctl
  local deadline=$((SECONDS + 240))
  until jmlctl audit verify >/dev/null 2>&1; do
    (( SECONDS < deadline )) || fail "the coordinator did not answer within 240 s"
    sleep 2
  done
}

# wait_until SECONDS WHAT COMMAND...: polls COMMAND until it succeeds.
wait_until() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@"; do
    (( SECONDS < deadline )) || fail "$what: not within ${limit} s"
    sleep 1
  done
}

# in_container SERVICE COMMAND...: runs COMMAND in the service's container, stdin passed on
# (`docker exec -i`: compose 1.29's `exec -T` does not pass stdin).
in_container() { local service=$1; shift; docker exec -i "$(container "$service")" "$@"; }

# facts KIND NAME: what the target shows (target_facts.py in its container).
facts() {
  case $1 in
    scim) in_container scim /opt/scim2-server/bin/python - scim "$2" <"$here/target_facts.py" ;;
    iam) in_container moto /opt/moto/bin/python - iam "$2" <"$here/target_facts.py" ;;
    vault) in_container scim /opt/scim2-server/bin/python - vault "$2" <"$here/target_facts.py" ;;
  esac
}
# ldap_facts UID: the accounts named UID (how many), their lock and groups, with ldapsearch
# inside the slapd container.
ldap_facts() {
  in_container slapd bash -c '
    set -e
    search() { ldapsearch -x -LLL -o ldif-wrap=no -H ldap://127.0.0.1:1389 -D cn=admin,dc=example,dc=org \
      -y /secrets/ldap-admin-password "$@"; }
    dns=$(search -b ou=people,dc=example,dc=org "(uid=$1)" dn | sed -n "s/^dn: //p")
    count=$(printf "%s" "$dns" | grep -c . || true)
    if [[ $count -eq 0 ]]; then echo "{\"exists\": false, \"count\": 0}"; exit 0; fi
    dn=$(printf "%s\n" "$dns" | head -n 1)
    locked=$(search -b "$dn" -s base "(objectClass=*)" pwdAccountLockedTime | grep -c "^pwdAccountLockedTime:" || true)
    groups=$(search -b ou=groups,dc=example,dc=org "(member=$dn)" cn | sed -n "s/^cn: //p" | sort | paste -sd, -)
    printf "{\"exists\": true, \"count\": %s, \"locked\": %s, \"groups\": \"%s\"}\n" "$count" \
      "$([[ $locked -gt 0 ]] && echo true || echo false)" "$groups"
  ' _ "$1"
}
# expect WHAT JSON PYTHON_CONDITION: fails unless the condition holds for the facts `f`.
expect() {
  local what=$1 json=$2 condition=$3
  if python3 -c "import json,sys; f=json.loads(sys.argv[1]); sys.exit(0 if ($condition) else 1)" "$json"; then
    echo "    ok   $what: $json"
  else
    fail "$what: $json does not satisfy: $condition"
  fi
}
# holds JSON PYTHON_CONDITION: like expect, silent, for wait_until.
holds() { python3 -c "import json,sys; f=json.loads(sys.argv[1]); sys.exit(0 if ($2) else 1)" "$1"; }
