"""claude-trace export: one JSON line per exchange, as claude-trace logs them.

Mirrors the ``RawPair`` records of claude-trace's interceptor (badlogic/lemmy,
``apps/claude-trace/src/interceptor.ts``, fetch path, and the ``RawPair`` type in
``apps/claude-trace/src/types.ts``), so its HTML viewer and scripts read zltrace traces::

    {"request": {"timestamp", "method", "url", "headers", "body"},
     "response": {"timestamp", "status_code", "headers", "body" | "body_raw"} | null,
     "logged_at", ["note"]}

- ``timestamp``: seconds since the epoch with millisecond precision (``Date.now() / 1000``);
  the request's is when the exchange started, the response's when its head arrived (when
  ``fetch()`` resolves). ``logged_at``: ISO 8601 of the end of the exchange (after the body
  was read), as ``Date.toISOString()`` writes it.
- ``headers``: an object as ``Object.fromEntries(new Headers(...).entries())`` gives it:
  names lower-cased and sorted, repeated headers joined with ``", "`` -- except
  ``set-cookie``, which Headers yields once per value, so the last one is kept.
- request ``body``: ``null`` when empty, the parsed JSON when the text is JSON (whatever the
  Content-Type, as ``parseRequestBody`` does), the text otherwise.
- response: ``body`` (parsed JSON) when the Content-Type contains ``application/json`` and
  the body parses, otherwise ``body_raw``: the content-decoded body as text (``fetch``
  decompresses, ``text()`` decodes UTF-8 with replacement and drops a BOM). An
  ``application/json`` body that does not parse is kept as ``body_raw``, as the node-http
  path of the interceptor does (its fetch path would drop the body).
- An exchange without a response is written like claude-trace's orphaned requests:
  ``"response": null`` and a ``note``; the error, when there is one, is appended to it.

What is not mirrored: claude-trace's own header redaction (partial values); the headers keep
zltrace's redaction (``<redacted sha256:...>``), which was applied when the trace was written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, NoReturn, TextIO

from .._read.exchange import Exchange
from .encode import iso_utc_ms, json_text

__all__ = ["export_claude_trace"]

ORPHAN_NOTE = "ORPHANED_REQUEST - No matching response received"

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def export_claude_trace(exchanges: Iterable[Exchange], out: TextIO) -> int:
    """Write ``exchanges`` to ``out`` as claude-trace JSON lines; returns the number written."""
    count = 0
    for exchange in exchanges:
        # JSON.stringify: no spaces, non-ASCII characters as they are.
        try:
            line = json_text(_pair(exchange), separators=(",", ":"))
        except RecursionError:  # a parsed body nested too deeply to write back: keep it as text
            line = json_text(_pair(exchange, parse=False), separators=(",", ":"))
        out.write(line)
        out.write("\n")
        count += 1
    return count


def _epoch_ms(ex: Exchange, offset_ns: int) -> int:
    """Whole milliseconds since the epoch, ``offset_ns`` after the exchange started."""
    start_us = (ex.started_at - _EPOCH) // timedelta(microseconds=1)
    return (start_us * 1000 + offset_ns) // 1_000_000


def _headers(headers: list[tuple[str, str]]) -> dict[str, str]:
    combined: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        value = value.strip(" \t\r\n")
        if key in combined and key != "set-cookie":
            combined[key] += ", " + value
        else:
            combined[key] = value
    return {key: combined[key] for key in sorted(combined)}


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")  # JSON.parse rejects NaN and Infinity


def _parse_json(text: str, parse: bool = True) -> tuple[bool, Any]:
    if not parse:
        return False, None
    try:
        return True, json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None


def _pair(ex: Exchange, parse: bool = True) -> dict[str, Any]:
    rq = ex.request
    body: Any = None
    if rq.body:
        text = (rq.decoded_body or rq.body).decode("utf-8", "replace")
        ok, parsed = _parse_json(text, parse)
        body = parsed if ok else text
    request = {
        "timestamp": _epoch_ms(ex, 0) / 1000,
        "method": rq.method,
        "url": rq.url,
        "headers": _headers(rq.headers),
        "body": body,
    }
    logged_at = iso_utc_ms(_EPOCH + timedelta(milliseconds=_epoch_ms(ex, ex.timing.end)))
    rs = ex.response
    if rs is None:
        note = ORPHAN_NOTE if ex.error is None else f"{ORPHAN_NOTE} ({ex.error})"
        return {"request": request, "response": None, "note": note, "logged_at": logged_at}
    head = ex.timing.headers_received
    response: dict[str, Any] = {
        "timestamp": _epoch_ms(ex, ex.timing.end if head is None else head) / 1000,
        "status_code": rs.status,
        "headers": _headers(rs.headers),
    }
    # utf-8-sig: TextDecoder's "UTF-8 decode" drops a leading BOM.
    text = rs.body.decode("utf-8-sig", "replace")
    if "application/json" in (rs.header("content-type") or ""):
        ok, parsed = _parse_json(text, parse)
        if ok:
            response["body"] = parsed
        else:
            response["body_raw"] = text
    else:
        response["body_raw"] = text
    return {"request": request, "response": response, "logged_at": logged_at}
