"""Guidon: the client of the ``guidond`` feature-flag sidecar.

>>> import guidon
>>> flags = guidon.Client()                      # $GUIDON_SOCKET or /run/guidon/guidon.sock
>>> flags.is_enabled("new-checkout", {"targetingKey": "user-42", "tier": "gold"})
True

Evaluation never raises (unless ``strict=True``): when the daemon cannot answer you get your
default. See ``guidon.aio.AsyncClient`` for asyncio, ``guidon.openfeature.GuidonProvider`` for the
OpenFeature SDK, and ``guidon.flask``, ``guidon.django``, ``guidon.fastapi`` for web frameworks.
"""

from ._core import DEFAULT_SOCKET, DEFAULT_TIMEOUT
from .client import Client, Watch
from .errors import (
    DaemonError,
    ErrorCode,
    EvaluationError,
    FlagNotFoundError,
    GuidonConnectionError,
    GuidonError,
    GuidonTimeoutError,
    InvalidRequestError,
    ProtocolViolationError,
    Reason,
    TypeMismatchError,
)
from .types import (
    ConfigurationChanged,
    ConsumeResult,
    EvaluationResult,
    FeatureAnswer,
    FeatureUsage,
    LimitUsage,
    TenantEntitlements,
    TenantPage,
    TenantSummary,
    FlagInfo,
    FlagList,
    PingResult,
    ReloadInfo,
    Status,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SOCKET",
    "DEFAULT_TIMEOUT",
    "Client",
    "ConfigurationChanged",
    "ConsumeResult",
    "DaemonError",
    "ErrorCode",
    "EvaluationError",
    "EvaluationResult",
    "FeatureAnswer",
    "FeatureUsage",
    "TenantEntitlements",
    "TenantPage",
    "TenantSummary",
    "FlagInfo",
    "FlagList",
    "FlagNotFoundError",
    "GuidonConnectionError",
    "LimitUsage",
    "GuidonError",
    "GuidonTimeoutError",
    "InvalidRequestError",
    "PingResult",
    "ProtocolViolationError",
    "Reason",
    "ReloadInfo",
    "Status",
    "TypeMismatchError",
    "Watch",
]
