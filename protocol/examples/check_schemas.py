#!/usr/bin/env python3
"""Checks a running guidond against protocol/schema/: sends every kind of request (and some bad
ones), validates each request against request.schema.json and each reply against its schema.
Needs the `jsonschema` package. Usage: check_schemas.py SOCKET FLAGFILE"""
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

print(f"{len(cases) + len(bad) + 2} replies checked against protocol/schema, {failures} failure(s)")
sys.exit(1 if failures else 0)
