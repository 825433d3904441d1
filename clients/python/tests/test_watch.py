"""Client.watch: change events from the real daemon, reconnection and resynchronisation."""

from __future__ import annotations

import queue
import threading
from typing import Any, List

import pytest

import guidon
from guidon import Client, ConfigurationChanged

from .conftest import Daemon, wait_until


def edit(daemon: Daemon) -> str:
    """Adds ``extra``, changes ``theme`` and removes ``search-v2``; returns the old version."""
    before = Client(daemon.socket, timeout=2).ping().config_version
    document = daemon.document()
    document["flags"]["extra"] = {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"}
    document["flags"]["theme"]["defaultVariant"] = "fresh"
    del document["flags"]["search-v2"]
    daemon.write(document)
    return before


def iterate_in_thread(watch: guidon.Watch) -> "queue.Queue[Any]":
    events: "queue.Queue[Any]" = queue.Queue()

    def run() -> None:
        try:
            for event in watch:
                events.put(event)
        except BaseException as error:  # noqa: BLE001
            events.put(error)
        events.put(StopIteration)

    threading.Thread(target=run, daemon=True).start()
    return events


def test_watch_yields_an_event_per_change(fresh_daemon: Daemon) -> None:
    client = Client(fresh_daemon.socket, timeout=2)
    with client.watch() as watch:
        subscribed_at = watch.config_version
        assert subscribed_at == client.ping().config_version
        events = iterate_in_thread(watch)
        edit(fresh_daemon)
        event = events.get(timeout=15)
        assert isinstance(event, ConfigurationChanged)
        assert event.added == ("extra",) and event.changed == ("theme",) and event.removed == ("search-v2",)
        assert event.flags == ("extra", "search-v2", "theme")
        assert not event.resync
        assert event.config_version == client.ping().config_version != subscribed_at
        assert client.evaluate("theme").variant == "fresh"
        # The watch connection stays usable for more changes.
        document = fresh_daemon.document()
        document["flags"]["extra"]["state"] = "DISABLED"
        fresh_daemon.write(document)
        event = events.get(timeout=15)
        assert event.changed == ("extra",)
        watch.close()  # from another thread than the one iterating
        assert events.get(timeout=5) is StopIteration


def test_watch_reconnects_and_resynchronises(fresh_daemon: Daemon) -> None:
    client = Client(fresh_daemon.socket, timeout=2, backoff_max=0.2)
    connects: List[str] = []
    disconnects: List[guidon.GuidonError] = []
    with client.watch(on_connect=connects.append, on_disconnect=disconnects.append) as watch:
        events = iterate_in_thread(watch)
        first = watch.config_version
        assert connects == [first]
        # Changed while the daemon is down: the events are missed, the resync reports them.
        fresh_daemon.stop()
        document = fresh_daemon.document()
        document["flags"]["extra"] = {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"}
        del document["flags"]["search-v2"]
        fresh_daemon.write(document)
        fresh_daemon.start()
        event = events.get(timeout=15)
        assert isinstance(event, ConfigurationChanged), event
        assert event.resync
        assert event.added == ("extra",) and event.removed == ("search-v2",)
        assert "new-checkout" in event.changed  # any other flag may have changed
        assert event.config_version != first
        assert len(disconnects) == 1 and isinstance(disconnects[0], guidon.GuidonConnectionError)
        assert connects[-1] == event.config_version
        # A restart without a change yields no event, but resubscribes.
        fresh_daemon.restart()
        assert client.ping().config_version == event.config_version
        wait_until(lambda: len(connects) == 3)
        assert connects[-1] == event.config_version
        document = fresh_daemon.document()
        document["flags"]["theme"]["defaultVariant"] = "fresh"
        fresh_daemon.write(document)
        event = events.get(timeout=15)
        assert not event.resync and event.changed == ("theme",)
        assert len(disconnects) == 2


def test_watch_without_reconnect_raises(fresh_daemon: Daemon) -> None:
    client = Client(fresh_daemon.socket, timeout=2)
    watch = client.watch(reconnect=False)
    events = iterate_in_thread(watch)
    fresh_daemon.stop()
    assert isinstance(events.get(timeout=10), guidon.GuidonConnectionError)


def test_watch_fails_at_once_when_the_daemon_is_down(tmp_path: Any) -> None:
    with pytest.raises(guidon.GuidonConnectionError):
        Client(str(tmp_path / "absent.sock")).watch()
