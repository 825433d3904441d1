"""What happens when the daemon goes away, hangs, or answers nonsense: callers get their defaults,
never an exception, and answers resume when the daemon is back."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable, List

import pytest

import guidon
import guidon.client
from guidon import Client, ErrorCode, Reason

from .conftest import Daemon, SilentServer, wait_until

GOLD = {"targetingKey": "user-42", "tier": "gold"}


class CountingConnection(guidon.client._Connection):
    made = 0

    def __init__(self, *args: Any) -> None:
        CountingConnection.made += 1
        super().__init__(*args)


@pytest.fixture
def count_connects(monkeypatch: pytest.MonkeyPatch) -> type:
    CountingConnection.made = 0
    monkeypatch.setattr(guidon.client, "_Connection", CountingConnection)
    return CountingConnection


def test_daemon_restarted_mid_test(fresh_daemon: Daemon) -> None:
    """Four threads evaluate in a loop while the daemon stops and starts again: no exception
    reaches them, they get defaults meanwhile, and right answers again afterwards."""
    client = Client(fresh_daemon.socket, timeout=1.0, backoff_max=0.2)
    assert client.is_enabled("new-checkout", GOLD) is True
    stop = threading.Event()
    exceptions: List[BaseException] = []
    seen: List[Any] = []

    def work() -> None:
        while not stop.is_set():
            try:
                result = client.evaluate("new-checkout", GOLD, default=False, type="boolean")
                seen.append((time.monotonic(), result.value, result.error_code))
                many = client.evaluate_many(["new-checkout", "max-cart-items"], GOLD)
                assert len(many) == 2
                client.is_enabled("bulk-export", {"plan": "business"})
                client.evaluate_all(GOLD)
            except BaseException as error:  # noqa: BLE001 - the point of the test
                exceptions.append(error)
                return

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    fresh_daemon.stop()
    down_at = time.monotonic()
    time.sleep(0.3)
    starting_at = time.monotonic()
    fresh_daemon.start()
    up_at = time.monotonic()
    wait_until(lambda: any(t > up_at and value is True and code is None for t, value, code in seen[-50:]))
    time.sleep(0.6)
    stop.set()
    for thread in threads:
        thread.join()
    assert exceptions == []
    during = [(value, code) for t, value, code in seen if down_at + 0.05 < t < starting_at]
    assert during, "no evaluation while the daemon was down"
    assert set(during) == {(False, ErrorCode.CONNECTION_FAILED)}
    # Once one answer came back, all did within the longest backoff (0.2 s: a thread may have
    # started a connect that failed just before the daemon came back).
    resumed = min(t for t, value, code in seen if t > up_at and code is None)
    after = [(value, code) for t, value, code in seen if t > resumed + 0.25]
    assert len(after) > 10 and all(value is True and code is None for value, code in after)


def test_pooled_connections_survive_a_restart(fresh_daemon: Daemon) -> None:
    """Connections pooled before the restart are dead; the first call after it notices, drops
    them and asks again on a new connection, so it still gets the right answer."""
    client = Client(fresh_daemon.socket, timeout=2.0)
    barrier = threading.Barrier(3)

    def fill_pool() -> None:
        barrier.wait()
        client.is_enabled("new-checkout", GOLD)

    threads = [threading.Thread(target=fill_pool) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(client._idle) >= 1
    fresh_daemon.restart()
    result = client.evaluate("new-checkout", GOLD, default=False, type="boolean")
    assert (result.value, result.error_code) == (True, None)
    assert len(client._idle) == 1


def test_a_down_daemon_costs_callers_no_connect_per_call(tmp_path: Any, count_connects: type) -> None:
    client = Client(str(tmp_path / "absent.sock"), backoff_initial=0.5, backoff_max=1.0)
    for _ in range(1000):
        result = client.evaluate("new-checkout", GOLD, default=True)
        assert (result.value, result.reason, result.error_code) == (True, Reason.ERROR, ErrorCode.CONNECTION_FAILED)
    # The first call tried to connect; the rest were answered from the backoff.
    assert count_connects.made <= 2


def test_reconnects_with_growing_backoff(fresh_daemon: Daemon, count_connects: type) -> None:
    client = Client(fresh_daemon.socket, timeout=1.0, backoff_initial=0.02, backoff_max=0.1)
    fresh_daemon.stop()
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        client.is_enabled("new-checkout", GOLD)
    # Attempts at most every 20, 40, 80, 100, 100 … ms: a handful, not one per call.
    assert 2 <= count_connects.made <= 12
    assert client._backoff.delay == 0.1
    fresh_daemon.start()
    wait_until(lambda: client.is_enabled("new-checkout", GOLD), timeout=5)
    assert client._backoff.delay == 0.0  # a success resets it


def test_timeout_against_a_daemon_that_never_answers(fake_server: Callable[..., SilentServer]) -> None:
    server = fake_server()
    client = Client(server.path, timeout=0.05, backoff_initial=0.3)
    started = time.monotonic()
    result = client.evaluate("new-checkout", GOLD, default=False)
    elapsed = time.monotonic() - started
    assert (result.value, result.reason, result.error_code) == (False, Reason.ERROR, ErrorCode.TIMEOUT)
    assert 0.04 < elapsed < 2.0
    assert client._idle == []  # a connection whose reply may still come is never reused
    # Backing off: the next calls do not wait for another timeout, nor connect again.
    result = client.evaluate("new-checkout", GOLD, default=True)
    assert (result.value, result.error_code) == (True, ErrorCode.CONNECTION_FAILED)
    assert server.accepted == 1
    # A per-call timeout, once the backoff has passed.
    time.sleep(0.35)
    started = time.monotonic()
    assert client.is_enabled("new-checkout", GOLD, timeout=0.2) is False
    assert time.monotonic() - started >= 0.19
    assert server.accepted == 2
    strict = Client(server.path, timeout=0.05, strict=True)
    with pytest.raises(guidon.GuidonTimeoutError):
        strict.evaluate("new-checkout")
    with pytest.raises(TimeoutError):  # also the builtin
        Client(server.path, timeout=0.05).ping()


@pytest.mark.parametrize(
    "reply",
    [b"not json\n", b"[1,2]\n", b'{"flag":"new-checkout","value":true}\n', b'{"error":"oops"}\n'],
)
def test_broken_replies_serve_defaults(fake_server: Callable[..., SilentServer], reply: bytes) -> None:
    server = fake_server(reply)
    client = Client(server.path, timeout=1.0)
    result = client.evaluate("new-checkout", GOLD, default="dflt")
    assert (result.value, result.reason, result.error_code) == ("dflt", Reason.ERROR, ErrorCode.PROTOCOL_VIOLATION)
    if reply != b'{"flag":"new-checkout","value":true}\n':  # is_enabled needs no reason
        assert client.is_enabled("new-checkout", default=True) is True
    with pytest.raises(guidon.ProtocolViolationError):
        Client(server.path, timeout=1.0, strict=True).evaluate("new-checkout")


def test_overloaded_daemon(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(["--max-connections", "1"])
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    holder.connect(daemon.socket)
    holder.sendall(b'{"op":"ping"}\n')
    assert holder.recv(4096).endswith(b"\n")
    client = Client(daemon.socket, timeout=2.0, backoff_initial=0.01)
    result = client.evaluate("new-checkout", GOLD, default=False)
    assert (result.value, result.error_code) == (False, ErrorCode.OVERLOADED)
    holder.close()
    wait_until(lambda: client.evaluate("new-checkout", GOLD).value is True, timeout=5)


def test_connection_closed_without_an_answer(fake_server: Callable[..., SilentServer], tmp_path: Any) -> None:
    """A server that accepts and closes at once: CONNECTION_FAILED, not an exception or a hang."""
    path = str(tmp_path / "closer.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)

    def close_all() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            conn.close()

    thread = threading.Thread(target=close_all, daemon=True)
    thread.start()
    client = Client(path, timeout=1.0)
    result = client.evaluate("new-checkout", default=False)
    assert (result.value, result.error_code) == (False, ErrorCode.CONNECTION_FAILED)
    listener.close()
