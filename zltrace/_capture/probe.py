"""The hook probe: what the caller-thread hooks cost, timed on the thread that asks.

The caller's added time cannot be timed on the caller without adding to it, so the
monitor derives it from this probe, run on the worker (in standard mode, on the writing
thread) every few seconds: the real code of each caller-thread hook, timed against a bare
equivalent, at the interpreter's current speed (CPU contention, frequency scaling).

- Bare equivalents: the traced classes are mixed in front of bases whose ``_make_request``,
  ``send`` and ``begin`` do nothing, so that only the hook's own code is in the difference
  (urllib3's and http.client's work is the same with or without the tracer, and timing it
  too would bury the hooks' cost under header parsing and its noise).
- Private state: the hooks' functions are rebuilt from their own code objects over a copy
  of their module's globals in which the exchange counter, the logical-request
  thread-local and the pending-response thread-local are the probe's own, and their events
  go to a private queue. So a probe takes no exchange numbers, and in standard mode --
  where it runs on an application thread, possibly inside a request -- it cannot disturb
  that thread's logical id or pending response.
- The hooks every exchange goes through once are timed one by one (``FIXED_HOOKS``), and
  the hook of one body read as ``Tee.read`` over an in-memory file minus the file's own
  ``read``. Not in the figures: the time a caller waits for the GIL while the worker holds
  it, the worker waking up, reads of chunk framing, and the allocator (the body ``bytes``
  stay referenced until the worker has encoded them). ``python -m zltrace bench`` measures
  the end-to-end cost.
"""

from __future__ import annotations

import http.client
import inspect
import io
import itertools
import queue
import types
from time import perf_counter_ns
from typing import Any, Callable

from .._pipeline.events import FIXED_HOOKS, HookCosts
from . import connection as _connection
from . import pool as _pool
from . import tee as _tee

__all__ = ["FIXED_HOOKS", "PROBE_ROUNDS", "HookCosts", "probe_hooks"]


class _ProbeSink:
    __slots__ = ("_put",)

    def __init__(self, put: Callable[[tuple[Any, ...]], None]) -> None:
        self._put = put


#: Rounds of each hook per probe (a round times the traced and the bare call once each).
PROBE_ROUNDS = 16


def _rebound(fn: Any, ns: dict[str, Any]) -> Any:
    """``fn``'s own code object over globals ``ns``: the real hook, the probe's state."""
    new = types.FunctionType(fn.__code__, ns, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__qualname__ = fn.__qualname__
    return new


def _probe_class(name: str, traced: type[Any], bare: type[Any], ns: dict[str, Any]) -> type[Any]:
    """``traced`` in front of ``bare``, with ``traced``'s functions rebound over ``ns``.

    The rebound functions keep their closure, so ``super()`` in them still means "after
    ``traced``" -- which is ``bare`` here.
    """
    attrs: dict[str, Any] = {}
    for key, value in vars(traced).items():
        if isinstance(value, types.FunctionType):
            attrs[key] = _rebound(value, ns)
        elif isinstance(value, property) and value.fget is not None:
            attrs[key] = property(_rebound(value.fget, ns))
    return type(name, (traced, bare), attrs)


class _BarePool:
    scheme = "http"
    host = "localhost"
    port = 80

    def _make_request(self, conn: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        return None

    def urlopen(self, *args: Any, **kwargs: Any) -> Any:
        return None


def _does_nothing_like(fn: Any) -> Any:
    """A function that returns None and takes exactly ``fn``'s parameters, defaults included.

    Generated (as ``collections.namedtuple`` generates its ``__new__``) so that a bare call
    binds its arguments as the real one does: a ``*args, **kwargs`` stub would charge the
    bare side for packing them, and a hand-written copy of the parameters could drift.
    """
    params = list(inspect.signature(fn).parameters.values())
    ns: dict[str, Any] = {}
    source = []
    for i, p in enumerate(params):
        if p.default is p.empty:
            source.append(p.name)
        else:
            ns[f"_default_{i}"] = p.default
            source.append(f"{p.name}=_default_{i}")
    exec(f"def {fn.__name__}({', '.join(source)}):\n    return None", ns)
    return ns[fn.__name__]


class _BareExplicitPool(_BarePool):
    """urllib3 2.x's ``_make_request`` signature, which the traced pool forwards by position."""

    _make_request = _does_nothing_like(_pool._make_request_explicit)


class _BareConnection:
    response_class = http.client.HTTPResponse
    blocksize = 8192

    def send(self, data: Any) -> None:
        return None


class _BareResponse(http.client.HTTPResponse):
    def begin(self) -> None:
        return None


class _FakeSocket:
    """What ``HTTPResponse.__init__`` needs of a socket: a file holding a 2-byte body."""

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(b"ok")


class _ProbeKit:
    """The probe classes, built once per process, on first use."""

    def __init__(self) -> None:
        pool_ns = dict(vars(_pool))
        pool_ns["exchange_ids"] = itertools.count(1)
        pool_ns["logical"] = _pool._Logical()
        for name in ("enter_group", "leave_group", "start_exchange"):
            if name in pool_ns:
                pool_ns[name] = _rebound(pool_ns[name], pool_ns)
        tee_ns = dict(vars(_tee))
        tee_ns["pending"] = _tee._Pending()
        conn_ns = dict(vars(_connection))
        conn_ns["pending"] = tee_ns["pending"]
        # The traced pool as traced_pool_class makes it for urllib3's own pool class.
        self.bare_pool: type[_BarePool] = _BarePool
        if _pool._STOCK_EXPLICIT:
            self.bare_pool = _BareExplicitPool
        self.pool = _probe_class("ProbePool", _pool.TracedPoolMixin, self.bare_pool, pool_ns)
        if _pool._STOCK_EXPLICIT:
            self.pool._make_request = _rebound(_pool._make_request_explicit, pool_ns)
        self.has_urlopen = "urlopen" in vars(_pool.TracedPoolMixin)
        self.conn = _probe_class(
            "ProbeConnection", _connection.TracedConnectionMixin, _BareConnection, conn_ns
        )
        self.response = _probe_class("ProbeResponse", _tee.TracedResponse, _BareResponse, tee_ns)
        self.tee = _tee.Tee
        # What urllib3's urlopen passes to _make_request (2.x passes ``retries``).
        self.kwargs: dict[str, Any] = {"timeout": None, "body": None, "headers": {}}
        self.kwargs["chunked"] = False
        if pool_ns.get("_RETRIES_SEEN"):
            self.kwargs.update(
                retries=types.SimpleNamespace(history=()),
                response_conn=None,
                preload_content=True,
                decode_content=True,
                enforce_content_length=True,
            )


_kit: _ProbeKit | None = None

_HEAD = b"GET /probe HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: identity\r\n\r\n"


def _median(values: list[int]) -> int:
    return sorted(values)[len(values) // 2]


def probe_hooks(rounds: int = PROBE_ROUNDS) -> HookCosts:
    """Time the caller-thread hooks, ``rounds`` times each; see :class:`HookCosts`.

    Runs the real hook code with private state (see the module docstring) against a
    private queue; how long it took is in the result.
    """
    global _kit
    clock = perf_counter_ns
    start = clock()
    kit = _kit
    # The first probe may come before any request: its first rounds would time code that
    # the interpreter has not specialised yet (3.11+), so they are run and not counted.
    warm = 0
    if kit is None:
        kit = _kit = _ProbeKit()
        warm = 8
    q: queue.SimpleQueue[Any] = queue.SimpleQueue()
    sink = _ProbeSink(q.put)
    pool = kit.pool()
    pool._zl_tracer = sink
    bare_pool = kit.bare_pool()
    conn = kit.conn()
    bare_conn = _BareConnection()
    # One response of each kind, given a fresh socket file per round (building one per
    # round would double the probe's time).
    bare_resp = _BareResponse(_FakeSocket())  # type: ignore[arg-type]
    resp = kit.response(_FakeSocket())
    kwargs = kit.kwargs
    data = b"x" * ((rounds + warm) * 2)
    bare_file = io.BytesIO(data)
    tee = kit.tee(io.BytesIO(data), sink, 0)
    traced: list[list[int]] = [[] for _ in FIXED_HOOKS]
    bare: list[list[int]] = [[] for _ in FIXED_HOOKS]
    t_urlopen, t_make, t_send, t_class, t_begin, t_close = traced
    b_urlopen, b_make, b_send, b_class, b_begin, b_close = bare
    read: list[int] = []
    read_bare: list[int] = []
    has_urlopen = kit.has_urlopen
    for _ in range(rounds + warm):
        if has_urlopen:
            t0 = clock()
            bare_pool.urlopen("GET", "/probe")
            t1 = clock()
            pool.urlopen("GET", "/probe")
            t2 = clock()
            b_urlopen.append(t1 - t0)
            t_urlopen.append(t2 - t1)
        t0 = clock()
        bare_pool._make_request(bare_conn, "GET", "/probe", **kwargs)
        t1 = clock()
        pool._make_request(conn, "GET", "/probe", **kwargs)
        t2 = clock()
        bare_conn.send(_HEAD)
        t3 = clock()
        conn.send(_HEAD)
        t4 = clock()
        bare_cls = bare_conn.response_class  # what an untraced connection does
        t5 = clock()
        cls = conn.response_class  # hands the exchange to the begin() below, as in a request
        t6 = clock()
        b_make.append(t1 - t0)
        t_make.append(t2 - t1)
        b_send.append(t3 - t2)
        t_send.append(t4 - t3)
        b_class.append(t5 - t4)
        t_class.append(t6 - t5)
        bare_resp.fp = io.BytesIO(b"ok")  # type: ignore[assignment]
        resp.fp = io.BytesIO(b"ok")
        t0 = clock()
        bare_resp.begin()
        t1 = clock()
        resp.begin()
        t2 = clock()
        bare_resp.fp.close()  # type: ignore[union-attr]
        t3 = clock()
        resp.fp.close()
        t4 = clock()
        bare_file.read(1)
        t5 = clock()
        tee.read(1)
        t6 = clock()
        b_begin.append(t1 - t0)
        t_begin.append(t2 - t1)
        b_close.append(t3 - t2)
        t_close.append(t4 - t3)
        read_bare.append(t5 - t4)
        read.append(t6 - t5)
    # Nothing left for their finalizers to close.
    bare_resp.fp = None  # type: ignore[assignment]
    resp.fp = None
    if warm:
        for samples in (*traced, *bare, read, read_bare):
            del samples[:warm]
    if not read or q.empty() or cls is bare_cls:
        raise RuntimeError(f"the hook probe did not reach the hooks ({rounds} rounds)")
    fixed: dict[str, int] = {}
    for name, t, b in zip(FIXED_HOOKS, traced, bare):
        fixed[name] = max(0, _median(t) - _median(b)) if t else 0
    floor = _median(read_bare)
    return HookCosts([t - floor if t > floor else 0 for t in read], fixed, clock() - start)
