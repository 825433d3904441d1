#!/usr/bin/env python3
"""Checks protocol/schema/entitlements.schema.json: it is a valid JSON Schema, the bundled example
matches it, and it refuses documents Guidon refuses for their shape. Needs the `jsonschema`
package. Usage: check_entitlements.py"""
import copy
import json
import pathlib
import sys

from jsonschema import Draft202012Validator

HERE = pathlib.Path(__file__).resolve().parent
schema = json.loads((HERE.parent / "schema" / "entitlements.schema.json").read_text())
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema)
example = json.loads((HERE / "entitlements.json").read_text())

failures = 0
for error in validator.iter_errors(example):
    failures += 1
    print("the example does not match the schema:", error.json_path, error.message)


def mutated(change):
    document = copy.deepcopy(example)
    change(document)
    return document


refused = {
    "a feature without default": lambda d: d["features"]["voice_ai"].pop("default"),
    "a string default": lambda d: d["features"]["voice_ai"].update(default="on"),
    "an unknown status": lambda d: d["tenants"]["5"].update(status="paused"),
    "a tenant without plan": lambda d: d["tenants"]["5"].pop("plan"),
    "a date without time": lambda d: d["tenants"]["5"].update(validUntil="2027-06-30"),
    "an override without enabled": lambda d: d["tenants"]["5"]["overrides"]["voice_ai"].pop("enabled"),
    "a limit of 0": lambda d: d["features"]["voice_ai"]["limits"][0].update(max=0),
    "an unknown window": lambda d: d["features"]["voice_ai"]["limits"][0].update(per="days"),
    "a grant that is a string": lambda d: d["plans"]["starter"]["grants"].update(analytics="yes"),
    "\"*\": false": lambda d: d["plans"]["enterprise"]["grants"].update({"*": False}),
    "a fractional order": lambda d: d["plans"]["starter"].update(order=1.5),
    "an unknown member": lambda d: d["tenants"]["5"].update(tier="gold"),
}
for name, change in refused.items():
    if validator.is_valid(mutated(change)):
        failures += 1
        print("the schema accepts", name)

print(f"entitlements schema: example and {len(refused)} refusals checked, {failures} failure(s)")
sys.exit(1 if failures else 0)
