"""guidon.fastapi with FastAPI's TestClient."""

from __future__ import annotations

from typing import Any, Dict, Optional

from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from guidon import Client, EvaluationResult
from guidon.aio import AsyncClient
from guidon.fastapi import feature_required, flag_enabled, setup

from .conftest import Daemon

USERS = {
    "gold": {"id": 42, "email": "ann@example.com", "tier": "gold"},
    "tin": {"id": 7, "email": "bob@example.com", "tier": "tin"},
}


def make_app(daemon: Daemon, client: Optional[Any] = None, context: Optional[Any] = None, install: bool = True) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        request.state.user = USERS.get(request.headers.get("x-user", ""))
        request.state.tenant = request.headers.get("x-tenant")
        return await call_next(request)

    if install:
        setup(app, client=client or AsyncClient(daemon.socket, timeout=2), context=context)

    @app.get("/checkout", dependencies=[Depends(feature_required("new-checkout"))])
    async def checkout() -> Dict[str, str]:
        return {"checkout": "new"}

    @app.get("/export")
    def export(result: EvaluationResult = Depends(feature_required("bulk-export"))) -> Dict[str, Any]:
        return {"variant": result.variant, "reason": result.reason}

    @app.get("/nav")
    async def nav(request: Request) -> Dict[str, bool]:
        return {"new": await flag_enabled(request, "new-checkout")}

    return app


def test_enabled_requests_reach_the_route(daemon: Daemon) -> None:
    with TestClient(make_app(daemon)) as http:
        response = http.get("/checkout", headers={"X-User": "gold"})
        assert response.status_code == 200 and response.json() == {"checkout": "new"}
        export = http.get("/export", headers={"X-Tenant": "tenant-0042"})
        assert export.json() == {"variant": "on", "reason": "TARGETING_MATCH"}
        assert http.get("/nav", headers={"X-User": "gold"}).json() == {"new": True}
        assert http.get("/nav", headers={"X-User": "tin"}).json() == {"new": False}


def test_refusal_is_403_with_the_bare_json_body(daemon: Daemon) -> None:
    with TestClient(make_app(daemon)) as http:
        response = http.get("/checkout", headers={"X-User": "tin"})
        assert response.status_code == 403
        body = response.json()
        assert body["error"] == "feature_disabled"
        assert (body["flag"], body["reason"], body["variant"]) == ("new-checkout", "TARGETING_MATCH", "off")
        assert http.get("/export", headers={"X-Tenant": "tenant-0666"}).status_code == 403


def test_without_setup_fastapi_wraps_the_body_in_detail(daemon: Daemon, monkeypatch: Any) -> None:
    monkeypatch.setenv("GUIDON_SOCKET", daemon.socket)
    import guidon.fastapi

    monkeypatch.setattr(guidon.fastapi, "_fallback", None)
    with TestClient(make_app(daemon, install=False)) as http:
        response = http.get("/checkout", headers={"X-User": "tin"})
        assert response.status_code == 403 and response.json()["detail"]["flag"] == "new-checkout"
        assert http.get("/checkout", headers={"X-User": "gold"}).status_code == 200


def test_sync_client_and_async_context_hook(daemon: Daemon) -> None:
    async def context(request: Request) -> Dict[str, Any]:
        return {"tier": request.query_params.get("tier", "")}

    with TestClient(make_app(daemon, client=Client(daemon.socket, timeout=2), context=context)) as http:
        assert http.get("/checkout?tier=platinum").status_code == 200
        assert http.get("/checkout?tier=tin").status_code == 403


def test_daemon_down_fails_closed(daemon: Daemon, tmp_path: Any) -> None:
    with TestClient(make_app(daemon, client=AsyncClient(str(tmp_path / "absent.sock")))) as http:
        response = http.get("/checkout", headers={"X-User": "gold"})
        assert response.status_code == 403
        assert (response.json()["reason"], response.json()["errorCode"]) == ("ERROR", "CONNECTION_FAILED")
