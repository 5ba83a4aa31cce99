"""zltrace's exception root and warnings.

Everything zltrace raises derives from :class:`ZltraceError`; a concrete error also derives
from the builtin it refines, so ``except ValueError`` still catches a bad configuration.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InvalidArgumentError",
    "NotCallableError",
    "ParserClosedError",
    "TraceLineError",
    "UnsupportedTargetError",
    "ZltraceError",
    "ZltraceWarning",
]


class ZltraceError(Exception):
    """Root of every exception zltrace raises."""


class ConfigError(ZltraceError, ValueError):
    """A configuration value passed in code is invalid (the message names the field and value)."""


class InvalidArgumentError(ZltraceError, ValueError):
    """An argument is outside what the function takes (the message names it and its value)."""


class ParserClosedError(ZltraceError, ValueError):
    """An incremental parser was fed after it was closed."""


class TraceLineError(ZltraceError, ValueError):
    """A trace line breaks the trace format (the message names the field and shows the value).

    :func:`zltrace.read` does not raise it: it skips the line with a :class:`ZltraceWarning`.
    """


class UnsupportedTargetError(ZltraceError, TypeError):
    """``wrap()`` was given something that is not a pool, a pool manager or a requests session."""


class NotCallableError(ZltraceError, TypeError):
    """A callback zltrace was given (``Tracer.on_degradation``) is not callable."""


class ZltraceWarning(UserWarning):
    """Root of every warning zltrace emits (bad environment values, unreadable trace lines,
    lost records, ...)."""
