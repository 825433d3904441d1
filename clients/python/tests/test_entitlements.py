"""Entitlements through the real daemon (guidond --entitlements with the example file): features
answered by evaluate, the entitlements and tenants operations, and bad input."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

import guidon
from guidon import Client, ErrorCode, GuidonError, Reason
from guidon.aio import AsyncClient

from .conftest import REPO, Daemon

EXAMPLE_ENTITLEMENTS = REPO / "protocol" / "examples" / "entitlements.json"


@pytest.fixture
def ent_daemon(make_daemon: Callable[..., Daemon]) -> Daemon:
    daemon: Daemon = make_daemon(start=False)
    target = Path(daemon.directory) / "entitlements.json"
    shutil.copy(EXAMPLE_ENTITLEMENTS, target)
    daemon.extra_args += ["--entitlements", str(target)]
    return daemon.start()


def test_features_through_evaluate(ent_daemon: Daemon) -> None:
    with Client(ent_daemon.socket) as client:
        acme = client.evaluate("voice_ai", {"tenantId": "acme"}, False)
        assert acme.value is True and acme.variant == "plan:growth" and acme.reason == Reason.TARGETING_MATCH
        denied = client.evaluate("voice_ai", {"tenantId": "nobody"}, False)
        assert denied.value is False and denied.reason == Reason.DEFAULT
        assert denied.metadata["upgradeTo"] == "growth"
        providers = client.evaluate("payment_providers", {"tenantId": "acme"}, {})
        assert providers.value["providers"] == ["card", "zarinpal", "yookassa"]
        assert client.evaluate("telegram_bot", {}, False).value is True
        everything = client.evaluate_all({"tenantId": "hooli"})
        assert "voice_ai" in everything and "new-checkout" in everything


def test_entitlements_and_tenants(ent_daemon: Daemon) -> None:
    with Client(ent_daemon.socket) as client:
        initech = client.entitlements("initech")
        assert isinstance(initech, guidon.TenantEntitlements)
        assert initech.found and initech.plan == "starter" and initech.status == "trialing"
        seats = initech.features["seats"]
        assert seats.value == {"max": 8} and seats.source == "override" and seats.entitled
        assert "maria.lopez" in seats.why
        assert initech.features["voice_ai"].upgrade_to == "growth"
        assert not initech.is_entitled("voice_ai")
        assert client.entitlements(5).found
        unknown = client.entitlements("nobody")
        assert not unknown.found and unknown.features["telegram_bot"].value is True

        first = client.tenants(limit=2)
        assert [t.id for t in first] == ["5", "acme"] and first.total == 7 and first.next == "acme"
        second = client.tenants(limit=2, after=first.next)
        assert [t.id for t in second] == ["globex", "initech"]
        growth = client.tenants(plan="growth", status="active")
        assert [t.id for t in growth] == ["acme"] and growth.next is None


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda c: c.tenants(limit=0), "between 1 and 1000"),
        (lambda c: c.tenants(status="paused"), '"paused" is not a status'),
        (lambda c: c.tenants(plan="gold"), 'no plan named "gold"'),
        (lambda c: c.tenants(after="gone"), 'start again without "after"'),
    ],
)
def test_bad_input_is_a_clear_error(ent_daemon: Daemon, call: Callable[[Client], Any], message: str) -> None:
    with Client(ent_daemon.socket) as client:
        with pytest.raises(GuidonError) as raised:
            call(client)
        assert raised.value.code == ErrorCode.INVALID_REQUEST
        assert message in raised.value.message


def test_tenant_of_the_wrong_type(ent_daemon: Daemon) -> None:
    with Client(ent_daemon.socket) as client:
        for tenant in (True, 1.5, None, ["5"]):
            with pytest.raises(GuidonError) as raised:
                client.entitlements(tenant)  # type: ignore[arg-type]
            assert raised.value.code == ErrorCode.INVALID_REQUEST


def test_without_an_entitlements_file(fresh_daemon: Daemon) -> None:
    with Client(fresh_daemon.socket) as client:
        with pytest.raises(GuidonError) as raised:
            client.entitlements("5")
        assert raised.value.code == "NOT_FOUND"
        assert "--entitlements" in raised.value.message


def test_async_client(ent_daemon: Daemon) -> None:
    async def run() -> None:
        client = AsyncClient(ent_daemon.socket)
        try:
            acme = await client.entitlements("acme")
            assert acme.features["voice_ai"].value is True
            page = await client.tenants(limit=3)
            assert len(page) == 3 and page.next == "globex"
        finally:
            await client.close()

    asyncio.run(run())
