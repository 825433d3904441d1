"""Usage limits through a real guidond: Client.consume/usage, AsyncClient, and the Flask helper's
429 with Retry-After."""

from __future__ import annotations

import asyncio
import calendar
import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from flask import Flask, g, request

from guidon import Client, ConsumeResult, DaemonError, InvalidRequestError
from guidon.aio import AsyncClient
from guidon.flask import Guidon, usage_limit
from guidon.web import usage_denial_for

from .conftest import Daemon

ENTITLEMENTS = {
    "timezone": "UTC",
    "features": {
        "video": {"default": False, "limits": [{"per": "day", "max": 2}]},
        "exports": {"default": False},
        "chat": {"default": True},
    },
    "plans": {
        "pro": {"displayName": "Pro", "order": 2, "grants": {"video": {"limits": [{"per": "day", "max": 3}]}, "exports": {"limits": [{"per": "month", "max": 2, "mode": "soft"}]}}},
        "free": {"displayName": "Free", "order": 1, "grants": {}},
    },
    "tenants": {"t1": {"plan": "pro", "status": "active"}, "t2": {"plan": "pro", "status": "active"}, "poor": {"plan": "free", "status": "active"}},
}


@pytest.fixture
def quota_daemon(make_daemon: Callable[..., Daemon], tmp_path: Path) -> Daemon:
    entitlements = tmp_path / "ent.json"
    entitlements.write_text(json.dumps(ENTITLEMENTS))
    return make_daemon(["--entitlements", str(entitlements), "--state-dir", str(tmp_path / "state")])


def test_consume_and_usage(quota_daemon: Daemon) -> None:
    with Client(quota_daemon.socket, timeout=5) as client:
        first = client.consume("video", {"tenantId": "t1"})
        assert isinstance(first, ConsumeResult)
        assert first.allowed and first.used == 1 and first.limit == 3 and first.remaining == 2 and first.window == "day"
        assert first.reset_at is not None and first.reset_at_seconds is not None and first.reset_at_seconds > time.time()
        assert client.consume("video", {"tenantId": "t1"}, amount=2).remaining == 0
        denied = client.consume("video", {"tenantId": "t1"})
        assert not denied.allowed and denied.reason == "LIMIT_EXCEEDED"
        retry = denied.retry_after()
        assert retry is not None and 1 <= retry <= 86_400
        usage = client.usage("video", {"tenantId": "t1"})
        assert usage.used == 3 and usage.limit == 3 and len(usage.limits) == 1 and usage.entitled
        assert {u.feature for u in client.usage_all({"tenantId": "t1"})} == {"video", "exports"}
        # Idempotency: the same key is answered again, not counted again.
        a = client.consume("exports", {"tenantId": "t2"}, idempotency_key="job-1")
        b = client.consume("exports", {"tenantId": "t2"}, idempotency_key="job-1")
        assert a.used == 1 and b.used == 1 and b.replayed
        not_entitled = client.consume("video", {"tenantId": "poor"})
        assert not not_entitled.allowed and not_entitled.reason == "NOT_ENTITLED"
        assert client.consume("chat", {"tenantId": "t1"}).unlimited


def test_bad_input(quota_daemon: Daemon) -> None:
    with Client(quota_daemon.socket, timeout=5) as client:
        for amount in (0, -1, 1.5, True, 1 << 53):
            with pytest.raises(InvalidRequestError):
                client.consume("video", {"tenantId": "t1"}, amount=amount)  # type: ignore[arg-type]
        with pytest.raises(DaemonError) as unknown:
            client.consume("nope", {"tenantId": "t1"})
        assert unknown.value.code == "INVALID_REQUEST"
        with pytest.raises(DaemonError):
            client.consume("video", {})
        assert client.usage("video", {"tenantId": "t1"}).used == 0


def test_async_client(quota_daemon: Daemon) -> None:
    async def run() -> None:
        client = AsyncClient(quota_daemon.socket, timeout=5)
        try:
            results = await asyncio.gather(*(client.consume("video", {"tenantId": "t2"}) for _ in range(8)))
            assert sum(r.allowed for r in results) == 3
            assert (await client.usage("video", {"tenantId": "t2"})).used == 3
        finally:
            await client.close()

    asyncio.run(run())


def test_flask_answers_429_with_retry_after(quota_daemon: Daemon) -> None:
    app = Flask(__name__)
    app.config["GUIDON_SOCKET"] = quota_daemon.socket
    app.config["GUIDON_TIMEOUT"] = 2.0
    Guidon(app)

    @app.before_request
    def tenant() -> None:
        g.tenant = request.headers.get("X-Tenant")

    @app.route("/render")
    @usage_limit("video")
    def render() -> Any:
        return "rendered"

    web = app.test_client()
    codes = [web.get("/render", headers={"X-Tenant": "t1"}).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    refused = web.get("/render", headers={"X-Tenant": "t1"})
    assert refused.status_code == 429
    assert refused.get_json()["error"] == "usage_limit_exceeded"
    assert refused.get_json()["limit"] == 3
    assert 1 <= int(refused.headers["Retry-After"]) <= 86_400
    poor = web.get("/render", headers={"X-Tenant": "poor"})
    assert poor.status_code == 403 and poor.get_json()["upgradeTo"] == "pro"


def test_denial_for_a_degraded_refusal() -> None:
    result = ConsumeResult.from_reply(
        {"allowed": False, "reason": "STORE_UNAVAILABLE", "feature": "sms", "used": None, "limit": 5, "remaining": None,
         "resetAt": "2030-01-01T00:00:00Z", "window": "day", "mode": "hard", "degraded": True}
    )
    denial = usage_denial_for(result, now=calendar.timegm((2029, 12, 31, 23, 59, 0)))
    assert denial is not None and denial.status == 429 and denial.body["degraded"] is True
    assert denial.headers["Retry-After"] == "60"
