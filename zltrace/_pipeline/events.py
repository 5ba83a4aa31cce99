"""The events the caller thread puts on the queue, the capture path's failure counter, and
the names of the caller-thread hooks with what the capture side's probe reports of them.

An event is a plain tuple whose first item is one of the kinds below; the second is the
exchange number (a process-wide counter). Tuples are the cheapest thing to build and put:
everything the caller thread does per event is one tuple and one ``SimpleQueue.put``.

    (START, ex, prev, logical, t, scheme, host, port, method, target)   _make_request: an attempt
    (SEND,  ex, data, t)        bytes handed to the socket (request line, headers, body framing)
    (HEAD,  ex, t, response, length)   the response head was parsed (``response`` is the
                                http.client response, or a :class:`ResponseHead` from a
                                front-end without one; ``length`` as it was then)
    (DATA,  ex, data, t)        bytes read from the response's socket file (with chunk framing)
    (EOF,   ex, t)              the socket file reported end of stream
    (CLOSE, ex, t)              the response's socket file was closed (or garbage-collected)
    (ERROR, ex, exc, t)         an exception escaped a read, or urllib3's ``_make_request``
"""

from __future__ import annotations

import itertools
import logging
from typing import NamedTuple

from .._util import ForkSafeLock

START, SEND, HEAD, DATA, EOF, CLOSE, ERROR = range(7)


class ResponseHead:
    """A response head parsed by a front-end that has no ``http.client`` response.

    It carries the attributes the worker reads from an ``http.client`` response, under the
    same names: ``msg`` is the header list as received, ``(name, value)`` pairs of ``bytes``
    or ``str``, decoded on the worker. Built once per response on the caller thread, never
    changed after.
    """

    __slots__ = ("_method", "chunked", "msg", "reason", "status", "version")

    def __init__(
        self,
        status: int,
        reason: str,
        version: int,
        msg: list[tuple[bytes, bytes]],
        chunked: bool,
        method: str,
    ) -> None:
        self.status = status
        self.reason = reason
        self.version = version  # 11 or 10, as http.client has it
        self.msg = msg
        self.chunked = chunked  # the body is chunk-framed
        self._method = method


#: Exchange numbers, unique in the process (``next()`` on it is atomic under the GIL).
exchange_ids = itertools.count(1)

log = logging.getLogger(__name__)

_failures: dict[str, int] = {}
_failures_lock = ForkSafeLock()


def capture_failed(where: str, exc: BaseException) -> None:
    """Count a failure of zltrace's own capture code; log the first of each kind, never raise."""
    try:
        with _failures_lock:
            count = _failures.get(where, 0) + 1
            _failures[where] = count
        if count == 1:
            log.error(
                "zltrace capture failed in %s (further failures counted, not logged)",
                where,
                exc_info=exc,
            )
    except Exception:  # the capture path must never raise into the caller
        pass


def capture_failures() -> dict[str, int]:
    """A copy of the failure counts by place."""
    with _failures_lock:
        return dict(_failures)


#: The hooks every exchange goes through once, in the order they run: (urllib3 1.26 only)
#: the pool's ``urlopen`` marking the logical request; ``_make_request`` starting the
#: exchange; the ``send`` of the request head; the connection's ``response_class``;
#: ``TracedResponse.begin`` reporting the head and installing the tee; ``Tee.close``.
FIXED_HOOKS = ("urlopen", "make_request", "send", "response_class", "begin", "close")


class HookCosts(NamedTuple):
    """One hook probe's figures, in ns, measured at the interpreter's speed now.

    The capture side's probe returns it; the monitor turns it into the added-time figures.
    """

    #: Per round: one body read through the tee minus the bare file's read.
    read: list[int]
    #: Per name of :data:`FIXED_HOOKS`: median traced call minus median bare call, >= 0
    #: (0 for a hook this urllib3 does not have).
    fixed: dict[str, int]
    #: How long the probe itself took.
    took_ns: int
