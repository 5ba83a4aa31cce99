"""Exchanges written back as version-1 trace lines (``python -m zltrace export --jsonl``).

What ``jq`` users get from a raw event log: the same lines a JSONL trace holds, one per
exchange, every body inline (``text`` when it is valid UTF-8, else ``base64``) rather than in
a side file, so the output is one self-contained stream that ``zltrace.read`` reads back too.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any, TextIO

from .._format import FORMAT_VERSION
from .._read.exchange import Exchange
from .encode import json_text

__all__ = ["export_jsonl", "line_of"]


def _body(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        return {"size": len(data), "text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"size": len(data), "base64": base64.b64encode(data).decode("ascii")}


def line_of(ex: Exchange) -> dict[str, Any]:
    """The trace line of one exchange, as a JSON-ready dict."""
    rq, rs, t = ex.request, ex.response, ex.timing
    line: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "id": ex.id,
        "logical_id": ex.logical_id,
        "started_at": ex.started_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "request": {
            "method": rq.method,
            "url": rq.url,
            "http_version": rq.http_version,
            "headers": [list(h) for h in rq.headers],
            "complete": bool(rq.http_version),
            "body": _body(rq.body),
        },
        "response": None,
        "outcome": ex.outcome,
        "error": None if ex.error is None else {"type": ex.error.type, "message": ex.error.message},
        "timing": {
            "request_sent": t.request_sent,
            "headers_received": t.headers_received,
            "first_byte": t.first_byte,
            "end": t.end,
        },
    }
    if ex.complete_by is not None:
        line["complete_by"] = ex.complete_by
    if rs is not None:
        line["response"] = {
            "status": rs.status,
            "reason": rs.reason,
            "http_version": rs.http_version,
            "headers": [list(h) for h in rs.headers],
            "framing": rs.framing,
            "body": _body(rs.raw_body),
            "reads": [n for pair in rs.reads for n in pair],
        }
    return line


def export_jsonl(exchanges: Iterable[Exchange], out: TextIO) -> int:
    """Write ``exchanges`` to ``out`` as trace lines; returns the number written."""
    count = 0
    for ex in exchanges:
        out.write(json_text(line_of(ex), separators=(",", ":")))
        out.write("\n")
        count += 1
    return count
