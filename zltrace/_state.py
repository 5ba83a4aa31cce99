"""The process-wide default tracer, built from the environment on first use.

``reset_defaults()`` puts it back for tests. The process hooks every tracer registers with
(exit, signals, fork) are in ``_lifecycle``.
"""

from __future__ import annotations

import threading

from ._capture import install as _install
from ._capture.connection import reset_unrecorded
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


def install(tracer: Tracer | None = None) -> Tracer:
    """Trace every urllib3 exchange in the process from now on (requests, botocore/boto3,
    elasticsearch, kubernetes and registered front-ends included); returns the tracer.

    Idempotent and thread-safe; without ``tracer``, the default tracer records.
    """
    t = tracer if tracer is not None else default_tracer()
    _install.install(t)
    return t


def uninstall() -> None:
    """Undo :func:`install`: every pool, those made while installed included, stops recording."""
    _install.uninstall()


def reset_defaults() -> None:
    """Uninstall, then close and forget the default tracer, and forget the process-wide
    count of unrecorded exchanges (for tests)."""
    global _default
    _install.uninstall()
    reset_unrecorded()
    with _lock:
        tracer, _default = _default, None
    if tracer is not None:
        tracer.close()
