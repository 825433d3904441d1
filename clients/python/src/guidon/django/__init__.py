"""Django helpers (``pip install 'guidon[django]'``).

Settings (all optional)::

    INSTALLED_APPS = [..., "guidon.django"]          # for {% load guidon %}
    GUIDON = {
        "SOCKET": "/run/guidon/guidon.sock",         # default: $GUIDON_SOCKET, else this
        "TIMEOUT": 0.1,                              # seconds per evaluation
        "CONTEXT": "myapp.flags.context_for",        # callable(request) -> dict (or a dotted path)
        "ON_DENIED": "myapp.flags.denied",           # callable(request, denial) -> HttpResponse
    }

Views::

    from guidon.django import feature_required

    @feature_required("bulk-export")
    def export(request): ...

The default context comes from ``request.user`` (when authenticated) and ``request.tenant`` (set by
multi-tenancy middleware such as django-tenants); see :mod:`guidon.web`. Refusals are 403 with a
JSON body saying why. Class-based views: ``method_decorator(feature_required("…"), name="dispatch")``.
"""

from __future__ import annotations

import functools
import inspect
import threading
from typing import Any, Callable, Dict, Mapping, Optional, TypeVar, cast

from ..client import Client
from ..errors import GuidonError
from ..types import EvaluationResult
from ..web import ContextBuilder, Denial, context_from, denial_for, usage_denial_for, usage_unavailable

__all__ = ["configure", "feature_required", "flag_enabled", "flag_variant", "get_client", "usage_limit"]

F = TypeVar("F", bound=Callable[..., Any])
DenialHandler = Callable[[Any, Denial], Any]


def default_context(request: Any) -> Dict[str, Any]:
    """``request.user`` (when authenticated) and ``request.tenant``."""
    user = getattr(request, "user", None)
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    return context_from(user, getattr(request, "tenant", None))


def render_denial(request: Any, denial: Denial) -> Any:
    from django.http import JsonResponse

    response = JsonResponse(denial.body, status=denial.status)
    for name, value in denial.headers.items():
        response[name] = value
    return response


class _Config:
    def __init__(self, client: Client, context: ContextBuilder, on_denied: DenialHandler) -> None:
        self.client = client
        self.context = context
        self.on_denied = on_denied


_lock = threading.Lock()
_config: Optional[_Config] = None


def _resolve(value: Any) -> Any:
    if isinstance(value, str):
        from django.utils.module_loading import import_string

        return import_string(value)
    return value


def configure(
    *,
    client: Optional[Client] = None,
    context: Optional[ContextBuilder] = None,
    on_denied: Optional[DenialHandler] = None,
) -> None:
    """Sets the client and hooks in code instead of (or on top of) ``settings.GUIDON``."""
    global _config
    settings = _settings()
    with _lock:
        _config = _Config(
            client or Client(settings.get("SOCKET"), timeout=settings.get("TIMEOUT", 0.1)),
            context or _resolve(settings.get("CONTEXT")) or default_context,
            on_denied or _resolve(settings.get("ON_DENIED")) or render_denial,
        )


def _settings() -> Mapping[str, Any]:
    from django.conf import settings

    return cast(Mapping[str, Any], getattr(settings, "GUIDON", None) or {})


def _get_config() -> _Config:
    config = _config
    if config is None:
        configure()
        config = _config
    return cast(_Config, config)


def get_client() -> Client:
    """The process's client, made from ``settings.GUIDON`` on first use."""
    return _get_config().client


def context_for(request: Any) -> Mapping[str, Any]:
    """The evaluation context of ``request`` (``{}`` for ``None``)."""
    if request is None:
        return {}
    return _get_config().context(request)


def evaluate(request: Any, flag: str, default: bool = False) -> EvaluationResult:
    return get_client().evaluate(flag, context_for(request), bool(default), "boolean")


def flag_enabled(request: Any, flag: str, default: bool = False) -> bool:
    """Whether ``flag`` is on for ``request``."""
    return get_client().is_enabled(flag, context_for(request), default)


def flag_variant(request: Any, flag: str, default: Optional[str] = None) -> Optional[str]:
    """The variant of ``flag`` served to ``request``."""
    return get_client().variant(flag, context_for(request), default)


def feature_required(
    flag: str,
    *,
    default: bool = False,
    context: Optional[ContextBuilder] = None,
    on_denied: Optional[DenialHandler] = None,
) -> Callable[[F], F]:
    """Decorates a view (sync or async) so that it runs only when the boolean ``flag`` is on for
    the request; otherwise answers 403 with a JSON body saying why. ``default`` is used when the
    daemon cannot answer (False: fail closed)."""

    def check(request: Any) -> Optional[Any]:
        config = _get_config()
        ctx = (context or config.context)(request)
        denial = denial_for(config.client.evaluate(flag, ctx, bool(default), "boolean"))
        if denial is None:
            return None
        return (on_denied or config.on_denied)(request, denial)

    def decorate(view: F) -> F:
        if inspect.iscoroutinefunction(view):
            from asgiref.sync import sync_to_async

            @functools.wraps(view)
            async def gated_async(request: Any, *args: Any, **kwargs: Any) -> Any:
                # request.user is lazy and may query the database: not on the event loop.
                refusal = await sync_to_async(check)(request)
                if refusal is not None:
                    return refusal
                return await view(request, *args, **kwargs)

            return cast(F, gated_async)

        @functools.wraps(view)
        def gated(request: Any, *args: Any, **kwargs: Any) -> Any:
            refusal = check(request)
            if refusal is not None:
                return refusal
            return view(request, *args, **kwargs)

        return cast(F, gated)

    return decorate


def usage_limit(
    feature: str,
    *,
    amount: int = 1,
    context: Optional[ContextBuilder] = None,
    on_denied: Optional[DenialHandler] = None,
    fail_open: bool = False,
) -> Callable[[F], F]:
    """Decorates a view (sync or async) so that each request consumes ``amount`` of the metered
    ``feature`` for its tenant before it runs; past a hard limit it answers 429 with
    ``Retry-After`` (403 when the tenant is not entitled). When the daemon cannot be asked: 503,
    or with ``fail_open`` the view runs."""

    def check(request: Any) -> Optional[Any]:
        config = _get_config()
        ctx = (context or config.context)(request)
        try:
            denial = usage_denial_for(config.client.consume(feature, ctx, amount=amount))
        except GuidonError as error:
            denial = None if fail_open else usage_unavailable(feature, error)
        if denial is None:
            return None
        return (on_denied or config.on_denied)(request, denial)

    def decorate(view: F) -> F:
        if inspect.iscoroutinefunction(view):
            from asgiref.sync import sync_to_async

            @functools.wraps(view)
            async def limited_async(request: Any, *args: Any, **kwargs: Any) -> Any:
                refusal = await sync_to_async(check)(request)
                if refusal is not None:
                    return refusal
                return await view(request, *args, **kwargs)

            return cast(F, limited_async)

        @functools.wraps(view)
        def limited(request: Any, *args: Any, **kwargs: Any) -> Any:
            refusal = check(request)
            if refusal is not None:
                return refusal
            return view(request, *args, **kwargs)

        return cast(F, limited)

    return decorate


def _reset() -> None:
    """Forgets the configuration (tests that change settings.GUIDON)."""
    global _config
    with _lock:
        _config = None


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "GUIDON":
        _reset()


try:
    from django.core.signals import setting_changed
except ImportError:  # pragma: no cover - Django always has it
    pass
else:
    setting_changed.connect(_on_setting_changed, dispatch_uid="guidon.django.settings")
