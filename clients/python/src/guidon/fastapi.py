"""FastAPI helpers (``pip install 'guidon[fastapi]'``).

>>> from fastapi import Depends, FastAPI
>>> from guidon.fastapi import feature_required, setup
>>> app = FastAPI()
>>> setup(app)                                   # or setup(app, client=AsyncClient(...), context=...)
>>> @app.get("/export", dependencies=[Depends(feature_required("bulk-export"))])
... async def export(): ...

The dependency evaluates with :class:`guidon.aio.AsyncClient` (or a :class:`guidon.Client` you
pass) and raises :class:`FeatureDenied`, an ``HTTPException`` answered 403 with the JSON body of
:mod:`guidon.web` (``setup`` installs that handler; without it FastAPI wraps the body in
``{"detail": …}``). Used as ``result = Depends(feature_required(...))`` it returns the
:class:`~guidon.types.EvaluationResult`. The default context comes from ``request.state.user``
(else Starlette's authenticated ``request.user``) and ``request.state.tenant``.
"""

from __future__ import annotations

import inspect
from typing import Any, Awaitable, Callable, Dict, Mapping, Optional, Union

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from .aio import AsyncClient
from .client import Client
from .errors import GuidonError
from .types import ConsumeResult, EvaluationResult
from .web import Denial, context_from, denial_for, usage_denial_for, usage_unavailable

__all__ = ["FeatureDenied", "feature_required", "flag_enabled", "setup", "usage_limit"]

#: ``context=`` hooks may be sync or async.
RequestContextBuilder = Callable[[Request], Union[Mapping[str, Any], Awaitable[Mapping[str, Any]]]]
AnyClient = Union[AsyncClient, Client]


def default_context(request: Request) -> Dict[str, Any]:
    """``request.state.user`` (else Starlette's authenticated ``request.user``) and
    ``request.state.tenant``."""
    state = request.state
    user = getattr(state, "user", None)
    if user is None and "user" in request.scope:  # AuthenticationMiddleware
        candidate = request.scope["user"]
        if getattr(candidate, "is_authenticated", False):
            user = candidate
    return context_from(user, getattr(state, "tenant", None))


class FeatureDenied(HTTPException):
    """Raised by :func:`feature_required`'s dependency; ``denial`` is the refusal to answer."""

    def __init__(self, denial: Denial) -> None:
        super().__init__(status_code=denial.status, detail=denial.body, headers=denial.headers or None)
        self.denial = denial


async def _render_denial(request: Request, exc: Exception) -> JSONResponse:
    denial = exc.denial if isinstance(exc, FeatureDenied) else None
    if denial is None:  # pragma: no cover - registered for FeatureDenied only
        raise exc
    return JSONResponse(denial.body, status_code=denial.status, headers=denial.headers or None)


class _Config:
    def __init__(self, client: AnyClient, context: RequestContextBuilder) -> None:
        self.client = client
        self.context = context


_fallback: Optional[_Config] = None


def setup(app: FastAPI, *, client: Optional[AnyClient] = None, context: Optional[RequestContextBuilder] = None) -> None:
    """Stores the client and context hook on ``app.state.guidon`` and answers :class:`FeatureDenied`
    with the bare JSON body."""
    app.state.guidon = _Config(client or AsyncClient(), context or default_context)
    app.add_exception_handler(FeatureDenied, _render_denial)


def _config(request: Request) -> _Config:
    config = getattr(request.app.state, "guidon", None)
    if config is None:
        global _fallback
        if _fallback is None:
            _fallback = _Config(AsyncClient(), default_context)
        config = _fallback
    return config


async def _context(request: Request, builder: RequestContextBuilder) -> Mapping[str, Any]:
    context = builder(request)
    if inspect.isawaitable(context):
        context = await context
    return context


async def _evaluate(request: Request, flag: str, default: bool, builder: Optional[RequestContextBuilder]) -> EvaluationResult:
    config = _config(request)
    ctx = await _context(request, builder or config.context)
    client = config.client
    if isinstance(client, AsyncClient):
        return await client.evaluate(flag, ctx, bool(default), "boolean")
    return client.evaluate(flag, ctx, bool(default), "boolean")


def feature_required(
    flag: str, *, default: bool = False, context: Optional[RequestContextBuilder] = None
) -> Callable[[Request], Awaitable[EvaluationResult]]:
    """A dependency that lets the request through only when the boolean ``flag`` is on for it;
    otherwise raises :class:`FeatureDenied` (403, with a JSON body saying why). ``default`` is used
    when the daemon cannot answer (False: fail closed)."""

    async def dependency(request: Request) -> EvaluationResult:
        result = await _evaluate(request, flag, default, context)
        denial = denial_for(result)
        if denial is not None:
            raise FeatureDenied(denial)
        return result

    dependency.__name__ = f"feature_required_{flag}"
    return dependency


async def flag_enabled(request: Request, flag: str, default: bool = False) -> bool:
    """Whether ``flag`` is on for ``request`` (inside a route: ``await flag_enabled(request, …)``)."""
    result = await _evaluate(request, flag, default, None)
    value = result.value
    return value if isinstance(value, bool) else bool(default)


def usage_limit(
    feature: str, *, amount: int = 1, context: Optional[RequestContextBuilder] = None, fail_open: bool = False
) -> Callable[[Request], Awaitable[Optional[ConsumeResult]]]:
    """A dependency that consumes ``amount`` of the metered ``feature`` for the request's tenant;
    past a hard limit it raises :class:`FeatureDenied` with 429 and ``Retry-After`` (403 when the
    tenant is not entitled). When the daemon cannot be asked: 503, or with ``fail_open`` the
    request goes through (the dependency's value is then ``None``)."""

    async def dependency(request: Request) -> Optional[ConsumeResult]:
        config = _config(request)
        ctx = await _context(request, context or config.context)
        client = config.client
        try:
            if isinstance(client, AsyncClient):
                result = await client.consume(feature, ctx, amount=amount)
            else:
                result = client.consume(feature, ctx, amount=amount)
        except GuidonError as error:
            if fail_open:
                return None
            raise FeatureDenied(usage_unavailable(feature, error)) from None
        denial = usage_denial_for(result)
        if denial is not None:
            raise FeatureDenied(denial)
        return result

    dependency.__name__ = f"usage_limit_{feature}"
    return dependency
