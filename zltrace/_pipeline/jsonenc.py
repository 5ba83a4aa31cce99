"""JSON string encoding for the hand-assembled trace lines (worker thread)."""

from __future__ import annotations

from json.encoder import encode_basestring
from typing import Callable

#: The C encoder behind ``json.dumps(..., ensure_ascii=False)`` for one string: ``"..."``
#: with quotes, backslashes and control characters escaped.
js: Callable[[str], str] = encode_basestring
