# OpenLDAP slapd from Debian's `slapd` package, the LDAP connector's target in
# docker-compose.yml (it replaces bitnami/openldap, which is no longer published). The
# configuration and base tree are deploy/local/slapd.sh's, the same the tests run against on
# one machine: suffix dc=example,dc=org, the mdb backend, the ppolicy overlay with a default
# policy honouring pwdAccountLockedTime, ou=people, ou=groups with the catalogue groups,
# ou=policies, and the write-only service account cn=jml-writeonly.
# `slapd.sh serve` builds them on the first start under /var/lib/jml-slapd (a volume) and runs
# slapd in the foreground as the `openldap` user, plain LDAP on 1389 and LDAPS on 1636.
# The rootdn (cn=admin,dc=example,dc=org) password comes from JML_SLAPD_ADMIN_PASSWORD_FILE.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slapd ldap-utils openssl python3 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/jml-slapd /opt/lifecycle-mesh \
 && chown openldap:openldap /var/lib/jml-slapd
COPY deploy/local/lib.sh deploy/local/slapd.sh /opt/lifecycle-mesh/
ENV JML_SLAPD_HOST=0.0.0.0 JML_SLAPD_PORT=1389 JML_SLAPD_LDAPS_PORT=1636
USER openldap
# Not /: python's `import secrets` (slapd.sh) would find the /secrets mount first.
WORKDIR /var/lib/jml-slapd
EXPOSE 1389 1636
CMD ["bash", "/opt/lifecycle-mesh/slapd.sh", "serve", "/var/lib/jml-slapd/slapd"]
