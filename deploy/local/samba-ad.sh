#!/usr/bin/env bash
# A throwaway Samba Active Directory domain controller on loopback for the LDAP
# connector's AD mode.
#
#   samba-ad.sh install            apt-installs samba, samba-ad-dc, samba-ad-provision, ldap-utils, openssl
#   samba-ad.sh start RUN_DIR      provisions a domain (realm JML.TEST, --dns-backend=NONE) under
#                                  RUN_DIR/samba-ad/, runs only Samba's LDAP service bound to
#                                  127.0.0.1 (LDAP 389 with StartTLS, LDAPS 636: Samba's ports are
#                                  fixed) with a throwaway CA whose server certificate names
#                                  127.0.0.1, creates OU=Managed and OU=Groups with the catalogue
#                                  groups, waits until it answers a bind, writes RUN_DIR/samba-ad.env
#   samba-ad.sh stop RUN_DIR       stops it (idempotent)
#   samba-ad.sh serve DIR          the container entry point (deploy/docker/samba-ad.Dockerfile):
#                                  provisions the same domain under DIR on the first start (a
#                                  volume), serves LDAP/LDAPS on every interface of the container,
#                                  adds the same OUs and groups once, and stays in the foreground
#
# Settings for `serve`, from the environment:
#   JML_SAMBA_AD_ADMIN_PASSWORD_FILE  the Administrator password (complex: AD refuses a simple one)
#   JML_SAMBA_AD_TLS_NAMES            extra DNS names of the server certificate (space-separated)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REALM=JML.TEST
DOMAIN=JML
BASE_DN="DC=jml,DC=test"
ADMIN_DN="CN=Administrator,CN=Users,$BASE_DN"
GROUPS_ALL="staff engineering sales finance marketing support hr legal contractors eu-staff us-staff managers vpn-users wiki-editors admins it-ops prod-access db-admins"

cmd_install() {
  apt_install samba samba-ad-dc samba-ad-provision ldap-utils openssl
}

make_tls() {
  local tls=$1 names="DNS:dc1.jml.test,DNS:localhost,IP:127.0.0.1" name
  for name in ${JML_SAMBA_AD_TLS_NAMES:-}; do names+=",DNS:$name"; done
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=jml-test-samba-ca" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=dc1.jml.test" \
    -keyout "$tls/server.key" -out "$tls/server.csr" >/dev/null 2>&1
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
    "$names" >"$tls/server.ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 3650 -extfile "$tls/server.ext" -out "$tls/server.pem" >/dev/null 2>&1
  chmod 600 "$tls/server.key" "$tls/ca.key"
}

port_in_use() {
  python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(0 if s.connect_ex(('127.0.0.1',$1))==0 else 1)"
}

ldap_admin() {
  local tool=$1 dir=$2
  shift 2
  LDAPTLS_CACERT="$dir/tls/ca.pem" "$tool" -x -H ldaps://127.0.0.1:636 -D "$ADMIN_DN" -y "$dir/admin.password" "$@"
}

# provision DIR PASSWORD [SAMBA_OPTION...]: the domain under DIR/domain, its TLS under DIR/tls,
# and an smb.conf that runs only Samba's LDAP service with our certificate, plain simple binds
# allowed.
provision() {
  local dir=$1 password=$2
  shift 2
  mkdir -p "$dir/domain" "$dir/run" "$dir/log"
  chmod 700 "$dir"
  (umask 077 && printf '%s' "$password" >"$dir/admin.password")
  make_tls "$dir/tls"
  samba-tool domain provision --realm="$REALM" --domain="$DOMAIN" --server-role=dc --dns-backend=NONE \
    --adminpass="$password" --targetdir="$dir/domain" --host-name=dc1 "$@" >"$dir/provision.log" 2>&1 || {
    tail -20 "$dir/provision.log" >&2
    return 1
  }
  local conf=$dir/domain/etc/smb.conf
  sed -i '/^\[global\]/a\
	server services = ldap\
	ldap server require strong auth = no\
	pid directory = '"$dir"'/run\
	log file = '"$dir"'/log/samba.log\
	tls enabled = yes\
	tls keyfile = '"$dir"'/tls/server.key\
	tls certfile = '"$dir"'/tls/server.pem\
	tls cafile = '"$dir"'/tls/ca.pem' "$conf"
  sed -i '/^\tlog file = \/var\/log/d' "$conf"
}

# add_base DIR: waits until the Administrator bind works over LDAPS, then adds OU=Managed and
# OU=Groups with the catalogue groups.
add_base() {
  local dir=$1
  wait_for_port 636 60
  local deadline=$((SECONDS + 60))
  until ldap_admin ldapsearch "$dir" -LLL -s base -b "$BASE_DN" dn >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "Samba AD on 127.0.0.1:636 does not accept the Administrator bind" >&2
      return 1
    fi
    sleep 0.5
  done
  {
    printf 'dn: OU=Managed,%s\nobjectClass: organizationalUnit\nou: Managed\n\n' "$BASE_DN"
    printf 'dn: OU=Groups,%s\nobjectClass: organizationalUnit\nou: Groups\n\n' "$BASE_DN"
    local group
    for group in $GROUPS_ALL; do
      printf 'dn: CN=%s,OU=Groups,%s\nobjectClass: group\ncn: %s\nsAMAccountName: %s\n\n' \
        "$group" "$BASE_DN" "$group" "$group"
    done
  } >"$dir/base.ldif"
  ldap_admin ldapadd "$dir" -f "$dir/base.ldif" >"$dir/base.log" 2>&1 || {
    cat "$dir/base.log" >&2
    return 1
  }
}

cmd_start() {
  local run_dir=${1:?usage: samba-ad.sh start RUN_DIR}
  mkdir -p "$run_dir"
  run_dir=$(cd "$run_dir" && pwd)
  local dir=$run_dir/samba-ad
  cmd_stop "$run_dir"
  rm -rf "$dir"
  local password
  password="Jml-$(python3 -c 'import secrets; print(secrets.token_hex(12))')-Ad9"
  # Samba's LDAP ports are fixed. A slapd started by the Debian package (not
  # ours: ours use free ports) would hold them; anything else is reported.
  local port
  for port in 389 636; do
    if port_in_use "$port" && [[ -f /run/slapd/slapd.pid ]]; then
      /etc/init.d/slapd stop >/dev/null 2>&1 || stop_pidfile /run/slapd/slapd.pid
    fi
    if port_in_use "$port"; then
      echo "127.0.0.1:$port is in use: Samba AD needs it for LDAP; stop what listens there" >&2
      return 1
    fi
  done
  provision "$dir" "$password" --option="interfaces = lo" --option="bind interfaces only = yes"
  samba -s "$dir/domain/etc/smb.conf" -D >"$dir/samba.out" 2>&1 || {
    cat "$dir/samba.out" >&2
    return 1
  }
  add_base "$dir"
  cat >"$run_dir/samba-ad.env" <<EOF
export JML_TEST_SAMBA_AD_URL=ldaps://127.0.0.1:636
export JML_TEST_SAMBA_AD_STARTTLS_URL=ldap://127.0.0.1:389
export JML_TEST_SAMBA_AD_CA_FILE=$dir/tls/ca.pem
export JML_TEST_SAMBA_AD_BASE_DN=$BASE_DN
export JML_TEST_SAMBA_AD_BIND_DN=$ADMIN_DN
export JML_TEST_SAMBA_AD_BIND_PASSWORD_FILE=$dir/admin.password
export JML_TEST_SAMBA_AD_UPN_SUFFIX=jml.test
EOF
}

# The container: provisioned once on the volume DIR, then Samba in the foreground (as root: a
# DC does not run as another user; no capability beyond the engine's defaults is needed).
cmd_serve() {
  local dir=${1:?usage: samba-ad.sh serve DIR}
  local password_file=${JML_SAMBA_AD_ADMIN_PASSWORD_FILE:?JML_SAMBA_AD_ADMIN_PASSWORD_FILE names the Administrator password}
  mkdir -p "$dir"
  if [[ ! -f $dir/provisioned ]]; then
    find "$dir" -mindepth 1 -delete
    # The sysvol's NT ACLs go to a tdb (xattr_tdb) rather than `security.NTACL` extended
    # attributes, which only CAP_SYS_ADMIN may write: the container needs no added capability.
    provision "$dir" "$(cat "$password_file")" --option="vfs objects = dfs_samba4 acl_xattr xattr_tdb"
    : >"$dir/provisioned"
  fi
  samba -s "$dir/domain/etc/smb.conf" --foreground --no-process-group &
  local pid=$!
  # shellcheck disable=SC2064
  trap "kill -TERM $pid 2>/dev/null" TERM INT
  if [[ ! -f $dir/seeded ]]; then
    add_base "$dir"
    : >"$dir/seeded"
  fi
  echo "Samba AD DC serving $BASE_DN on LDAP 389 (StartTLS) and LDAPS 636" >&2
  wait "$pid"
}

cmd_stop() {
  local run_dir=${1:?usage: samba-ad.sh stop RUN_DIR}
  [[ -d $run_dir/samba-ad/run ]] || return 0
  stop_pidfile "$run_dir/samba-ad/run/samba.pid"
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  serve) cmd_serve "${2:-}" ;;
  *)
    echo "usage: $0 install | start RUN_DIR | stop RUN_DIR | serve DIR" >&2
    exit 2
    ;;
esac
