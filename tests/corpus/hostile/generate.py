#!/usr/bin/env python3
"""Writes corpus.json: the hostile inputs tests/e2e/hostile.rs sends to the
running mesh. Re-run after editing: python3 tests/corpus/hostile/generate.py

Entry kinds:
  raw     hex bytes sent as the whole HTTP/2 request body of
          /jml.v1.Lifecycle/SubmitEvent (expect: any gRPC error, no crash)
  event   a LifecycleEvent built from a valid base joiner with `set`
          overriding fields and `attributes` merged in (null removes); every
          string may hold {run} and {n} (the run id, the entry number), and
          {repeat:TEXT:COUNT}. `token` is the caller (default hr-integration,
          "none" for no credentials). `expect` is a gRPC code name, or
          "handled": accepted or refused with a typed code, and if accepted
          every task ends verified or failed and the targets show exactly that.
  scim    an HTTP request to the coordinator's SCIM endpoint, sent by
          crates/coordinator/tests/scim_inbound.rs (its policy reads the
          person id from the Enterprise employeeNumber, its body limit is
          64 KiB; tests/e2e/hostile.rs skips these entries):
          `method`, `path`, `body` (a JSON value sent as JSON, or a string sent
          as is, `repeat` times when set); expect HTTP `status` and, when
          given, the RFC 7644 `scimType`. None of them derives an event.
"""
import json, os

entries = []
def raw(name, hexbytes):
    entries.append({"name": name, "category": "bad-protobuf", "kind": "raw", "hex": hexbytes})
def ev(category, name, expect, set_=None, attributes=None, token=None):
    e = {"name": name, "category": category, "kind": "event", "expect": expect}
    if set_: e["set"] = set_
    if attributes: e["attributes"] = attributes
    if token: e["token"] = token
    entries.append(e)

def frame(payload: bytes, compressed=0, length=None):
    n = len(payload) if length is None else length
    return (bytes([compressed]) + n.to_bytes(4, "big") + payload).hex()

# --- bad protobuf and bad gRPC framing, raw over HTTP/2 -----------------------
raw("empty body", "")
raw("header only, no message", frame(b"", length=10))
raw("frame shorter than its 5-byte header", "0000")
raw("length prefix 4 GiB", frame(b"\x0a\x00", length=0xFFFFFFFF))
raw("length prefix past the end", frame(b"\x0a\x02", length=100))
raw("compressed flag without grpc-encoding", frame(b"\x0a\x00", compressed=1))
raw("compressed flag 0xff", frame(b"\x0a\x00", compressed=0xFF))
raw("two frames, the second truncated", frame(b"\x0a\x00") + "00000000ff")
raw("varint never ends", frame(b"\x0a" + b"\xff" * 11))
raw("varint 10 bytes overflow", frame(b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"))
raw("field number 0", frame(b"\x02\x00"))
raw("wire type 6 (invalid)", frame(b"\x0e\x00"))
raw("wire type 7 (invalid)", frame(b"\x0f\x00"))
raw("start group never ended", frame(b"\x0b"))
raw("end group without start", frame(b"\x0c"))
raw("event length past the end", frame(b"\x0a\x7f\x0a\x01"))
raw("nested event_id length past the end", frame(b"\x0a\x04\x0a\x50ab"))
raw("event_id invalid UTF-8", frame(b"\x0a\x04\x0a\x02\xc3\x28"))
raw("event_id lone surrogate bytes", frame(b"\x0a\x05\x0a\x03\xed\xa0\x80"))
raw("person_id overlong UTF-8 slash", frame(b"\x0a\x04\x1a\x02\xc0\xaf"))
raw("attribute key invalid UTF-8", frame(b"\x0a\x08\x22\x06\x0a\x01\xff\x12\x01a"))
raw("attribute map entry truncated", frame(b"\x0a\x04\x22\x05\x0a\x03"))
raw("kind as length-delimited", frame(b"\x0a\x04\x12\x02ab"))
raw("kind varint 2^63", frame(b"\x0a\x0b\x10\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"))
raw("urgent as fixed64", frame(b"\x0a\x09\x39" + b"\x01" * 8))
raw("fixed32 truncated", frame(b"\x0a\x03\x3d\x01\x02"))
raw("event field as varint", frame(b"\x08\x01"))
raw("unknown field 99 only (no event)", frame(b"\x98\x06\x01"))
raw("unknown field 536870911", frame(b"\xf8\xff\xff\xff\x0f\x01"))
raw("deep nesting in unknown field", frame((b"\x9a\x06\x7f") * 1 + b"\x00" * 5))
raw("random bytes 1", frame(bytes.fromhex("deadbeefcafebabe0011223344556677")))
raw("random bytes 2", frame(bytes.fromhex("ffffffffffffffffffffffffffffffff")))
raw("random bytes 3", frame(bytes.fromhex("0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a")))
raw("all zero 64 bytes", frame(b"\x00" * 64))
raw("JSON instead of protobuf", frame(b'{"event":{"event_id":"x"}}'))
raw("HTTP/1 text as the body", "474554202f20485454502f312e310d0a0d0a")
raw("gRPC-web text frame", frame(b"\x80\x00\x00\x00\x00"))
raw("length 0x7fffffff", frame(b"", length=0x7FFFFFFF))
raw("a 5 MB message (over the 4 MiB limit)", "GEN:oversized-message")
raw("1000 tiny frames", "GEN:many-frames")

# --- event ids ----------------------------------------------------------------
for name, value in [
    ("NUL", "a\u0000b"), ("newline", "a\nb"), ("carriage return", "a\rb"), ("escape", "a\u001b[31mb"),
    ("DEL", "a\u007fb"), ("space", "a b"), ("slash", "a/b"), ("path traversal", "../../etc/passwd"),
    ("encoded slash", "a%2Fb"), ("backslash", "a\\b"), ("quote", "a\"b"), ("unicode", "événement"),
    ("cyrillic look-alike", "еvent-1"), ("zero-width space", "a\u200bb"), ("RTL override", "a\u202eb"),
    ("129 bytes", "{repeat:e:129}"), ("empty", ""), ("LDAP filter", "*)(uid=*"),
    ("SQL", "x'; DROP TABLE events; --"),
]:
    ev("event-id", f"event_id: {name}", "INVALID_ARGUMENT", {"event_id": value})
# Only dots is within the event id alphabet: accepted, an opaque key (never a path).
ev("event-id", "event_id: only dots", "handled", {"event_id": "..{n}.."})
# --- kinds --------------------------------------------------------------------
for value in [0, 7, 99, -1, 2147483647]:  # 1-6 are kinds (4 rehire, 5 suspension, 6 return)
    ev("kind", f"kind {value}", "INVALID_ARGUMENT", {"kind": value})
# --- person ids ---------------------------------------------------------------
for name, value in [
    ("empty", ""), ("NUL", "P\u00001"), ("newline", "P\n1"), ("300 bytes", "{repeat:p:300}"), ("tab", "P\t1"),
]:
    ev("person-id", f"person_id: {name}", "INVALID_ARGUMENT", {"person_id": value})
# The person id is an opaque key the coordinator never puts in a DN, filter or
# path: printable values are accepted and handled literally.
for name, value in [
    ("path traversal", "../admin-{run}-{n}"), ("slash", "P/{run}/{n}"), ("encoded slash", "P%2F{run}-{n}"),
    ("space", "P {run} {n}"), ("LDAP DN", "cn=admin,dc=x-{run}-{n}"), ("LDAP filter", "*-{run}-{n}"),
    ("unicode look-alike", "Р-{run}-{n}"),
]:
    ev("person-id", f"person_id: {name}", "handled", {"person_id": value})
# --- source systems (hr-integration is bound to workday) -----------------------
for name, value in [
    ("another system", "sap"), ("case", "Workday"), ("trailing space", "workday "), ("NUL", "workday\u0000"),
    ("empty", ""), ("cyrillic o", "wоrkday"), ("zero-width", "work\u200bday"), ("prefix", "workday2"),
    ("path", "../workday"), ("full-width", "ｗｏｒｋｄａｙ"),
]:
    ev("source-of-truth", f"source_system: {name}", "PERMISSION_DENIED", {"source_system": value})
# --- callers --------------------------------------------------------------------
ev("caller", "no credentials", "UNAUTHENTICATED", token="none")
ev("caller", "unknown token", "UNAUTHENTICATED", token="unknown")
ev("caller", "an approver submits", "PERMISSION_DENIED", token="alice")
ev("caller", "malformed authorization header", "UNAUTHENTICATED", token="malformed")
# --- control characters in attribute values ------------------------------------
for code in list(range(0, 9)) + list(range(10, 32)) + [0x7F, 0x85, 0x9B]:
    ev("control-characters", f"display_name with U+{code:04X}", "INVALID_ARGUMENT",
       attributes={"display_name": f"Person{chr(code)}{{n}}"})
for attribute in ["email", "department", "title"]:
    for code in [0, 1, 7, 8, 10, 11, 12, 13, 27, 31, 127]:
        ev("control-characters", f"{attribute} with U+{code:04X}", "INVALID_ARGUMENT",
           attributes={attribute: f"v{chr(code)}{{n}}"})
# --- unknown / foreign attributes ----------------------------------------------
for name in ["favourite_colour", "uid", "memberOf", "objectClass", "userPassword", "__proto__", "a b",
             "Department", "groups", "password"]:
    ev("unknown-field", f"attribute {name!r}", "INVALID_ARGUMENT", attributes={name: "x"})
# --- oversized fields ------------------------------------------------------------
ev("oversized", "display_name 1025 bytes", "INVALID_ARGUMENT", attributes={"display_name": "{repeat:d:1025}"})
ev("oversized", "display_name 200 KB", "INVALID_ARGUMENT", attributes={"display_name": "{repeat:d:200000}"})
ev("oversized", "username 1 MB", "INVALID_ARGUMENT", attributes={"username": "{repeat:u:1000000}"})
ev("oversized", "event_id 64 KB", "INVALID_ARGUMENT", {"event_id": "{repeat:i:65536}"})
ev("oversized", "person_id 64 KB", "INVALID_ARGUMENT", {"person_id": "{repeat:p:65536}"})
# --- times and flags -------------------------------------------------------------
for value in ["yesterday", "2026-13-45T00:00:00Z", "0000-00-00", "9999999999", "2026-11-27T09:00:00Z; DROP",
              "2026-11-27 09:00:00", "+275760-09-13T00:00:00Z", "2026-11-27T09:00:00+99:00"]:
    ev("time", f"effective_at {value!r}", "INVALID_ARGUMENT", {"effective_at": value})
ev("flag", "urgent joiner", "INVALID_ARGUMENT", {"urgent": True})
# --- injection payloads that are valid values: must be handled literally ---------
# Each is the tail of the username (LDAP uid and DN, IAM user name, Vault path)
# and of the SCIM userName (email). Prefixed by the run id so runs never collide.
for name, value in [
    ("LDAP DN comma", "x,ou=admins"), ("LDAP DN plus", "x+cn=root"), ("LDAP DN backslash", "x\\"),
    ("LDAP DN leading hash", "#x"), ("LDAP DN equals", "x=y"), ("LDAP DN angle", "x<y>"),
    ("LDAP DN semicolon", "x;y"), ("LDAP DN quote", "x\"y"),
    ("LDAP filter star", "*"), ("LDAP filter close", "*)(uid=*"), ("LDAP filter or", "x)(|(objectClass=*)"),
    ("LDAP filter escaped star", "\\2a"),
    ("SCIM filter or", "x\" or userName pr or \""), ("SCIM filter eq", "x\") or (userName eq \"admin"),
    ("URL traversal", "../../sys/policy"), ("URL encoded traversal", "..%2F..%2Fsys"), ("URL slash", "a/b"),
    ("URL encoded dots", "%2e%2e"), ("URL query", "x?list=true"), ("URL fragment", "x#frag"),
    ("IAM ARN", "arn:aws:iam::123456789012:user/x"), ("IAM space", "a b"), ("IAM wildcard", "a*"),
    ("IAM path", "/x/"), ("IAM 70 characters", "{repeat:n:70}"),
    ("cyrillic look-alike", "аdmin"), ("zero-width space", "admin\u200b"), ("RTL override", "ad\u202emin"),
    ("full-width", "ａｄｍｉｎ"), ("ligature", "ﬁle"),
]:
    ev("injection", f"username {name}", "handled", attributes={"username": "{run}-h{n}" + value,
                                                              "email": "{run}-h{n}" + value + "@example.org"})
# --- SCIM bodies (the SCIM 2.0 endpoint) -------------------------------------------
U = "urn:ietf:params:scim:schemas:core:2.0:User"
E = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
P = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
B = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
def scim(name, method, path, body, status, scim_type=None, repeat=None):
    e = {"name": name, "category": "scim", "kind": "scim", "method": method, "path": path, "body": body,
         "status": status}
    if scim_type: e["scimType"] = scim_type
    if repeat: e["repeat"] = repeat
    entries.append(e)
def user(**extra):
    # The test policy reads the person id from the Enterprise employeeNumber.
    u = {"schemas": [U, E], "userName": "hx1", E: {"employeeNumber": "HX1"}}
    u.update(extra)
    return u
scim("SCIM body not JSON", "POST", "/Users", "{\"schemas\": [", 400, "invalidSyntax")
scim("SCIM body a JSON array", "POST", "/Users", [user()], 400, "invalidSyntax")
scim("SCIM body empty", "POST", "/Users", "", 400, "invalidSyntax")
scim("SCIM unknown schema", "POST", "/Users", user(schemas=[U, "urn:example:evil:2.0:User"]), 400, "invalidSyntax")
scim("SCIM no schemas", "POST", "/Users", {"externalId": "HX1", "userName": "hx1"}, 400, "invalidSyntax")
scim("SCIM extension not listed in schemas", "POST", "/Users", user(schemas=[U]), 400, "invalidSyntax")
scim("SCIM unknown extension", "POST", "/Users", user(**{"urn:example:evil:2.0:User": {"admin": True}}), 400, "invalidSyntax")
scim("SCIM unknown attribute", "POST", "/Users", user(isAdmin=True), 400, "invalidSyntax")
scim("SCIM unknown sub-attribute", "POST", "/Users", user(name={"givenName": "a", "sudo": "y"}), 400, "invalidSyntax")
scim("SCIM wrong type", "POST", "/Users", user(active="yes"), 400, "invalidValue")
scim("SCIM userName an object", "POST", "/Users", user(userName={"$ne": ""}), 400, "invalidValue")
scim("SCIM no person id", "POST", "/Users", {"schemas": [U], "externalId": "HX1", "userName": "hx1"}, 400, "invalidValue")
scim("SCIM person id 8 KB", "POST", "/Users", user(**{E: {"employeeNumber": "p" * 8192}}), 400, "invalidValue")
# Past the 64 KiB limit of the test (read on and discarded up to 4 x the limit: a clean 413).
scim("SCIM body past the size limit", "POST", "/Users", " ", 413, None, repeat=100000)
scim("SCIM userName with control characters", "POST", "/Users", user(userName="a\u0000b\nc"), 400, "invalidValue")
scim("SCIM filter injection", "GET", "/Users?filter=userName%20eq%20%22x%22%20or%20userName%20pr", None, 400, "invalidFilter")
scim("SCIM filter unsupported attribute", "GET", "/Users?filter=password%20eq%20%22x%22", None, 400, "invalidFilter")
scim("SCIM PATCH value filter", "PATCH", "/Users/H0", {"schemas": [P], "Operations": [
    {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "x@y"}]}, 400, "invalidPath")
scim("SCIM PATCH unknown op", "PATCH", "/Users/H0", {"schemas": [P], "Operations": [{"op": "copy", "path": "title"}]},
     400, "invalidSyntax")
scim("SCIM PATCH remove without path", "PATCH", "/Users/H0", {"schemas": [P], "Operations": [{"op": "remove"}]},
     400, "noTarget")
scim("SCIM PATCH changes the person id", "PATCH", "/Users/H0", {"schemas": [P], "Operations": [
    {"op": "replace", "path": E + ":employeeNumber", "value": "H9"}]}, 400, "mutability")
scim("SCIM PATCH unknown schema", "PATCH", "/Users/H0", {"schemas": ["urn:example:evil"], "Operations": []},
     400, "invalidSyntax")
scim("SCIM path traversal", "GET", "/Users/..%2F..%2Fsys", None, 404)
scim("SCIM unknown endpoint", "GET", "/Groups", None, 404)
scim("SCIM discovery write", "POST", "/Schemas", {"schemas": [U]}, 405)
scim("SCIM Bulk without schemas", "POST", "/Bulk", {"Operations": []}, 400, "invalidSyntax")
scim("SCIM Bulk failOnErrors negative", "POST", "/Bulk", {"schemas": [B], "failOnErrors": -1, "Operations": []},
     400, "invalidValue")
scim("SCIM Bulk too many operations", "POST", "/Bulk", {"schemas": [B], "Operations": [
    {"method": "DELETE", "path": "/Users/NOBODY"}] * 1001}, 413)
# --- duplicates and replays --------------------------------------------------------
entries.append({"name": "duplicate and replayed event ids", "category": "replay", "kind": "replay"})

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "corpus.json"), "w", encoding="utf-8") as out:
    json.dump(entries, out, ensure_ascii=True, indent=1)
    out.write("\n")
print(len(entries), "entries")
