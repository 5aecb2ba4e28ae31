# A Samba Active Directory domain controller from Debian's `samba-ad-dc` packages, the LDAP
# connector's AD-mode target, for docker-compose.yml (profile `ad`) and the compose test. The
# domain is deploy/local/samba-ad.sh's, the one the AD-mode tests run against on one machine:
# realm JML.TEST (DC=jml,DC=test), no DNS service (--dns-backend=NONE), only Samba's LDAP
# service, OU=Managed and OU=Groups with the catalogue groups, a throwaway CA.
# `samba-ad.sh serve` provisions it on the first start under /var/lib/jml-samba-ad (a volume)
# and runs `samba` in the foreground: LDAP 389 (StartTLS, simple binds allowed) and LDAPS 636.
# The Administrator password comes from JML_SAMBA_AD_ADMIN_PASSWORD_FILE (complex: AD refuses a
# simple one). Runs as root inside the container, as a DC must, with the engine's default
# capabilities only: not privileged, no extra capability, no host network.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      samba samba-ad-dc samba-ad-provision ldap-utils openssl python3 \
 && rm -rf /var/lib/apt/lists/* \
 && rm -f /etc/samba/smb.conf \
 && mkdir -p /var/lib/jml-samba-ad /opt/lifecycle-mesh
COPY deploy/local/lib.sh deploy/local/samba-ad.sh /opt/lifecycle-mesh/
ENV JML_SAMBA_AD_TLS_NAMES=samba-ad
WORKDIR /var/lib/jml-samba-ad
EXPOSE 389 636
CMD ["bash", "/opt/lifecycle-mesh/samba-ad.sh", "serve", "/var/lib/jml-samba-ad/dc"]
