"""The thread-safe client: a pool of blocking Unix-socket connections to ``guidond``."""

from __future__ import annotations

import logging
import os
import socket as _socket
import struct
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

from . import _protocol as proto
from ._core import (
    DEFAULT_TIMEOUT,
    Backoff,
    OnConnect,
    OnDisconnect,
    SocketPath,
    Warner,
    logger as _default_logger,
    register_forkable,
    socket_path,
)
from .errors import (
    ErrorCode,
    GuidonConnectionError,
    GuidonError,
    GuidonTimeoutError,
    InvalidRequestError,
    ProtocolViolationError,
    Reason,
    evaluation_error,
)
from .types import (
    ConfigurationChanged,
    ConsumeResult,
    EvaluationResult,
    FeatureUsage,
    FlagList,
    TenantEntitlements,
    TenantPage,
    PingResult,
    Status,
    error_results,
)

__all__ = ["Client", "Watch"]

T = TypeVar("T")

_RECV = 65536


class _Stale(Exception):
    """A pooled connection turned out closed by the daemon (it restarted, or closed an idle
    connection) before any reply byte came: the request can be sent again on a new connection.
    ``delivered``: the request was sent (the daemon may have carried it out: a ``consume``)."""

    def __init__(self, delivered: bool = True) -> None:
        super().__init__()
        self.delivered = delivered


def _timeval(seconds: float) -> bytes:
    micro = max(1, round(seconds * 1e6))  # a struct timeval; zero would mean "no timeout"
    return _TIMEVAL.pack(micro // 1_000_000, micro % 1_000_000)


_TIMEVAL = struct.Struct("@ll")


class _Connection:
    """One connection, used by one thread at a time (the pool hands it out).

    The socket is in blocking mode and the call's timeout is the kernel's (SO_RCVTIMEO and
    SO_SNDTIMEO): a round trip is then one send and one recv. A Python socket timeout would poll()
    before each of them, two more system calls per round trip (measured in docs/python-client.md).
    """

    __slots__ = ("sock", "timeout", "reused")

    def __init__(self, path: str, connect_timeout: float, timeout: float) -> None:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(connect_timeout)
            sock.connect(path)
            sock.settimeout(None)
            self.sock = sock
            self._set_timeout(timeout)
        except BaseException:
            sock.close()
            raise
        self.reused = False

    def _set_timeout(self, timeout: float) -> None:
        value = _timeval(timeout)
        self.sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVTIMEO, value)
        self.sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, value)
        self.timeout = timeout

    def request(self, payload: bytes, timeout: float) -> bytes:
        """Sends one request line and returns its reply line."""
        sock = self.sock
        if timeout != self.timeout:
            self._set_timeout(timeout)
        sent = False
        try:
            sock.sendall(payload)
            sent = True
            data = sock.recv(_RECV)
        except BlockingIOError:  # EAGAIN: the kernel's timeout expired
            raise _socket.timeout("timed out") from None
        except (BrokenPipeError, ConnectionResetError):
            if self.reused:
                # On a Unix socket a send to a closed peer fails at once (EPIPE): not delivered.
                raise _Stale(sent) from None
            # A new connection the daemon refused (OVERLOADED) carries its reason: read it.
            data = self._leftover()
            if not data:
                raise
        # One request is outstanding, and the daemon writes exactly one line per request.
        if data[-1:] == b"\n":
            return data
        if not data:
            if self.reused:
                raise _Stale()
            raise ConnectionResetError("the daemon closed the connection without answering")
        return self._rest(data, timeout)

    def _leftover(self) -> bytes:
        try:
            data = self.sock.recv(_RECV, _socket.MSG_DONTWAIT)
        except OSError:
            return b""
        return data if data[-1:] == b"\n" else b""

    def _rest(self, first: bytes, timeout: float) -> bytes:
        # A long reply (evalAll, list, status) in several reads, all within the call's timeout.
        chunks = [first]
        deadline = time.monotonic() + timeout
        sock = self.sock
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _socket.timeout("timed out")
                self._set_timeout(remaining)
                data = sock.recv(_RECV)
                if not data:
                    raise ConnectionResetError("the daemon closed the connection in the middle of a reply")
                chunks.append(data)
                if data[-1:] == b"\n":
                    return b"".join(chunks)
        except BlockingIOError:
            raise _socket.timeout("timed out") from None

    def close(self) -> None:
        self.sock.close()


class Client:
    """A client of ``guidond`` for threaded programs (gunicorn/uwsgi workers, Celery, scripts).

    Thread-safe: every call takes a connection from a small pool and gives it back, so concurrent
    threads never share one. Evaluation methods never raise by default: when the daemon is down,
    does not answer within ``timeout`` or answers something broken, they return the caller's
    default (``evaluate`` with reason ``ERROR`` and an error code) and log a rate-limited warning on
    the ``guidon`` logger. After a failure, new connections are attempted only after a backoff
    (``backoff_initial`` doubling to ``backoff_max``) so that a down daemon costs callers nothing.
    Fork-safe: a child process never uses its parent's connections.

    Args:
        socket: the daemon's socket; default ``$GUIDON_SOCKET``, else ``/run/guidon/guidon.sock``.
        timeout: seconds each call may take (default 0.1); every method also takes ``timeout=``.
        connect_timeout: seconds a connect may take (default: ``timeout``).
        pool_size: idle connections kept for reuse (default 8). More threads at once get a
            connection of their own, closed when given back beyond this number.
        strict: raise instead of returning defaults: :class:`~guidon.errors.GuidonError`
            subclasses for failures, :class:`~guidon.errors.EvaluationError` for error results.
        backoff_initial, backoff_max: the reconnect delay after a failure, seconds.
        warn_interval: at most one warning per kind of failure (and per flag) in this many seconds.
        logger: where warnings go (default ``logging.getLogger("guidon")``).
    """

    def __init__(
        self,
        socket: Optional[SocketPath] = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: Optional[float] = None,
        pool_size: int = 8,
        strict: bool = False,
        backoff_initial: float = 0.05,
        backoff_max: float = 1.0,
        warn_interval: float = 10.0,
        logger: Optional[logging.Logger] = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.socket_path = socket_path(socket)
        self.timeout = timeout
        self.connect_timeout = connect_timeout if connect_timeout is not None else timeout
        self.pool_size = pool_size
        self.strict = strict
        self._backoff = Backoff(backoff_initial, backoff_max)
        self._warner = Warner(logger or _default_logger, warn_interval)
        # The pool is a list used as a LIFO stack: list.pop() and list.append() are atomic (under
        # the GIL, and per object in free-threaded builds), so taking and returning a connection
        # needs no lock.
        self._idle: List[_Connection] = []
        self._closed = False
        self._pid = os.getpid()
        # is_enabled's request up to the context, and the starts of the replies that need no
        # parsing, per flag (one dict per default value).
        self._bool_prefixes: Dict[bool, Dict[str, Tuple[bytes, bytes, bytes]]] = {True: {}, False: {}}
        register_forkable(self)

    # MARK: - Evaluation (never raises unless strict)

    def evaluate(
        self,
        flag: str,
        context: proto.Context = None,
        default: Any = None,
        type: Optional[str] = None,
        *,
        timeout: Optional[float] = None,
    ) -> EvaluationResult:
        """Evaluates one flag.

        Args:
            flag: the flag key.
            context: the evaluation context (``targetingKey`` plus any attributes).
            default: the value to serve when the flag is disabled, has no default variant, or
                anything fails; omitted from the request when ``None``.
            type: ``"boolean"``, ``"string"``, ``"integer"``, ``"float"`` or ``"object"``: the
                daemon answers ``TYPE_MISMATCH`` (and the default) when the value is of another
                type. ``default``, when given, must be of that type.
        """
        try:
            line = self._request(proto.eval_request(flag, context, default, type), timeout)
            result = proto.eval_result(proto.parse_reply(line), flag, default)
        except GuidonError as error:
            return self._failed(flag, default, error)
        if result.error_code is not None:
            self._evaluation_problem(result)
        return result

    def is_enabled(
        self,
        flag: str,
        context: proto.Context = None,
        default: bool = False,
        *,
        timeout: Optional[float] = None,
    ) -> bool:
        """Whether a boolean flag is on for this context; ``default`` when it cannot be told."""
        default = bool(default)
        try:
            prefixes = self._bool_prefixes[default]
            cached = prefixes.get(flag)
            if cached is None:
                cached = prefixes[flag] = proto.boolean_prefixes(flag, default)
                if len(prefixes) > 4096:  # flag keys come from code; bound it anyway
                    prefixes.clear()
            request, true_reply, false_reply = cached
            ctx = b"{}" if context is None else proto.encode_context(context)
            line = self._request(request + ctx + b"}\n", timeout)
            # The common reply is read without parsing it: members come in the order PROTOCOL.md
            # §3.1 fixes, so it starts with the flag and a value; one without "errorCode" is no
            # error. (json.loads of a typical 260-byte reply costs ten times this; measured in
            # docs/python-client.md.) Anything else is parsed in full.
            if b'"errorCode":' not in line:
                if line.startswith(true_reply):
                    return True
                if line.startswith(false_reply):
                    return False
            obj = proto.parse_reply(line)
        except GuidonError as error:
            return self._failed(flag, default, error).value  # type: ignore[no-any-return]
        except TypeError:  # an unhashable flag "key"
            failure = InvalidRequestError(f"flag must be a string, not {type(flag).__name__}")
            return self._failed(str(flag), default, failure).value  # type: ignore[no-any-return]
        if "errorCode" in obj:
            self._evaluation_problem(proto.eval_result(obj, flag, default))
        value = obj.get("value", default)
        return value if value is True or value is False else default

    def variant(
        self,
        flag: str,
        context: proto.Context = None,
        default: Optional[str] = None,
        *,
        timeout: Optional[float] = None,
    ) -> Optional[str]:
        """The name of the variant served (for A/B tests), ``default`` when none was."""
        result = self.evaluate(flag, context, timeout=timeout)
        return result.variant if result.variant is not None else default

    def evaluate_many(
        self,
        flags: Sequence[str],
        context: proto.Context = None,
        default: Any = None,
        type: Optional[str] = None,
        *,
        timeout: Optional[float] = None,
    ) -> List[EvaluationResult]:
        """Evaluates several flags in one request: one round trip, all from one version of the
        flag file. Results are in the order asked (repeats included); ``type`` and ``default``
        apply to each."""
        flags = list(flags)
        try:
            line = self._request(proto.eval_many_request(flags, context, default, type), timeout)
            results = proto.eval_many_results(proto.parse_reply(line), flags, default)
        except GuidonError as error:
            if self.strict:
                raise
            self._warn_failure(error, ",".join(flags[:3]))
            return error_results(flags, default, error)
        for result in results:
            if result.error_code is not None:
                self._evaluation_problem(result)
        return results

    def evaluate_all(
        self, context: proto.Context = None, *, timeout: Optional[float] = None
    ) -> Dict[str, EvaluationResult]:
        """Every flag in the file for this context (key → result, in document order), without
        type checks or defaults; disabled flags have reason ``DISABLED`` and no value. ``{}`` when
        the daemon cannot be asked."""
        try:
            line = self._request(proto.eval_all_request(context), timeout)
            return proto.eval_all_results(proto.parse_reply(line))
        except GuidonError as error:
            if self.strict:
                raise
            self._warn_failure(error, "evalAll")
            return {}

    # MARK: - Usage limits (these raise GuidonError)

    def consume(
        self,
        feature: str,
        context: proto.Context = None,
        *,
        amount: int = 1,
        idempotency_key: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> ConsumeResult:
        """Counts ``amount`` against the metered ``feature``'s limits for the context's tenant
        (``tenantId``; the user is ``targetingKey``), atomically, and says whether to go ahead
        (PROTOCOL.md §3.12). A repeat with the same ``idempotency_key`` within 24 hours gets the
        first answer again. Raises :class:`~guidon.errors.GuidonError` when the daemon cannot
        answer or refuses the request (an unknown feature, no tenant): a caller decides itself
        whether that means go or stop."""
        payload = proto.consume_request(feature, context, amount, idempotency_key)
        # Sent again on a new connection only when the daemon cannot have counted it (or the key makes it safe).
        line = self._request(payload, timeout, retry=idempotency_key is not None)
        return ConsumeResult.from_reply(proto.parse_reply(line))

    def usage(self, feature: str, context: proto.Context = None, *, timeout: Optional[float] = None) -> FeatureUsage:
        """How much of ``feature``'s limits the context's tenant (and user) has used, counting
        nothing (PROTOCOL.md §3.13)."""
        return self._call(proto.usage_request(feature, context), FeatureUsage.from_reply, timeout)

    def usage_all(self, context: proto.Context = None, *, timeout: Optional[float] = None) -> List[FeatureUsage]:
        """Every metered feature's usage for the context's tenant (and user)."""
        return self._call(proto.usage_request(None, context), FeatureUsage.all_from_reply, timeout)

    # MARK: - Management (these raise GuidonError)

    def ping(self, *, timeout: Optional[float] = None) -> PingResult:
        """The health check: raises :class:`~guidon.errors.GuidonError` when the daemon does not
        answer."""
        return self._call(proto.PING, PingResult.from_reply, timeout)

    def status(self, *, timeout: Optional[float] = None) -> Status:
        """What the daemon serves, since when, and how its last reload went."""
        return self._call(proto.STATUS, Status.from_reply, timeout)

    def entitlements(self, tenant: Union[str, int], *, timeout: Optional[float] = None) -> TenantEntitlements:
        """What ``tenant`` has: every feature's value, whether it is entitled and why (guidond
        started with ``--entitlements``). An unknown tenant is ``found=False`` with every default.
        Raises :class:`~guidon.errors.GuidonError` (``NOT_FOUND`` when no entitlements file is
        served, ``INVALID_REQUEST`` for a tenant that is not a string or an integer)."""
        return self._call(proto.entitlements_request(tenant), TenantEntitlements.from_reply, timeout)

    def tenants(
        self,
        *,
        after: Optional[str] = None,
        limit: Optional[int] = None,
        plan: Optional[str] = None,
        status: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> TenantPage:
        """A page of the tenants (document order): ``limit`` 1–1000 (default 100), ``after`` the
        previous page's ``next``; filters ``plan`` and ``status``. Raises
        :class:`~guidon.errors.GuidonError` (``INVALID_REQUEST`` for a bad value or a cursor that
        names no tenant any more)."""
        return self._call(proto.tenants_request(after, limit, plan, status), TenantPage.from_reply, timeout)

    def list_flags(self, *, timeout: Optional[float] = None) -> FlagList:
        """Every flag with its state, variants, default variant and metadata."""
        return self._call(proto.LIST, FlagList.from_reply, timeout)

    def watch(
        self,
        *,
        reconnect: bool = True,
        on_connect: Optional[OnConnect] = None,
        on_disconnect: Optional[OnDisconnect] = None,
    ) -> Watch:
        """Subscribes to configuration changes on a connection of its own (see :class:`Watch`).
        Raises :class:`~guidon.errors.GuidonError` if the first subscription fails."""
        return Watch(self, reconnect=reconnect, on_connect=on_connect, on_disconnect=on_disconnect)

    def close(self) -> None:
        """Closes the pooled connections; later calls fail (returning defaults)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __del__(self) -> None:
        # A client usually lives as long as its process; one dropped earlier closes its idle
        # connections quietly (no ResourceWarning for sockets the caller never saw).
        try:
            self._drop_idle()
        except Exception:
            pass

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(socket={self.socket_path!r}, timeout={self.timeout})"

    # MARK: - Internals

    def _call(self, payload: bytes, parse: Callable[[Dict[str, Any]], T], timeout: Optional[float]) -> T:
        """One request of a management operation: how every later operation is added."""
        return parse(proto.parse_reply(self._request(payload, timeout)))

    def _request(self, payload: bytes, timeout: Optional[float], retry: bool = True) -> bytes:
        """Sends one request line on a pooled connection and returns the reply line; raises
        GuidonError (and backs off) when that fails. ``retry=False`` (a ``consume`` without an
        idempotency key): a request the daemon may have received is not sent again."""
        if timeout is None:
            timeout = self.timeout
        if os.getpid() != self._pid:
            # Forked without Python's fork hooks (uWSGI forks workers from C).
            self._reset_after_fork()
        try:
            conn: Optional[_Connection] = self._idle.pop()
        except IndexError:
            conn = None
        if conn is not None:
            try:
                line = conn.request(payload, timeout)
            except _Stale as stale:
                # The daemon restarted (or dropped idle connections): so did every pooled one.
                conn.close()
                self._drop_idle()
                if stale.delivered and not retry:
                    raise GuidonConnectionError(
                        "the daemon closed the connection after the request was sent (it may have been carried out); "
                        "send it again with an idempotency key to be sure"
                    ) from None
            except BaseException as error:
                conn.close()
                raise self._transport_error(error) from None
            else:
                if line.startswith(b'{"error"'):
                    self._closing_error(conn, line)
                else:
                    self._release(conn)
                return line
        conn = self._connect()
        try:
            line = conn.request(payload, timeout)
        except BaseException as error:
            conn.close()
            raise self._transport_error(error) from None
        if line.startswith(b'{"error"'):
            self._closing_error(conn, line)
            return line
        if self._backoff.delay:
            self._backoff.succeeded()
        self._release(conn)
        return line

    def _closing_error(self, conn: _Connection, line: bytes) -> None:
        """After TOO_LARGE and OVERLOADED the daemon closes the connection: so do we, and an
        overloaded daemon gets the backoff's rest."""
        code = proto.error_code(line)
        if code in proto.CLOSING_ERRORS:
            conn.close()
            if code == ErrorCode.OVERLOADED:
                self._backoff.failed(GuidonConnectionError("the daemon is overloaded", ErrorCode.OVERLOADED))
        else:
            self._release(conn)

    def _connect(self) -> _Connection:
        if self._closed:
            raise GuidonConnectionError("the client is closed")
        backoff = self._backoff
        backoff.check()
        started = time.monotonic()
        try:
            conn = _Connection(self.socket_path, self.connect_timeout, self.timeout)
        except _socket.timeout:
            error: GuidonError = GuidonTimeoutError(f"connecting to {self.socket_path} timed out")
        except OSError as exc:
            error = GuidonConnectionError(f"cannot connect to {self.socket_path}: {exc.strerror or exc}")
        else:
            if backoff.until:
                backoff.connected()
            return conn
        backoff.failed(error, started)
        raise error

    def _transport_error(self, error: BaseException) -> BaseException:
        if isinstance(error, _socket.timeout):
            failure: GuidonError = GuidonTimeoutError(f"no reply from {self.socket_path} within the timeout")
        elif isinstance(error, (OSError, _Stale)):
            failure = GuidonConnectionError(f"connection to {self.socket_path} failed: {error}")
        else:
            return error  # KeyboardInterrupt and the like: the connection is closed, pass it on
        self._backoff.failed(failure)
        return failure

    def _release(self, conn: _Connection) -> None:
        conn.reused = True
        if len(self._idle) < self.pool_size and not self._closed:
            self._idle.append(conn)
        else:
            conn.close()

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _failed(self, flag: str, default: Any, error: GuidonError) -> EvaluationResult:
        if self.strict:
            raise error
        self._warn_failure(error, flag)
        return EvaluationResult.failed(flag, default, error)

    def _warn_failure(self, error: GuidonError, subject: str) -> None:
        # One warning per kind of failure per interval (a down daemon fails every call).
        self._warner.warn(
            error.code, "", "guidon: %s (%s); serving defaults", error.message, subject
        )

    def _evaluation_problem(self, result: EvaluationResult) -> None:
        if self.strict and result.reason == Reason.ERROR:
            raise evaluation_error(result)
        self._warner.warn(
            result.error_code or ErrorCode.GENERAL,
            result.flag,
            "guidon: flag %r: %s: %s",
            result.flag,
            result.error_code,
            result.error_message,
        )

    def _reset_after_fork(self) -> None:
        # In the child: the parent's connections belong to the parent. Closing our copies of their
        # descriptors does not disturb it (no shutdown()).
        self._pid = os.getpid()
        self._drop_idle()
        self._backoff.succeeded()
        self._warner.reset_after_fork()


class Watch(Iterator[ConfigurationChanged]):
    """An iterator of :class:`~guidon.types.ConfigurationChanged` events, on a connection of its
    own. It blocks until the next change. When the connection is lost it reconnects (with backoff)
    and subscribes again; if the version served changed meanwhile it yields one ``resync`` event.
    ``close()`` (from any thread) ends the iteration. Use it as a context manager.

    ``on_connect(config_version)`` is called after each subscription, ``on_disconnect(error)``
    after each loss (both on the iterating thread); with ``reconnect=False`` a loss raises instead.
    """

    def __init__(
        self,
        client: Client,
        *,
        reconnect: bool = True,
        on_connect: Optional[OnConnect] = None,
        on_disconnect: Optional[OnDisconnect] = None,
    ) -> None:
        self._client = client
        self._reconnect = reconnect
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._sock: Optional[_socket.socket] = None
        self._buffer = b""
        self._closed = threading.Event()
        self._backoff = Backoff(client._backoff.initial, max(client._backoff.maximum, 1.0))
        self._keys: frozenset[str] = frozenset()
        self.config_version = ""
        self._subscribe()

    def _subscribe(self) -> Optional[ConfigurationChanged]:
        """Connects, sends ``watch`` and ``list`` in one write, and reads both replies (events that
        arrive in between are of the new version and need no event of their own: the resync covers
        them)."""
        client = self._client
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(max(client.connect_timeout, client.timeout))
            sock.connect(client.socket_path)
            sock.settimeout(max(client.timeout, 5.0))  # list can be long; this is not a page view
            sock.sendall(proto.WATCH + proto.LIST)
            self._sock, self._buffer = sock, b""
            ack = proto.parse_reply(self._line())
            while "event" in ack:
                ack = proto.parse_reply(self._line())
            listing = proto.parse_reply(self._line())
            while "event" in listing:
                listing = proto.parse_reply(self._line())
            sock.settimeout(None)
        except BaseException as error:
            sock.close()
            self._sock = None
            if isinstance(error, GuidonError):
                raise
            if isinstance(error, _socket.timeout):
                raise GuidonTimeoutError(f"subscribing to {client.socket_path} timed out") from None
            if isinstance(error, OSError):
                raise GuidonConnectionError(f"cannot subscribe to {client.socket_path}: {error.strerror or error}") from None
            raise
        flags = FlagList.from_reply(listing)
        keys = frozenset(flags.keys())
        version = str(ack.get("configVersion", flags.config_version))
        event = None
        if self.config_version and version != self.config_version:
            event = ConfigurationChanged(
                version,
                added=tuple(sorted(keys - self._keys)),
                changed=tuple(sorted(keys & self._keys)),
                removed=tuple(sorted(self._keys - keys)),
                resync=True,
            )
        self._keys, self.config_version = keys, version
        self._backoff.succeeded()
        if client._backoff.until:
            client._backoff.connected()  # the daemon answers: the client's callers need not wait
        if self._on_connect is not None:
            self._on_connect(version)
        return event

    def _line(self) -> bytes:
        sock = self._sock
        if sock is None:
            raise GuidonConnectionError("watch connection closed")
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line, self._buffer = self._buffer[: newline + 1], self._buffer[newline + 1 :]
                return line
            data = sock.recv(_RECV)
            if not data:
                raise GuidonConnectionError("the daemon closed the watch connection")
            self._buffer += data

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> ConfigurationChanged:
        while not self._closed.is_set():
            if self._sock is None:
                try:
                    event = self._subscribe()
                except GuidonError as error:
                    if not self._reconnect or self._closed.is_set():
                        raise
                    self._backoff.failed(error)
                    self._closed.wait(self._backoff.delay)
                    continue
                if event is not None:
                    return event
                continue
            try:
                obj = proto.parse_reply(self._line())
            except (OSError, GuidonError) as error:
                self._drop()
                if self._closed.is_set():
                    break
                failure = error if isinstance(error, GuidonError) else GuidonConnectionError(str(error))
                if self._on_disconnect is not None:
                    self._on_disconnect(failure)
                if not self._reconnect:
                    raise failure from None
                continue
            if obj.get("event") == "configurationChanged":
                event = ConfigurationChanged.from_reply(obj)
                self.config_version = event.config_version
                self._keys = (self._keys | set(event.added)) - set(event.removed)
                return event
        raise StopIteration

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def close(self) -> None:
        """Ends the iteration; safe from any thread and more than once."""
        self._closed.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(_socket.SHUT_RDWR)  # wakes a thread blocked in recv
            except OSError:
                pass

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self._drop()
