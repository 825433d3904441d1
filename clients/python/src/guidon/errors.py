"""Error codes, reasons and the exceptions the client raises.

Evaluation methods never raise by default: a failure becomes a result with reason ``ERROR`` and
one of the codes below (``Client(strict=True)`` raises the matching exception instead). The
management methods (``ping``, ``status``, ``list_flags``, ``watch``) raise these exceptions.

Codes are plain strings so that codes a later daemon adds pass through unchanged; compare them with
the constants of :class:`ErrorCode`.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .types import EvaluationResult

__all__ = [
    "DaemonError",
    "ErrorCode",
    "EvaluationError",
    "FlagNotFoundError",
    "GuidonConnectionError",
    "GuidonError",
    "GuidonTimeoutError",
    "InvalidRequestError",
    "ProtocolViolationError",
    "Reason",
    "TypeMismatchError",
]


class Reason:
    """Why a value was served (OpenFeature's reasons, as the daemon sends them)."""

    STATIC = "STATIC"
    TARGETING_MATCH = "TARGETING_MATCH"
    DEFAULT = "DEFAULT"
    DISABLED = "DISABLED"
    ERROR = "ERROR"


class ErrorCode:
    """The ``error_code`` of a result with reason ``ERROR``, and the ``code`` of exceptions."""

    # Evaluation problems the daemon reports in a result (OpenFeature's codes).
    FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
    TYPE_MISMATCH = "TYPE_MISMATCH"
    PARSE_ERROR = "PARSE_ERROR"
    GENERAL = "GENERAL"
    # Protocol errors the daemon answers instead of a result (PROTOCOL.md §4).
    INVALID_REQUEST = "INVALID_REQUEST"
    UNKNOWN_OP = "UNKNOWN_OP"
    TOO_LARGE = "TOO_LARGE"
    OVERLOADED = "OVERLOADED"
    UNAVAILABLE = "UNAVAILABLE"
    # Found by the client: no answer could be had.
    CONNECTION_FAILED = "CONNECTION_FAILED"
    TIMEOUT = "TIMEOUT"
    PROTOCOL_VIOLATION = "PROTOCOL_VIOLATION"


class GuidonError(Exception):
    """Base of every exception this package raises. ``code`` is an :class:`ErrorCode` string."""

    code: str = ErrorCode.GENERAL

    def __init__(self, message: str, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class GuidonConnectionError(GuidonError, builtins.ConnectionError):
    """The daemon could not be reached (no socket, refused, the connection broke), or the client is
    backing off after such a failure and did not try again yet."""

    code = ErrorCode.CONNECTION_FAILED


class GuidonTimeoutError(GuidonError, builtins.TimeoutError):
    """No complete reply within the call's timeout."""

    code = ErrorCode.TIMEOUT


class ProtocolViolationError(GuidonError):
    """The daemon's reply was not what the protocol promises (not JSON, not an object, …)."""

    code = ErrorCode.PROTOCOL_VIOLATION


class DaemonError(GuidonError):
    """The daemon answered with a protocol error (``code`` is its wire code, e.g. ``INVALID_REQUEST``)."""


class InvalidRequestError(GuidonError, ValueError):
    """The request could not be encoded (e.g. a context value that is not JSON-serialisable)."""

    code = ErrorCode.INVALID_REQUEST


class EvaluationError(GuidonError):
    """Raised in strict mode for a result with reason ``ERROR``; ``result`` is that result."""

    def __init__(self, result: EvaluationResult) -> None:
        super().__init__(
            result.error_message or f"flag {result.flag!r}: {result.error_code}",
            result.error_code or ErrorCode.GENERAL,
        )
        self.result = result


class FlagNotFoundError(EvaluationError):
    """Strict mode: the flag is not defined."""


class TypeMismatchError(EvaluationError):
    """Strict mode: the flag's value is not of the type asked for."""


def evaluation_error(result: EvaluationResult) -> EvaluationError:
    """The strict-mode exception for an error result."""
    if result.error_code == ErrorCode.FLAG_NOT_FOUND:
        return FlagNotFoundError(result)
    if result.error_code == ErrorCode.TYPE_MISMATCH:
        return TypeMismatchError(result)
    return EvaluationError(result)
