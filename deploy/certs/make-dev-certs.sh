#!/usr/bin/env bash
# Makes a throwaway CA and certificates for running the mesh with mutual TLS
# on one machine. NOT for production: use your organisation's PKI there.
#
#   deploy/certs/make-dev-certs.sh OUT_DIR [NAME...]
#
# Writes OUT_DIR/ca.pem (+ ca.key) and, for each NAME (default: coordinator,
# connector-ldap, connector-scim, connector-vault, connector-iam,
# connector-memory, jmlctl), OUT_DIR/NAME.pem and OUT_DIR/NAME.key with the DNS
# names NAME, NAME.mesh.local and localhost, and IP 127.0.0.1. Certificates are
# valid for server and client authentication.
set -euo pipefail
out=${1:?usage: make-dev-certs.sh OUT_DIR [NAME...]}
shift
names=("$@")
(( ${#names[@]} )) || names=(coordinator connector-ldap connector-scim connector-vault connector-iam connector-memory jmlctl)
mkdir -p "$out"
umask 077
if [[ ! -f $out/ca.pem ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=Lifecycle Mesh dev CA" -keyout "$out/ca.key" -out "$out/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
for name in "${names[@]}"; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$name" \
    -keyout "$out/$name.key" -out "$out/$name.csr" 2>/dev/null
  cat >"$out/$name.ext" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:$name,DNS:$name.mesh.local,DNS:localhost,IP:127.0.0.1
EXT
  openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" -CAcreateserial \
    -days 30 -extfile "$out/$name.ext" -out "$out/$name.pem" 2>/dev/null
  rm -f "$out/$name.csr" "$out/$name.ext"
done
chmod 644 "$out"/*.pem
echo "wrote CA and ${#names[@]} certificates to $out"
