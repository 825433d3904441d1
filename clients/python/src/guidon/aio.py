"""The asyncio client: the same API as :class:`guidon.Client`, with ``await``.

Connections are asyncio Unix streams kept in a pool of their own per event loop; each call is
bounded by ``asyncio.wait_for``. Evaluation never raises by default.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

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

__all__ = ["AsyncClient", "AsyncWatch"]

T = TypeVar("T")

# Replies (evalAll, list) can be far longer than asyncio's default 64 KiB line limit.
_LINE_LIMIT = 64 * 1024 * 1024


class _Stale(Exception):
    def __init__(self, delivered: bool = True) -> None:
        super().__init__()
        self.delivered = delivered


class _Connection:
    __slots__ = ("reader", "writer", "reused")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False

    async def request(self, payload: bytes) -> bytes:
        writer = self.writer
        if self.reused and (self.reader.at_eof() or writer.transport.is_closing()):
            raise _Stale(False)  # closed before anything was sent
        try:
            writer.write(payload)
            if writer.transport.get_write_buffer_size():
                await writer.drain()
            line = await self.reader.readline()
        except (BrokenPipeError, ConnectionResetError):
            if self.reused:
                raise _Stale() from None
            raise
        if line[-1:] != b"\n":
            if not line and self.reused:
                raise _Stale()
            raise ConnectionResetError("the daemon closed the connection without a complete reply")
        return line

    def close(self) -> None:
        try:
            self.writer.close()
        except RuntimeError:  # its event loop is closed
            pass


class AsyncClient:
    """A client of ``guidond`` for asyncio programs (FastAPI, aiohttp, bot frameworks).

    Takes the same arguments as :class:`guidon.Client`. Safe to share between tasks: each call takes
    a connection from a pool (per event loop) and gives it back. Evaluation methods never raise by
    default; ``ping``, ``status``, ``list_flags`` and ``watch`` raise
    :class:`~guidon.errors.GuidonError`.
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
        self._idle: List[_Connection] = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._closed = False
        self._pid = os.getpid()
        self._bool_prefixes: Dict[bool, Dict[str, Tuple[bytes, bytes, bytes]]] = {True: {}, False: {}}
        register_forkable(self)

    # MARK: - Evaluation (never raises unless strict)

    async def evaluate(
        self,
        flag: str,
        context: proto.Context = None,
        default: Any = None,
        type: Optional[str] = None,
        *,
        timeout: Optional[float] = None,
    ) -> EvaluationResult:
        """Evaluates one flag (see :meth:`guidon.Client.evaluate`)."""
        try:
            line = await self._request(proto.eval_request(flag, context, default, type), timeout)
            result = proto.eval_result(proto.parse_reply(line), flag, default)
        except GuidonError as error:
            return self._failed(flag, default, error)
        if result.error_code is not None:
            self._evaluation_problem(result)
        return result

    async def is_enabled(
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
                if len(prefixes) > 4096:
                    prefixes.clear()
            request, true_reply, false_reply = cached
            ctx = b"{}" if context is None else proto.encode_context(context)
            line = await self._request(request + ctx + b"}\n", timeout)
            # The common reply needs no parsing (see Client.is_enabled).
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

    async def variant(
        self,
        flag: str,
        context: proto.Context = None,
        default: Optional[str] = None,
        *,
        timeout: Optional[float] = None,
    ) -> Optional[str]:
        """The name of the variant served, ``default`` when none was."""
        result = await self.evaluate(flag, context, timeout=timeout)
        return result.variant if result.variant is not None else default

    async def evaluate_many(
        self,
        flags: Sequence[str],
        context: proto.Context = None,
        default: Any = None,
        type: Optional[str] = None,
        *,
        timeout: Optional[float] = None,
    ) -> List[EvaluationResult]:
        """Several flags in one request, from one version of the flag file, in the order asked."""
        flags = list(flags)
        try:
            line = await self._request(proto.eval_many_request(flags, context, default, type), timeout)
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

    async def evaluate_all(
        self, context: proto.Context = None, *, timeout: Optional[float] = None
    ) -> Dict[str, EvaluationResult]:
        """Every flag for this context; ``{}`` when the daemon cannot be asked."""
        try:
            line = await self._request(proto.eval_all_request(context), timeout)
            return proto.eval_all_results(proto.parse_reply(line))
        except GuidonError as error:
            if self.strict:
                raise
            self._warn_failure(error, "evalAll")
            return {}

    # MARK: - Management (these raise GuidonError)

    async def consume(
        self,
        feature: str,
        context: proto.Context = None,
        *,
        amount: int = 1,
        idempotency_key: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> ConsumeResult:
        """:meth:`guidon.Client.consume`, awaited."""
        payload = proto.consume_request(feature, context, amount, idempotency_key)
        line = await self._request(payload, timeout, retry=idempotency_key is not None)
        return ConsumeResult.from_reply(proto.parse_reply(line))

    async def usage(self, feature: str, context: proto.Context = None, *, timeout: Optional[float] = None) -> FeatureUsage:
        """:meth:`guidon.Client.usage`, awaited."""
        return await self._call(proto.usage_request(feature, context), FeatureUsage.from_reply, timeout)

    async def usage_all(self, context: proto.Context = None, *, timeout: Optional[float] = None) -> List[FeatureUsage]:
        """:meth:`guidon.Client.usage_all`, awaited."""
        return await self._call(proto.usage_request(None, context), FeatureUsage.all_from_reply, timeout)

    async def ping(self, *, timeout: Optional[float] = None) -> PingResult:
        return await self._call(proto.PING, PingResult.from_reply, timeout)

    async def status(self, *, timeout: Optional[float] = None) -> Status:
        return await self._call(proto.STATUS, Status.from_reply, timeout)

    async def entitlements(self, tenant: Union[str, int], *, timeout: Optional[float] = None) -> TenantEntitlements:
        """What ``tenant`` has: every feature's value, whether it is entitled and why (guidond
        started with ``--entitlements``). An unknown tenant is ``found=False`` with every default.
        Raises :class:`~guidon.errors.GuidonError` (``NOT_FOUND`` when no entitlements file is
        served, ``INVALID_REQUEST`` for a tenant that is not a string or an integer)."""
        return await self._call(proto.entitlements_request(tenant), TenantEntitlements.from_reply, timeout)

    async def tenants(
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
        return await self._call(proto.tenants_request(after, limit, plan, status), TenantPage.from_reply, timeout)

    async def list_flags(self, *, timeout: Optional[float] = None) -> FlagList:
        return await self._call(proto.LIST, FlagList.from_reply, timeout)

    def watch(
        self,
        *,
        reconnect: bool = True,
        on_connect: Optional[OnConnect] = None,
        on_disconnect: Optional[OnDisconnect] = None,
    ) -> AsyncWatch:
        """``async for event in client.watch(): …`` (see :class:`AsyncWatch`)."""
        return AsyncWatch(self, reconnect=reconnect, on_connect=on_connect, on_disconnect=on_disconnect)

    async def close(self) -> None:
        """Closes the pooled connections; later calls fail (returning defaults)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            try:
                await conn.writer.wait_closed()
            except (OSError, RuntimeError):
                pass

    def __del__(self) -> None:
        try:
            self._drop_idle()
        except Exception:
            pass

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # MARK: - Internals

    async def _call(self, payload: bytes, parse: Callable[[Dict[str, Any]], T], timeout: Optional[float]) -> T:
        return parse(proto.parse_reply(await self._request(payload, timeout)))

    async def _request(self, payload: bytes, timeout: Optional[float], retry: bool = True) -> bytes:
        if timeout is None:
            timeout = self.timeout
        if os.getpid() != self._pid:
            self._reset_after_fork()
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Streams belong to the loop that made them (tests and asyncio.run make new loops).
            self._drop_idle()
            self._loop = loop
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = None
        if conn is not None:
            try:
                line = await asyncio.wait_for(conn.request(payload), timeout)
            except _Stale as stale:
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
                self._release(conn)
                return line
        conn = await self._connect()
        try:
            line = await asyncio.wait_for(conn.request(payload), timeout)
        except BaseException as error:
            conn.close()
            raise self._transport_error(error) from None
        if self._backoff.delay:
            self._backoff.succeeded()
        self._release(conn)
        return line

    async def _connect(self) -> _Connection:
        if self._closed:
            raise GuidonConnectionError("the client is closed")
        backoff = self._backoff
        backoff.check()
        started = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.socket_path, limit=_LINE_LIMIT), self.connect_timeout
            )
        except asyncio.TimeoutError:
            error: GuidonError = GuidonTimeoutError(f"connecting to {self.socket_path} timed out")
        except OSError as exc:
            error = GuidonConnectionError(f"cannot connect to {self.socket_path}: {exc.strerror or exc}")
        else:
            if backoff.until:
                backoff.connected()
            return _Connection(reader, writer)
        backoff.failed(error, started)
        raise error

    def _transport_error(self, error: BaseException) -> BaseException:
        if isinstance(error, asyncio.TimeoutError):
            failure: GuidonError = GuidonTimeoutError(f"no reply from {self.socket_path} within the timeout")
        elif isinstance(error, (OSError, _Stale, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)):
            failure = GuidonConnectionError(f"connection to {self.socket_path} failed: {error!r}")
        else:
            return error  # CancelledError and the like: the connection is closed, pass it on
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
        self._warner.warn(error.code, "", "guidon: %s (%s); serving defaults", error.message, subject)

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
        # The parent's event loop and streams do not belong to the child: forget them (closing a
        # transport would need the parent's loop).
        self._pid = os.getpid()
        self._idle = []
        self._loop = None
        self._backoff.succeeded()
        self._warner.reset_after_fork()


class AsyncWatch:
    """``async for event in client.watch()``: configuration changes on a connection of its own,
    reconnecting (with backoff) and yielding one ``resync`` event when the version changed while
    disconnected; ``await watch.aclose()`` ends it. The first subscription happens at the first
    iteration (``await watch.start()`` does it eagerly and raises if it fails)."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        reconnect: bool = True,
        on_connect: Optional[OnConnect] = None,
        on_disconnect: Optional[OnDisconnect] = None,
    ) -> None:
        self._client = client
        self._reconnect = reconnect
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._streams: Optional[Tuple[asyncio.StreamReader, asyncio.StreamWriter]] = None
        self._closed = False
        self._started = False
        self._backoff = Backoff(client._backoff.initial, max(client._backoff.maximum, 1.0))
        self._keys: frozenset[str] = frozenset()
        self.config_version = ""

    async def start(self) -> AsyncWatch:
        if not self._started:
            await self._subscribe()
            self._started = True
        return self

    async def _subscribe(self) -> Optional[ConfigurationChanged]:
        client = self._client
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(client.socket_path, limit=_LINE_LIMIT),
                max(client.connect_timeout, client.timeout),
            )
        except asyncio.TimeoutError:
            raise GuidonTimeoutError(f"subscribing to {client.socket_path} timed out") from None
        except OSError as error:
            raise GuidonConnectionError(f"cannot subscribe to {client.socket_path}: {error.strerror or error}") from None
        try:
            writer.write(proto.WATCH + proto.LIST)

            async def replies() -> Tuple[Dict[str, Any], Dict[str, Any]]:
                ack = proto.parse_reply(await reader.readline())
                while "event" in ack:
                    ack = proto.parse_reply(await reader.readline())
                listing = proto.parse_reply(await reader.readline())
                while "event" in listing:
                    listing = proto.parse_reply(await reader.readline())
                return ack, listing

            ack, listing = await asyncio.wait_for(replies(), max(client.timeout, 5.0))
        except BaseException as error:
            writer.close()
            if isinstance(error, asyncio.TimeoutError):
                raise GuidonTimeoutError(f"subscribing to {client.socket_path} timed out") from None
            if isinstance(error, OSError):
                raise GuidonConnectionError(f"subscribing to {client.socket_path} failed: {error}") from None
            raise
        self._streams = (reader, writer)
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

    def __aiter__(self) -> AsyncIterator[ConfigurationChanged]:
        return self

    async def __anext__(self) -> ConfigurationChanged:
        await self.start()
        while not self._closed:
            if self._streams is None:
                try:
                    event = await self._subscribe()
                except GuidonError as error:
                    if not self._reconnect or self._closed:
                        raise
                    self._backoff.failed(error)
                    await asyncio.sleep(self._backoff.delay)
                    continue
                if event is not None:
                    return event
                continue
            reader = self._streams[0]
            try:
                line = await reader.readline()
                if not line:
                    raise GuidonConnectionError("the daemon closed the watch connection")
                obj = proto.parse_reply(line)
            except (OSError, ValueError, GuidonError) as error:
                self._drop()
                if self._closed:
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
        raise StopAsyncIteration

    def _drop(self) -> None:
        streams, self._streams = self._streams, None
        if streams is not None:
            streams[1].close()

    async def aclose(self) -> None:
        self._closed = True
        self._drop()

    async def __aenter__(self) -> AsyncWatch:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
