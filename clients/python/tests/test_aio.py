"""guidon.aio.AsyncClient against the real daemon (each test runs its own event loop)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, List

import pytest

import guidon
from guidon import ErrorCode, Reason
from guidon.aio import AsyncClient

from .conftest import Daemon, SilentServer

GOLD = {"targetingKey": "user-42", "tier": "gold"}
BETA = {"user-1001", "user-2002", "user-3003"}


def test_every_method(daemon: Daemon) -> None:
    async def main() -> None:
        async with AsyncClient(daemon.socket, timeout=2) as client:
            result = await client.evaluate("new-checkout", GOLD, False, "boolean")
            assert (result.value, result.variant, result.reason) == (True, "on", Reason.TARGETING_MATCH)
            assert result.metadata["ticket"] == "SHOP-1432"
            assert await client.is_enabled("new-checkout", GOLD) is True
            assert await client.is_enabled("new-checkout", {"tier": "tin"}) is False
            assert await client.is_enabled("no-such-flag", default=True) is True
            assert await client.variant("checkout-button-copy", {"targetingKey": "u1"}) in {"control", "urgent", "friendly"}
            missing = await client.evaluate("no-such-flag", default=7)
            assert (missing.value, missing.error_code) == (7, ErrorCode.FLAG_NOT_FOUND)
            many = await client.evaluate_many(["max-cart-items", "theme"], {"plan": "business"})
            assert many[0].value == 200 and many[1].value["rounded"] is False
            every = await client.evaluate_all(GOLD)
            assert len(every) == 10 and every["new-checkout"].value is True
            pong = await client.ping()
            assert pong.ok and pong.flags == 10
            status = await client.status()
            assert status.config_version == pong.config_version
            flags = await client.list_flags()
            assert flags["recommendations"].state == "DISABLED"
            bad = await client.evaluate("new-checkout", GOLD, default=1, type="boolean")
            assert bad.error_code == ErrorCode.INVALID_REQUEST

    asyncio.run(main())


def test_concurrent_tasks_share_the_pool(daemon: Daemon) -> None:
    async def main() -> List[str]:
        client = AsyncClient(daemon.socket, timeout=5, pool_size=4)
        wrong: List[str] = []

        async def task(n: int) -> None:
            for i in range(50):
                user = f"user-{(n * 100 + i) % 4000}"
                tier = "gold" if (n + i) % 2 else "bronze"
                ctx = {"targetingKey": user, "tier": tier}
                if await client.is_enabled("new-checkout", ctx) is not (tier == "gold"):
                    wrong.append(f"new-checkout {ctx}")
                if await client.is_enabled("beta-dashboard", ctx) is not (user in BETA):
                    wrong.append(f"beta {ctx}")

        await asyncio.gather(*(task(n) for n in range(64)))
        assert len(client._idle) <= 4
        await client.close()
        return wrong

    assert asyncio.run(main()) == []


def test_one_client_across_event_loops(daemon: Daemon) -> None:
    client = AsyncClient(daemon.socket, timeout=2)
    for _ in range(3):  # asyncio.run makes a new loop each time; pooled streams belong to the old
        assert asyncio.run(client.is_enabled("new-checkout", GOLD)) is True


def test_down_daemon_serves_defaults_and_backs_off(tmp_path: Any) -> None:
    async def main() -> None:
        client = AsyncClient(str(tmp_path / "absent.sock"))
        for _ in range(100):
            result = await client.evaluate("new-checkout", GOLD, default=True)
            assert (result.value, result.error_code) == (True, ErrorCode.CONNECTION_FAILED)
        assert await client.is_enabled("x", default=True) is True
        assert await client.evaluate_all() == {}
        assert [r.value for r in await client.evaluate_many(["a", "b"], default=1)] == [1, 1]
        with pytest.raises(guidon.GuidonConnectionError):
            await client.ping()
        with pytest.raises(guidon.GuidonConnectionError):
            await AsyncClient(str(tmp_path / "absent.sock"), strict=True).evaluate("x")

    asyncio.run(main())


def test_timeout_against_a_daemon_that_never_answers(fake_server: Callable[..., SilentServer]) -> None:
    server = fake_server()

    async def main() -> None:
        client = AsyncClient(server.path, timeout=0.05, backoff_initial=0.3)
        started = time.monotonic()
        result = await client.evaluate("new-checkout", GOLD, default=False)
        assert (result.value, result.error_code) == (False, ErrorCode.TIMEOUT)
        assert time.monotonic() - started < 2
        assert client._idle == []
        again = await client.evaluate("new-checkout", GOLD, default=False)
        assert again.error_code == ErrorCode.CONNECTION_FAILED and server.accepted == 1
        with pytest.raises(guidon.GuidonTimeoutError):
            await AsyncClient(server.path, timeout=0.05, strict=True).is_enabled("new-checkout")

    asyncio.run(main())


def test_broken_reply(fake_server: Callable[..., SilentServer]) -> None:
    server = fake_server(b"garbage\n")

    async def main() -> None:
        async with AsyncClient(server.path, timeout=1) as client:
            result = await client.evaluate("x", default="d")
        assert (result.value, result.error_code) == ("d", ErrorCode.PROTOCOL_VIOLATION)

    asyncio.run(main())


def test_daemon_restarted_mid_test(fresh_daemon: Daemon) -> None:
    async def main() -> None:
        client = AsyncClient(fresh_daemon.socket, timeout=1, backoff_max=0.2)
        assert await client.is_enabled("new-checkout", GOLD) is True
        stopped = asyncio.Event()
        codes: List[Any] = []

        async def work() -> None:
            while not stopped.is_set():
                result = await client.evaluate("new-checkout", GOLD, False, "boolean")
                codes.append((result.value, result.error_code))
                await asyncio.sleep(0.001)

        tasks = [asyncio.ensure_future(work()) for _ in range(4)]
        await asyncio.sleep(0.1)
        await asyncio.get_running_loop().run_in_executor(None, fresh_daemon.stop)
        await asyncio.sleep(0.3)
        assert (False, ErrorCode.CONNECTION_FAILED) in codes
        await asyncio.get_running_loop().run_in_executor(None, fresh_daemon.start)
        deadline = time.monotonic() + 10
        while codes[-1] != (True, None) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        count = len(codes)
        await asyncio.sleep(0.2)
        stopped.set()
        await asyncio.gather(*tasks)  # no task raised
        assert codes[-1] == (True, None)
        assert all(code == (True, None) for code in codes[count:])
        await client.close()

    asyncio.run(main())


def test_watch(fresh_daemon: Daemon) -> None:
    async def main() -> None:
        client = AsyncClient(fresh_daemon.socket, timeout=2, backoff_max=0.2)
        watch = await client.watch().start()
        first = watch.config_version
        document = fresh_daemon.document()
        document["flags"]["extra"] = {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"}
        fresh_daemon.write(document)
        event = await asyncio.wait_for(watch.__anext__(), 15)
        assert event.added == ("extra",) and event.config_version != first and not event.resync
        with_extra = event.config_version
        # Reconnects after a restart, with a resync event for what changed meanwhile.
        await asyncio.get_running_loop().run_in_executor(None, fresh_daemon.stop)
        del document["flags"]["extra"]
        fresh_daemon.write(document)
        await asyncio.get_running_loop().run_in_executor(None, fresh_daemon.start)
        event = await asyncio.wait_for(watch.__anext__(), 15)
        assert event.resync and event.removed == ("extra",)
        assert event.config_version not in (first, with_extra)  # the file's bytes differ from both

        async def consume() -> List[Any]:
            return [e async for e in watch]

        consumer = asyncio.ensure_future(consume())
        await asyncio.sleep(0.1)
        await watch.aclose()
        assert await asyncio.wait_for(consumer, 5) == []

    asyncio.run(main())
