"""A self-contained HTML report of a trace: :func:`write_report` (rendering only).

Rules this module keeps:

- Hostile traces are inert. Nothing from a trace is ever written as markup: each exchange
  becomes JSON inside ``<script type="application/json">`` (a data block the browser never
  runs), with ``<``, ``>`` and ``&`` written as ``\\u003c`` etc. and everything non-ASCII
  escaped too (so U+2028/9 and lone surrogates can neither end the block nor fail to encode).
  The page's one script builds the DOM with ``textContent`` and DOM properties only. A CSP
  allows exactly that script and that stylesheet (by hash) and nothing else, so even an
  escaping bug could not run injected code or fetch anything.
- Self-contained: CSS and JS ship in ``report_assets/`` and are inlined; no network at view time.
- Streaming: exchanges are written one by one as they are read; only counters are kept, so a
  large trace reports in the memory of its largest exchange. Bodies, message texts and SSE
  events are clipped to ``body_limit`` bytes each in the page, with the clipped size stated.
- Lazy page: the script parses a small summary per exchange to build the table, charts and
  filters; an exchange's detail block is parsed only when its row is expanded.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import html
import json
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import resources
from typing import Any, TextIO
from urllib.parse import urlsplit

from .._read.eventstream import EventFrame, is_aws_event_stream
from .._read.exchange import Exchange, Request, Response
from .._read.llm import Block, is_event_stream, message_view, model_of, usage_of
from .._read.sse import SSEEvent
from .._version import __version__
from ..exceptions import InvalidArgumentError

__all__ = ["DEFAULT_BODY_LIMIT", "write_report"]

#: Bytes of each body (and message text, and SSE stream) shown in the page.
DEFAULT_BODY_LIMIT = 64 * 1024
#: Bodies above this are shown raw: pretty-printing them would only be clipped anyway.
_JSON_PARSE_LIMIT = 8 * 1024 * 1024
#: Binary bodies are shown as a hex dump of at most this many bytes.
_HEX_LIMIT = 4096


def _asset(name: str) -> str:
    return (resources.files(__package__) / "report_assets" / name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


def _json_block(obj: Any) -> str:
    """``obj`` as JSON that cannot end a ``<script>`` element or an HTML comment."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _html_text(text: str) -> str:
    """``text`` escaped for HTML content, ASCII only (non-ASCII as character references)."""
    return html.escape(text).encode("ascii", "xmlcharrefreplace").decode("ascii")


# -- bodies and texts ---------------------------------------------------------------------


def _clip(text: str, limit: int) -> tuple[str, int]:
    """The first ``limit`` UTF-8 bytes of ``text`` (whole characters) and the bytes left out."""
    if len(text) * 4 <= limit:  # cannot be over the limit: skip the encode
        return text, 0
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text, 0
    shown = data[:limit].decode("utf-8", "ignore")
    return shown, len(data) - len(shown.encode("utf-8", "surrogatepass"))


def _hexdump(data: bytes) -> str:
    lines = []
    for pos in range(0, len(data), 16):
        row = data[pos : pos + 16]
        hexes = " ".join(f"{b:02x}" for b in row)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{pos:08x}  {hexes:<47}  |{text}|")
    return "\n".join(lines)


def _looks_json(data: bytes, content_type: str | None) -> bool:
    if content_type and "json" in content_type.lower():
        return True
    head = data[:64].lstrip()
    return head[:1] in (b"{", b"[")


def _body(data: bytes | None, content_type: str | None, limit: int) -> dict[str, Any] | None:
    """A body for the page: pretty JSON, text, or a hex dump; clipped to ``limit`` bytes."""
    if data is None:
        return None
    out: dict[str, Any] = {"size": len(data)}
    if not data:
        out.update(kind="empty", text="", truncated=0)
        return out
    if len(data) <= _JSON_PARSE_LIMIT and _looks_json(data, content_type):
        try:
            pretty = json.dumps(json.loads(data), indent=2, ensure_ascii=False)
        except (ValueError, RecursionError):  # not JSON, or nested too deep to pretty-print
            pass
        else:
            # What is left out is counted in bytes of the pretty-printed text.
            text, cut = _clip(pretty, limit)
            out.update(kind="json", text=text, truncated=cut)
            return out
    # Decode only what is shown; an incremental decoder tolerates a character cut at the limit.
    head = data[:limit]
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=len(data) <= limit)
    except UnicodeDecodeError:
        shown = data[:_HEX_LIMIT]
        out.update(kind="binary", text=_hexdump(shown), truncated=len(data) - len(shown))
        return out
    out.update(kind="text", text=text, truncated=len(data) - len(text.encode("utf-8")))
    return out


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        # Tool arguments often arrive as a JSON string (OpenAI): show them parsed when they are.
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return str(value)
    try:
        return json.dumps(value, indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return "(nested too deeply to show)"


# -- the reconstructed message --------------------------------------------------------------


def _block(block: Block, limit: int) -> dict[str, Any]:
    # Prose is shown as it is; anything structured (tool input, errors) pretty-printed.
    text = block.value if block.kind in ("text", "thinking") else _pretty(block.value)
    shown, cut = _clip(text, limit)
    out: dict[str, Any] = {"kind": block.kind, "text": shown, "truncated": cut}
    if block.name is not None:
        out["name"] = block.name
    return out


def _message(msg: Any, limit: int) -> dict[str, Any] | None:
    """The reconstructed LLM message as display blocks, or None when it is not one."""
    view = message_view(msg)
    if view is None:
        return None  # plain JSON: the response body section already shows it
    return {"blocks": [_block(b, limit) for b in view.blocks], "stop": view.stop}


def _sse(events: list[SSEEvent], limit: int) -> dict[str, Any]:
    """The SSE events for the page: as many as fit in ``limit`` bytes of data."""
    shown: list[dict[str, Any]] = []
    budget = limit
    for ev in events:
        if budget <= 0:
            break
        data, cut = _clip(ev.data, budget)
        budget -= len(data.encode("utf-8", "surrogatepass")) + 1
        shown.append({"event": ev.event, "data": data, "truncated": cut, "id": ev.id})
    return {"title": "SSE events", "count": len(events), "events": shown}


def _frame_text(frame: EventFrame) -> str:
    """A frame's payload as text; a Bedrock ``chunk``'s base64 ``bytes`` shown decoded."""
    if frame.error is not None:
        return f"(bad frame at byte {frame.offset}: {frame.error})"
    text = frame.payload.decode("utf-8", "replace")
    if frame.event_type == "chunk":
        try:
            inner = json.loads(frame.payload).get("bytes")
            return base64.b64decode(inner, validate=True).decode("utf-8", "replace")
        except (ValueError, TypeError, AttributeError, RecursionError):
            return text
    return text


def _frames(frames: list[EventFrame], limit: int) -> dict[str, Any]:
    """AWS event-stream frames for the page, shown as the SSE events are."""
    shown: list[dict[str, Any]] = []
    budget = limit
    for frame in frames:
        if budget <= 0:
            break
        data, cut = _clip(_frame_text(frame), budget)
        budget -= len(data.encode("utf-8", "surrogatepass")) + 1
        name = frame.event_type or frame.message_type or ("bad frame" if frame.error else "")
        if frame.message_type in ("exception", "error"):
            name = f"{frame.message_type}: {name}"
        shown.append({"event": name, "data": data, "truncated": cut, "id": None})
    return {"title": "Event-stream frames", "count": len(frames), "events": shown}


def _request_body(rq: Request, limit: int) -> dict[str, Any] | None:
    """The request body for the page, decoded when it was sent compressed."""
    body = _body(rq.decoded_body, rq.header("content-type"), limit)
    encoding = rq.header("content-encoding")
    if body is not None and encoding and rq.body is not None:
        body["raw_size"] = len(rq.body)
        body["encoding"] = encoding if rq.decode_note is None else None
        body["decode_note"] = rq.decode_note
    return body


# -- one exchange ----------------------------------------------------------------------------


def _host_path(url: str) -> tuple[str, str]:
    try:
        parts = urlsplit(url)
        host = parts.netloc
    except ValueError:
        return "", url
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return host, path


def _headers(req_or_resp: Request | Response) -> list[list[str]]:
    return [[n, v] for n, v in req_or_resp.headers]


def _entry(index: int, ex: Exchange, limit: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (summary, detail) JSON objects of one exchange."""
    rq, rs, t = ex.request, ex.response, ex.timing
    is_sse = rs is not None and is_event_stream(rs.header("content-type"))
    is_frames = rs is not None and is_aws_event_stream(rs.header("content-type"))
    # ex.usage() and ex.model() would each rebuild the message again: derive them from one.
    msg = ex.message()
    usage = usage_of(msg, None if rs is None else rs.headers)
    model = model_of(msg, rq.decoded_body, rq.url)
    host, path = _host_path(rq.url)
    ttfb = t.first_byte if t.first_byte is not None else t.headers_received
    summary = {
        "i": index,
        "id": ex.id,
        "started": ex.started_at.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
        "method": rq.method,
        "url": rq.url,
        "host": host,
        "path": path,
        "status": None if rs is None else rs.status,
        "outcome": ex.outcome,
        "duration": t.end,
        "ttfb": ttfb,
        "tokens_in": None if usage is None else usage.input_tokens,
        "tokens_out": None if usage is None else usage.output_tokens,
        "tokens_cache_read": None if usage is None else usage.cache_read_tokens,
        "tokens_cache_write": None if usage is None else usage.cache_write_tokens,
        "model": model,
        "sse": is_sse or is_frames,
        "frames": is_frames,
    }
    response = None
    if rs is not None:
        response = {
            "status": rs.status,
            "reason": rs.reason,
            "http_version": rs.http_version,
            "headers": _headers(rs),
            "framing": rs.framing,
            "body": _body(rs.body, rs.header("content-type"), limit),
            "raw_size": len(rs.raw_body),
            "decode_note": rs.decode_note,
        }
    detail = {
        "id": ex.id,
        "logical_id": ex.logical_id,
        "started": ex.started_at.isoformat(),
        "source": f"{ex.source[0]}:{ex.source[1]}",
        "outcome": ex.outcome,
        "error": None if ex.error is None else str(ex.error),
        "timing": {
            "request_sent": t.request_sent,
            "headers_received": t.headers_received,
            "first_byte": t.first_byte,
            "end": t.end,
        },
        "request": {
            "method": rq.method,
            "url": rq.url,
            "http_version": rq.http_version,
            "headers": _headers(rq),
            "body": _request_body(rq, limit),
        },
        "response": response,
        "message": _message(msg, limit),
        "sse": (
            _sse(ex.sse_events(), limit)
            if is_sse
            else _frames(ex.events(), limit)
            if is_frames
            else None
        ),
    }
    return summary, detail


# -- the page --------------------------------------------------------------------------------


def write_report(
    exchanges: Iterable[Exchange],
    out: TextIO,
    *,
    title: str = "zltrace report",
    body_limit: int = DEFAULT_BODY_LIMIT,
) -> int:
    """Write a self-contained HTML report of ``exchanges`` to ``out``; returns how many.

    ``exchanges`` is consumed once, one at a time (pass ``zltrace.read(path)`` directly).
    Bodies, message texts and SSE data are shown up to ``body_limit`` bytes each.
    """
    if body_limit < 0:
        raise InvalidArgumentError(f"body_limit must be >= 0, got {body_limit!r}")
    css, js = _asset("report.css"), _asset("report.js")
    csp = (
        f"default-src 'none'; script-src '{_sha256(js)}'; style-src '{_sha256(css)}'; "
        "img-src 'none'; base-uri 'none'; form-action 'none'"
    )
    safe_title = _html_text(title)
    out.write(
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f'<meta name="generator" content="zltrace {__version__}">\n'
        f"<title>{safe_title}</title>\n<style>{css}</style>\n</head>\n<body>\n"
        f'<header id="zl-head"><h1 id="zl-title">{safe_title}</h1>'
        '<p id="zl-summary" class="zl-muted"></p></header>\n'
        "<noscript><p>This report is drawn by JavaScript; enable it to see the exchanges."
        "</p></noscript>\n"
        '<main id="zl-main"></main>\n<div id="zl-data" hidden>\n'
    )
    count = 0
    first: datetime | None = None
    last: datetime | None = None
    for ex in exchanges:
        summary, detail = _entry(count, ex, body_limit)
        out.write(
            f'<script type="application/json" class="zl-s">{_json_block(summary)}</script>\n'
            f'<script type="application/json" id="zl-d-{count}">{_json_block(detail)}</script>\n'
        )
        first = ex.started_at if first is None else min(first, ex.started_at)
        last = ex.started_at if last is None else max(last, ex.started_at)
        count += 1
    meta = {
        "count": count,
        "title": title,
        "first": None if first is None else first.isoformat(),
        "last": None if last is None else last.isoformat(),
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
        "body_limit": body_limit,
    }
    out.write(
        "</div>\n"
        f'<script type="application/json" id="zl-meta">{_json_block(meta)}</script>\n'
        f"<script>{js}</script>\n</body>\n</html>\n"
    )
    return count
