"""The values the client returns: one class per kind of reply, each built from the reply's JSON
object by ``from_reply``. Members a later daemon adds are kept in ``raw`` (PROTOCOL.md §6: clients
ignore members they do not know)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Tuple

from .errors import GuidonError, Reason

__all__ = [
    "ConfigurationChanged",
    "ConsumeResult",
    "FeatureUsage",
    "LimitUsage",
    "EvaluationResult",
    "FeatureAnswer",
    "TenantEntitlements",
    "TenantPage",
    "TenantSummary",
    "FlagInfo",
    "FlagList",
    "PingResult",
    "ReloadInfo",
    "Status",
]

_EMPTY: Mapping[str, Any] = {}


@dataclass(frozen=True)
class EvaluationResult:
    """One flag's evaluation.

    ``value`` is the served value, or the caller's default when the result falls back to it
    (reasons ``DISABLED`` and ``ERROR``, and ``DEFAULT`` without a default variant). ``error_code``
    and ``error_message`` are set only with reason ``ERROR``: an evaluation problem from the daemon
    (``FLAG_NOT_FOUND``, ``TYPE_MISMATCH``, ``PARSE_ERROR``, ``GENERAL``) or a failure to get an
    answer (``CONNECTION_FAILED``, ``TIMEOUT``, ``PROTOCOL_VIOLATION``, or the daemon's protocol
    error code). ``metadata`` is the flag set's metadata overlaid with the flag's own.
    """

    flag: str
    value: Any
    variant: Optional[str] = None
    reason: str = Reason.ERROR
    error_code: Optional[str] = None
    error_message: Optional[str] = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_error(self) -> bool:
        return self.reason == Reason.ERROR

    @classmethod
    def from_reply(cls, obj: Mapping[str, Any], flag: str, default: Any) -> EvaluationResult:
        metadata = obj.get("metadata")
        return cls(
            flag=obj.get("flag", flag),
            value=obj.get("value", default),
            variant=obj.get("variant"),
            reason=obj.get("reason", Reason.ERROR),
            error_code=obj.get("errorCode"),
            error_message=obj.get("errorMessage"),
            metadata=metadata if isinstance(metadata, dict) else {},
        )

    @classmethod
    def failed(cls, flag: str, default: Any, error: GuidonError) -> EvaluationResult:
        """The result served when no answer could be had: the default, with the failure's code."""
        return cls(flag, default, None, Reason.ERROR, error.code, error.message, {})


@dataclass(frozen=True)
class PingResult:
    """The health check's answer: the version of the flag file being served and its flag count."""

    ok: bool
    config_version: str
    flags: int
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_reply(cls, obj: Mapping[str, Any]) -> PingResult:
        return cls(bool(obj.get("ok")), str(obj.get("configVersion", "")), int(obj.get("flags", 0)), obj)


@dataclass(frozen=True)
class ReloadInfo:
    """The last reload attempt (``status().last_reload``)."""

    ok: bool
    at: str
    trigger: str
    config_version: str
    error: Optional[str] = None

    @classmethod
    def from_reply(cls, obj: Mapping[str, Any]) -> ReloadInfo:
        return cls(
            bool(obj.get("ok")),
            str(obj.get("at", "")),
            str(obj.get("trigger", "")),
            str(obj.get("configVersion", "")),
            obj.get("error"),
        )


@dataclass(frozen=True)
class Status:
    """What the daemon serves, since when, and how its last reload went (PROTOCOL.md §3.5)."""

    version: str
    config_path: str
    config_version: str
    flags: int
    loaded_at: str
    uptime_seconds: int
    mode: str
    warnings: int
    connections: int
    last_reload: Optional[ReloadInfo]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_reply(cls, obj: Mapping[str, Any]) -> Status:
        last = obj.get("lastReload")
        return cls(
            version=str(obj.get("version", "")),
            config_path=str(obj.get("configPath", "")),
            config_version=str(obj.get("configVersion", "")),
            flags=int(obj.get("flags", 0)),
            loaded_at=str(obj.get("loadedAt", "")),
            uptime_seconds=int(obj.get("uptimeSeconds", 0)),
            mode=str(obj.get("mode", "")),
            warnings=int(obj.get("warnings", 0)),
            connections=int(obj.get("connections", 0)),
            last_reload=ReloadInfo.from_reply(last) if isinstance(last, dict) else None,
            raw=obj,
        )


@dataclass(frozen=True)
class FlagInfo:
    """One flag as ``list`` describes it (not its targeting rule, only whether it has one)."""

    key: str
    state: str
    variants: Tuple[str, ...]
    default_variant: Optional[str]
    targeting: bool
    metadata: Mapping[str, Any]

    @property
    def enabled(self) -> bool:
        return self.state == "ENABLED"

    @classmethod
    def from_reply(cls, obj: Mapping[str, Any]) -> FlagInfo:
        return cls(
            key=str(obj.get("key", "")),
            state=str(obj.get("state", "")),
            variants=tuple(obj.get("variants") or ()),
            default_variant=obj.get("defaultVariant"),
            targeting=bool(obj.get("targeting")),
            metadata=obj.get("metadata") or {},
        )


@dataclass(frozen=True)
class FlagList(Sequence[FlagInfo]):
    """Every flag, in document order, and the version they come from. Behaves as a sequence of
    :class:`FlagInfo`; ``flag_list["key"]`` finds one by key."""

    config_version: str
    flags: Tuple[FlagInfo, ...]

    def __len__(self) -> int:
        return len(self.flags)

    def __iter__(self) -> Iterator[FlagInfo]:
        return iter(self.flags)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, str):
            for info in self.flags:
                if info.key == index:
                    return info
            raise KeyError(index)
        return self.flags[index]

    def keys(self) -> Tuple[str, ...]:
        return tuple(info.key for info in self.flags)

    @classmethod
    def from_reply(cls, obj: Mapping[str, Any]) -> FlagList:
        flags = obj.get("flags")
        items = tuple(FlagInfo.from_reply(f) for f in flags if isinstance(f, dict)) if isinstance(flags, list) else ()
        return cls(str(obj.get("configVersion", "")), items)


@dataclass(frozen=True)
class ConfigurationChanged:
    """A change of the flags being served, from ``watch``.

    ``added``, ``changed`` and ``removed`` are flag keys, sorted. When the watch connection was lost
    and re-established on a different version (events may have been missed), the client makes one
    event with ``resync=True`` from a fresh ``list``: ``added`` and ``removed`` are exact and
    ``changed`` holds every other flag (any of them may have changed).
    """

    config_version: str
    added: Tuple[str, ...] = ()
    changed: Tuple[str, ...] = ()
    removed: Tuple[str, ...] = ()
    resync: bool = False

    @property
    def flags(self) -> Tuple[str, ...]:
        """Every key the event names."""
        return tuple(sorted(set(self.added) | set(self.changed) | set(self.removed)))

    @classmethod
    def from_reply(cls, obj: Mapping[str, Any]) -> ConfigurationChanged:
        return cls(
            str(obj.get("configVersion", "")),
            tuple(obj.get("added") or ()),
            tuple(obj.get("changed") or ()),
            tuple(obj.get("removed") or ()),
        )


def error_results(flags: Sequence[str], default: Any, error: GuidonError) -> List[EvaluationResult]:
    return [EvaluationResult.failed(flag, default, error) for flag in flags]


@dataclass(frozen=True)
class FeatureAnswer:
    """One feature's answer for one tenant (``entitlements(tenant).features[key]``): the value an
    ``evaluate`` of the feature would give, whether the tenant is entitled, and why."""

    value: Any
    variant: Optional[str]
    reason: str
    entitled: bool
    why: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    limits: Optional[Sequence[Mapping[str, Any]]] = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def source(self) -> Optional[str]:
        """``override``, ``plan`` or ``default``."""
        value = self.metadata.get("source")
        return value if isinstance(value, str) else None

    @property
    def upgrade_to(self) -> Optional[str]:
        """The lowest plan that would grant a denied feature."""
        value = self.metadata.get("upgradeTo")
        return value if isinstance(value, str) else None

    @classmethod
    def from_reply(cls, obj: Mapping[str, Any]) -> FeatureAnswer:
        metadata = obj.get("metadata")
        limits = obj.get("limits")
        return cls(
            value=obj.get("value"),
            variant=obj.get("variant"),
            reason=str(obj.get("reason", Reason.ERROR)),
            entitled=bool(obj.get("entitled")),
            why=str(obj.get("why", "")),
            metadata=metadata if isinstance(metadata, dict) else {},
            limits=limits if isinstance(limits, list) else None,
            raw=obj,
        )


@dataclass(frozen=True)
class TenantEntitlements:
    """What one tenant has (PROTOCOL.md §3.10): its plan and subscription, and every feature's
    answer in document order. An unknown tenant is ``found=False`` with every default."""

    tenant: str
    found: bool
    features: Mapping[str, FeatureAnswer]
    plan: Optional[str] = None
    plan_name: Optional[str] = None
    status: Optional[str] = None
    valid_until: Optional[str] = None
    plan_applies: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def is_entitled(self, feature: str) -> bool:
        answer = self.features.get(feature)
        return answer is not None and answer.entitled

    @classmethod
    def from_reply(cls, obj: Mapping[str, Any]) -> TenantEntitlements:
        features = obj.get("features")
        return cls(
            tenant=str(obj.get("tenant", "")),
            found=bool(obj.get("found")),
            features={
                key: FeatureAnswer.from_reply(value)
                for key, value in (features.items() if isinstance(features, dict) else ())
                if isinstance(value, dict)
            },
            plan=obj.get("plan"),
            plan_name=obj.get("planName"),
            status=obj.get("status"),
            valid_until=obj.get("validUntil"),
            plan_applies=bool(obj.get("planApplies")),
            raw=obj,
        )


@dataclass(frozen=True)
class TenantSummary:
    """One tenant of the listing."""

    id: str
    status: str
    overrides: int
    plan: Optional[str] = None
    valid_until: Optional[str] = None

    @classmethod
    def from_reply(cls, obj: Mapping[str, Any]) -> TenantSummary:
        return cls(
            id=str(obj.get("id", "")),
            status=str(obj.get("status", "")),
            overrides=int(obj.get("overrides", 0)),
            plan=obj.get("plan"),
            valid_until=obj.get("validUntil"),
        )


@dataclass(frozen=True)
class TenantPage:
    """A page of the tenant listing: pass ``next`` as ``after`` for the next page (``None`` on the
    last). ``total`` counts the tenants matching the filters."""

    tenants: Sequence[TenantSummary]
    total: int
    next: Optional[str] = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __iter__(self) -> Iterator[TenantSummary]:
        return iter(self.tenants)

    def __len__(self) -> int:
        return len(self.tenants)

    @classmethod
    def from_reply(cls, obj: Mapping[str, Any]) -> TenantPage:
        tenants = obj.get("tenants")
        return cls(
            tenants=[TenantSummary.from_reply(t) for t in (tenants if isinstance(tenants, list) else ()) if isinstance(t, dict)],
            total=int(obj.get("total", 0)),
            next=obj.get("next"),
            raw=obj,
        )


def _seconds(timestamp: Optional[str]) -> Optional[int]:
    """Unix seconds of an RFC 3339 UTC timestamp (``2026-12-08T00:00:00Z``)."""
    if not timestamp:
        return None
    from datetime import datetime, timezone

    try:
        return int(datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())
    except ValueError:
        return None


@dataclass(frozen=True)
class ConsumeResult:
    """The answer to :meth:`Client.consume` (PROTOCOL.md §3.12).

    ``allowed`` says whether to go ahead. ``reason`` says why not: ``LIMIT_EXCEEDED``,
    ``NOT_ENTITLED`` (``upgrade_to`` names the plan that would grant it) or ``STORE_UNAVAILABLE``
    (``degraded``: the shared store did not answer in time and the limit fails closed). The numbers
    are the limit that decided; ``used`` and ``remaining`` are ``None`` when degraded.
    """

    allowed: bool
    feature: str
    reason: Optional[str] = None
    used: Optional[int] = None
    limit: Optional[int] = None
    remaining: Optional[int] = None
    reset_at: Optional[str] = None
    window: Optional[str] = None
    mode: Optional[str] = None
    over: bool = False
    shadow_over: bool = False
    replayed: bool = False
    unlimited: bool = False
    degraded: bool = False
    upgrade_to: Optional[str] = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_reply(cls, obj: Mapping[str, Any]) -> ConsumeResult:
        entitlement = obj.get("entitlement") or _EMPTY
        metadata = entitlement.get("metadata") or _EMPTY
        return cls(
            allowed=bool(obj.get("allowed")),
            feature=str(obj.get("feature", "")),
            reason=obj.get("reason"),
            used=obj.get("used"),
            limit=obj.get("limit"),
            remaining=obj.get("remaining"),
            reset_at=obj.get("resetAt"),
            window=obj.get("window"),
            mode=obj.get("mode"),
            over=bool(obj.get("over", False)),
            shadow_over=bool(obj.get("shadowOver", False)),
            replayed=bool(obj.get("replayed", False)),
            unlimited=bool(obj.get("unlimited", False)),
            degraded=bool(obj.get("degraded", False)),
            upgrade_to=metadata.get("upgradeTo"),
            raw=obj,
        )

    @property
    def reset_at_seconds(self) -> Optional[int]:
        """``reset_at`` as Unix seconds."""
        return _seconds(self.reset_at)

    def retry_after(self, now: Optional[float] = None) -> Optional[int]:
        """Whole seconds until the window resets (at least 1), for a ``Retry-After`` header;
        ``None`` when unknown."""
        reset = self.reset_at_seconds
        if reset is None:
            return None
        import math
        import time

        return max(1, math.ceil(reset - (time.time() if now is None else now)))


@dataclass(frozen=True)
class LimitUsage:
    """One limit's state in a :class:`FeatureUsage`."""

    per: str
    scope: str
    mode: str
    fail_mode: str
    max: int
    used: Optional[int]
    remaining: Optional[int]
    reset_at: str
    over: bool

    @classmethod
    def from_reply(cls, obj: Mapping[str, Any]) -> LimitUsage:
        return cls(
            str(obj.get("per", "")), str(obj.get("scope", "")), str(obj.get("mode", "")), str(obj.get("failMode", "")),
            int(obj.get("max", 0)), obj.get("used"), obj.get("remaining"), str(obj.get("resetAt", "")), bool(obj.get("over")),
        )


@dataclass(frozen=True)
class FeatureUsage:
    """The answer to :meth:`Client.usage` for one feature (PROTOCOL.md §3.13): the limit with the
    least remaining in ``used``/``limit``/``remaining``/``reset_at``, every limit in ``limits``."""

    feature: str
    entitled: bool
    unlimited: bool = False
    used: Optional[int] = None
    limit: Optional[int] = None
    remaining: Optional[int] = None
    reset_at: Optional[str] = None
    window: Optional[str] = None
    mode: Optional[str] = None
    limits: Tuple[LimitUsage, ...] = ()
    degraded: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_reply(cls, obj: Mapping[str, Any]) -> FeatureUsage:
        return cls(
            feature=str(obj.get("feature", "")),
            entitled=bool(obj.get("entitled")),
            unlimited=bool(obj.get("unlimited", False)),
            used=obj.get("used"),
            limit=obj.get("limit"),
            remaining=obj.get("remaining"),
            reset_at=obj.get("resetAt"),
            window=obj.get("window"),
            mode=obj.get("mode"),
            limits=tuple(LimitUsage.from_reply(limit) for limit in obj.get("limits") or ()),
            degraded=bool(obj.get("degraded", False)),
            raw=obj,
        )

    @staticmethod
    def all_from_reply(obj: Mapping[str, Any]) -> List[FeatureUsage]:
        return [FeatureUsage.from_reply(entry) for entry in obj.get("features") or ()]
