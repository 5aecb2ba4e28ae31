#!/usr/bin/env python3
"""Prints one event's per-target outcome as a table, from `jmlctl status EVENT --json` on stdin.

For each target: the task's state, the attempts it took, the connector's
acknowledgement (the changes it made and the target-native id) and the fresh
read-back from the target (present, enabled, entitlements, active credentials),
then any difference between the read-back and the desired state.

Exit status: 0 when the event is verified (or had nothing to do); 3 when it is
verified with residual risk: everything each target can prove is proven, and
what may outlive a credential revocation (LDAP connections already bound, SCIM
application sessions, RustyVault tokens it cannot list, ...) is listed per
target with its bound; 1 otherwise.
"""
import json
import sys



def acknowledgement(task):
    ack = task.get("acknowledgement")
    if not ack:
        return "none"
    changes = [change["action"] for change in ack["changes"]]
    text = ", ".join(changes) if changes else "no change needed"
    native = ack.get("target_native_id")
    return "{} (id {})".format(text, native) if native else text


def read_back(task):
    state = task.get("read_back")
    if not state:
        return "none"
    if not state["exists"]:
        return "absent"
    entitlements = ", ".join("{}:{}".format(e["kind"], e["id"]) for e in state["entitlements"]) or "no entitlements"
    return "{}; {}; active credentials {}".format(
        "enabled" if state["enabled"] else "DISABLED", entitlements, state["credentials"]["active"])


def main():
    status = json.load(sys.stdin)
    print("    event {} ({}, person {}): {}{}".format(
        status["event_id"], status["kind"], status["person_id"], status["state"].upper(),
        "  [deadline breached]" if status["deadline_breached"] else ""))
    rows = [("target", "state", "attempts", "acknowledgement", "read-back")]
    for task in status["tasks"]:
        rows.append((task["target_id"], task["state"], str(task["attempts"]), acknowledgement(task), read_back(task)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for number, row in enumerate(rows):
        print("      " + "  ".join(row[i].ljust(widths[i]) for i in range(4)) + "  " + row[4])
        if number == 0:
            print("      " + "  ".join("-" * w for w in widths) + "  " + "-" * 9)
    for task in status["tasks"]:
        for difference in task["differences"]:
            print("      {}: difference: {}".format(task["target_id"], difference))
        if task["last_error"] and task["state"] not in ("verified", "verified_with_residual_risk"):
            print("      {}: last error: {}".format(task["target_id"], task["last_error"]))
        for risk in task.get("residual_risks", []):
            print("      {}: residual risk: {}: {} ({})".format(
                task["target_id"], risk["credential_kind"], risk["description"], risk["bound"]))
    if status["state"] in ("verified", "nothing_to_do"):
        return 0
    if status["state"] == "verified_with_residual_risk":
        print("      NOTE: every account is disabled and stripped and every credential the targets can list is")
        print("      revoked, as read back; what may outlive the revocation is listed above with its bound.")
        return 3
    return 1


if __name__ == "__main__":
    sys.exit(main())
