"""``wrap()``: traced connection pools, pool managers and requests sessions.

- A pool is replaced: ``wrap(pool)`` returns a new pool of a traced subclass of the pool's
  class, built with the same host, port and settings (read back from the pool's attributes
  by the names of its ``__init__`` parameters), with a traced ``ConnectionCls``.
- A ``PoolManager`` (``ProxyManager`` included) is traced in place: it gets its own
  ``pool_classes_by_scheme`` dict (urllib3 shares the module-level one between managers) and
  a traced subclass as its class, so that every pool it makes from now on is traced and
  redirects it follows share one logical request id. Pools it made before are cleared.
- A ``requests.Session`` is traced in place through its adapters' pool managers, proxy
  managers included. requests stays an optional dependency: it is never imported here.
"""

from __future__ import annotations

import inspect
import threading
from time import perf_counter_ns
from typing import Any

from urllib3.connectionpool import HTTPConnectionPool

from .._pipeline.events import ERROR, START, capture_failed, exchange_ids
from .._util import ForkSafeLock
from .connection import TracedConnectionMixin, adopt, same_names
from .tee import Sink


#: Per thread: the logical request the current ``urlopen`` belongs to (``id``: None outside
#: one, 0 inside one before its first attempt, else the first attempt's exchange number), and
#: ``handoff``: set by a traced PoolManager just before it calls a pool's ``urlopen``.
class _Logical(threading.local):
    # Class-level defaults: a missing attribute on a threading.local costs an exception.
    id: int | None = None
    handoff = False


logical = _Logical()


def enter_group(retries: Any, from_manager: bool = False) -> tuple[bool, Any]:
    """Decide whether this ``urlopen`` opens a new logical request; returns (opened, saved).

    A call continues the current group only when urllib3 itself made it: a retry or a
    redirect (its ``Retry`` has a history) or a traced PoolManager handing the request to a
    pool. Any other call -- e.g. one made from inside a body generator -- is a new request.
    """
    current = logical.id
    handoff = logical.handoff
    if handoff:
        logical.handoff = False
    if current is not None and (handoff or getattr(retries, "history", None)):
        if from_manager:
            logical.handoff = True
        return False, None
    logical.id = 0
    if from_manager:
        logical.handoff = True
    return True, current


def leave_group(opened: bool, saved: Any) -> None:
    """Undo :func:`enter_group`."""
    logical.handoff = False
    if opened:
        logical.id = saved


# Logical requests: every attempt (retry, redirect) is an exchange of its own; attempts of
# one logical request share the first attempt's id. urllib3 2.x passes ``retries`` to
# ``_make_request``, and its history tells urllib3's own retries and redirects (history not
# empty: same logical request) from a new request -- no extra hook needed. urllib3 1.26 does
# not; there the traced pool's and manager's ``urlopen`` mark the logical request on the
# thread (see ``enter_group``).
_RETRIES_SEEN = "retries" in inspect.signature(HTTPConnectionPool._make_request).parameters


def start_exchange(pool: Any, tracer: Sink, conn: Any, method: str, url: str, retries: Any) -> None:
    """Open an exchange for one attempt on ``conn`` (which is made to record first)."""
    try:
        if not adopt(conn):
            return
        ex = next(exchange_ids)
        group = logical.id
        if _RETRIES_SEEN:
            if group is None or retries is None or not retries.history:
                logical.id = group = ex
        elif group == 0:
            logical.id = group = ex
        elif group is None:
            group = ex
        prev = conn._zl_ex
        conn._zl_ex = ex
        conn._zl_sink = tracer
        start = perf_counter_ns()
        tracer._put((START, ex, prev, group, start, pool.scheme, pool.host, pool.port, method, url))
    except Exception as e:
        capture_failed("pool.make_request", e)


class TracedPoolMixin:
    """Mixed in front of a pool class: traced connections, exchange start, request errors."""

    _zl_tracer: Sink | None = None

    def _zl_start(self, conn: Any, method: str, url: str, retries: Any) -> None:
        # One call per attempt: the exchange starts here, before any byte is sent (and before
        # an HTTPS connection is made, so a refused connection is an exchange too).
        tracer = self._zl_tracer
        if tracer is None:
            return
        start_exchange(self, tracer, conn, method, url, retries)

    def _make_request(self, conn: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        self._zl_start(conn, method, url, kwargs.get("retries"))
        try:
            return super()._make_request(conn, method, url, *args, **kwargs)  # type: ignore[misc]
        except BaseException as exc:
            _request_failed(conn, exc)
            raise

    if not _RETRIES_SEEN:  # urllib3 1.26

        def urlopen(self, *args: Any, **kwargs: Any) -> Any:
            opened, saved = enter_group(_retries_arg(args, kwargs))
            try:
                return super().urlopen(*args, **kwargs)  # type: ignore[misc]
            finally:
                leave_group(opened, saved)


def _request_failed(conn: Any, exc: BaseException) -> None:
    # Only a connection zltrace made record: anything else (a test's mock, whose every
    # attribute exists) is the app's object and is left untouched.
    if not isinstance(conn, TracedConnectionMixin):
        return
    sink = conn._zl_sink
    if sink is not None:
        try:
            sink._put((ERROR, conn._zl_ex, exc, perf_counter_ns()))
        except Exception as e:
            capture_failed("pool.make_request", e)


def _make_request_explicit(
    self: Any,
    conn: Any,
    method: str,
    url: str,
    body: Any = None,
    headers: Any = None,
    retries: Any = None,
    timeout: Any = None,
    chunked: bool = False,
    response_conn: Any = None,
    preload_content: bool = True,
    decode_content: bool = True,
    enforce_content_length: bool = True,
) -> Any:
    """``TracedPoolMixin._make_request`` for pools with urllib3 2.x's own signature.

    The arguments are passed on by position: re-packing them through ``*args, **kwargs``
    costs several times as much on every request (``bench/README.md``, micro-measurements).
    The defaults are urllib3's own (set below).
    """
    self._zl_start(conn, method, url, retries)
    try:
        return super(TracedPoolMixin, self)._make_request(
            conn,
            method,
            url,
            body,
            headers,
            retries,
            timeout,
            chunked,
            response_conn,
            preload_content,
            decode_content,
            enforce_content_length,
        )
    except BaseException as exc:
        _request_failed(conn, exc)
        raise


_STOCK_MAKE_REQUEST: Any = HTTPConnectionPool._make_request
_EXPLICIT_PARAMS = tuple(inspect.signature(_make_request_explicit).parameters)


def _has_stock_make_request(base: type[Any]) -> bool:
    """Whether ``base._make_request`` takes exactly urllib3 2.x's parameters and defaults
    (then its traced class forwards them by position)."""
    fn = getattr(base, "_make_request", None)
    if fn is _STOCK_MAKE_REQUEST:
        return _STOCK_EXPLICIT
    try:
        params = tuple(inspect.signature(fn).parameters)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return (
        _STOCK_EXPLICIT
        and params == _EXPLICIT_PARAMS
        and getattr(fn, "__defaults__", None) == _STOCK_MAKE_REQUEST.__defaults__
    )


# urllib3 1.26 (or a future signature): every traced pool takes the generic path.
_STOCK_EXPLICIT = tuple(inspect.signature(_STOCK_MAKE_REQUEST).parameters) == _EXPLICIT_PARAMS
if _STOCK_EXPLICIT:
    _make_request_explicit.__defaults__ = _STOCK_MAKE_REQUEST.__defaults__


class TracedManagerMixin:
    """Mixed in front of a PoolManager class: tracer for new pools (and, on 1.26, logical ids)."""

    _zl_tracer: Sink | None = None

    def _new_pool(self, *args: Any, **kwargs: Any) -> Any:
        pool = super()._new_pool(*args, **kwargs)  # type: ignore[misc]
        if isinstance(pool, TracedPoolMixin):
            pool._zl_tracer = self._zl_tracer
        return pool

    if not _RETRIES_SEEN:  # urllib3 1.26

        def urlopen(self, *args: Any, **kwargs: Any) -> Any:
            opened, saved = enter_group(kwargs.get("retries"), from_manager=True)
            try:
                return super().urlopen(*args, **kwargs)  # type: ignore[misc]
            finally:
                leave_group(opened, saved)


def _retries_arg(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # urlopen(method, url, body, headers, retries, ...): urllib3 recurses positionally.
    if "retries" in kwargs:
        return kwargs["retries"]
    return args[4] if len(args) > 4 else None


_lock = ForkSafeLock()

_pool_classes: dict[type[Any], type[Any]] = {}
_manager_classes: dict[type[Any], type[Any]] = {}
_adapter_classes: dict[type[Any], type[Any]] = {}


def _subclass(
    cache: dict[type[Any], type[Any]], mixin: type[Any], base: type[Any], extra: dict[str, Any]
) -> type[Any]:
    if issubclass(base, mixin):
        return base
    with _lock:
        cls = cache.get(base)
        if cls is None:
            cls = same_names(type(base.__name__, (mixin, base), extra), base)
            cache[base] = cls
        return cls


def traced_pool_class(base: type[Any]) -> type[Any]:
    """The traced subclass of pool class ``base`` (cached)."""
    extra: dict[str, Any] = {}
    if _has_stock_make_request(base):
        extra["_make_request"] = _make_request_explicit
    return _subclass(_pool_classes, TracedPoolMixin, base, extra)


# Pool __init__ parameters that are stored under another attribute name.
_POOL_ATTRS = {
    "_proxy": "proxy",
    "_proxy_headers": "proxy_headers",
    "_proxy_config": "proxy_config",
}


def _init_params(base: type[Any]) -> list[str]:
    """The named parameters a pool class's construction takes: those of each ``__init__``
    down the MRO while they pass ``*args``/``**kwargs`` on (a host library's subclass that
    only forwards them, e.g. elastic-transport's, still gets urllib3's own)."""
    names: list[str] = []
    for klass in base.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        forwards = False
        for name, param in inspect.signature(init).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                forwards = True
            elif name != "self" and name not in names:
                names.append(name)
        if not forwards:
            break
    return names


def _wrap_pool(pool: Any, tracer: Sink) -> Any:
    if isinstance(pool, TracedPoolMixin) and pool._zl_tracer is tracer:
        return pool
    base = type(pool)
    if isinstance(pool, TracedPoolMixin):
        base = _untraced_base(base, TracedPoolMixin)
    cls = traced_pool_class(base)
    kwargs: dict[str, Any] = {}
    for name in _init_params(base):
        if name == "maxsize":
            q = getattr(pool, "pool", None)
            kwargs[name] = q.maxsize if q is not None else 1
        elif hasattr(pool, _POOL_ATTRS.get(name, name)):
            kwargs[name] = getattr(pool, _POOL_ATTRS.get(name, name))
    conn_kw = dict(getattr(pool, "conn_kw", {}))
    if "_proxy_config" not in kwargs and getattr(pool, "proxy_config", None) is not None:
        # HTTPSConnectionPool passes it to its base through **conn_kw.
        conn_kw["_proxy_config"] = pool.proxy_config
    new = cls(**kwargs, **conn_kw)
    own_conn_cls = pool.__dict__.get("ConnectionCls")
    if own_conn_cls is not None:
        new.ConnectionCls = own_conn_cls
    new._zl_tracer = tracer
    return new


def _wrap_manager(manager: Any, tracer: Sink) -> Any:
    if isinstance(manager, TracedManagerMixin) and manager._zl_tracer is tracer:
        return manager
    manager.pool_classes_by_scheme = {
        scheme: traced_pool_class(cls) for scheme, cls in manager.pool_classes_by_scheme.items()
    }
    manager.__class__ = _subclass(_manager_classes, TracedManagerMixin, type(manager), {})
    manager._zl_tracer = tracer
    manager.clear()  # pools made before wrap() are untraced (or traced by another tracer)
    return manager


class TracedAdapterMixin:
    """Mixed in front of a requests ``HTTPAdapter``: proxy managers it makes are traced."""

    _zl_tracer: Sink | None = None

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)  # type: ignore[misc]
        if self._zl_tracer is not None:
            _wrap_manager(self.poolmanager, self._zl_tracer)  # type: ignore[attr-defined]

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(*args, **kwargs)  # type: ignore[misc]
        if self._zl_tracer is not None:
            _wrap_manager(manager, self._zl_tracer)
        return manager

    def __reduce_ex__(self, protocol: Any) -> Any:
        # The traced class is made at run time and a tracer cannot be pickled: a pickled
        # session comes back as its plain, untraced self (wrap it again after loading).
        base = _untraced_base(type(self), TracedAdapterMixin)
        return (_rebuild_adapter, (base, self.__getstate__()))  # type: ignore[attr-defined]


def _untraced_base(cls: type[Any], mixin: type[Any]) -> type[Any]:
    return next(c for c in cls.__mro__ if not issubclass(c, mixin))


def _rebuild_adapter(base: type[Any], state: Any) -> Any:
    adapter: Any = object.__new__(base)
    adapter.__setstate__(state)
    return adapter


def _is_requests_session(target: Any) -> bool:
    return any(
        c.__module__.startswith("requests.") and c.__name__ == "Session"
        for c in type(target).__mro__
    )


_session_classes: dict[type[Any], type[Any]] = {}


class TracedSessionMixin:
    """Mixed in front of a requests ``Session``: adapters mounted later are traced too."""

    _zl_tracer: Sink | None = None

    def mount(self, prefix: str, adapter: Any) -> None:
        if self._zl_tracer is not None:
            _wrap_adapter(adapter, self._zl_tracer)
        super().mount(prefix, adapter)  # type: ignore[misc]

    def __reduce_ex__(self, protocol: Any) -> Any:
        # As for the adapter: a pickled session comes back untraced.
        base = _untraced_base(type(self), TracedSessionMixin)
        return (_rebuild_adapter, (base, self.__getstate__()))  # type: ignore[attr-defined]


def _wrap_adapter(adapter: Any, tracer: Sink) -> None:
    manager = getattr(adapter, "poolmanager", None)
    if manager is None:
        return
    adapter.__class__ = _subclass(_adapter_classes, TracedAdapterMixin, type(adapter), {})
    adapter._zl_tracer = tracer
    _wrap_manager(manager, tracer)
    for proxy_manager in getattr(adapter, "proxy_manager", {}).values():
        _wrap_manager(proxy_manager, tracer)


def _wrap_session(session: Any, tracer: Sink) -> Any:
    for adapter in session.adapters.values():
        _wrap_adapter(adapter, tracer)
    session.__class__ = _subclass(_session_classes, TracedSessionMixin, type(session), {})
    session._zl_tracer = tracer
    return session
