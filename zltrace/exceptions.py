"""zltrace's exception root and warnings.

Everything zltrace raises derives from :class:`ZltraceError`; a concrete error also derives
from the builtin it refines, so ``except ValueError`` still catches a bad configuration.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "UnsupportedTargetError",
    "ZltraceError",
    "ZltraceWarning",
]


class ZltraceError(Exception):
    """Root of every exception zltrace raises."""


class ConfigError(ZltraceError, ValueError):
    """A configuration value passed in code is invalid (the message names the field and value)."""


class UnsupportedTargetError(ZltraceError, TypeError):
    """``wrap()`` was given something that is not a pool, a pool manager or a requests session."""


class ZltraceWarning(UserWarning):
    """Root of every warning zltrace emits (bad environment values, unreadable trace lines,
    lost records, ...)."""
