"""Fork safety: a child process (a pre-forked worker) never uses its parent's connections."""

from __future__ import annotations

import ctypes
import json
import os
from typing import Any, Callable, Dict, List, Tuple

import pytest

from guidon import Client

from .conftest import Daemon

BETA = {"user-1001", "user-2002", "user-3003"}


def hammer(client: Client, offset: int, rounds: int) -> List[str]:
    """Evaluations whose right answers differ per request: a reply read by the wrong process (or
    thread) shows up as a wrong answer."""
    wrong = []
    for i in range(rounds):
        user = f"user-{(offset + i) % 4000}"
        tier = "gold" if i % 3 == 0 else "silver"
        ctx = {"targetingKey": user, "tier": tier}
        if client.is_enabled("new-checkout", ctx) is not (tier == "gold"):
            wrong.append(f"new-checkout {ctx}")
        if client.is_enabled("beta-dashboard", ctx) is not (user in BETA):
            wrong.append(f"beta-dashboard {ctx}")
    return wrong


def start_child(fork: Callable[[], int], body: Callable[[], Dict[str, Any]]) -> Tuple[int, int]:
    """Forks with ``fork`` and runs ``body`` in the child, which writes what it returned (as JSON,
    well under a pipe's buffer) and exits. Returns the child's pid and the pipe's read end."""
    read_end, write_end = os.pipe()
    pid = fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            os.close(read_end)
            payload = json.dumps(body()).encode()
        except BaseException as error:  # noqa: BLE001
            payload = json.dumps({"exception": repr(error)}).encode()
            code = 1
        os.write(write_end, payload)
        os._exit(code)
    os.close(write_end)
    return pid, read_end


def finish_child(pid: int, read_end: int) -> Dict[str, Any]:
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    result: Dict[str, Any] = json.loads(data) if data else {}
    result["exit_status"] = status
    return result


def inode(conn: Any) -> int:
    """Which socket a connection is (a descriptor inherited by fork shares its parent's)."""
    return os.fstat(conn.sock.fileno()).st_ino


def child_body(client: Client, parent_connections: int, parent_idle: List[int]) -> Callable[[], Dict[str, Any]]:
    def body() -> Dict[str, Any]:
        wrong = hammer(client, 2000, 300)
        # The daemon sees one connection more than the parent had: the child's own.
        connections = client.status().connections
        return {
            "wrong": wrong,
            "connections": connections,
            "idle": [inode(conn) for conn in client._idle],
        }

    return body


# Forking a process with threads (pytest's, the fixtures') is what pre-forking servers avoid, but
# the child here only uses the client: Python 3.12+'s warning about it does not apply.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("how", ["os.fork", "fork(2) without Python's fork hooks"])
def test_child_after_fork_gets_its_own_connection(make_daemon: Callable[..., Daemon], how: str) -> None:
    daemon = make_daemon()
    client = Client(daemon.socket, timeout=5)
    assert hammer(client, 0, 10) == []
    parent_connections = client.status().connections
    assert parent_connections == 1 and len(client._idle) == 1
    parent_idle = [inode(conn) for conn in client._idle]
    if how == "os.fork":
        fork = os.fork
    else:
        # What uWSGI does by default: fork() from C, so os.register_at_fork hooks do not run;
        # the client notices the new pid. PyDLL keeps the GIL across the call.
        fork = ctypes.PyDLL(None).fork
    pid, read_end = start_child(fork, child_body(client, parent_connections, parent_idle))
    # Meanwhile the parent keeps using its own connection, concurrently with the child.
    wrong_in_parent = hammer(client, 0, 300)
    result = finish_child(pid, read_end)
    assert result.get("exception") is None, result
    assert result["exit_status"] == 0
    assert result["wrong"] == []
    assert wrong_in_parent == []
    assert result["idle"] and not set(result["idle"]) & set(parent_idle)
    assert result["connections"] >= parent_connections + 1
    # And the parent's connection still works after the child closed its copy and exited.
    assert hammer(client, 7, 20) == []
    assert client.status().connections >= 1


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_openfeature_provider_in_a_forked_worker(make_daemon: Callable[..., Daemon]) -> None:
    """gunicorn --preload: the provider is set up in the master, workers fork from it. A worker
    evaluates on connections of its own and, its parent's watch thread not having come along,
    starts its own and gets configuration-changed events."""
    import queue
    import select

    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.event import ProviderEvent

    from guidon.openfeature import GuidonProvider

    daemon = make_daemon()
    provider = GuidonProvider(daemon.socket, timeout=5)
    api.set_provider_and_wait(provider)
    gold = EvaluationContext("user-42", {"tier": "gold"})
    try:
        assert api.get_client().get_boolean_value("new-checkout", False, gold) is True
        ready_r, ready_w = os.pipe()

        def body() -> Dict[str, Any]:
            events: "queue.Queue[Any]" = queue.Queue()
            api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, events.put)
            value = api.get_client().get_boolean_value("new-checkout", False, gold)
            if not provider._connected.wait(10):
                return {"error": "the child's watch did not connect"}
            os.write(ready_w, b"r")
            event = events.get(timeout=15)
            return {"value": value, "flags": sorted(event.flags_changed or [])}

        pid, read_end = start_child(os.fork, body)
        os.close(ready_w)
        assert select.select([ready_r], [], [], 20)[0], "the child did not get ready"
        os.close(ready_r)
        document = daemon.document()
        document["flags"]["theme"]["defaultVariant"] = "fresh"
        daemon.write(document)
        result = finish_child(pid, read_end)
        assert result.get("exception") is None and result.get("error") is None, result
        assert result["value"] is True and result["flags"] == ["theme"]
    finally:
        api.shutdown()
