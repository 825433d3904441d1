"""guidon.Client against the real daemon: every method, errors as results, strict mode."""

from __future__ import annotations

import datetime
import logging
import threading
from typing import Any, Dict, List

import pytest

import guidon
from guidon import Client, ErrorCode, Reason

from .conftest import Daemon

GOLD = {"targetingKey": "user-42", "tier": "gold"}


@pytest.fixture
def client(daemon: Daemon) -> Client:
    with Client(daemon.socket, timeout=2.0) as c:  # generous: the CI machine is shared
        yield c


def test_evaluate_returns_value_variant_reason_and_metadata(client: Client) -> None:
    result = client.evaluate("new-checkout", GOLD, default=False, type="boolean")
    assert result.value is True
    assert result.variant == "on"
    assert result.reason == Reason.TARGETING_MATCH
    assert result.error_code is None and result.error_message is None
    assert result.metadata["ticket"] == "SHOP-1432"
    assert result.metadata["flagSetId"] == "shop-web"  # the flag set's metadata, overlaid
    assert not result.is_error

    silver = client.evaluate("new-checkout", {"targetingKey": "user-7", "tier": "silver"}, False, "boolean")
    assert (silver.value, silver.variant) == (False, "off")


def test_evaluate_every_value_type(client: Client) -> None:
    assert client.evaluate("max-cart-items", {"plan": "enterprise"}, 1, "integer").value == 200
    as_float = client.evaluate("max-cart-items", {}, 1.5, "float").value
    assert as_float == 50.0 and isinstance(as_float, float)
    assert client.evaluate("checkout-button-copy", {"targetingKey": "u"}, "x", "string").value in {
        "Buy now", "Buy now - ships today", "Get yours"}
    theme = client.evaluate("theme", None, {}, "object")
    assert theme.value == {"primary": "#1f4e79", "rounded": False} and theme.reason == Reason.STATIC
    untyped = client.evaluate("theme")
    assert untyped.value == theme.value


def test_evaluation_problems_are_results_not_exceptions(client: Client) -> None:
    missing = client.evaluate("no-such-flag", GOLD, default="fallback")
    assert missing.value == "fallback"
    assert missing.reason == Reason.ERROR and missing.error_code == ErrorCode.FLAG_NOT_FOUND
    assert missing.metadata == {}

    mismatch = client.evaluate("theme", None, default=False, type="boolean")
    assert (mismatch.value, mismatch.error_code) == (False, ErrorCode.TYPE_MISMATCH)
    assert "object" in (mismatch.error_message or "")

    disabled = client.evaluate("recommendations", None, default=False, type="boolean")
    assert (disabled.value, disabled.reason, disabled.error_code) == (False, Reason.DISABLED, None)
    assert disabled.metadata["ticket"] == "INC-4471"

    no_default = client.evaluate("no-such-flag")
    assert no_default.value is None and no_default.error_code == ErrorCode.FLAG_NOT_FOUND


def test_bad_requests_become_error_results(client: Client) -> None:
    # The daemon refuses a default of another type than the one asked for (INVALID_REQUEST).
    wrong_default = client.evaluate("new-checkout", GOLD, default=1, type="boolean")
    assert (wrong_default.value, wrong_default.error_code) == (1, ErrorCode.INVALID_REQUEST)
    # Checked before sending:
    assert client.evaluate("new-checkout", GOLD, False, type="bool").error_code == ErrorCode.INVALID_REQUEST
    unserialisable = client.evaluate("new-checkout", {"tier": object()}, default=False)
    assert (unserialisable.value, unserialisable.error_code) == (False, ErrorCode.INVALID_REQUEST)
    assert client.evaluate("new-checkout", ["not", "a", "mapping"], False).error_code == ErrorCode.INVALID_REQUEST  # type: ignore[arg-type]
    assert client.is_enabled("new-checkout", {"tier": float("nan")}, default=True) is True
    assert client.is_enabled(["not", "a", "key"], default=True) is True  # type: ignore[arg-type]
    assert client.evaluate(42, default=1).error_code == ErrorCode.INVALID_REQUEST  # type: ignore[arg-type]
    # And the connection is still good afterwards.
    assert client.is_enabled("new-checkout", GOLD) is True


def test_context_values_are_encoded(client: Client) -> None:
    # Non-ASCII text and datetimes (sent as RFC 3339 text) in the context; a non-ASCII flag key.
    assert client.is_enabled("internal-tools", {"email": "zoë@acme.example"}) is True
    when = datetime.datetime(2026, 11, 28, tzinfo=datetime.timezone.utc)
    assert client.evaluate("new-checkout", {"tier": "gold", "since": when}).value is True
    assert client.evaluate("drapeau-ü").error_code == ErrorCode.FLAG_NOT_FOUND
    assert client.evaluate("drapeau-ü").flag == "drapeau-ü"


def test_is_enabled(client: Client) -> None:
    assert client.is_enabled("new-checkout", GOLD) is True
    assert client.is_enabled("new-checkout", {"tier": "bronze"}) is False
    assert client.is_enabled("new-checkout") is False
    assert client.is_enabled("bulk-export", {"tenantId": "tenant-0042"}) is True
    assert client.is_enabled("bulk-export", {"tenantId": "tenant-0666", "plan": "enterprise"}) is False
    # Defaults are served for disabled, missing and mistyped flags.
    assert client.is_enabled("recommendations", default=True) is True
    assert client.is_enabled("no-such-flag", default=True) is True
    assert client.is_enabled("theme", default=True) is True
    assert client.is_enabled("theme") is False


def test_variant(client: Client) -> None:
    users = [f"user-{i}" for i in range(40)]
    variants = {client.variant("checkout-button-copy", {"targetingKey": u}) for u in users}
    assert variants == {"control", "urgent", "friendly"}
    for user in users[:5]:
        ctx = {"targetingKey": user}
        assert client.variant("checkout-button-copy", ctx) == client.evaluate("checkout-button-copy", ctx).variant
    assert client.variant("recommendations", default="none") == "none"  # disabled: no variant
    assert client.variant("no-such-flag") is None


def test_evaluate_many_one_request_in_order(client: Client) -> None:
    flags = ["bulk-export", "no-such-flag", "max-cart-items", "bulk-export"]
    results = client.evaluate_many(flags, {"plan": "business"})
    assert [r.flag for r in results] == flags
    assert results[0].value is True and results[3].value is True
    assert results[1].error_code == ErrorCode.FLAG_NOT_FOUND
    assert results[2].value == 200
    for flag, result in zip(flags, results):
        assert client.evaluate(flag, {"plan": "business"}) == result
    typed = client.evaluate_many(["new-checkout", "theme"], GOLD, default=False, type="boolean")
    assert typed[0].value is True
    assert (typed[1].value, typed[1].error_code) == (False, ErrorCode.TYPE_MISMATCH)
    assert client.evaluate_many([]) == []


def test_evaluate_all(client: Client) -> None:
    results = client.evaluate_all({"targetingKey": "user-1001", "tier": "gold"})
    assert list(results)[:3] == ["new-checkout", "bulk-export", "internal-tools"]  # document order
    assert len(results) == 10
    assert results["new-checkout"].value is True
    assert results["beta-dashboard"].value is True
    assert results["recommendations"].reason == Reason.DISABLED
    assert results["recommendations"].value is None
    assert results["theme"].value["primary"] == "#1f4e79"


def test_ping_status_list(client: Client, daemon: Daemon) -> None:
    pong = client.ping()
    assert pong.ok is True and pong.flags == 10 and len(pong.config_version) == 16
    status = client.status()
    assert status.config_path == str(daemon.flags)
    assert status.config_version == pong.config_version
    assert status.flags == 10 and status.mode == "strict" and status.connections >= 1
    assert status.version and status.loaded_at.endswith("Z")
    assert status.raw["configPath"] == str(daemon.flags)
    flags = client.list_flags()
    assert flags.config_version == pong.config_version
    assert len(flags) == 10 and flags.keys()[0] == "new-checkout"
    recommendations = flags["recommendations"]
    assert recommendations.state == "DISABLED" and not recommendations.enabled
    assert recommendations.variants == ("on", "off") and recommendations.default_variant == "on"
    assert flags["new-checkout"].targeting is True and flags["theme"].targeting is False
    assert flags["theme"].metadata["updatedBy"] == "design"
    with pytest.raises(KeyError):
        flags["no-such-flag"]


def test_socket_from_environment(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUIDON_SOCKET", daemon.socket)
    assert Client().socket_path == daemon.socket
    assert Client(timeout=2).is_enabled("new-checkout", GOLD) is True
    monkeypatch.delenv("GUIDON_SOCKET")
    assert Client().socket_path == guidon.DEFAULT_SOCKET == "/run/guidon/guidon.sock"


def test_strict_mode_raises(daemon: Daemon, tmp_path: Any) -> None:
    strict = Client(daemon.socket, timeout=2, strict=True)
    assert strict.is_enabled("new-checkout", GOLD) is True
    with pytest.raises(guidon.FlagNotFoundError) as missing:
        strict.evaluate("no-such-flag")
    assert missing.value.code == ErrorCode.FLAG_NOT_FOUND and missing.value.result.flag == "no-such-flag"
    with pytest.raises(guidon.TypeMismatchError):
        strict.is_enabled("theme")
    with pytest.raises(guidon.EvaluationError):
        strict.evaluate_many(["new-checkout", "no-such-flag"])
    with pytest.raises(guidon.DaemonError) as invalid:
        strict.evaluate("new-checkout", default=1, type="boolean")
    assert invalid.value.code == ErrorCode.INVALID_REQUEST
    down = Client(str(tmp_path / "nothing.sock"), strict=True)
    with pytest.raises(guidon.GuidonConnectionError):
        down.evaluate("new-checkout")
    with pytest.raises(ConnectionError):  # also the builtin, for callers that catch that
        down.evaluate_all()


def test_management_calls_raise_when_down(tmp_path: Any) -> None:
    down = Client(str(tmp_path / "nothing.sock"))
    for call in (down.ping, down.status, down.list_flags, down.watch):
        with pytest.raises(guidon.GuidonConnectionError):
            call()
    # ... while evaluation serves defaults.
    assert down.evaluate("x", default=3).value == 3
    assert down.is_enabled("x", default=True) is True
    assert down.variant("x", default="v") == "v"
    assert [r.value for r in down.evaluate_many(["a", "b"], default=0)] == [0, 0]
    assert down.evaluate_all() == {}


def test_failures_are_logged_rate_limited(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    down = Client(str(tmp_path / "nothing.sock"), warn_interval=60)
    with caplog.at_level(logging.WARNING, logger="guidon"):
        for _ in range(200):
            down.is_enabled("new-checkout")
    warnings = [r for r in caplog.records if r.name == "guidon"]
    assert len(warnings) == 1
    assert "serving defaults" in warnings[0].getMessage()


def test_evaluation_problems_are_logged_once_per_flag(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    client._warner.interval = 60
    with caplog.at_level(logging.WARNING, logger="guidon"):
        for _ in range(50):
            client.is_enabled("typo-flag-a")
            client.is_enabled("typo-flag-b")
    messages = [r.getMessage() for r in caplog.records if r.name == "guidon"]
    assert len(messages) == 2
    assert any("typo-flag-a" in m and "FLAG_NOT_FOUND" in m for m in messages)


def test_sixteen_threads_share_one_client(daemon: Daemon) -> None:
    client = Client(daemon.socket, timeout=5, pool_size=4)
    beta = {"user-1001", "user-2002", "user-3003"}
    errors: List[str] = []
    barrier = threading.Barrier(16)

    def work(n: int) -> None:
        barrier.wait()
        for i in range(300):
            user = f"user-{(n * 1000 + i) % 4000}"
            tier = "gold" if i % 2 else "bronze"
            ctx = {"targetingKey": user, "tier": tier}
            # Different flags, contexts and kinds of call interleaved: a reply read by the wrong
            # thread would show up as a wrong answer.
            if client.is_enabled("new-checkout", ctx) is not (tier == "gold"):
                errors.append(f"new-checkout {ctx}")
            if client.is_enabled("beta-dashboard", ctx) is not (user in beta):
                errors.append(f"beta-dashboard {ctx}")
            if i % 10 == 0:
                results = client.evaluate_many(["max-cart-items", "new-checkout"], {"plan": "business", "tier": tier})
                if results[0].value != 200 or results[1].value is not (tier == "gold"):
                    errors.append(f"evaluate_many {results}")
                if client.evaluate("max-cart-items", {"plan": user}).value != 50:
                    errors.append("max-cart-items")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # Idle connections beyond the pool size were closed when given back.
    assert len(client._idle) <= 4
    client.close()


def test_closed_client_serves_defaults(daemon: Daemon) -> None:
    client = Client(daemon.socket, timeout=2)
    assert client.is_enabled("new-checkout", GOLD) is True
    client.close()
    result = client.evaluate("new-checkout", GOLD, default=False)
    assert (result.value, result.error_code) == (False, ErrorCode.CONNECTION_FAILED)


def test_long_request_gets_too_large_and_the_client_recovers(daemon: Daemon) -> None:
    client = Client(daemon.socket, timeout=2)
    assert client.is_enabled("new-checkout", GOLD) is True
    huge: Dict[str, Any] = {"tier": "gold", "padding": "x" * 70000}
    result = client.evaluate("new-checkout", huge, default=False)
    assert (result.value, result.error_code) == (False, ErrorCode.TOO_LARGE)
    # The daemon closed that connection after answering; the next calls get a new one.
    for _ in range(3):
        assert client.is_enabled("new-checkout", GOLD) is True


def test_flag_keys_that_need_escaping(client: Client) -> None:
    # is_enabled reads common replies without parsing them; keys the daemon may spell differently
    # in JSON fall back to parsing.
    for key in ['quote"d', "back\\slash", "tab\tkey", "ünï", "emoji-🚩"]:
        assert client.is_enabled(key, default=True) is True
        assert client.evaluate(key).flag == key


def test_replies_longer_than_one_read(make_daemon: Any) -> None:
    """2,000 flags: evalAll and list replies of hundreds of kilobytes, read in many chunks within
    one timeout; then an ordinary call on the same connection."""
    flags = {
        f"flag-{i:04}": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"if": [{"==": [{"var": "n"}, i]}, "on", "off"]},
            "metadata": {"notes": "x" * 100, "errorCode": "not an error"},
        }
        for i in range(2000)
    }
    daemon = make_daemon(flags={"flags": flags})
    client = Client(daemon.socket, timeout=5, pool_size=1)
    everything = client.evaluate_all({"n": 1234})
    assert len(everything) == 2000 and everything["flag-1234"].value is True
    assert sum(r.value for r in everything.values()) == 1
    listing = client.list_flags()
    assert len(listing) == 2000 and listing["flag-1999"].metadata["notes"] == "x" * 100
    # A metadata member named "errorCode" does not fool is_enabled's shortcut.
    assert client.is_enabled("flag-0007", {"n": 7}) is True
    assert client.is_enabled("flag-0007", {"n": 8}, default=True) is False
    assert len(client._idle) == 1
