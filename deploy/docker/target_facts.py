#!/usr/bin/env python3
"""What a target server shows about one account, read with the target's own client, as JSON.

Run inside the compose containers by deploy/docker/compose-test.sh (the script on stdin):

  scim USER_NAME    scim2-server over its HTTP API (the `scim` container's python, its token):
                    {"exists", "active", "groups"}
  iam USER_NAME     moto with boto3 (the `moto` container's venv):
                    {"exists", "groups", "policies", "login_profile", "active_access_keys"}
  vault USER_NAME   RustyVault's HTTP API (from the `scim` container, on the targets network,
                    with the root token `targets-init` wrote): {"exists", "policies"}

Standard library only, except boto3 for `iam`.
"""
import json
import sys
import urllib.error
import urllib.parse
import urllib.request


def http_json(url, headers):
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, None


def scim(user_name):
    token = open("/secrets/scim-token").read().strip()
    headers = {"Authorization": "Bearer " + token}
    query = urllib.parse.quote('userName eq "{}"'.format(user_name))
    _, body = http_json("http://127.0.0.1:8080/v2/Users?filter=" + query, headers)
    users = body.get("Resources", []) if body else []
    if not users:
        return {"exists": False}
    user = users[0]
    groups = sorted(g.get("display", "").lower() for g in user.get("groups", []))
    if not groups:
        # Some servers leave Users.groups out: ask the groups themselves.
        _, all_groups = http_json("http://127.0.0.1:8080/v2/Groups?count=1000", headers)
        for group in (all_groups or {}).get("Resources", []):
            if any(m.get("value") == user["id"] for m in group.get("members", [])):
                groups.append(group["displayName"].lower())
        groups.sort()
    return {"exists": True, "active": user.get("active", True), "groups": groups, "count": len(users)}


def iam(user_name):
    import boto3
    client = boto3.client("iam", endpoint_url="http://127.0.0.1:5000", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    try:
        client.get_user(UserName=user_name)
    except client.exceptions.NoSuchEntityException:
        return {"exists": False}
    groups = sorted(g["GroupName"].lower() for g in client.list_groups_for_user(UserName=user_name)["Groups"])
    policies = sorted(p["PolicyName"] for p in client.list_attached_user_policies(UserName=user_name)["AttachedPolicies"])
    try:
        client.get_login_profile(UserName=user_name)
        login_profile = True
    except client.exceptions.NoSuchEntityException:
        login_profile = False
    keys = client.list_access_keys(UserName=user_name)["AccessKeyMetadata"]
    return {"exists": True, "groups": groups, "policies": policies, "login_profile": login_profile,
            "active_access_keys": sum(1 for k in keys if k["Status"] == "Active")}


def vault(user_name):
    token = open("/secrets/vault/root-token").read().strip()
    status, body = http_json("http://rustyvault:8200/v1/auth/userpass/users/" + urllib.parse.quote(user_name),
                             {"X-Vault-Token": token})
    if status == 404 or not body or body.get("data") is None:
        return {"exists": False}
    if status != 200:
        sys.exit("vault: HTTP {}".format(status))
    policies = set()
    for field in ("token_policies", "policies"):
        value = body["data"].get(field)
        if isinstance(value, list):
            policies.update(p.lower() for p in value)
        elif isinstance(value, str):
            policies.update(p.strip().lower() for p in value.split(",") if p.strip())
    return {"exists": True, "policies": sorted(policies)}


if __name__ == "__main__":
    kind, name = sys.argv[1], sys.argv[2]
    print(json.dumps({"scim": scim, "iam": iam, "vault": vault}[kind](name), sort_keys=True))
