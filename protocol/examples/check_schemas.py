#!/usr/bin/env python3
"""Checks a running guidond against protocol/schema/: sends every kind of request (and some bad
ones), validates each request against request.schema.json (admin-request.schema.json on the admin
socket) and each reply against its schema. Needs the `jsonschema` package.
Usage: check_schemas.py SOCKET FLAGFILE [ADMINSOCKET AUDITLOG]
(with an admin socket of a guidond serving --entitlements, the entitlements.* operations too)"""
import json
import os
import pathlib
import socket
import sys

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = pathlib.Path(__file__).resolve().parent.parent / "schema"
resources = {}
for path in SCHEMAS.glob("*.schema.json"):
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    resources[path.name] = schema
registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in resources.values())


def validator(name):
    return Draft202012Validator(resources[name], registry=registry)


sock_path, flag_file = sys.argv[1], sys.argv[2]
admin_path = sys.argv[3] if len(sys.argv) > 3 else None
audit_log = sys.argv[4] if len(sys.argv) > 4 else None
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sock_path)
reader = sock.makefile("rb")

cases = [
    ({"op": "eval", "id": 1, "flag": "new-checkout", "type": "boolean", "default": False,
      "context": {"targetingKey": "user-42", "tier": "gold"}}, "eval-reply.schema.json"),
    ({"op": "eval", "id": "x", "flag": "recommendations", "default": True}, "eval-reply.schema.json"),
    ({"op": "eval", "flag": "nope"}, "eval-reply.schema.json"),
    ({"op": "eval", "flag": "theme", "type": "boolean"}, "eval-reply.schema.json"),
    ({"op": "eval", "id": 2, "flags": ["bulk-export", "nope", "theme"], "context": {"plan": "business"}},
     "eval-many-reply.schema.json"),
    ({"op": "evalAll", "id": 3, "context": {"targetingKey": "user-1001"}}, "evalall-reply.schema.json"),
    ({"op": "ping", "id": None}, "ping-reply.schema.json"),
    ({"op": "status", "id": 4.5}, "status-reply.schema.json"),
    ({"op": "list", "id": True}, "list-reply.schema.json"),
    ({"op": "stats", "id": 5}, "stats-reply.schema.json"),
    ({"op": "metrics"}, "metrics-reply.schema.json"),
]
bad = [
    (b"not json", "error-reply.schema.json"),
    (b'{"op":"nope","id":9}', "error-reply.schema.json"),
    (b'{"op":"eval","flag":1}', "error-reply.schema.json"),
]
request_validator = validator("request.schema.json")
failures = 0
lines = []
for request, _ in cases:
    errors = list(request_validator.iter_errors(request))
    if errors:
        failures += 1
        print("request does not match request.schema.json:", request, errors[0].message)
    lines.append(json.dumps(request).encode())
for line, _ in bad:
    lines.append(line)
sock.sendall(b"\n".join(lines) + b"\n")
for thing, schema in [(c[0], c[1]) for c in cases] + [(b[0], b[1]) for b in bad]:
    reply = json.loads(reader.readline())
    errors = list(validator(schema).iter_errors(reply))
    if errors:
        failures += 1
        print(f"reply to {thing!r} does not match {schema}: {errors[0].message}\n  {reply}")

# A request that is not valid by the schema is refused by the daemon too.
for invalid in [{"op": "eval"}, {"op": "eval", "flag": "a", "flags": ["b"]}, {"op": "eval", "flag": "a", "type": "bool"}]:
    if request_validator.is_valid(invalid):
        failures += 1
        print("request.schema.json accepts", invalid)

# watch: the acknowledgement, then an event after the file changes.
sock.sendall(b'{"op":"watch","id":"w"}\n')
ack = json.loads(reader.readline())
failures += sum(1 for e in validator("watch-ack.schema.json").iter_errors(ack))
original = pathlib.Path(flag_file).read_text()
doc = json.loads(original)
doc["flags"]["schema-check"] = {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"}
tmp = flag_file + ".tmp"
pathlib.Path(tmp).write_text(json.dumps(doc))
os.rename(tmp, flag_file)
sock.settimeout(15)
event = json.loads(reader.readline())
errors = list(validator("watch-event.schema.json").iter_errors(event))
if errors or event.get("added") != ["schema-check"]:
    failures += 1
    print("bad event:", event, errors[:1])

checked = len(cases) + len(bad) + 2


def check(reply, schema, what):
    global failures, checked
    checked += 1
    errors = list(validator(schema).iter_errors(reply))
    if errors:
        failures += 1
        print(f"reply to {what!r} does not match {schema}: {errors[0].message}\n  {reply}")


# A write on the query socket: FORBIDDEN, an error reply.
sock.settimeout(15)
sock.sendall(b'{"op":"flags.disable","id":"f","flag":"theme","force":true}\n')
forbidden = json.loads(reader.readline())
check(forbidden, "error-reply.schema.json", "flags.disable on the query socket")
if forbidden.get("error", {}).get("code") != "FORBIDDEN":
    failures += 1
    print("the query socket did not refuse a write:", forbidden)

# Usage limits (guidond started with --entitlements protocol/examples/entitlements.json and a
# --state-dir: GUIDON_CHECK_QUOTAS=1).
if os.environ.get("GUIDON_CHECK_QUOTAS") == "1":
    acme = {"tenantId": "acme", "targetingKey": "user-7"}
    quota_cases = [
        ({"op": "consume", "id": "q1", "feature": "voice_ai", "context": acme}, "consume-reply.schema.json"),
        ({"op": "consume", "feature": "video_generation", "context": acme, "amount": 2, "idempotencyKey": "render-1"}, "consume-reply.schema.json"),
        ({"op": "consume", "feature": "video_generation", "context": acme, "amount": 2, "idempotencyKey": "render-1"}, "consume-reply.schema.json"),
        ({"op": "consume", "feature": "video_generation", "context": acme, "amount": 9}, "consume-reply.schema.json"),
        ({"op": "consume", "feature": "voice_ai", "context": {"tenantId": "umbrella"}}, "consume-reply.schema.json"),
        ({"op": "consume", "feature": "telegram_bot", "context": {"tenantId": "acme"}}, "consume-reply.schema.json"),
        ({"op": "usage", "id": 7, "feature": "voice_ai", "context": acme}, "usage-reply.schema.json"),
        ({"op": "usage", "context": acme}, "usage-reply.schema.json"),
    ]
    for request, schema in quota_cases:
        errors = list(request_validator.iter_errors(request))
        if errors:
            failures += 1
            print("request does not match request.schema.json:", request, errors[0].message)
        sock.sendall(json.dumps(request).encode() + b"\n")
        reply = json.loads(reader.readline())
        check(reply, schema, request)
        if "error" in reply:
            failures += 1
            print("refused:", request, reply)
    for bad in [{"op": "consume", "feature": "voice_ai", "amount": 0, "context": acme},
                {"op": "consume", "feature": "voice_ai", "amount": 1.5, "context": acme},
                {"op": "usage", "feature": "voice_ai", "amount": 1, "context": acme},
                {"op": "consume", "context": acme}]:
        if request_validator.is_valid(bad):
            failures += 1
            print("request.schema.json accepts", bad)
        sock.sendall(json.dumps(bad).encode() + b"\n")
        reply = json.loads(reader.readline())
        check(reply, "error-reply.schema.json", bad)

if admin_path:
    admin = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    admin.connect(admin_path)
    admin.settimeout(15)
    admin_reader = admin.makefile("rb")
    admin_request = validator("admin-request.schema.json")

    def ask(request, schema, valid=True):
        global failures
        errors = list(admin_request.iter_errors(request))
        if valid and errors:
            failures += 1
            print("request does not match admin-request.schema.json:", request, errors[0].message)
        admin.sendall(json.dumps(request).encode() + b"\n")
        reply = json.loads(admin_reader.readline())
        check(reply, schema, request)
        return reply

    revision = ask({"op": "flags.get", "id": 1}, "admin-get-reply.schema.json")["revision"]
    ask({"op": "flags.get", "flag": "search-v2"}, "admin-get-reply.schema.json")
    ask({"op": "ping"}, "ping-reply.schema.json")
    writes = [
        {"op": "flags.rollout", "flag": "search-v2", "percentage": 50, "by": "ci", "reason": "schema check"},
        {"op": "flags.rollout", "flag": "search-v2", "percentage": 12.5, "dryRun": True},
        {"op": "flags.target", "flag": "beta-dashboard", "users": ["user-4004"]},
        {"op": "flags.target", "flag": "bulk-export", "attribute": "tenantId", "values": ["tenant-0777"], "deny": True},
        {"op": "flags.target", "flag": "internal-tools", "domains": ["acme-ops.example"], "variant": "on"},
        {"op": "flags.untarget", "flag": "beta-dashboard", "users": ["user-1001"]},
        {"op": "flags.split", "flag": "checkout-button-copy", "weights": {"control": 50, "urgent": 25, "friendly": 25}},
        {"op": "flags.schedule", "flag": "theme", "variant": "fresh", "start": "2026-12-24T00:00:00Z", "end": "2026-12-27T00:00:00+01:00"},
        {"op": "flags.schedule", "flag": "theme", "clear": True},
        {"op": "flags.setDefault", "flag": "max-cart-items", "variant": "large"},
        {"op": "flags.disable", "flag": "theme"},
        {"op": "flags.enable", "flag": "theme"},
        {"op": "flags.setMetadata", "flag": "theme", "name": "ticket", "value": "DSN-13"},
        {"op": "flags.removeMetadata", "flag": "theme", "name": "ticket"},
        {"op": "flags.create", "flag": "schema-new", "definition": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"}},
        {"op": "flags.replace", "flag": "schema-new", "definition": {"state": "DISABLED", "variants": {"a": "A"}}},
        {"op": "flags.delete", "flag": "schema-new", "force": True},
    ]
    for request in writes:
        if not request.get("force") and not request.get("dryRun"):
            request["ifRevision"] = revision
        reply = ask(request, "admin-write-reply.schema.json")
        if not reply.get("ok"):
            failures += 1
            print("write refused:", request, reply)
        elif not request.get("dryRun"):
            revision = reply["revision"]
    refusals = [
        ({"op": "flags.enable", "flag": "theme", "ifRevision": "0000000000000000"}, "CONFLICT", True),
        ({"op": "flags.enable", "flag": "nope", "ifRevision": revision}, "NOT_FOUND", True),
        ({"op": "flags.create", "flag": "theme", "definition": {"state": "ENABLED", "variants": {"a": 1}}, "ifRevision": revision}, "ALREADY_EXISTS", True),
        ({"op": "flags.rollout", "flag": "search-v2", "percentage": 50, "variant": "maybe", "ifRevision": revision}, "INVALID_ARGUMENT", True),
        ({"op": "flags.replace", "flag": "theme", "definition": {"state": "ENABLED", "variants": {"a": 1, "b": "x"}}, "ifRevision": revision}, "INVALID_DOCUMENT", True),
        ({"op": "flags.enable", "flag": "theme"}, "INVALID_REQUEST", True),
        ({"op": "flags.rollout", "flag": "search-v2", "percentage": 150, "ifRevision": revision}, "INVALID_ARGUMENT", False),
        ({"op": "flags.nope", "flag": "theme", "ifRevision": revision}, "UNKNOWN_OP", False),
    ]
    for request, code, valid in refusals:
        reply = ask(request, "error-reply.schema.json", valid)
        if reply.get("error", {}).get("code") != code:
            failures += 1
            print(f"expected {code} for {request}: {reply}")
        if not valid and admin_request.is_valid(request):
            failures += 1
            print("admin-request.schema.json accepts", request)
    history = ask({"op": "flags.history", "limit": 50}, "admin-history-reply.schema.json")
    if len(history.get("records", [])) < len(writes) - 1:
        failures += 1
        print("history is missing records:", len(history.get("records", [])))
    # The entitlements file, when guidond serves one (--entitlements): every entitlements.* op.
    admin.sendall(b'{"op":"entitlements.get"}\n')
    probe = json.loads(admin_reader.readline())
    if "error" not in probe:
        check(probe, "admin-entitlements-get-reply.schema.json", "entitlements.get")
        for request in [{"op": "entitlements.get", "tenant": "5"}, {"op": "entitlements.get", "plan": "growth"},
                        {"op": "entitlements.get", "feature": "voice_ai"}]:
            ask(request, "admin-entitlements-get-reply.schema.json")
        revision = probe["revision"]
        writes = [
            {"op": "entitlements.enable", "tenant": "acme", "feature": "sso_saml", "expiresAt": "2027-03-01", "by": "ci", "reason": "schema check"},
            {"op": "entitlements.disable", "tenant": 5, "feature": "analytics", "notes": "schema check"},
            {"op": "entitlements.clear", "tenant": "acme", "feature": "sso_saml"},
            {"op": "entitlements.bulk", "changes": [{"tenant": "acme", "feature": "priority_support", "enabled": True},
                                                     {"tenant": "globex", "feature": "priority_support", "enabled": True},
                                                     {"tenant": "5", "feature": "analytics", "clear": True}]},
            {"op": "entitlements.setPlan", "tenant": "5", "plan": "growth", "dryRun": True},
            {"op": "entitlements.setPlan", "tenant": "wayne", "plan": "starter", "status": "trialing"},
            {"op": "entitlements.setStatus", "tenant": "wayne", "status": "active", "validUntil": "2027-12-31T00:00:00Z"},
            {"op": "entitlements.setStatus", "tenant": "wayne", "status": "active", "validUntil": None},
            {"op": "entitlements.deleteTenant", "tenant": "wayne"},
            {"op": "entitlements.addFeature", "feature": "schema_check", "definition": {"description": "x", "default": False}},
            {"op": "entitlements.createPlan", "plan": "scale", "definition": {"displayName": "Scale", "order": 4, "inherits": "growth"}},
            {"op": "entitlements.updatePlan", "plan": "scale", "changes": {"displayName": "Scale+", "order": 5, "description": "x"}},
            {"op": "entitlements.updatePlan", "plan": "scale", "changes": {"description": None}},
            {"op": "entitlements.setTimezone", "timezone": "Europe/Paris"},
            {"op": "entitlements.grant", "plan": "scale", "feature": "schema_check"},
            {"op": "entitlements.grant", "plan": "starter", "feature": "seats", "grant": {"config": {"max": 6}}},
            {"op": "entitlements.revoke", "plan": "growth", "feature": "analytics"},
            {"op": "entitlements.removeFeature", "feature": "schema_check", "cascade": True},
        ]
        for request in writes:
            if not request.get("dryRun"):
                request["ifRevision"] = revision
            reply = ask(request, "admin-write-reply.schema.json")
            if not reply.get("ok"):
                failures += 1
                print("write refused:", request, reply)
            elif not request.get("dryRun"):
                revision = reply["revision"]
        for request, code in [
            ({"op": "entitlements.enable", "tenant": "acme", "feature": "voice_ai", "ifRevision": "0000000000000000"}, "CONFLICT"),
            ({"op": "entitlements.enable", "tenant": "nobody", "feature": "voice_ai", "ifRevision": revision}, "NOT_FOUND"),
            ({"op": "entitlements.addFeature", "feature": "voice_ai", "definition": {"default": False}, "ifRevision": revision}, "ALREADY_EXISTS"),
            ({"op": "entitlements.grant", "plan": "starter", "feature": "voice_ai", "grant": {"config": {"x": 1}}, "ifRevision": revision}, "INVALID_DOCUMENT"),
            ({"op": "entitlements.setStatus", "tenant": "acme", "status": "active"}, "INVALID_REQUEST"),
        ]:
            reply = ask(request, "error-reply.schema.json")
            if reply.get("error", {}).get("code") != code:
                failures += 1
                print(f"expected {code} for {request}: {reply}")
        ask({"op": "entitlements.history", "tenant": "acme"}, "admin-history-reply.schema.json")
    if audit_log:
        for line in pathlib.Path(audit_log).read_text().splitlines():
            check(json.loads(line), "audit-record.schema.json", "an audit log line")
    if os.environ.get("GUIDON_CHECK_QUOTAS") == "1":
        ask({"op": "usage.reset", "tenant": "acme", "feature": "voice_ai", "by": "ci", "reason": "schema check"},
            "usage-reset-reply.schema.json")
        ask({"op": "usage.reset", "tenant": "acme", "feature": "voice_ai"}, "error-reply.schema.json", valid=False)
    ask({"op": "status"}, "status-reply.schema.json")

print(f"{checked} replies checked against protocol/schema, {failures} failure(s)")
sys.exit(1 if failures else 0)
