"""Every place the bench reaches past zltrace's public face, each named with the seam it stands for.

The bench measures through documented seams: ``Tracer(Config(...))``, ``Tracer.wrap``,
``Tracer.stats()``, ``flush``/``close``, ``Tracer.path`` and :func:`zltrace.read`. Two
measurements have no seam yet; their private accesses live here and nowhere else, so that
adding the seam means changing this module only. Each returns None (or False) when the
private detail is not there, and the bench then leaves that figure out.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

from ... import Tracer
from ..._format import stem_of


def worker_thread(tracer: Tracer) -> threading.Thread | None:
    """The tracer's worker thread, or None (standard mode, or not started).

    Private: the worker's thread name ``zltrace-worker-<trace stem>``. Seam it stands for:
    the worker's CPU time in ``Tracer.stats()`` (or its thread's native id there).
    """
    name = f"zltrace-worker-{os.path.basename(stem_of(tracer.path))}"
    return next((t for t in threading.enumerate() if t.name == name), None)


def worker_clock(tracer: Tracer) -> Callable[[], int] | None:
    """A CPU-time clock (ns) of the tracer's worker thread (Linux/BSD), else None."""
    getclock = getattr(time, "pthread_getcpuclockid", None)
    thread = worker_thread(tracer)
    if getclock is None or thread is None or thread.ident is None:
        return None
    try:
        clk = getclock(thread.ident)
        time.clock_gettime_ns(clk)
    except (OSError, AttributeError):
        return None
    return lambda: time.clock_gettime_ns(clk)


def divert_events(tracer: Tracer, put: Callable[[Any], None]) -> bool:
    """Send the capture events of ``tracer`` to ``put``, not to its worker; False if impossible.

    Private: ``Tracer._put``, the callable the front-end hands each event to. Seam it stands
    for: an event sink given to the tracer (as the ``opener=`` seam is for files), so that
    the caller-thread cost of capture can be measured without the worker running.
    """
    if not hasattr(tracer, "_put"):
        return False
    tracer._put = put  # type: ignore[method-assign]
    return True
