#!/usr/bin/env python3
"""Checks a guidond started with --entitlements against protocol/schema/: features answered by
eval/evalAll, the entitlements and tenants ops (and bad requests to them), ping and status with
the entitlements' version. Needs the `jsonschema` package.
Usage: check_entitlement_ops.py SOCKET"""
import json
import pathlib
import socket
import sys

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = pathlib.Path(__file__).resolve().parent.parent / "schema"
resources = {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.schema.json")}
for schema in resources.values():
    Draft202012Validator.check_schema(schema)
registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in resources.values())


def validator(name):
    return Draft202012Validator(resources[name], registry=registry)


sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])
reader = sock.makefile("rb")

cases = [
    ({"op": "eval", "id": 1, "flag": "voice_ai", "context": {"tenantId": "5"}}, "eval-reply.schema.json"),
    ({"op": "eval", "flag": "voice_ai", "type": "boolean", "context": {"tenantId": 5}}, "eval-reply.schema.json"),
    ({"op": "eval", "flag": "payment_providers", "type": "object", "context": {"tenantId": "acme"}}, "eval-reply.schema.json"),
    ({"op": "eval", "flag": "seats", "type": "string", "context": {"tenantId": "acme"}}, "eval-reply.schema.json"),
    ({"op": "eval", "flag": "voice_ai", "context": {"tenantId": "nobody"}}, "eval-reply.schema.json"),
    ({"op": "eval", "flags": ["voice_ai", "new-checkout"], "context": {"tenantId": "globex"}}, "eval-many-reply.schema.json"),
    ({"op": "evalAll", "context": {"tenantId": "hooli", "targetingKey": "u1"}}, "evalall-reply.schema.json"),
    ({"op": "entitlements", "id": 2, "tenant": "initech"}, "entitlements-reply.schema.json"),
    ({"op": "entitlements", "tenant": 5}, "entitlements-reply.schema.json"),
    ({"op": "entitlements", "tenant": "nobody"}, "entitlements-reply.schema.json"),
    ({"op": "tenants", "id": 3}, "tenants-reply.schema.json"),
    ({"op": "tenants", "limit": 2, "after": "acme"}, "tenants-reply.schema.json"),
    ({"op": "tenants", "plan": "growth", "status": "active"}, "tenants-reply.schema.json"),
    ({"op": "ping"}, "ping-reply.schema.json"),
    ({"op": "status"}, "status-reply.schema.json"),
]
bad = [
    {"op": "entitlements"},
    {"op": "entitlements", "tenant": True},
    {"op": "entitlements", "tenant": "5", "extra": 1},
    {"op": "tenants", "limit": 0},
    {"op": "tenants", "limit": "ten"},
    {"op": "tenants", "status": "paused"},
    {"op": "tenants", "plan": "gold"},
    {"op": "tenants", "after": "no-such-tenant"},
]
request_validator = validator("request.schema.json")
failures = 0
for request, _ in cases:
    for error in request_validator.iter_errors(request):
        failures += 1
        print("request does not match request.schema.json:", request, error.message)
        break
for request in bad[:5] + bad[5:6]:
    if request_validator.is_valid(request):
        failures += 1
        print("request.schema.json accepts", request)
lines = [json.dumps(r).encode() for r, _ in cases] + [json.dumps(r).encode() for r in bad]
sock.sendall(b"\n".join(lines) + b"\n")
replies = []
for request, schema in cases:
    reply = json.loads(reader.readline())
    replies.append(reply)
    for error in validator(schema).iter_errors(reply):
        failures += 1
        print(f"reply to {request} does not match {schema}: {error.message}\n  {reply}")
        break
for request in bad:
    reply = json.loads(reader.readline())
    ok = validator("error-reply.schema.json").is_valid(reply) and reply["error"]["code"] == "INVALID_REQUEST"
    if not ok:
        failures += 1
        print(f"reply to {request} is not an INVALID_REQUEST error: {reply}")

# The answers themselves, for the record.
if replies[0].get("variant") != "override" or replies[4].get("metadata", {}).get("upgradeTo") != "growth":
    failures += 1
    print("unexpected feature answers:", replies[0], replies[4])
if "entitlementsVersion" not in replies[-2] or "entitlements" not in replies[-1]:
    failures += 1
    print("ping/status do not show the entitlements:", replies[-2], replies[-1])
print(f"entitlement ops: {len(cases) + len(bad)} replies checked, {failures} problem(s)")
sys.exit(1 if failures else 0)
