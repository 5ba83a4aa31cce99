"""Reading JSON of unknown shape without raising: accessors that check the type they get."""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "Json",
    "as_dict",
    "as_index",
    "as_list",
    "as_str",
    "as_text",
    "count",
    "dicts",
    "json_object",
]

Json = dict[str, Any]


def json_object(body: bytes) -> Json | None:
    """``body`` parsed, when it is a JSON object; None for anything else (never raises)."""
    head = body[:64].lstrip(b" \t\r\n\xef\xbb\xbf")  # whitespace, a UTF-8 BOM
    if not head.startswith(b"{"):
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # ValueError includes UnicodeDecodeError
        return None
    return value if isinstance(value, dict) else None


def count(value: Any) -> int:
    """A token count: a positive int, else 0 (bools, negatives and other types count nothing)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def as_dict(value: Any) -> Json:
    """``value`` if it is a dict, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` if it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def dicts(value: Any) -> list[Json]:
    """The dicts in ``value`` if it is a list (other items skipped), else an empty list."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def as_str(value: Any) -> str:
    """``value`` if it is a str, else ""."""
    return value if isinstance(value, str) else ""


def as_text(value: Any) -> str:
    """``value`` as text: itself if a str, else ``str(value)`` (a placeholder if too deep)."""
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except RecursionError:  # parsed just within the recursion limit, printed past it
        return "(nested too deeply to show)"


def as_index(value: Any, default: int) -> int:
    """``value`` if it is an int (not a bool), else ``default``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default
