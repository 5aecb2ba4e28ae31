#!/usr/bin/env python3
"""Runs scim2-tester (PyPI, Yaal Coop's SCIM server compliance checker) against
the coordinator's SCIM endpoint and exits 1 when a check fails.

    conformance.py URL TOKEN_FILE CA_FILE

Run by crates/coordinator/tests/scim_inbound.rs with the venv .ci/run installs
($JML_CACHE_DIR/scim2-tester-venv). Checks that do not apply to an HR inbound
endpoint are listed in NOT_APPLICABLE with the reason (README, "SCIM 2.0
inbound"); every other check must succeed.
"""
import sys

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

# (check title, what the refusal says, why it does not apply). The first two are writes
# that change the person id, which the endpoint publishes as `immutable` (and `required`)
# and refuses to change (400 mutability, fail closed): scim2-tester fills immutable
# attributes nested in the Enterprise extension with new random values.
NOT_APPLICABLE = [
    ("object_replacement", "cannot change",
     "its PUT fills every attribute anew, the person id (employeeNumber) included"),
    ("check_replace_attribute", "cannot change",
     "its PATCH replaces the whole Enterprise extension, the person id (employeeNumber) included"),
    # Fail closed: a User without `active` would read as employed, so a PATCH may set
    # it to false (the termination) but not remove it (400 mutability).
    ("check_remove_attribute", "active: may not be removed",
     "removing `active` would read as employed; it may be set to false, not removed"),
]


# ERROR and worse fail; DEVIATION (a SHOULD not followed) is printed, not failed.
FAILING = {Status.ERROR, Status.CRITICAL}


def main() -> int:
    url, token_file, ca_file = sys.argv[1:4]
    token = open(token_file, encoding="utf-8").read().strip()
    http = httpx2.Client(base_url=url, verify=ca_file, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    client = SyncSCIMClient(http)
    results = check_server(client, raise_exceptions=False)
    failed = 0
    for result in results:
        title = result.title or ""
        status = result.status
        skip = next((why for name, says, why in NOT_APPLICABLE
                     if title == name and says in (result.reason or "")), None)
        mark = status.name
        if status == Status.ERROR and skip:
            mark = f"NOT APPLICABLE ({skip})"
        elif status in FAILING:
            failed += 1
        print(f"{mark:15} {title} {getattr(result, 'resource_type', '') or ''}: {result.reason or ''}".rstrip())
    print(f"{len(results)} checks, {failed} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
