#!/usr/bin/env bash
# Reconciliation of N (default 10,000) slapd entries through the real
# coordinator and connector-ldap, beside a plain `ldapsearch` of the same
# entries. The figure is the ratio (docs/benchmarks/reconcile.md).
#
#   deploy/local/slapd.sh start RUN_DIR && source RUN_DIR/slapd.env
#   JML_BIN_DIR=target/release crates/reconciliation/benches/slapd.sh [N]
#
# The entries go under a fresh ou=bench-<time>,ou=people (removed at the
# end); connector-ldap manages only that subtree. The coordinator starts on
# an empty database, so every entry is an orphan: the run lists, looks up
# the identity of and classifies every account (the expected side is empty).
#
# Issue #17's figure (accounts without a correlation key, correlated by mail
# against as many identity records):
#   JML_BENCH_OU          an OU already holding the entries (not created,
#                         not removed; N is then ignored)
#   JML_BENCH_IDENTITIES  JSON lines of identity records (person_id,
#                         username, display_name, email) loaded with
#                         `jmlctl identities load` before the runs; the
#                         target then correlates by `mail equals {email}`
#   JML_BENCH_CORRELATE=1 seeds the N entries without employeeNumber (no
#                         correlation key) and with a mail each, and writes
#                         N identity records whose emails match them (as
#                         JML_BENCH_IDENTITIES): every account is unlinked
#                         and correlates to exactly one person by mail
set -euo pipefail

count="${1:-10000}"
: "${JML_TEST_SLAPD_URL:?source RUN_DIR/slapd.env (deploy/local/slapd.sh start RUN_DIR)}"
bin="${JML_BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}"
for b in coordinator connector-ldap jmlctl; do
  [ -x "$bin/$b" ] || { echo "missing $bin/$b: build it (cargo build --bins -p coordinator -p jmlctl -p connector-ldap)" >&2; exit 2; }
done
work="$(mktemp -d)"
ldap() { LDAPTLS_CACERT="$JML_TEST_SLAPD_CA_FILE" "$@" -x -ZZ -H "$JML_TEST_SLAPD_URL" -D "$JML_TEST_SLAPD_BIND_DN" -y "$JML_TEST_SLAPD_BIND_PASSWORD_FILE"; }
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -n "${ou:-}" ]; then
    # The entries, then the OU (ldapdelete -r stops at slapd's size limit).
    ldap ldapsearch -LLL -o ldif-wrap=no -E pr=1000/noprompt -b "$ou" -s one '(objectClass=*)' 1.1 2>/dev/null | sed -n 's/^dn: //p' > "$work/dns" || true
    ldap ldapdelete -c -f "$work/dns" >/dev/null 2>&1 || true
    ldap ldapdelete "$ou" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${JML_BENCH_OU:-}" ]; then
  existing="$JML_BENCH_OU"
fi
tag="bench-$(date +%s)"
ou="ou=$tag,ou=people,$JML_TEST_SLAPD_BASE_DN"
if [ -n "${existing:-}" ]; then
  ou=""
  bench_ou="$existing"
else
bench_ou="$ou"
{
  printf 'dn: %s\nobjectClass: organizationalUnit\nou: %s\n\n' "$ou" "$tag"
  if [ "${JML_BENCH_CORRELATE:-}" = 1 ]; then
    # No correlation key; a mail each, matched by one identity record each.
    awk -v n="$count" -v tag="$tag" -v ou="$ou" 'BEGIN { for (i = 1; i <= n; i++)
      printf "dn: uid=%s-%06d,%s\nobjectClass: inetOrgPerson\nuid: %s-%06d\ncn: Bench %d\nsn: Bench\nmail: %s-%06d@bench.example\ndisplayName: Bench %d\n\n", tag, i, ou, tag, i, i, tag, i, i }'
  else
  for i in $(seq 1 "$count"); do
    printf 'dn: uid=%s-%05d,%s\nobjectClass: inetOrgPerson\nuid: %s-%05d\ncn: Bench %d\nsn: Bench\nemployeeNumber: B-%s-%05d\ndisplayName: Bench %d\n\n' \
      "$tag" "$i" "$ou" "$tag" "$i" "$i" "$tag" "$i" "$i"
  done
  fi
} > "$work/entries.ldif"
if [ "${JML_BENCH_CORRELATE:-}" = 1 ]; then
  # The person's username differs from the account's uid, so only the mail rule correlates.
  awk -v n="$count" -v tag="$tag" 'BEGIN { for (i = 1; i <= n; i++)
    printf "{\"person_id\":\"P-%s-%06d\",\"username\":\"person-%06d\",\"display_name\":\"Bench %d\",\"email\":\"%s-%06d@bench.example\"}\n", tag, i, i, i, tag, i }' \
    > "$work/identities.jsonl"
  JML_BENCH_IDENTITIES="$work/identities.jsonl"
fi
ldap ldapadd -f "$work/entries.ldif" >/dev/null
echo "seeded $count entries under $ou"
fi

cat > "$work/connector-ldap.yaml" <<EOF
target_id: bench-ldap
mode: openldap
url: $JML_TEST_SLAPD_URL
tls: { starttls: true, ca_file: $JML_TEST_SLAPD_CA_FILE }
bind_dn: $JML_TEST_SLAPD_BIND_DN
bind_password: { file: $JML_TEST_SLAPD_BIND_PASSWORD_FILE }
users_base_dn: $bench_ou
correlation_attributes: [mail]
groups_base_dn: ou=groups,$JML_TEST_SLAPD_BASE_DN
rdn_attribute: uid
account_name_attribute: uid
person_id_attribute: employeeNumber
attributes:
  display_name: { ldap: displayName }
group_object_class: groupOfNames
member_attribute: member
group_name_attribute: cn
privileged_groups: [admins]
empty_group_member: cn=nobody,$JML_TEST_SLAPD_BASE_DN
EOF
# Starts a binary on port 0 and waits for its "listening on ADDR" line.
start() {
  local log="$1"; shift
  "$@" > "$log" 2> "$log.err" &
  pids+=("$!")
  for _ in $(seq 1 600); do
    addr="$(sed -n 's/^listening on //p' "$log" | head -1)"
    [ -n "$addr" ] && return 0
    sleep 0.1
  done
  echo "no 'listening on' from $*: $(tail -5 "$log.err")" >&2
  exit 1
}
start "$work/connector.log" "$bin/connector-ldap" --config "$work/connector-ldap.yaml" --listen 127.0.0.1:0 --insecure-plaintext
connector="$addr"
correlation=""
if [ -n "${JML_BENCH_IDENTITIES:-}" ]; then
  correlation=', correlation: { rules: [ { attribute: mail, equals: "{email}" } ] }'
fi
cat > "$work/policy.yaml" <<EOF
version: 1
source_of_truth: { system: workday, attributes: [username, display_name, email] }
targets:
  - { id: ldap, endpoint: "http://$connector", insecure_plaintext: true, account_name: "{username}",
      attributes: { display_name: "{display_name}" }$correlation }
EOF
start "$work/coordinator.log" "$bin/coordinator" --policy "$work/policy.yaml" --db "$work/db.sqlite" \
  --listen 127.0.0.1:0 --insecure-plaintext --insecure-no-auth
coordinator="http://$addr"
if [ -n "${JML_BENCH_IDENTITIES:-}" ]; then
  "$bin/jmlctl" --coordinator "$coordinator" --principal bench identities load --file "$JML_BENCH_IDENTITIES" \
    --source-system workday > /dev/null
  echo "loaded $(wc -l < "$JML_BENCH_IDENTITIES") identity records"
fi
# Wait until the connector passed its preflight (the first reconcile would
# otherwise include connection set-up).
"$bin/jmlctl" --coordinator "$coordinator" --principal bench reconcile --target ldap --json > /dev/null || true

now() { date +%s.%N; }
for run in 1 2 3; do
  t0="$(now)"
  ldap ldapsearch -LLL -E pr=500/noprompt -b "$bench_ou" '(objectClass=inetOrgPerson)' uid employeeNumber displayName mail \
    > "$work/search.ldif"
  t1="$(now)"
  code=0
  "$bin/jmlctl" --coordinator "$coordinator" --principal bench reconcile --target ldap --json > "$work/report.json" || code=$?
  t2="$(now)"
  listed="$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))[0]
c = r["counts"]
s = (r.get("correlation") or {}).get("counts", {}).get("by_situation", {})
drift = {k: v for k, v in c.get("by_class", {}).items() if v}
print(c["accounts_listed"], "keyed,", sum(s.values()), "by situation", {k: v for k, v in s.items() if v}, "drift", drift)
' "$work/report.json")"
  found="$(grep -c '^dn:' "$work/search.ldif")"
  python3 - "$t0" "$t1" "$t2" "$listed" "$found" "$code" "$run" <<'EOF'
import sys
t0, t1, t2 = map(float, sys.argv[1:4])
listed, found, code, run = sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
search, reconcile = t1 - t0, t2 - t1
print(f"run {run}: ldapsearch {found} entries {search:.2f} s; jmlctl reconcile {listed} accounts {reconcile:.2f} s "
      f"(exit {code}); ratio {reconcile / search:.1f}")
EOF
done
echo "coordinator peak RSS: $(grep VmHWM /proc/"${pids[1]}"/status | awk '{print $2/1024 " MiB"}')"
echo "connector-ldap peak RSS: $(grep VmHWM /proc/"${pids[0]}"/status | awk '{print $2/1024 " MiB"}')"
