"""An OpenFeature provider backed by ``guidond`` (``pip install 'guidon[openfeature]'``).

>>> from openfeature import api
>>> from guidon.openfeature import GuidonProvider
>>> api.set_provider_and_wait(GuidonProvider())
>>> api.get_client().get_boolean_value("new-checkout", False, EvaluationContext("user-42", {"tier": "gold"}))

Written against ``openfeature-sdk`` 0.10. Evaluation problems are raised as the SDK's typed errors
(``FlagNotFoundError``, ``TypeMismatchError``, ``ParseError``, ``GeneralError``), so the SDK
returns the caller's default with the matching error code and runs the error hooks. A background
thread subscribes to the daemon's ``watch`` and emits ``PROVIDER_CONFIGURATION_CHANGED`` for each
change (``flags_changed`` names the flags), ``PROVIDER_ERROR`` when the daemon goes away and
``PROVIDER_READY`` when it is back; ``shutdown()`` stops it.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import (
    ErrorCode as OFErrorCode,
    FlagNotFoundError,
    GeneralError,
    ParseError,
    ProviderNotReadyError,
    TypeMismatchError,
)
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason as OFReason
from openfeature.hook import Hook
from openfeature.provider import AbstractProvider, Metadata

from ._core import DEFAULT_TIMEOUT, SocketPath, logger, register_forkable
from .aio import AsyncClient
from .client import Client, Watch
from .errors import ErrorCode, GuidonError, Reason
from .types import ConfigurationChanged, EvaluationResult

__all__ = ["GuidonProvider"]

ObjectValue = Union[Sequence[FlagValueType], Mapping[str, FlagValueType]]

_REASONS = {reason.value: reason for reason in OFReason}


def _renew_sdk_event_executor() -> None:
    """In a forked child, gives the SDK a new event executor.

    openfeature-sdk 0.10 dispatches events on one module-level ThreadPoolExecutor. Its worker
    threads do not survive fork(), but the executor still counts them as idle, so in a child whose
    parent had dispatched an event (PROVIDER_READY, at least) every later event waits forever in its
    queue: a gunicorn --preload worker would never see PROVIDER_CONFIGURATION_CHANGED. The old
    executor cannot run anything in the child; replacing it can only help.
    """
    try:
        from openfeature import _event_support
    except ImportError:  # pragma: no cover - a later SDK that moved it
        return
    if isinstance(getattr(_event_support, "_event_executor", None), ThreadPoolExecutor):
        _event_support._event_executor = ThreadPoolExecutor(thread_name_prefix="openfeature-event-handler")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_sdk_event_executor)


def context_to_dict(context: Optional[EvaluationContext]) -> Dict[str, Any]:
    """An OpenFeature evaluation context as the daemon's ``context`` object: the attributes plus
    ``targetingKey`` (datetimes are sent as RFC 3339 text)."""
    if context is None:
        return {}
    result = dict(context.attributes)
    if context.targeting_key is not None:
        result["targetingKey"] = context.targeting_key
    return result


class GuidonProvider(AbstractProvider):
    """OpenFeature provider for ``guidond``.

    Args:
        socket: the daemon's socket (default ``$GUIDON_SOCKET``, else ``/run/guidon/guidon.sock``).
        timeout: seconds per evaluation (default 0.1).
        client: a :class:`guidon.Client` to use instead of making one (``socket`` and ``timeout``
            are then ignored); it is not closed by ``shutdown``.
        async_client: likewise for the SDK's ``*_async`` methods (default: one made lazily).
        watch: emit ``PROVIDER_CONFIGURATION_CHANGED`` from the daemon's ``watch`` (default True).
        init_timeout: how long ``initialize`` waits for the daemon before failing (seconds).
    """

    def __init__(
        self,
        socket: Optional[SocketPath] = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        client: Optional[Client] = None,
        async_client: Optional[AsyncClient] = None,
        watch: bool = True,
        init_timeout: float = 2.0,
    ) -> None:
        super().__init__()
        # Not strict: error results carry the daemon's codes, which _details raises as SDK errors.
        self._client = client if client is not None else Client(socket, timeout=timeout)
        self._owns_client = client is None
        self._async_client = async_client
        self._watch_enabled = watch
        self._init_timeout = init_timeout
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._watch: Optional[Watch] = None
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._initialized = False
        self._errored = False
        self._pid = os.getpid()
        register_forkable(self)

    def _reset_after_fork(self) -> None:
        # In a forked child: the parent's watch thread did not come along, and it may have held
        # the lock at the time of the fork. The thread is started again on the next evaluation.
        self._lock = threading.Lock()

    # MARK: - Lifecycle

    def get_metadata(self) -> Metadata:
        return Metadata(name="guidon")

    def get_provider_hooks(self) -> List[Hook]:
        return []

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Waits (up to ``init_timeout``) until the daemon answers; raises ProviderNotReadyError
        otherwise (the SDK then reports PROVIDER_ERROR, and READY once the daemon is reachable)."""
        self._initialized = False
        self._errored = False
        if not self._watch_enabled:
            try:
                self._client.ping(timeout=max(self._init_timeout, self._client.timeout))
            except GuidonError as error:
                raise ProviderNotReadyError(f"guidond at {self._client.socket_path}: {error}") from None
            self._initialized = True
            return
        self._start_watching()
        if not self._connected.wait(self._init_timeout):
            self._errored = True
            self._initialized = True
            raise ProviderNotReadyError(
                f"guidond at {self._client.socket_path} did not answer within {self._init_timeout} s"
            )
        self._initialized = True

    def shutdown(self) -> None:
        """Stops the watch thread and closes connections; safe to call twice."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
            watch = self._watch
        if watch is not None:
            watch.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._connected.clear()
        self._client._drop_idle()
        if self._async_client is not None:
            self._async_client._drop_idle()

    def _start_watching(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop = threading.Event()
            self._connected.clear()
            thread = threading.Thread(target=self._run_watch, args=(self._stop,), name="guidon-watch", daemon=True)
            self._thread = thread
        thread.start()

    def _run_watch(self, stop: threading.Event) -> None:
        delay = 0.05
        while not stop.is_set():
            try:
                watch = self._client.watch(on_connect=self._on_connect, on_disconnect=self._on_disconnect)
            except GuidonError as error:
                self._on_disconnect(error)
                stop.wait(delay)
                delay = min(delay * 2, 1.0)
                continue
            with self._lock:
                self._watch = watch
                if stop.is_set():
                    watch.close()
            try:
                for event in watch:
                    self._emit_changed(event)
            except Exception:  # never let the thread die silently
                logger.exception("guidon: the watch thread failed; restarting it")
                continue
            finally:
                watch.close()
            break

    def _on_connect(self, config_version: str) -> None:
        self._connected.set()
        if self._initialized and self._errored:
            self._errored = False
            self.emit_provider_ready(ProviderEventDetails(message="guidond is reachable again",
                                                          metadata={"configVersion": config_version}))

    def _on_disconnect(self, error: GuidonError) -> None:
        self._connected.clear()
        if self._initialized and not self._errored and not self._stop.is_set():
            self._errored = True
            self.emit_provider_error(ProviderEventDetails(message=f"guidond: {error}",
                                                          error_code=OFErrorCode.GENERAL))

    def _emit_changed(self, event: ConfigurationChanged) -> None:
        self.emit_provider_configuration_changed(
            ProviderEventDetails(
                flags_changed=list(event.flags),
                message="flags reloaded" if not event.resync else "resynchronised after a reconnect",
                metadata={"configVersion": event.config_version, "resync": event.resync},
            )
        )

    # MARK: - Resolution

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: Optional[EvaluationContext] = None
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, "boolean")

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: Optional[EvaluationContext] = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, "string")

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: Optional[EvaluationContext] = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, "integer")

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: Optional[EvaluationContext] = None
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, "float")

    def resolve_object_details(
        self, flag_key: str, default_value: ObjectValue, evaluation_context: Optional[EvaluationContext] = None
    ) -> FlagResolutionDetails[ObjectValue]:
        return self._resolve(flag_key, default_value, evaluation_context, "object")

    async def resolve_boolean_details_async(
        self, flag_key: str, default_value: bool, evaluation_context: Optional[EvaluationContext] = None
    ) -> FlagResolutionDetails[bool]:
        return await self._resolve_async(flag_key, default_value, evaluation_context, "boolean")

    async def resolve_string_details_async(
        self, flag_key: str, default_value: str, evaluation_context: Optional[EvaluationContext] = None
    ) -> FlagResolutionDetails[str]:
        return await self._resolve_async(flag_key, default_value, evaluation_context, "string")

    async def resolve_integer_details_async(
        self, flag_key: str, default_value: int, evaluation_context: Optional[EvaluationContext] = None
    ) -> FlagResolutionDetails[int]:
        return await self._resolve_async(flag_key, default_value, evaluation_context, "integer")

    async def resolve_float_details_async(
        self, flag_key: str, default_value: float, evaluation_context: Optional[EvaluationContext] = None
    ) -> FlagResolutionDetails[float]:
        return await self._resolve_async(flag_key, default_value, evaluation_context, "float")

    async def resolve_object_details_async(
        self, flag_key: str, default_value: ObjectValue, evaluation_context: Optional[EvaluationContext] = None
    ) -> FlagResolutionDetails[ObjectValue]:
        return await self._resolve_async(flag_key, default_value, evaluation_context, "object")

    def _resolve(
        self, flag: str, default: Any, context: Optional[EvaluationContext], type: str
    ) -> FlagResolutionDetails[Any]:
        if self._watch_enabled and self._pid != os.getpid() and self._initialized:
            self._start_watching()  # a forked worker: the parent's watch thread did not come along
        result = self._client.evaluate(flag, context_to_dict(context), default, type)
        return _details(result, type)

    async def _resolve_async(
        self, flag: str, default: Any, context: Optional[EvaluationContext], type: str
    ) -> FlagResolutionDetails[Any]:
        client = self._async_client
        if client is None:
            client = self._async_client = AsyncClient(self._client.socket_path, timeout=self._client.timeout)
        result = await client.evaluate(flag, context_to_dict(context), default, type)
        return _details(result, type)


def _details(result: EvaluationResult, type: str) -> FlagResolutionDetails[Any]:
    """The SDK's resolution of a result; error results are raised as the SDK's typed errors."""
    if result.reason == Reason.ERROR:
        code, message = result.error_code, result.error_message or ""
        if code == ErrorCode.FLAG_NOT_FOUND:
            raise FlagNotFoundError(message)
        if code == ErrorCode.TYPE_MISMATCH:
            raise TypeMismatchError(message)
        if code == ErrorCode.PARSE_ERROR:
            raise ParseError(message)
        raise GeneralError(f"{code}: {message}" if code != ErrorCode.GENERAL else message)
    value = result.value
    if type == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return FlagResolutionDetails(
        value=value,
        variant=result.variant,
        reason=_REASONS.get(result.reason, result.reason),
        flag_metadata={k: v for k, v in result.metadata.items() if isinstance(v, (bool, int, float, str))},
    )
