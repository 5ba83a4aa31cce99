"""Process hooks: the live tracers, and what exit, SIGTERM/SIGINT and fork() do to them.

A tracer registers here when it starts and unregisters once closed. At exit every live
tracer is closed (within ``EXIT_TIMEOUT_S`` in total); on a signal whose handler we
replaced they are flushed, or closed if the signal would kill the process, and the
replaced handler then runs; in a forked child each rebuilds itself. The hooks are
installed once, on the first registration. This module knows tracers only through the
:class:`Managed` protocol, so it imports nothing of ours (the default tracer lives in
``_state``).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
import weakref
from types import FrameType
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: Total time budget for flushing every tracer at exit or on a signal.
EXIT_TIMEOUT_S = 5.0


class Managed(Protocol):
    """What the process hooks need of a tracer."""

    def close(self, timeout: float | None = None) -> bool: ...

    def flush(self, timeout: float | None = None) -> bool: ...

    def _after_fork_in_child(self) -> None: ...


_lock = threading.RLock()
_live: weakref.WeakSet[Managed] = weakref.WeakSet()
_hooks_installed = False
_previous_handlers: dict[int, Any] = {}


def register(tracer: Managed, *, handle_signals: bool) -> None:
    """Track a live tracer so exit, signals (if ``handle_signals``) and fork reach it."""
    with _lock:
        _live.add(tracer)
        _install_hooks(handle_signals)


def unregister(tracer: Managed) -> None:
    with _lock:
        _live.discard(tracer)


def live_tracers() -> list[Managed]:
    with _lock:
        return list(_live)


def close_all(timeout: float = EXIT_TIMEOUT_S) -> None:
    """Close every live tracer within ``timeout`` seconds in total."""
    _each("close", "closing", timeout)


def flush_all(timeout: float = EXIT_TIMEOUT_S) -> None:
    """Flush every live tracer within ``timeout`` seconds in total."""
    _each("flush", "flushing", timeout)


def _each(method: str, doing: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for tracer in live_tracers():
        try:
            getattr(tracer, method)(max(0.0, deadline - time.monotonic()))
        except Exception:
            log.exception("zltrace: %s %r failed", doing, tracer)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()
    for tracer in list(_live):
        tracer._after_fork_in_child()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Flush every tracer, then do what the handler we replaced would have done."""
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if previous == signal.SIG_DFL:
        close_all()  # the process is about to die of this signal
    else:
        flush_all()  # the app's handler decides; the final close is atexit's
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        # Re-deliver with the default disposition: the process ends as it would have.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install_hooks(signals: bool) -> None:
    global _hooks_installed
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(close_all)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
    if signals and not _previous_handlers and threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                current = signal.getsignal(signum)
                if current is None or current == signal.SIG_IGN:
                    # Installed from C (cannot chain to it), or ignored on purpose (and
                    # inherited by exec'd children): leave it as it is.
                    continue
                _previous_handlers[signum] = current
                signal.signal(signum, _on_signal)
            except (ValueError, OSError):  # not the main thread of the main interpreter
                _previous_handlers.pop(signum, None)
