"""How the exports write values: timestamps as ISO 8601 UTC with milliseconds, JSON as UTF-8."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

__all__ = ["iso_utc_ms", "json_text"]

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def iso_utc_ms(dt: datetime) -> str:
    """``dt`` as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (JavaScript's ``toISOString()``, HAR's dates).

    An aware datetime is converted to UTC; a naive one is taken to be UTC already.
    """
    dt = dt.astimezone(timezone.utc) if dt.tzinfo else dt
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_text(obj: Any, **kwargs: Any) -> str:
    """``json.dumps(obj, ensure_ascii=False, **kwargs)`` that always encodes to UTF-8.

    A lone surrogate (an exception message or a name decoded with ``surrogateescape`` can
    hold one, and the trace keeps it) cannot be written as UTF-8; it is written as its
    ``\\udXXX`` escape instead, as JavaScript's ``JSON.stringify`` writes it. Outside strings
    JSON text has no such characters, so the escape always lands inside a string.
    """
    text = json.dumps(obj, ensure_ascii=False, **kwargs)
    return _LONE_SURROGATE.sub(_escape, text)
