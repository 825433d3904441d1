"""guidon.openfeature.GuidonProvider through the real OpenFeature SDK (openfeature-sdk 0.10)."""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable, Iterator, List

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import FlagEvaluationDetails, Reason
from openfeature.hook import Hook, HookContext
from openfeature.provider import ProviderStatus

from guidon import Client
from guidon.openfeature import GuidonProvider

from .conftest import Daemon, wait_until

GOLD = EvaluationContext("user-42", {"tier": "gold"})


@pytest.fixture(autouse=True)
def clean_api() -> Iterator[None]:
    yield
    api.shutdown()


@pytest.fixture
def client(daemon: Daemon) -> Any:
    provider = GuidonProvider(daemon.socket, timeout=2)
    api.set_provider_and_wait(provider)
    return api.get_client()


class RecordingHook(Hook):
    def __init__(self) -> None:
        self.errors: List[Exception] = []
        self.after: List[FlagEvaluationDetails[Any]] = []

    def error(self, hook_context: HookContext, exception: Exception, hints: Any) -> None:
        self.errors.append(exception)

    def after(self, hook_context: HookContext, details: FlagEvaluationDetails[Any], hints: Any) -> None:  # type: ignore[override]
        self.after.append(details)


def test_metadata_and_status(client: Any) -> None:
    assert api.get_provider_metadata().name == "guidon"
    assert client.get_provider_status() == ProviderStatus.READY


def test_resolves_every_type(client: Any) -> None:
    details = client.get_boolean_details("new-checkout", False, GOLD)
    assert (details.value, details.variant, details.reason) == (True, "on", Reason.TARGETING_MATCH)
    assert details.error_code is None
    assert details.flag_metadata["ticket"] == "SHOP-1432" and details.flag_metadata["flagSetId"] == "shop-web"
    assert client.get_boolean_value("new-checkout", True, EvaluationContext("user-7", {"tier": "tin"})) is False

    copy = client.get_string_details("checkout-button-copy", "x", EvaluationContext("user-1"))
    assert copy.value in {"Buy now", "Buy now - ships today", "Get yours"}
    assert copy.variant in {"control", "urgent", "friendly"}

    items = client.get_integer_details("max-cart-items", 1, EvaluationContext(None, {"plan": "business"}))
    assert (items.value, items.variant) == (200, "large")
    as_float = client.get_float_details("max-cart-items", 1.0)
    assert as_float.value == 50.0 and isinstance(as_float.value, float) and as_float.error_code is None

    theme = client.get_object_details("theme", {})
    assert theme.value == {"primary": "#1f4e79", "rounded": False}
    assert theme.reason == Reason.STATIC

    # Context attributes of every kind the SDK allows, including datetimes, reach the daemon.
    import datetime

    staff = EvaluationContext("u", {"email": "a@acme.example", "when": datetime.datetime.now(), "tags": ["x"]})
    assert client.get_boolean_value("internal-tools", False, staff) is True


def test_disabled_and_default_reasons(client: Any) -> None:
    disabled = client.get_boolean_details("recommendations", True)
    assert (disabled.value, disabled.reason, disabled.error_code) == (True, Reason.DISABLED, None)
    no_key = client.get_boolean_details("search-v2", True)  # fractional without a targeting key
    assert no_key.reason == Reason.DEFAULT


def test_typed_errors_give_defaults_with_error_codes(client: Any) -> None:
    hook = RecordingHook()
    client.add_hooks([hook])
    missing = client.get_boolean_details("no-such-flag", True, GOLD)
    assert (missing.value, missing.reason, missing.error_code) == (True, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)
    assert "no-such-flag" in (missing.error_message or "")
    mismatch = client.get_boolean_details("theme", False)
    assert (mismatch.value, mismatch.error_code) == (False, ErrorCode.TYPE_MISMATCH)
    wrong = client.get_string_details("max-cart-items", "dflt")
    assert (wrong.value, wrong.error_code) == ("dflt", ErrorCode.TYPE_MISMATCH)
    assert [type(e).__name__ for e in hook.errors] == ["FlagNotFoundError", "TypeMismatchError", "TypeMismatchError"]


def test_parse_error(make_daemon: Callable[..., Daemon], daemon: Daemon) -> None:
    document = daemon.document()
    document["flags"]["broken"] = {
        "state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
        "targeting": {"if": [{"no_such_operator": [1]}, "on", "off"]},
    }
    lenient = make_daemon(["--lenient"], flags=document)
    api.set_provider_and_wait(GuidonProvider(lenient.socket, timeout=2))
    details = api.get_client().get_boolean_details("broken", True)
    assert (details.value, details.error_code) == (True, ErrorCode.PARSE_ERROR)


def test_general_error_when_the_daemon_is_unreachable(daemon: Daemon) -> None:
    provider = GuidonProvider(daemon.socket, timeout=2, watch=False)
    api.set_provider_and_wait(provider)
    provider._client.socket_path = "/nonexistent/guidon.sock"  # the daemon went away
    provider._client._drop_idle()
    details = api.get_client().get_integer_details("max-cart-items", 3)
    assert (details.value, details.reason, details.error_code) == (3, Reason.ERROR, ErrorCode.GENERAL)
    assert "CONNECTION_FAILED" in (details.error_message or "")


def test_async_resolution(daemon: Daemon) -> None:
    api.set_provider_and_wait(GuidonProvider(daemon.socket, timeout=2))
    client = api.get_client()

    async def main() -> None:
        assert await client.get_boolean_value_async("new-checkout", False, GOLD) is True
        missing = await client.get_string_details_async("no-such-flag", "d")
        assert (missing.value, missing.error_code) == ("d", ErrorCode.FLAG_NOT_FOUND)
        assert await client.get_integer_value_async("max-cart-items", 0, EvaluationContext(None, {"plan": "enterprise"})) == 200
        assert await client.get_float_value_async("max-cart-items", 0.5) == 50.0
        assert (await client.get_object_value_async("theme", {}))["primary"] == "#1f4e79"

    asyncio.run(main())


def test_configuration_changed_events(fresh_daemon: Daemon) -> None:
    provider = GuidonProvider(fresh_daemon.socket, timeout=2)
    api.set_provider_and_wait(provider)
    events: "queue.Queue[EventDetails]" = queue.Queue()
    api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, events.put)
    client = api.get_client()
    assert client.get_object_value("theme", {})["primary"] == "#1f4e79"
    document = fresh_daemon.document()
    document["flags"]["theme"]["defaultVariant"] = "fresh"
    document["flags"]["extra"] = {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"}
    fresh_daemon.write(document)
    event = events.get(timeout=15)
    assert event.provider_name == "guidon"
    assert sorted(event.flags_changed or []) == ["extra", "theme"]
    assert event.metadata["configVersion"] == Client(fresh_daemon.socket, timeout=2).ping().config_version
    assert client.get_object_value("theme", {})["primary"] == "#2e8b57"
    assert client.get_boolean_value("extra", False) is True
    # shutdown stops the watch thread.
    thread = provider._thread
    assert thread is not None and thread.is_alive()
    api.shutdown()
    thread.join(5)
    assert not thread.is_alive()
    provider.shutdown()  # twice is fine


def test_error_and_ready_events_when_the_daemon_restarts(fresh_daemon: Daemon) -> None:
    provider = GuidonProvider(fresh_daemon.socket, timeout=2)
    api.set_provider_and_wait(provider)
    seen: "queue.Queue[Any]" = queue.Queue()
    api.add_handler(ProviderEvent.PROVIDER_ERROR, lambda details: seen.put(("error", details)))
    api.add_handler(ProviderEvent.PROVIDER_READY, lambda details: seen.put(("ready", details)))
    assert seen.get(timeout=5)[0] == "ready"  # handlers run at once for the current status
    fresh_daemon.stop()
    kind, details = seen.get(timeout=10)
    assert kind == "error" and details.error_code == ErrorCode.GENERAL
    assert api.get_client().get_provider_status() == ProviderStatus.ERROR
    fresh_daemon.start()
    kind, _ = seen.get(timeout=10)
    assert kind == "ready"
    assert api.get_client().get_provider_status() == ProviderStatus.READY
    assert api.get_client().get_boolean_value("new-checkout", False, GOLD) is True


def test_set_provider_and_wait_fails_while_the_daemon_is_down(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(start=False)
    # A long backoff: the failed evaluation below would keep the client waiting 5 s, but the
    # watch's reconnection tells it the daemon is back, so READY means evaluations work again.
    slow_to_retry = Client(daemon.socket, timeout=1, backoff_initial=5, backoff_max=5)
    provider = GuidonProvider(client=slow_to_retry, init_timeout=0.3)
    with pytest.raises(ProviderNotReadyError):
        api.set_provider_and_wait(provider)
    client = api.get_client()
    assert client.get_provider_status() == ProviderStatus.ERROR
    details = client.get_boolean_details("new-checkout", False, GOLD)
    assert (details.value, details.error_code) == (False, ErrorCode.GENERAL)
    ready = threading.Event()
    api.add_handler(ProviderEvent.PROVIDER_READY, lambda _: ready.set())
    daemon.start()
    assert ready.wait(10)
    wait_until(lambda: client.get_provider_status() == ProviderStatus.READY)
    assert client.get_boolean_value("new-checkout", False, GOLD) is True
    assert slow_to_retry._backoff.delay == 0.0
