"""What the Flask, Django and FastAPI helpers share: the evaluation context built from a request's
user and tenant, and the refusal a gated view answers.

The default context (every framework helper uses it unless given ``context=``):

=================  ================================================================
``targetingKey``   the user's ``id`` / ``pk`` / ``user_id`` / ``get_id()`` /
                   ``identity`` / ``username`` (first found), as text
``email``          the user's ``email``
``tier``           the user's ``tier``, else the tenant's
``plan``           the tenant's ``plan``, else the user's
``tenantId``       the tenant's ``id`` / ``pk`` / ``tenant_id`` (or the tenant itself
                   when it is a string), else the user's ``tenant_id``
=================  ================================================================

Attributes are read from objects or mappings; missing ones are left out. Where the user and the
tenant come from is the framework's business (see each helper). Anything else: pass
``context=callable(request) -> dict`` to the helper.

A refusal is a :class:`Denial`: an HTTP status, headers and a JSON body. Today every refusal is
``403`` with ``{"error": "feature_disabled", "flag", "reason", "variant", "message"}`` (plus
``errorCode`` when the flag could not be evaluated). The body is designed to grow without breaking
callers: entitlements will add ``"upgradeTo"`` (the plan that would grant the feature).

Usage limits (``usage_limit`` in each helper, :func:`usage_denial_for`): a request past a hard
limit is answered ``429`` with a ``Retry-After`` header (whole seconds until the window resets) and
``{"error": "usage_limit_exceeded", "feature", "limit", "used", "remaining", "resetAt", "window",
"message"}``; a tenant not entitled to the feature ``403`` with ``"error": "feature_disabled"`` and
``"upgradeTo"`` when a plan would grant it; a daemon that cannot be asked ``503`` with
``"error": "usage_limit_unavailable"`` (unless the helper is told to fail open).
Clients should switch on ``error`` and ignore members they do not know.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional

from .errors import Reason
from .errors import GuidonError
from .types import ConsumeResult, EvaluationResult

__all__ = ["ContextBuilder", "Denial", "context_from", "denial_for", "usage_denial_for", "usage_unavailable"]

#: ``context=`` hooks: the request in, the evaluation context out.
ContextBuilder = Callable[[Any], Mapping[str, Any]]

_USER_ID = ("id", "pk", "user_id")
_TENANT_ID = ("id", "pk", "tenant_id")


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    try:
        return getattr(obj, name, None)
    except Exception:  # properties that raise (e.g. Starlette's BaseUser.identity)
        return None


def _first(obj: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        value = _get(obj, name)
        if value is not None and not callable(value):
            return value
    return None


def _scalar(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def context_from(user: Any = None, tenant: Any = None) -> Dict[str, Any]:
    """The default evaluation context for a user and a tenant (see the module's documentation)."""
    context: Dict[str, Any] = {}
    if user is not None:
        uid = _first(user, _USER_ID)
        if uid is None:
            get_id = _get(user, "get_id")  # Flask-Login
            if callable(get_id):
                try:
                    uid = get_id()
                except Exception:
                    uid = None
        if uid is None:
            uid = _first(user, ("identity", "username"))
        if uid is not None:
            context["targetingKey"] = str(uid)
        email = _get(user, "email")
        if email:
            context["email"] = str(email)
    tier = _first(user, ("tier",)) if user is not None else None
    if tier is None:
        tier = _first(tenant, ("tier",))
    if tier is not None:
        context["tier"] = _scalar(tier)
    plan = _first(tenant, ("plan",))
    if plan is None and user is not None:
        plan = _first(user, ("plan",))
    if plan is not None:
        context["plan"] = _scalar(plan)
    if isinstance(tenant, str):
        context["tenantId"] = tenant
    elif tenant is not None:
        tid = _first(tenant, _TENANT_ID)
        if tid is not None:
            context["tenantId"] = str(tid)
    if "tenantId" not in context and user is not None:
        tid = _first(user, ("tenant_id",))
        if tid is not None:
            context["tenantId"] = str(tid)
    return context


@dataclass(frozen=True)
class Denial:
    """Why a gated view refuses a request: the status, the headers and the JSON body to answer."""

    status: int
    body: Dict[str, Any]
    headers: Dict[str, str] = field(default_factory=dict)
    result: Optional[EvaluationResult] = None

    def json(self) -> str:
        return json.dumps(self.body, separators=(",", ":"))


def denial_for(result: EvaluationResult) -> Optional[Denial]:
    """``None`` when the flag is on (its value is ``True``), else the refusal to answer."""
    if result.value is True:
        return None
    body: Dict[str, Any] = {
        "error": "feature_disabled",
        "flag": result.flag,
        "reason": result.reason,
        "variant": result.variant,
        "message": f"the feature {result.flag!r} is not enabled for this request",
    }
    if result.reason == Reason.ERROR:
        body["errorCode"] = result.error_code
        body["message"] = f"the feature {result.flag!r} could not be evaluated ({result.error_code})"
    return Denial(403, body, {}, result)


def usage_denial_for(result: ConsumeResult, now: Optional[float] = None) -> Optional[Denial]:
    """``None`` when the consume was allowed; else ``429`` with ``Retry-After`` past a limit
    (also when degraded and failing closed: the store could not be asked), or ``403`` when the
    tenant is not entitled to the feature."""
    if result.allowed:
        return None
    if result.reason == "NOT_ENTITLED":
        body: Dict[str, Any] = {
            "error": "feature_disabled",
            "feature": result.feature,
            "reason": result.reason,
            "message": f"the feature {result.feature!r} is not part of this plan",
        }
        if result.upgrade_to:
            body["upgradeTo"] = result.upgrade_to
        return Denial(403, body)
    body = {
        "error": "usage_limit_exceeded",
        "feature": result.feature,
        "limit": result.limit,
        "used": result.used,
        "remaining": result.remaining,
        "resetAt": result.reset_at,
        "window": result.window,
        "message": f"the {result.window or ''} limit of {result.limit} for {result.feature!r} is reached".replace("  ", " "),
    }
    if result.degraded:
        body["degraded"] = True
        body["message"] = f"usage of {result.feature!r} cannot be checked right now"
    headers: Dict[str, str] = {}
    retry = result.retry_after(now)
    if retry is not None:
        headers["Retry-After"] = str(retry)
    return Denial(429, body, headers)


def usage_unavailable(feature: str, error: GuidonError) -> Denial:
    """``503``: the daemon could not be asked whether ``feature`` may be used."""
    return Denial(
        503,
        {"error": "usage_limit_unavailable", "feature": feature, "message": f"usage of {feature!r} cannot be checked: {error}"},
        {"Retry-After": "1"},
    )
