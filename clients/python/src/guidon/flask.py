"""Flask helpers (``pip install 'guidon[flask]'``).

>>> from guidon.flask import Guidon, feature_required
>>> flags = Guidon(app)                      # or Guidon(app, client=guidon.Client(...), context=...)
>>> @app.route("/export")
... @feature_required("bulk-export")
... def export(): ...

In templates: ``{% if flag_enabled("ui.new_navigation") %}…{% endif %}`` and
``flag_variant("checkout-button-copy")``. The default context comes from ``g.user`` (else
Flask-Login's ``current_user`` when authenticated) and ``g.tenant``; see :mod:`guidon.web`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Mapping, Optional, TypeVar, cast

from flask import Flask, Response, current_app, g, has_request_context, jsonify, make_response, request

from .client import Client
from .errors import GuidonError
from .types import EvaluationResult
from .web import ContextBuilder, Denial, context_from, denial_for, usage_denial_for, usage_unavailable

__all__ = ["Guidon", "feature_required", "usage_limit"]

F = TypeVar("F", bound=Callable[..., Any])
DenialHandler = Callable[[Denial], Any]


def default_context(req: Any) -> Dict[str, Any]:
    """``g.user`` (else Flask-Login's authenticated ``current_user``) and ``g.tenant``."""
    user = g.get("user")
    if user is None:
        try:
            from flask_login import current_user  # type: ignore[import-not-found]
        except ImportError:
            current_user = None
        if current_user is not None and getattr(current_user, "is_authenticated", False):
            user = current_user
    return context_from(user, g.get("tenant"))


def render_denial(denial: Denial) -> Response:
    response = make_response(jsonify(denial.body), denial.status)
    for name, value in denial.headers.items():
        response.headers[name] = value
    return response


class Guidon:
    """The Flask extension: holds the client, the context hook and the refusal renderer, and puts
    ``flag_enabled`` and ``flag_variant`` into Jinja's globals.

    Args:
        app: the application (or call ``init_app`` later).
        client: the :class:`guidon.Client` (default: one on ``app.config["GUIDON_SOCKET"]``, else
            ``$GUIDON_SOCKET``, else ``/run/guidon/guidon.sock``).
        context: ``callable(request) -> dict``, the evaluation context of a request.
        on_denied: ``callable(denial) -> response``, to answer refusals your own way.
    """

    def __init__(
        self,
        app: Optional[Flask] = None,
        *,
        client: Optional[Client] = None,
        context: Optional[ContextBuilder] = None,
        on_denied: Optional[DenialHandler] = None,
    ) -> None:
        self.client = client
        self.context_builder: ContextBuilder = context or default_context
        self.on_denied: DenialHandler = on_denied or render_denial
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if self.client is None:
            self.client = Client(app.config.get("GUIDON_SOCKET"), timeout=app.config.get("GUIDON_TIMEOUT", 0.1))
        app.extensions["guidon"] = self
        app.jinja_env.globals["flag_enabled"] = self.flag_enabled
        app.jinja_env.globals["flag_variant"] = self.flag_variant

    def context(self, builder: Optional[ContextBuilder] = None) -> Mapping[str, Any]:
        """The evaluation context of the current request (``{}`` outside one)."""
        if not has_request_context():
            return {}
        return (builder or self.context_builder)(request)

    def evaluate(self, flag: str, default: bool = False, context: Optional[ContextBuilder] = None) -> EvaluationResult:
        return cast(Client, self.client).evaluate(flag, self.context(context), bool(default), "boolean")

    def flag_enabled(self, flag: str, default: bool = False) -> bool:
        """Whether ``flag`` is on for the current request (a Jinja global too)."""
        return cast(Client, self.client).is_enabled(flag, self.context(), default)

    def flag_variant(self, flag: str, default: Optional[str] = None) -> Optional[str]:
        """The variant of ``flag`` served to the current request (a Jinja global too)."""
        return cast(Client, self.client).variant(flag, self.context(), default)


def _extension() -> Guidon:
    ext = current_app.extensions.get("guidon")
    if ext is None:
        # feature_required works without Guidon(app): the extension is made on first use.
        ext = Guidon(current_app._get_current_object())  # type: ignore[attr-defined]
    return cast(Guidon, ext)


def feature_required(
    flag: str,
    *,
    default: bool = False,
    context: Optional[ContextBuilder] = None,
    on_denied: Optional[DenialHandler] = None,
) -> Callable[[F], F]:
    """Decorates a view so that it runs only when the boolean ``flag`` is on for the request;
    otherwise answers 403 with a JSON body saying why (see :mod:`guidon.web`). ``default`` is
    used when the daemon cannot answer (False: fail closed)."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def gated(*args: Any, **kwargs: Any) -> Any:
            ext = _extension()
            denial = denial_for(ext.evaluate(flag, default, context))
            if denial is not None:
                return (on_denied or ext.on_denied)(denial)
            return view(*args, **kwargs)

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
    """Decorates a view so that each request consumes ``amount`` of the metered ``feature`` for
    its tenant before it runs; past a hard limit it answers 429 with ``Retry-After`` (see
    :mod:`guidon.web`). When the daemon cannot be asked it answers 503, or with ``fail_open``
    runs the view."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def limited(*args: Any, **kwargs: Any) -> Any:
            ext = _extension()
            try:
                result = cast(Client, ext.client).consume(feature, ext.context(context), amount=amount)
            except GuidonError as error:
                if fail_open:
                    return view(*args, **kwargs)
                return (on_denied or ext.on_denied)(usage_unavailable(feature, error))
            denial = usage_denial_for(result)
            if denial is not None:
                return (on_denied or ext.on_denied)(denial)
            return view(*args, **kwargs)

        return cast(F, limited)

    return decorate
