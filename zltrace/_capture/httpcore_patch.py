"""The httpcore(2) front-end's hooks on the HTTP/1.1 connection classes, and its installers.

Rules:
- httpcore and httpcore2 (its fork under another name, with the same layout) are patched
  the same way, each on its own, and only once the app has them: nothing here imports
  either library, except an installer asked to trace that very library.
- Four methods of ``HTTP11Connection`` and of ``AsyncHTTP11Connection`` are wrapped, each
  calling the original: ``__init__`` gives the connection a tap (:mod:`.httpcore_tap`) when a
  process-wide install is active or when the stream already is one (a wrapped client's
  backend tapped it); ``handle_request`` starts an exchange (START) and reports what it
  raises; ``_receive_response_headers`` reports the head; ``_response_closed`` reports the
  end of the response (CLOSE: abandoned, unless the body was complete by its framing).
  A connection without a tap runs the originals with one dict lookup more.
- ERROR is reported before CLOSE (httpcore closes the response before it re-raises), so a
  failed exchange ends as ``error``, never ``abandoned``.
- A CONNECT (a proxy tunnel) is not an exchange of the app.
- HTTP/2 is not recorded: the first such exchange on a traced client warns once with a
  :class:`ZltraceWarning`, and each is counted in ``capture_failures`` (``stats()``).
- Patching is undone exactly (the class attributes as they were) by the installer's undo,
  unless a client was wrapped meanwhile: a wrapped client stays traced for good.
"""

from __future__ import annotations

import importlib
import sys
import threading
import warnings
from time import perf_counter_ns
from types import ModuleType
from typing import Any, Callable

from .._pipeline.events import CLOSE, START, capture_failed, exchange_ids
from ..exceptions import ZltraceError, ZltraceWarning
from .httpcore_tap import AsyncTap, Owner, Tap, _TapBase
from .tee import Sink


class NotRecordedError(ZltraceError, RuntimeError):
    """An exchange zltrace could not record (counted in ``stats()``, never raised to the app)."""


def _start(tap: _TapBase, request: Any) -> bool:
    """Open an exchange on ``tap`` for ``request``; False when it is not one to record."""
    sink = tap.sink
    if sink is None or request.method == b"CONNECT":
        tap.ex = 0
        return False
    try:
        ex = next(exchange_ids)
        url = request.url
        sink._put(
            (
                START,
                ex,
                tap.ex,
                ex,
                perf_counter_ns(),
                url.scheme.decode("ascii"),
                url.host.decode("ascii"),
                url.port,
                request.method.decode("ascii"),
                url.target.decode("latin-1"),
            )
        )
        tap.ex = ex
        tap.body = False
        tap.in_request = True
        return True
    except Exception as e:
        tap.ex = 0
        capture_failed("httpcore.start", e)
        return False


def _closed(tap: _TapBase | None) -> None:
    if tap is not None and tap.ex and not tap.in_request:
        tap._put((CLOSE, tap.ex, perf_counter_ns()), "httpcore.close")


def _failed(tap: _TapBase, exc: BaseException) -> None:
    tap.in_request = False
    tap.error(exc)
    tap._put((CLOSE, tap.ex, perf_counter_ns()), "httpcore.close")


_warned = False


def _http2(stream: Any, lib: _Lib) -> None:
    global _warned
    if not (isinstance(stream, _TapBase) and stream.sink is not None) and lib.owner.sink is None:
        return
    capture_failed("httpcore.http2", NotRecordedError("an HTTP/2 exchange was not recorded"))
    if not _warned:
        _warned = True
        warnings.warn(
            "zltrace records HTTP/1.1 exchanges of httpx/httpcore only: HTTP/2 exchanges are "
            "not recorded (counted in stats()['capture_failures']); create the client with "
            "http2=False to trace it",
            ZltraceWarning,
            stacklevel=2,
        )


def _sync_hooks(lib: _Lib, orig: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    init, handle, head, closed = (
        orig["__init__"],
        orig["handle_request"],
        orig["_receive_response_headers"],
        orig["_response_closed"],
    )

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        stream = self._network_stream
        if isinstance(stream, Tap):
            self._zl_tap = stream
        elif lib.owner.sink is not None:
            self._zl_tap = self._network_stream = Tap(stream, lib.owner)

    def handle_request(self: Any, request: Any) -> Any:
        tap = self.__dict__.get("_zl_tap")
        if tap is None or not _start(tap, request):
            return handle(self, request)
        try:
            response = handle(self, request)
        except BaseException as exc:
            _failed(tap, exc)
            raise
        tap.in_request = False
        return response

    def _receive_response_headers(self: Any, request: Any) -> Any:
        tap = self.__dict__.get("_zl_tap")
        if tap is None or not tap.ex:
            return head(self, request)
        try:
            parsed = head(self, request)
        except BaseException as exc:
            tap.error(exc)
            raise
        tap.head(request.method, parsed, self._h11_state)
        return parsed

    def _response_closed(self: Any) -> None:
        _closed(self.__dict__.get("_zl_tap"))
        closed(self)

    return {
        "__init__": __init__,
        "handle_request": handle_request,
        "_receive_response_headers": _receive_response_headers,
        "_response_closed": _response_closed,
    }


def _async_hooks(lib: _Lib, orig: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    init, handle, head, closed = (
        orig["__init__"],
        orig["handle_async_request"],
        orig["_receive_response_headers"],
        orig["_response_closed"],
    )

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        stream = self._network_stream
        if isinstance(stream, AsyncTap):
            self._zl_tap = stream
        elif lib.owner.sink is not None:
            self._zl_tap = self._network_stream = AsyncTap(stream, lib.owner)

    async def handle_async_request(self: Any, request: Any) -> Any:
        tap = self.__dict__.get("_zl_tap")
        if tap is None or not _start(tap, request):
            return await handle(self, request)
        try:
            response = await handle(self, request)
        except BaseException as exc:
            _failed(tap, exc)
            raise
        tap.in_request = False
        return response

    async def _receive_response_headers(self: Any, request: Any) -> Any:
        tap = self.__dict__.get("_zl_tap")
        if tap is None or not tap.ex:
            return await head(self, request)
        try:
            parsed = await head(self, request)
        except BaseException as exc:
            tap.error(exc)
            raise
        tap.head(request.method, parsed, self._h11_state)
        return parsed

    async def _response_closed(self: Any) -> None:
        _closed(self.__dict__.get("_zl_tap"))
        await closed(self)

    return {
        "__init__": __init__,
        "handle_async_request": handle_async_request,
        "_receive_response_headers": _receive_response_headers,
        "_response_closed": _response_closed,
    }


def _h2_hooks(lib: _Lib, handle: Any, is_async: bool) -> Callable[..., Any]:
    if is_async:

        async def handle_async_request(self: Any, request: Any) -> Any:
            _http2(self._network_stream, lib)
            return await handle(self, request)

        return handle_async_request

    def handle_request(self: Any, request: Any) -> Any:
        _http2(self._network_stream, lib)
        return handle(self, request)

    return handle_request


_MISSING = object()


class _Lib:
    """One library's patch state: the original class attributes and the install's owner."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.owner = Owner(None)  # the process-wide install's sink, None when not installed
        self.saved: list[tuple[type[Any], str, Any]] = []
        self.wrapped = False  # a client was wrapped: keep the hooks for good

    @property
    def patched(self) -> bool:
        return bool(self.saved)

    def patch(self) -> None:
        if self.saved:
            return
        name = self.module.__name__
        sync = importlib.import_module(f"{name}._sync.http11").HTTP11Connection
        asyn = importlib.import_module(f"{name}._async.http11").AsyncHTTP11Connection
        plan: list[tuple[type[Any], dict[str, Callable[..., Any]]]] = []
        plan.append((sync, _sync_hooks(self, {a: getattr(sync, a) for a in _SYNC})))
        plan.append((asyn, _async_hooks(self, {a: getattr(asyn, a) for a in _ASYNC})))
        for mod, cls_name, meth, is_async in _H2:
            try:
                cls = getattr(importlib.import_module(f"{name}.{mod}"), cls_name)
            except ImportError:  # the h2 package is optional for httpcore
                continue
            plan.append((cls, {meth: _h2_hooks(self, getattr(cls, meth), is_async)}))
        for cls, hooks in plan:
            for attr, fn in hooks.items():
                self.saved.append((cls, attr, cls.__dict__.get(attr, _MISSING)))
                fn.__qualname__ = f"{cls.__qualname__}.{attr}"
                setattr(cls, attr, fn)

    def unpatch(self) -> None:
        for cls, attr, value in reversed(self.saved):
            if value is _MISSING:
                delattr(cls, attr)
            else:
                setattr(cls, attr, value)
        self.saved.clear()


_SYNC = ("__init__", "handle_request", "_receive_response_headers", "_response_closed")
_ASYNC = ("__init__", "handle_async_request", "_receive_response_headers", "_response_closed")
_H2 = (
    ("_sync.http2", "HTTP2Connection", "handle_request", False),
    ("_async.http2", "AsyncHTTP2Connection", "handle_async_request", True),
)

_libs: dict[str, _Lib] = {}
_libs_lock = threading.Lock()


def library(name: str, module: ModuleType | None = None) -> _Lib:
    """The patch state of library ``name`` (``httpcore`` or ``httpcore2``), hooks in place."""
    with _libs_lock:
        lib = _libs.get(name)
        if lib is None:
            if module is None:
                module = sys.modules.get(name) or importlib.import_module(name)
            lib = _libs[name] = _Lib(module)
        lib.patch()
        return lib


def _install(name: str, sink: Sink) -> Callable[[], None]:
    lib = library(name)
    owner = Owner(sink)
    lib.owner = owner

    def undo() -> None:
        owner.sink = None  # taps made under this install go quiet
        with _libs_lock:
            if lib.owner is owner:
                lib.owner = Owner(None)
            if not lib.wrapped and lib.owner.sink is None:
                lib.unpatch()

    return undo


def install_httpcore(sink: Sink) -> Callable[[], None]:
    """Trace every HTTP/1.1 exchange of httpcore (httpx) in the process; returns the undo."""
    return _install("httpcore", sink)


def install_httpcore2(sink: Sink) -> Callable[[], None]:
    """Trace every HTTP/1.1 exchange of httpcore2 (httpx2, current anthropic and openai
    SDKs) in the process; returns the undo."""
    return _install("httpcore2", sink)
