#!/usr/bin/env python3
"""The direct baseline of the end-to-end benchmark (docs/benchmarks/e2e.md).

Sends the same target operations the mesh performs for N Sales joiners and then N
leavers straight to each real server, with no coordinator and no connector, and
prints the wall time per target and phase:

  LDAP   OpenLDAP's own `ldapmodify`, one process and one connection per phase:
         joiner = add inetOrgPerson + add member to staff and sales;
         leaver = set pwdAccountLockedTime + delete member from staff and sales.
  SCIM   HTTP/1.1 keep-alive (http.client): joiner = POST /Users + PATCH two Groups;
         leaver = PATCH active=false + PATCH two Groups.
  IAM    boto3 (the AWS SDK the AWS CLI is built on; the CLI itself costs ~0.5 s per
         call in process start-up): joiner = CreateUser (path, tags) + AddUserToGroup x2;
         leaver = TagUser (disabled) + RemoveUserFromGroup x2.
  Vault  HTTP/1.1 keep-alive: joiner = write auth/userpass/users/NAME with its policy;
         leaver = delete it.

One sequential client per target (the mesh runs the four targets at once, each with
up to 32 calls in flight): the ratio is therefore an upper bound of the mesh's cost.
It reads the settings deploy/local/<target>.sh start writes. Usage:
  python3 tests/e2e/direct_baseline.py N
"""
import http.client
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.parse


def env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} is not set: source RUN_DIR/<target>.env written by deploy/local/<target>.sh start")
    return value


def ldap_phase(run, n, joiner):
    base = env("JML_TEST_SLAPD_BASE_DN")
    lines = []
    for i in range(n):
        uid = f"{run}-{i:04d}"
        dn = f"uid={uid},ou=people,{base}"
        if joiner:
            lines += [f"dn: {dn}", "changetype: add", "objectClass: inetOrgPerson", f"uid: {uid}", f"cn: {uid}",
                      f"sn: {uid}", f"displayName: Person {i}", f"mail: {uid}@example.org",
                      f"employeeNumber: P-{uid}", ""]
        else:
            lines += [f"dn: {dn}", "changetype: modify", "replace: pwdAccountLockedTime",
                      "pwdAccountLockedTime: 000001010000Z", ""]
        for group in ("staff", "sales"):
            lines += [f"dn: cn={group},ou=groups,{base}", "changetype: modify",
                      ("add" if joiner else "delete") + ": member", f"member: {dn}", ""]
    with tempfile.NamedTemporaryFile("w", suffix=".ldif", delete=False) as f:
        f.write("\n".join(lines))
    start = time.monotonic()
    subprocess.run(["ldapmodify", "-x", "-H", env("JML_TEST_SLAPD_URL"), "-D", env("JML_TEST_SLAPD_BIND_DN"),
                    "-y", env("JML_TEST_SLAPD_BIND_PASSWORD_FILE"), "-f", f.name],
                   check=True, stdout=subprocess.DEVNULL)
    elapsed = time.monotonic() - start
    os.unlink(f.name)
    return elapsed


class Http:
    def __init__(self, url, headers):
        parsed = urllib.parse.urlsplit(url)
        self.prefix = parsed.path.rstrip("/")
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        self.headers = headers

    def call(self, method, path, body=None):
        data = json.dumps(body) if body is not None else None
        self.conn.request(method, self.prefix + path, body=data, headers=self.headers)
        response = self.conn.getresponse()
        payload = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {response.status}: {payload[:200]!r}")
        return json.loads(payload) if payload else None


def scim_phase(run, n, joiner, ids):
    token = open(env("JML_TEST_SCIM_TOKEN_FILE")).read().strip()
    scim = Http(env("JML_TEST_SCIM_URL"), {"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/scim+json"})
    groups = {}
    for name in ("staff", "sales"):
        query = urllib.parse.urlencode({"filter": f'displayName eq "{name}"'})
        groups[name] = scim.call("GET", f"/Groups?{query}")["Resources"][0]["id"]
    patch = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
    start = time.monotonic()
    for i in range(n):
        name = f"{run}-{i:04d}@example.org"
        if joiner:
            user = scim.call("POST", "/Users", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                                "userName": name, "externalId": f"P-{run}-{i:04d}",
                                                "displayName": f"Person {i}", "active": True})
            ids[name] = user["id"]
            for group in groups.values():
                scim.call("PATCH", f"/Groups/{group}", {"schemas": [patch], "Operations": [
                    {"op": "add", "path": "members", "value": [{"value": user["id"]}]}]})
        else:
            user_id = ids[name]
            scim.call("PATCH", f"/Users/{user_id}", {"schemas": [patch], "Operations": [
                {"op": "replace", "path": "active", "value": False}]})
            for group in groups.values():
                scim.call("PATCH", f"/Groups/{group}", {"schemas": [patch], "Operations": [
                    {"op": "remove", "path": f'members[value eq "{user_id}"]'}]})
    return time.monotonic() - start


def iam_phase(run, n, joiner):
    import boto3
    iam = boto3.client("iam", endpoint_url=env("JML_TEST_MOTO_URL"), region_name="us-east-1")
    path = f"/lifecycle-mesh/{run}/"
    start = time.monotonic()
    for i in range(n):
        name = f"{run}-{i:04d}"
        if joiner:
            iam.create_user(Path=path, UserName=name, Tags=[{"Key": "lifecycle-mesh:person-id", "Value": f"P-{name}"}])
            for group in ("staff", "sales"):
                iam.add_user_to_group(GroupName=group, UserName=name)
        else:
            iam.tag_user(UserName=name, Tags=[{"Key": "lifecycle-mesh:disabled", "Value": "true"}])
            for group in ("staff", "sales"):
                iam.remove_user_from_group(GroupName=group, UserName=name)
    return time.monotonic() - start


def vault_phase(run, n, joiner):
    token = open(env("JML_TEST_VAULT_TOKEN_FILE")).read().strip()
    vault = Http(env("JML_TEST_VAULT_ADDR") + "/v1", {"X-Vault-Token": token, "Content-Type": "application/json"})
    start = time.monotonic()
    for i in range(n):
        name = f"{run}-{i:04d}"
        if joiner:
            vault.call("POST", f"/auth/userpass/users/{name}",
                       {"password": secrets.token_urlsafe(24), "token_policies": ["pam-read"]})
        else:
            vault.call("DELETE", f"/auth/userpass/users/{name}")
    return time.monotonic() - start


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    run = f"direct{secrets.token_hex(3)}"
    ids = {}
    results = {}
    for phase, joiner in (("joiners", True), ("leavers", False)):
        results[("ldap", phase)] = ldap_phase(run, n, joiner)
        results[("scim", phase)] = scim_phase(run, n, joiner, ids)
        results[("aws", phase)] = iam_phase(run, n, joiner)
        results[("vault", phase)] = vault_phase(run, n, joiner)
    print(f"direct baseline, {n} people, one sequential client per target")
    print("| target | joiners: wall s | joiners/s | leavers: wall s | leavers/s |")
    print("|---|---|---|---|---|")
    for target in ("ldap", "scim", "vault", "aws"):
        j, l = results[(target, "joiners")], results[(target, "leavers")]
        print(f"| {target} | {j:.2f} | {n / j:.0f} | {l:.2f} | {n / l:.0f} |")
    jt = sum(results[(t, "joiners")] for t in ("ldap", "scim", "vault", "aws"))
    lt = sum(results[(t, "leavers")] for t in ("ldap", "scim", "vault", "aws"))
    print(f"| all four, one after another | {jt:.2f} | {n / jt:.0f} | {lt:.2f} | {n / lt:.0f} |")
    print(f"| all four, at once (slowest target) | {max(results[(t, 'joiners')] for t in ('ldap', 'scim', 'vault', 'aws')):.2f} | | "
          f"{max(results[(t, 'leavers')] for t in ('ldap', 'scim', 'vault', 'aws')):.2f} | |")


if __name__ == "__main__":
    main()
