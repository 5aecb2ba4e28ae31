#!/usr/bin/env python3
"""Seeds the real target servers with the entitlements the quickstart policy grants.

The connectors grant entitlements that exist; they never create groups on a
directory, a SaaS app or an AWS account (that is the target owner's job). This
script plays the target owner for the local servers:

  * SCIM: a Group per name in --scim-groups (POST /Groups), unless one with that
    displayName exists;
  * AWS IAM (moto): a group per name in --iam-groups (CreateGroup), unless it exists;
  * LDAP: nothing (deploy/local/slapd.sh loads the catalogue groups);
  * Vault: nothing (the Vault connector's configuration carries the policies it grants).

Reads the settings deploy/local/<target>.sh start writes (JML_TEST_SCIM_URL,
JML_TEST_SCIM_TOKEN_FILE, JML_TEST_MOTO_URL) from the environment. Idempotent.
Standard library only (python3 is already needed by deploy/local/lib.sh).
"""
import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request


def need(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"seed.py: {name} is not set: start the target with deploy/local/<target>.sh start RUN_DIR "
                 f"and source RUN_DIR/<target>.env")
    return value


def scim_groups(names):
    base = need("JML_TEST_SCIM_URL").rstrip("/")
    with open(need("JML_TEST_SCIM_TOKEN_FILE")) as f:
        token = f.read().strip()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json",
               "Accept": "application/scim+json"}
    for name in names:
        # A SCIM filter string literal: escape backslash and quote (RFC 7644 section 3.4.2.2).
        literal = name.replace("\\", "\\\\").replace('"', '\\"')
        query = urllib.parse.urlencode({"filter": f'displayName eq "{literal}"'})
        request = urllib.request.Request(f"{base}/Groups?{query}", headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            if json.load(response).get("totalResults", 0) > 0:
                continue
        body = json.dumps({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                           "displayName": name}).encode()
        request = urllib.request.Request(f"{base}/Groups", data=body, headers=headers, method="POST")
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except urllib.error.HTTPError as error:
            if error.code != 409:  # created meanwhile by a concurrent seeder
                raise


def iam_groups(names):
    url = need("JML_TEST_MOTO_URL").rstrip("/") + "/"
    # moto routes a request to a service by the credential scope of its
    # Authorization header and does not check the signature.
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, "
                                "SignedHeaders=host, Signature=0"}
    for name in names:
        body = urllib.parse.urlencode({"Action": "CreateGroup", "Version": "2010-05-08",
                                       "GroupName": name}).encode()
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except urllib.error.HTTPError as error:
            if error.code != 409 and b"EntityAlreadyExists" not in error.read():
                raise


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scim-groups", default="", help="comma-separated SCIM group displayNames")
    parser.add_argument("--iam-groups", default="", help="comma-separated IAM group names")
    args = parser.parse_args()
    split = lambda text: [name for name in (part.strip() for part in text.split(",")) if name]
    if args.scim_groups:
        scim_groups(split(args.scim_groups))
    if args.iam_groups:
        iam_groups(split(args.iam_groups))


if __name__ == "__main__":
    main()
