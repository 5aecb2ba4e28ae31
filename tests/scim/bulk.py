#!/usr/bin/env python3
"""Sends one SCIM /Bulk request built with scim2-client (PyPI) to the
coordinator's SCIM endpoint, as an HR integration would, and prints the
BulkResponse as JSON (each operation with the derived `eventId`).

    bulk.py URL TOKEN_FILE CA_FILE SPEC_JSON

SPEC_JSON: {"joiner": {PERSON}, "mover": {"person_id", "department"},
"leaver": "PERSON_ID"}, PERSON: {person_id, username, display_name, email,
department, title}. Run by tests/e2e/scim_inbound.rs with the venv .ci/run
installs ($JML_CACHE_DIR/scim2-tester-venv).
"""
import json
import sys

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import BulkOperation, BulkRequest, Email, EnterpriseUser, PatchOp, PatchOperation, User

DEPARTMENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"


def main() -> int:
    url, token_file, ca_file, spec = sys.argv[1:5]
    spec = json.loads(spec)
    token = open(token_file, encoding="utf-8").read().strip()
    http = httpx2.Client(base_url=url, verify=ca_file, headers={"Authorization": f"Bearer {token}"}, timeout=120)
    client = SyncSCIMClient(http)
    client.discover()
    j = spec["joiner"]
    joiner = User[EnterpriseUser](
        external_id=j["person_id"],
        user_name=j["username"],
        display_name=j["display_name"],
        title=j["title"],
        emails=[Email(value=j["email"], type="work", primary=True)],
    )
    joiner[EnterpriseUser] = EnterpriseUser(employee_number=j["person_id"], department=j["department"])
    mover = PatchOp[User[EnterpriseUser]](
        operations=[PatchOperation(op="replace", path=DEPARTMENT, value=spec["mover"]["department"])]
    )
    request = BulkRequest[User[EnterpriseUser]](
        fail_on_errors=1,
        operations=[
            BulkOperation[User[EnterpriseUser]](method="POST", path="/Users", bulk_id="joiner", data=joiner),
            BulkOperation[User[EnterpriseUser]](
                method="PATCH", path=f"/Users/{spec['mover']['person_id']}", data=mover
            ),
            BulkOperation[User[EnterpriseUser]](method="DELETE", path=f"/Users/{spec['leaver']}"),
        ],
    )
    response = client.bulk(request, check_response_payload=False)
    print(json.dumps(response))
    return 0


if __name__ == "__main__":
    sys.exit(main())
