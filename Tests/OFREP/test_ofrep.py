"""OFREP through OpenFeature's own Python SDK and OFREP provider, unmodified
(``openfeature-sdk`` 0.10.0, ``openfeature-provider-ofrep`` 0.3.0), against a real ``guidond``:
every flag of the bundled example, for a set of contexts, answers through OFREP exactly as it
answers on the Unix socket (value, variant, reason, error code, metadata); the SDK maps guidond's
errors to its own; the bulk endpoint, its ETag and ``If-None-Match``; and bad input.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional
from urllib.parse import quote

import pytest
import requests
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagEvaluationDetails

from conftest import EXAMPLE_FLAGS, Daemon, check_schema

CONTEXTS: List[Optional[Dict[str, Any]]] = [
    None,
    {},
    {"targetingKey": "user-1001"},
    {"targetingKey": "user-42", "tier": "gold"},
    {"targetingKey": "user-43", "tier": "silver", "plan": "business"},
    {"targetingKey": "tenant-admin", "tenantId": "tenant-0042"},
    {"targetingKey": "opted-out", "tenantId": "tenant-0666", "plan": "enterprise"},
    {"targetingKey": "staff", "email": "ana@acme.example"},
    {"email": "bo@acme-labs.example", "tier": "platinum", "plan": "enterprise"},
    {"targetingKey": "user-3003", "beta": True, "odd": True, "quote": True},
    {"targetingKey": "Zoë 🚀", "tier": "gold", "n": 7, "ratio": 0.5, "nested": {"a": [1, 2]}},
] + [{"targetingKey": f"user-{i}"} for i in range(25)]  # fractional rollouts: both sides of each split

# The SDK method and the socket's `type` for a flag's values.
TYPES = {bool: ("boolean", False), str: ("string", "<default>"), int: ("integer", -1),
         float: ("float", -1.5), dict: ("object", {"default": True})}


def flag_types(path: Any) -> Dict[str, str]:
    """Each flag's type, from its variants' values (the first variant's)."""
    document = json.loads(path.read_text())
    return {key: TYPES[type(next(iter(flag["variants"].values())))][0] for key, flag in document["flags"].items()}


def sdk_client(daemon: Daemon) -> OpenFeatureClient:
    api.set_provider(OFREPProvider(daemon.url, timeout=30), domain=daemon.url)
    return api.get_client(domain=daemon.url)


def sdk_details(client: OpenFeatureClient, key: str, kind: str, context: Optional[Dict[str, Any]]) -> FlagEvaluationDetails[Any]:
    default = next(d for (k, d) in TYPES.values() if k == kind)
    evaluation_context = None
    if context is not None:
        attributes = {k: v for k, v in context.items() if k != "targetingKey"}
        evaluation_context = EvaluationContext(targeting_key=context.get("targetingKey"), attributes=attributes)
    method = getattr(client, f"get_{kind}_details")
    return method(key, default, evaluation_context)  # type: ignore[no-any-return]


def socket_answer(daemon: Daemon, key: str, kind: str, context: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    default = next(d for (k, d) in TYPES.values() if k == kind)
    request: Dict[str, Any] = {"op": "eval", "flag": key, "type": kind, "default": default}
    if context is not None:
        request["context"] = context
    return daemon.client.request(request)


def compare(daemon: Daemon, client: OpenFeatureClient, key: str, kind: str, context: Optional[Dict[str, Any]]) -> None:
    # The same request the provider sends, checked against the schema.
    direct = post(daemon, f"/ofrep/v1/evaluate/flags/{quote(key, safe='')}", {} if context is None else {"context": context})
    check_schema(direct, single=True)
    details = sdk_details(client, key, kind, context)
    reply = socket_answer(daemon, key, kind, context)
    where = f"{key} as {kind} for {context}: OFREP {details} / socket {reply}"
    assert details.value == reply.get("value") and type(details.value) is type(reply.get("value")), where
    assert details.variant == reply.get("variant"), where
    assert details.reason == reply["reason"], where
    assert (details.error_code.value if details.error_code else None) == reply.get("errorCode"), where
    if reply["reason"] != "ERROR":
        assert dict(details.flag_metadata) == reply["metadata"], where


@pytest.mark.parametrize("context", CONTEXTS, ids=lambda c: json.dumps(c, ensure_ascii=False))
def test_every_example_flag_answers_through_ofrep_as_on_the_socket(example: Daemon, context: Optional[Dict[str, Any]]) -> None:
    client = sdk_client(example)
    kinds = flag_types(EXAMPLE_FLAGS)
    assert len(kinds) == 10
    for key, kind in kinds.items():
        compare(example, client, key, kind, context)


@pytest.mark.parametrize("context", CONTEXTS[:4] + CONTEXTS[9:11], ids=lambda c: json.dumps(c, ensure_ascii=False))
def test_edge_flags_answer_through_ofrep_as_on_the_socket(edge: Daemon, context: Optional[Dict[str, Any]]) -> None:
    """Disabled, no default variant, a float, a flag lenient mode serves broken (PARSE_ERROR), a
    targeting result naming no variant (GENERAL), a key with a slash, a space and an accent, a
    string value that looks like JSON members."""
    client = sdk_client(edge)
    from conftest import EDGE_FLAGS

    for key, kind in flag_types(EDGE_FLAGS).items():
        compare(edge, client, key, kind, context)


def test_the_sdk_maps_errors_as_the_socket_reports_them(example: Daemon, edge: Daemon) -> None:
    client = sdk_client(example)
    context = {"targetingKey": "user-42", "tier": "gold"}
    # An unknown flag: 404 → FlagNotFoundError → FLAG_NOT_FOUND, the caller's default.
    missing = sdk_details(client, "no-such-flag", "boolean", context)
    assert (missing.value, missing.reason, missing.error_code) == (False, "ERROR", ErrorCode.FLAG_NOT_FOUND)
    assert "no-such-flag" in (missing.error_message or "")
    compare(example, client, "no-such-flag", "boolean", context)
    # A type mismatch: OFREP has no type; the provider checks the value, the socket checks `type`.
    for key, kind in [("new-checkout", "string"), ("checkout-button-copy", "boolean"), ("theme", "integer"),
                      ("max-cart-items", "object")]:
        mismatch = sdk_details(client, key, kind, context)
        assert (mismatch.reason, mismatch.error_code) == ("ERROR", ErrorCode.TYPE_MISMATCH), key
        compare(example, client, key, kind, context)
    # Failed evaluations: 400 with the error code → the SDK's error.
    broken = sdk_details(sdk_client(edge), "broken", "boolean", None)
    assert (broken.value, broken.reason, broken.error_code) == (False, "ERROR", ErrorCode.PARSE_ERROR)
    general = sdk_details(sdk_client(edge), "unknown-variant", "boolean", {"odd": True})
    assert (general.reason, general.error_code) == ("ERROR", ErrorCode.GENERAL)
    assert "sideways" in (general.error_message or "")


def post(daemon: Daemon, path: str, body: Any = None, headers: Optional[Dict[str, str]] = None,
         data: Optional[bytes] = None) -> requests.Response:
    """A POST, its response checked against protocol/schema/ofrep.schema.json."""
    response = requests.post(daemon.url + path, json=body, data=data, headers=headers, timeout=30)
    check_schema(response, single=path.rstrip("/") != "/ofrep/v1/evaluate/flags" and path.startswith("/ofrep/v1/evaluate/flags/"))
    return response


def test_bulk_evaluation_equals_evalall_and_its_etag_answers_if_none_match(example: Daemon) -> None:
    context = {"targetingKey": "user-42", "tier": "gold", "plan": "business"}
    first = post(example, "/ofrep/v1/evaluate/flags", {"context": context})
    assert first.status_code == 200
    assert first.headers["Content-Type"] == "application/json"
    etag = first.headers["ETag"]
    version = example.client.request({"op": "ping"})["configVersion"]
    assert etag.startswith(f'"{version}-') and etag.endswith('"')
    body = first.json()
    every = example.client.request({"op": "evalAll", "context": context})["results"]
    assert [flag["key"] for flag in body["flags"]] == list(every)
    for flag in body["flags"]:
        expected = every[flag["key"]]
        assert flag.get("value") == expected.get("value"), flag
        assert flag["variant"] == expected.get("variant"), flag
        assert flag["reason"] == expected["reason"], flag
        assert flag["metadata"] == expected["metadata"], flag
    assert body["metadata"] == {"flagSetId": "shop-web", "owner": "team-checkout"}

    # The same context again, with the tag: 304, no body.
    again = post(example, "/ofrep/v1/evaluate/flags", {"context": dict(reversed(list(context.items())))},
                 headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    # Another context with the old tag: evaluated anew, another tag.
    other = post(example, "/ofrep/v1/evaluate/flags", {"context": {"targetingKey": "user-7"}}, headers={"If-None-Match": etag})
    assert other.status_code == 200 and other.headers["ETag"] != etag


def test_a_new_configuration_changes_the_etag(edge: Daemon) -> None:
    context = {"context": {"targetingKey": "u"}}
    first = post(edge, "/ofrep/v1/evaluate/flags", context)
    etag = first.headers["ETag"]
    document = json.loads(edge.flags.read_text())
    document["flags"]["kill-switch"]["state"] = "ENABLED"
    edge.flags.write_text(json.dumps(document))
    try:
        edge.reload()
        after = post(edge, "/ofrep/v1/evaluate/flags", context, headers={"If-None-Match": etag})
        assert after.status_code == 200 and after.headers["ETag"] != etag
        switch = next(flag for flag in after.json()["flags"] if flag["key"] == "kill-switch")
        assert switch["reason"] == "STATIC" and switch["value"] is True
    finally:
        from conftest import EDGE_FLAGS

        edge.flags.write_text(EDGE_FLAGS.read_text())
        edge.reload()


@pytest.mark.parametrize("raw, content_type, code", [
    (b'{"context": {"targetingKey": "u",}}', "application/json", "PARSE_ERROR"),
    (b'{"context": "user-1"}', "application/json", "INVALID_CONTEXT"),
    (b'[1, 2]', "application/json", "PARSE_ERROR"),
    (b'{"context": {}}', "text/plain", "PARSE_ERROR"),
])
def test_bad_requests_are_400_with_an_error_code_and_details(example: Daemon, raw: bytes, content_type: str, code: str) -> None:
    for path, key in [("/ofrep/v1/evaluate/flags/new-checkout", "new-checkout"), ("/ofrep/v1/evaluate/flags", None)]:
        response = post(example, path, data=raw, headers={"Content-Type": content_type})
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["errorCode"] == code and body["errorDetails"]
        assert body.get("key") == key


def test_other_bad_input_gets_a_clear_json_error(example: Daemon) -> None:
    huge = {"context": {"targetingKey": "u", "blob": "x" * 70_000}}
    too_large = post(example, "/ofrep/v1/evaluate/flags/new-checkout", huge)
    assert too_large.status_code == 413 and "65536 bytes" in too_large.json()["errorDetails"]
    wrong_method = requests.get(example.url + "/ofrep/v1/evaluate/flags/new-checkout", timeout=30)
    check_schema(wrong_method, single=True)
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "POST"
    assert "POST" in wrong_method.json()["errorDetails"]
    nowhere = post(example, "/ofrep/v2/evaluate/flags/new-checkout", {})
    assert nowhere.status_code == 404 and "errorCode" not in nowhere.json()
    assert "/ofrep/v2/evaluate/flags/new-checkout" in nowhere.json()["errorDetails"]
    # Percent-encoded keys are decoded; an encoded slash is a slash.
    encoded = post(example, "/ofrep/v1/evaluate/flags/new%2Dcheckout", {"context": {"tier": "gold"}})
    assert encoded.status_code == 200 and encoded.json()["key"] == "new-checkout" and encoded.json()["value"] is True
    # After all that the daemon still answers on both sides.
    assert post(example, "/ofrep/v1/evaluate/flags/theme", {}).status_code == 200
    assert example.client.request({"op": "ping"})["ok"] is True


def test_keys_are_url_decoded(edge: Daemon) -> None:
    for path in ["/ofrep/v1/evaluate/flags/team%2Fsearch%20%C3%A9", "/ofrep/v1/evaluate/flags/team/search%20%C3%A9"]:
        response = post(edge, path, {"context": {"targetingKey": "u"}})
        assert response.status_code == 200, (path, response.text)
        assert response.json()["key"] == "team/search é"
