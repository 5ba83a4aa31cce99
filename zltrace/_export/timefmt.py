"""Timestamps as the export formats write them: ISO 8601 in UTC, milliseconds, a ``Z``."""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["iso_utc_ms"]


def iso_utc_ms(dt: datetime) -> str:
    """``dt`` as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (JavaScript's ``toISOString()``, HAR's dates).

    An aware datetime is converted to UTC; a naive one is taken to be UTC already.
    """
    dt = dt.astimezone(timezone.utc) if dt.tzinfo else dt
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
