"""What the thread and asyncio clients share: where the socket is, the reconnect backoff, the
rate-limited warnings, and fork detection."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Any, Callable, Dict, Optional, Tuple, Union

from .errors import GuidonConnectionError, GuidonError

DEFAULT_SOCKET = "/run/guidon/guidon.sock"

#: Per-call timeout in seconds: a local daemon answers in tens of microseconds, so 100 ms means
#: it is stuck; a page must not wait longer than that for a flag.
DEFAULT_TIMEOUT = 0.1

logger = logging.getLogger("guidon")

SocketPath = Union[str, "os.PathLike[str]"]


def socket_path(socket: Optional[SocketPath]) -> str:
    """``socket``, else ``$GUIDON_SOCKET``, else ``/run/guidon/guidon.sock`` (as the CLI)."""
    if socket is not None:
        return os.fspath(socket)
    return os.environ.get("GUIDON_SOCKET") or DEFAULT_SOCKET


class Backoff:
    """When the daemon cannot be reached, new connections are not attempted again until a delay
    has passed, doubling from ``initial`` to ``maximum`` with each failure in a row. Meanwhile
    callers get their default at once: a down daemon costs them nothing, not a failed connect or a
    timeout per call. Shared by the threads of a client without a lock: races only move a deadline.
    """

    __slots__ = ("initial", "maximum", "delay", "until", "last_error", "last_success")

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.delay = 0.0
        self.until = 0.0
        self.last_error: Optional[GuidonError] = None
        self.last_success = 0.0

    def check(self) -> None:
        """Raises GuidonConnectionError while backing off."""
        if self.until:
            remaining = self.until - time.monotonic()
            if remaining > 0:
                last = self.last_error.message if self.last_error is not None else "unavailable"
                raise GuidonConnectionError(
                    f"daemon unavailable, next attempt in {remaining * 1000:.0f} ms (last error: {last})"
                )

    def failed(self, error: GuidonError, started: Optional[float] = None) -> None:
        """A failure; ``started`` (monotonic) is when the failed attempt began: an attempt older
        than the last success (another thread's) says nothing about the daemon now."""
        if started is not None and started < self.last_success:
            return
        self.delay = min(self.maximum, max(self.initial, self.delay * 2))
        self.until = time.monotonic() + self.delay
        self.last_error = error

    def connected(self) -> None:
        """A new connection: other callers may connect again at once. The delay is kept until a
        reply comes, so that a daemon that accepts but never answers still backs off."""
        self.until = 0.0
        self.last_success = time.monotonic()

    def succeeded(self) -> None:
        self.delay = 0.0
        self.until = 0.0
        self.last_error = None
        self.last_success = time.monotonic()


class Warner:
    """Logs a failure at most once per ``interval`` seconds per kind, saying how many were
    suppressed in between, so that a down daemon under load does not flood the log."""

    def __init__(self, log: logging.Logger, interval: float) -> None:
        self.log = log
        self.interval = interval
        self._lock = threading.Lock()
        self._last: Dict[Tuple[str, str], Tuple[float, int]] = {}

    def warn(self, kind: str, subject: str, message: str, *args: Any) -> None:
        key = (kind, subject)
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._last.get(key, (-1e18, 0))
            if now - last < self.interval:
                self._last[key] = (last, suppressed + 1)
                return
            if len(self._last) > 1024:  # bounded: flag keys come from callers
                self._last.clear()
            self._last[key] = (now, 0)
        if suppressed:
            message += " (%d similar message(s) suppressed)"
            args = (*args, suppressed)
        self.log.warning(message, *args)

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()


# Clients to reset in a child process after fork(): a child must never use its parent's
# connections (both processes would read each other's replies) nor a lock another parent thread
# held at the time of the fork.
_forkables: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_forkables):
        client._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def register_forkable(client: Any) -> None:
    """``client._reset_after_fork()`` will run in the child after each ``os.fork()``."""
    _forkables.add(client)


OnConnect = Callable[[str], None]
OnDisconnect = Callable[[GuidonError], None]
