"""The wire protocol without I/O: request lines out, reply objects in (protocol/PROTOCOL.md).

Both clients (threads and asyncio) build their requests and read their replies here, so an
operation the daemon gains later is one request builder here, one result type in ``types.py`` and
one short method on each client.
"""

from __future__ import annotations

import datetime
import json
from collections import abc
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import DaemonError, ErrorCode, InvalidRequestError, ProtocolViolationError
from .types import EvaluationResult

Context = Optional[Mapping[str, Any]]

#: The flag value types the daemon can check (``type`` member of ``eval``).
FLAG_TYPES = ("boolean", "string", "integer", "float", "object")

#: The daemon's protocol errors after which it closes the connection (PROTOCOL.md §4).
CLOSING_ERRORS = frozenset((ErrorCode.TOO_LARGE, ErrorCode.OVERLOADED))


def _encode_other(value: Any) -> Any:
    # OpenFeature contexts may hold datetimes; RFC 3339 text is what JSON Logic rules can compare.
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            return value.isoformat()
        return value.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


# Compact, no NaN (not JSON), UTF-8 passed through (the daemon reads UTF-8; escaping costs time).
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_encode_other)

# JSONEncoder.encode makes a new C encoder on every call; making it once saves about 60 % of
# encoding a small context (docs/python-client.md). Without circular-reference markers, as for a
# context that is a tree: a cycle ends in RecursionError, reported as an invalid request.
def _make_c_encoder() -> Optional[Callable[[Any, int], Any]]:
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # not CPython, or _json missing
        return None
    try:
        encode = make(None, _encode_other, json.encoder.encode_basestring, None, ":", ",", False, False, False)
        if "".join(encode({"a": [1, "é"]}, 0)) == '{"a":[1,"é"]}':  # a private API: check it
            return encode  # type: ignore[no-any-return]
    except Exception:
        pass
    return None


_c_encode = _make_c_encoder()


def dumps(value: Any) -> bytes:
    """One compact JSON text, UTF-8; InvalidRequestError when it cannot be encoded."""
    try:
        if _c_encode is not None:
            return "".join(_c_encode(value, 0)).encode()
        return _encoder.encode(value).encode()
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidRequestError(f"cannot encode request: {error}") from None


def encode_context(context: Context) -> bytes:
    if type(context) is dict:  # the common case first: an isinstance check against the Mapping ABC costs more
        return dumps(context)
    if context is None:
        return b"{}"
    if not isinstance(context, abc.Mapping):
        raise InvalidRequestError(f"context must be a mapping, not {type(context).__name__}")
    return dumps(dict(context))


def _check_type(type: Optional[str]) -> None:
    if type is not None and type not in FLAG_TYPES:
        raise InvalidRequestError(f"type must be one of {', '.join(FLAG_TYPES)}, not {type!r}")


def _eval_members(context: Context, default: Any, type: Optional[str]) -> bytes:
    _check_type(type)
    members = b""
    if type is not None:
        members += b',"type":"' + type.encode() + b'"'
    if default is not None:
        members += b',"default":' + dumps(default)
    return members + b',"context":' + encode_context(context) + b"}\n"


def eval_request(flag: str, context: Context, default: Any, type: Optional[str]) -> bytes:
    """``eval`` of one flag."""
    if not isinstance(flag, str):
        raise InvalidRequestError(f"flag must be a string, not {type_name(flag)}")
    return b'{"op":"eval","flag":' + dumps(flag) + _eval_members(context, default, type)


def eval_many_request(flags: Sequence[str], context: Context, default: Any, type: Optional[str]) -> bytes:
    """``eval`` of several flags: one request, one snapshot."""
    if isinstance(flags, str) or not all(isinstance(f, str) for f in flags):
        raise InvalidRequestError("flags must be a sequence of strings")
    return b'{"op":"eval","flags":' + dumps(list(flags)) + _eval_members(context, default, type)


def eval_all_request(context: Context) -> bytes:
    """``evalAll``: every flag for one context."""
    return b'{"op":"evalAll","context":' + encode_context(context) + b"}\n"


def boolean_prefixes(flag: str, default: bool) -> Tuple[bytes, bytes, bytes]:
    """For ``is_enabled``: the request up to its context, and how a reply serving ``true`` and one
    serving ``false`` start (the client caches them per flag)."""
    if not isinstance(flag, str):
        raise InvalidRequestError(f"flag must be a string, not {type_name(flag)}")
    key = dumps(flag)
    request = (
        b'{"op":"eval","flag":' + key
        + (b',"type":"boolean","default":true,"context":' if default else b',"type":"boolean","default":false,"context":')
    )
    return request, b'{"flag":' + key + b',"value":true,', b'{"flag":' + key + b',"value":false,'


PING = b'{"op":"ping"}\n'


def entitlements_request(tenant: Any) -> bytes:
    """``{"op":"entitlements","tenant":…}``: a tenant's id, a string or an integer."""
    if isinstance(tenant, bool) or not isinstance(tenant, (str, int)):
        raise InvalidRequestError(f"tenant must be a string or an integer, not {type_name(tenant)}")
    return b'{"op":"entitlements","tenant":' + dumps(tenant) + b"}\n"


def tenants_request(after: Optional[str], limit: Optional[int], plan: Optional[str], status: Optional[str]) -> bytes:
    """``{"op":"tenants",…}`` with the members given (the daemon checks their values)."""
    members: Dict[str, Any] = {"op": "tenants"}
    for name, value in (("after", after), ("limit", limit), ("plan", plan), ("status", status)):
        if value is not None:
            members[name] = value
    return dumps(members) + b"\n"

STATUS = b'{"op":"status"}\n'
LIST = b'{"op":"list"}\n'
WATCH = b'{"op":"watch"}\n'


def type_name(value: Any) -> str:
    return type(value).__name__


def parse_reply(line: bytes) -> Dict[str, Any]:
    """A reply line as an object; DaemonError for a protocol error reply, ProtocolViolationError when
    the line is not a JSON object."""
    try:
        obj = json.loads(line)
    except ValueError as error:
        raise ProtocolViolationError(f"reply is not JSON ({error}): {line[:200]!r}") from None
    if not isinstance(obj, dict):
        raise ProtocolViolationError(f"reply is not a JSON object: {line[:200]!r}")
    failure = obj.get("error")
    if failure is not None:
        if isinstance(failure, dict):
            raise DaemonError(str(failure.get("message", "")), str(failure.get("code", ErrorCode.GENERAL)))
        raise ProtocolViolationError(f"malformed error reply: {line[:200]!r}")
    return obj


def error_code(line: bytes) -> Optional[str]:
    """The code of an error reply line (None if it is not one)."""
    try:
        error = json.loads(line).get("error")
    except (ValueError, AttributeError):
        return None
    return error.get("code") if isinstance(error, dict) else None


def eval_result(obj: Mapping[str, Any], flag: str, default: Any) -> EvaluationResult:
    if "reason" not in obj:
        raise ProtocolViolationError(f"evaluation result without a reason: {str(obj)[:200]}")
    return EvaluationResult.from_reply(obj, flag, default)


def eval_many_results(obj: Mapping[str, Any], flags: Sequence[str], default: Any) -> List[EvaluationResult]:
    results = obj.get("results")
    if not isinstance(results, list) or len(results) != len(flags):
        raise ProtocolViolationError(f"expected {len(flags)} results, got {str(results)[:200]}")
    return [eval_result(r, f, default) for r, f in zip(results, flags)]


def eval_all_results(obj: Mapping[str, Any]) -> Dict[str, EvaluationResult]:
    results = obj.get("results")
    if not isinstance(results, dict):
        raise ProtocolViolationError(f"evalAll reply without results: {str(obj)[:200]}")
    return {key: eval_result(r, key, None) for key, r in results.items()}


#: The largest ``amount`` of a ``consume``: 2^53 - 1, the last integer JSON numbers hold exactly.
MAX_AMOUNT = (1 << 53) - 1


def consume_request(feature: str, context: Context, amount: int, idempotency_key: Optional[str]) -> bytes:
    """``consume``: count ``amount`` against ``feature``'s limits for the context's tenant."""
    if not isinstance(feature, str) or not feature:
        raise InvalidRequestError(f"feature must be a non-empty string, not {type_name(feature)}")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_AMOUNT:
        raise InvalidRequestError(f"amount must be a whole number from 1 to {MAX_AMOUNT}, not {amount!r}")
    line = b'{"op":"consume","feature":' + dumps(feature)
    if amount != 1:
        line += b',"amount":' + str(amount).encode()
    if idempotency_key is not None:
        if not isinstance(idempotency_key, str) or not idempotency_key:
            raise InvalidRequestError("idempotency_key must be a non-empty string")
        line += b',"idempotencyKey":' + dumps(idempotency_key)
    return line + b',"context":' + encode_context(context) + b"}\n"


def usage_request(feature: Optional[str], context: Context) -> bytes:
    """``usage``: the counts of ``feature`` (or of every metered feature), counting nothing."""
    line = b'{"op":"usage"'
    if feature is not None:
        if not isinstance(feature, str) or not feature:
            raise InvalidRequestError(f"feature must be a non-empty string, not {type_name(feature)}")
        line += b',"feature":' + dumps(feature)
    return line + b',"context":' + encode_context(context) + b"}\n"
