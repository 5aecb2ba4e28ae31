#!/usr/bin/env bash
# A throwaway OpenLDAP slapd on loopback for the LDAP connector's tests and benchmarks.
#
#   slapd.sh install            apt-installs slapd, ldap-utils and openssl (idempotent, no prompts)
#   slapd.sh start RUN_DIR      builds a cn=config under RUN_DIR/slapd/ (mdb backend, suffix
#                               dc=example,dc=org, schemas core/cosine/inetorgperson/nis, the
#                               ppolicy overlay with a default policy that honours
#                               pwdAccountLockedTime), loads the base tree (ou=people, ou=groups
#                               with the catalogue groups, ou=policies), starts slapd on a free
#                               loopback port (plain LDAP with StartTLS, and LDAPS on a second
#                               port, with a throwaway CA), waits until it answers a bind, and
#                               writes RUN_DIR/slapd.env
#                               A second, non-root service account (WRITEONLY_DN below) may manage
#                               accounts only under WRITEONLY_USERS_DN, where the ACL gives it the
#                               write privilege on displayName WITHOUT read (`=w`): slapd accepts its
#                               writes of that attribute and never shows it the value. The end-to-end
#                               tests bind a connector as this account to get, deterministically, a
#                               target that accepts a write but shows something else on read-back.
#                               It has the same write-only privilege on userPassword there, so a
#                               connector bound as it cannot see (nor compare) a password: the
#                               connector tests check that such a password reads as unknown, never
#                               as "no password".
#   slapd.sh restart RUN_DIR    stops and starts the same slapd with the same data and ports
#   slapd.sh stop RUN_DIR       stops it (idempotent)
#   slapd.sh serve DIR          the container entry point (deploy/docker/slapd.Dockerfile): builds
#                               the same config and base tree under DIR on first start (kept on
#                               later starts), then runs slapd in the foreground
#
# Settings for `serve` (and `start`), from the environment:
#   JML_SLAPD_HOST                   the address to listen on (default 127.0.0.1; 0.0.0.0 in a container)
#   JML_SLAPD_PORT, JML_SLAPD_LDAPS_PORT   fixed ports (default: free loopback ports)
#   JML_SLAPD_ADMIN_PASSWORD_FILE    the rootdn's password (default: a random one under DIR)
#   JML_SLAPD_WRITEONLY_PASSWORD_FILE  the write-only service account's password (default: random)
#   JML_SLAPD_TLS_NAMES              extra DNS names of the server certificate (space-separated)
#
# Any system slapd the Debian package may have started is neither used nor touched.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SUFFIX="dc=example,dc=org"
ROOT_DN="cn=admin,$SUFFIX"
# Groups present in the base tree: the connector's conformance fixture and the example policy use them.
GROUPS_PLAIN="staff engineering sales finance marketing support hr legal contractors eu-staff us-staff managers vpn-users wiki-editors"
GROUPS_PRIVILEGED="admins it-ops prod-access db-admins"
# groupOfNames needs one member: this placeholder DN is never a user, so never reported as a member.
PLACEHOLDER_MEMBER="cn=nobody,$SUFFIX"
# The write-without-read service account and the only subtree it manages accounts in.
WRITEONLY_DN="cn=jml-writeonly,$SUFFIX"
WRITEONLY_USERS_DN="ou=writeonly,ou=people,$SUFFIX"

cmd_install() {
  apt_install slapd ldap-utils openssl
}

write_config_ldif() {
  local dir=$1 password=$2
  cat <<EOF
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: $dir/slapd.pid
olcArgsFile: $dir/slapd.args
olcLogLevel: none
olcTLSCACertificateFile: $dir/tls/ca.pem
olcTLSCertificateFile: $dir/tls/server.pem
olcTLSCertificateKeyFile: $dir/tls/server.key

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb
olcModuleLoad: ppolicy

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif

include: file:///etc/ldap/schema/cosine.ldif

include: file:///etc/ldap/schema/inetorgperson.ldif

include: file:///etc/ldap/schema/nis.ldif

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend
olcSizeLimit: 1000

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcSuffix: $SUFFIX
olcRootDN: $ROOT_DN
olcRootPW: $password
olcDbDirectory: $dir/data
olcDbMaxSize: 2147483648
olcDbIndex: objectClass eq
olcDbIndex: uid,cn,employeeNumber eq
olcDbIndex: member eq
olcDbIndex: uniqueMember,memberUid eq
olcAccess: {0}to dn.subtree="$WRITEONLY_USERS_DN" attrs=displayName,userPassword by dn.exact="$WRITEONLY_DN" =w by * break
olcAccess: {1}to dn.subtree="$WRITEONLY_USERS_DN" by dn.exact="$WRITEONLY_DN" write by * break
olcAccess: {2}to dn.subtree="ou=groups,$SUFFIX" attrs=member by dn.exact="$WRITEONLY_DN" write by * break
olcAccess: {3}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {4}to * by self read by users read by * none

dn: olcOverlay={0}ppolicy,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcPPolicyConfig
olcOverlay: {0}ppolicy
olcPPolicyDefault: cn=default,ou=policies,$SUFFIX
EOF
}

write_base_ldif() {
  local writeonly_hash=$1
  cat <<EOF
dn: $SUFFIX
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,$SUFFIX
objectClass: organizationalUnit
ou: people

dn: ou=groups,$SUFFIX
objectClass: organizationalUnit
ou: groups

dn: ou=policies,$SUFFIX
objectClass: organizationalUnit
ou: policies

dn: cn=default,ou=policies,$SUFFIX
objectClass: organizationalRole
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdLockout: TRUE
pwdMaxFailure: 0

dn: $WRITEONLY_USERS_DN
objectClass: organizationalUnit
ou: writeonly

dn: $WRITEONLY_DN
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: jml-writeonly
userPassword: $writeonly_hash
EOF
  local group
  for group in $GROUPS_PLAIN $GROUPS_PRIVILEGED; do
    printf '\ndn: cn=%s,ou=groups,%s\nobjectClass: groupOfNames\ncn: %s\nmember: %s\n' \
      "$group" "$SUFFIX" "$group" "$PLACEHOLDER_MEMBER"
  done
}

make_tls() {
  local tls=$1
  mkdir -p "$tls"
  [[ -f $tls/server.pem ]] && return 0
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=jml-test-ldap-ca" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$tls/server.key" -out "$tls/server.csr" >/dev/null 2>&1
  local names="DNS:localhost,IP:127.0.0.1" name
  for name in ${JML_SLAPD_TLS_NAMES:-}; do names+=",DNS:$name"; done
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
    "$names" >"$tls/server.ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 3650 -extfile "$tls/server.ext" -out "$tls/server.pem" >/dev/null 2>&1
  chmod 600 "$tls/server.key" "$tls/ca.key"
}

# run_slapd DIR: starts slapd from DIR's config on the ports saved there and waits for a bind.
run_slapd() {
  local dir=$1
  local port ldaps_port password
  port=$(cat "$dir/port")
  ldaps_port=$(cat "$dir/ldaps_port")
  password=$(cat "$dir/admin.password")
  slapd -h "$(listen_urls "$dir")" -F "$dir/config" >"$dir/slapd.log" 2>&1 || {
    cat "$dir/slapd.log" >&2
    return 1
  }
  wait_for_port "$port" 30
  wait_for_port "$ldaps_port" 30
  local deadline=$((SECONDS + 30))
  until ldapwhoami -x -H "ldap://127.0.0.1:$port/" -D "$ROOT_DN" -y "$dir/admin.password" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "slapd on 127.0.0.1:$port does not accept the admin bind" >&2
      return 1
    fi
    sleep 0.2
  done
  : "$password"
}

# listen_urls DIR: slapd's -h argument, from the ports saved in DIR.
listen_urls() {
  local host=${JML_SLAPD_HOST:-127.0.0.1}
  printf 'ldap://%s:%s/ ldaps://%s:%s/' "$host" "$(cat "$1/port")" "$host" "$(cat "$1/ldaps_port")"
}

# secret_into FILE [SOURCE]: FILE gets SOURCE's content, or a random password.
secret_into() {
  local file=$1 source=${2:-}
  if [[ -n $source ]]; then
    (umask 077 && tr -d '\n' <"$source" >"$file")
  else
    (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(16), end="")' >"$file")
  fi
}

# prepare DIR: a fresh cn=config and base tree under DIR, not started.
prepare() {
  local dir=$1
  rm -rf "$dir"
  mkdir -p "$dir/config" "$dir/data"
  chmod 700 "$dir"
  secret_into "$dir/admin.password" "${JML_SLAPD_ADMIN_PASSWORD_FILE:-}"
  secret_into "$dir/writeonly.password" "${JML_SLAPD_WRITEONLY_PASSWORD_FILE:-}"
  local password
  password=$(cat "$dir/admin.password")
  if [[ -n ${JML_SLAPD_PORT:-} ]]; then echo "$JML_SLAPD_PORT" >"$dir/port"; else free_port >"$dir/port"; fi
  if [[ -n ${JML_SLAPD_LDAPS_PORT:-} ]]; then echo "$JML_SLAPD_LDAPS_PORT" >"$dir/ldaps_port"; else free_port >"$dir/ldaps_port"; fi
  make_tls "$dir/tls"
  write_config_ldif "$dir" "$password" >"$dir/config.ldif"
  slapadd -n0 -F "$dir/config" -l "$dir/config.ldif" >"$dir/slapadd.log" 2>&1 || {
    cat "$dir/slapadd.log" >&2
    return 1
  }
  write_base_ldif "$(slappasswd -T "$dir/writeonly.password")" >"$dir/base.ldif"
  slapadd -F "$dir/config" -b "$SUFFIX" -l "$dir/base.ldif" >>"$dir/slapadd.log" 2>&1 || {
    cat "$dir/slapadd.log" >&2
    return 1
  }
}

cmd_start() {
  local run_dir=${1:?usage: slapd.sh start RUN_DIR}
  mkdir -p "$run_dir"
  run_dir=$(cd "$run_dir" && pwd)
  local dir=$run_dir/slapd
  cmd_stop "$run_dir"
  prepare "$dir"
  run_slapd "$dir"
  local port ldaps_port
  port=$(cat "$dir/port")
  ldaps_port=$(cat "$dir/ldaps_port")
  cat >"$run_dir/slapd.env" <<EOF
export JML_TEST_SLAPD_URL=ldap://127.0.0.1:$port
export JML_TEST_SLAPD_LDAPS_URL=ldaps://127.0.0.1:$ldaps_port
export JML_TEST_SLAPD_CA_FILE=$dir/tls/ca.pem
export JML_TEST_SLAPD_BASE_DN=$SUFFIX
export JML_TEST_SLAPD_BIND_DN=$ROOT_DN
export JML_TEST_SLAPD_BIND_PASSWORD_FILE=$dir/admin.password
export JML_TEST_SLAPD_WRITEONLY_BIND_DN=$WRITEONLY_DN
export JML_TEST_SLAPD_WRITEONLY_PASSWORD_FILE=$dir/writeonly.password
export JML_TEST_SLAPD_WRITEONLY_USERS_DN=$WRITEONLY_USERS_DN
export JML_TEST_SLAPD_RUN_DIR=$run_dir
export JML_TEST_SLAPD_SCRIPT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/slapd.sh
EOF
}

cmd_restart() {
  local run_dir=${1:?usage: slapd.sh restart RUN_DIR}
  run_dir=$(cd "$run_dir" && pwd)
  local dir=$run_dir/slapd
  [[ -f $dir/port ]] || {
    echo "no slapd was started under $run_dir: run slapd.sh start $run_dir first" >&2
    return 1
  }
  stop_pidfile "$dir/slapd.pid"
  run_slapd "$dir"
}

# The container entry point: prepared once (the data survives restarts), slapd in the foreground.
cmd_serve() {
  local dir=${1:?usage: slapd.sh serve DIR}
  if [[ ! -f $dir/prepared ]]; then
    prepare "$dir"
    : >"$dir/prepared"
  fi
  echo "slapd serving $SUFFIX on $(listen_urls "$dir")" >&2
  exec slapd -d 0 -h "$(listen_urls "$dir")" -F "$dir/config"
}

cmd_stop() {
  local run_dir=${1:?usage: slapd.sh stop RUN_DIR}
  [[ -d $run_dir/slapd ]] || return 0
  stop_pidfile "$run_dir/slapd/slapd.pid"
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start "${2:-}" ;;
  restart) cmd_restart "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  serve) cmd_serve "${2:-}" ;;
  *)
    echo "usage: $0 install | start RUN_DIR | restart RUN_DIR | stop RUN_DIR | serve DIR" >&2
    exit 2
    ;;
esac
