"""The process-wide default tracer, built from the environment on first use.

``reset_defaults()`` puts it back for tests. The process hooks every tracer registers with
(exit, signals, fork) are in ``_lifecycle``.
"""

from __future__ import annotations

import threading

from ._tracer import Tracer

_lock = threading.Lock()
_default: Tracer | None = None


def default_tracer() -> Tracer:
    """The process-wide tracer, built from the environment on first use."""
    global _default
    tracer = _default
    if tracer is None or tracer.closed:
        with _lock:
            tracer = _default
            if tracer is None or tracer.closed:
                tracer = _default = Tracer()
    return tracer


def reset_defaults() -> None:
    """Close and forget the default tracer (for tests)."""
    global _default
    with _lock:
        tracer, _default = _default, None
    if tracer is not None:
        tracer.close()
