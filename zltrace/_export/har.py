"""HAR 1.2 export: exchanges to an HTTP Archive, one entry at a time.

The HAR document is one JSON object, but nothing here builds it whole: the head of ``log``
is written, then each exchange's entry as it is read, then the closing brackets, so a trace
of any size exports in the memory of its largest single exchange. Entries stay in the order
:func:`zltrace.read` yields them (the order exchanges finished, file by file, a trace's
dead-letter file first); HAR readers must sort by ``startedDateTime`` themselves, which the
spec asks of them anyway.

Mapping decisions (the spec: ahmadnassri/har-spec ``versions/1.2.md``):

- Timings. The trace knows, in ns from the start of the exchange, when the request was sent,
  when the response head arrived, and when the exchange ended. ``send`` is start -> request
  sent (it includes connecting, which urllib3 does inside the same call), ``wait`` is request
  sent -> head received, ``receive`` is head received -> end; ``blocked``, ``dns``,
  ``connect`` and ``ssl`` are -1 (not measured apart). A phase that never happened takes the
  time up to the end: a refused connection is all ``send``. ``time`` is their sum.
- ``headersSize`` is -1 on both sides: the head is recorded as parsed headers, with
  credentials redacted, so its byte size is not known exactly.
- ``response.bodySize`` is the body as received after de-chunking; ``content.size`` the body
  after content decoding, ``compression`` the difference. ``content.text`` is the decoded body
  as text when its charset (UTF-8 if none is declared) decodes it, base64 otherwise.
- An exchange with no response (refused, timed out, ...) gets status 0 and an empty content;
  what went wrong is in the custom ``_zltrace`` field every entry carries (id, logical id,
  outcome and ``complete_by``, error, framing, and the arrival of body bytes as
  ``[offset, ms]`` pairs).
"""

from __future__ import annotations

import base64
import codecs
import json
import re
from collections.abc import Iterable
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from .._read.exchange import Exchange, Response
from .._version import __version__
from .encode import iso_utc_ms, json_text

__all__ = ["export_har"]

_REDACTED = re.compile(r"<redacted sha256:[0-9a-f]+>\Z")
_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([^\";\s]+)", re.IGNORECASE)


def export_har(exchanges: Iterable[Exchange], out: TextIO) -> int:
    """Write ``exchanges`` to ``out`` as a HAR 1.2 document; returns the number of entries.

    Streams: each entry is written as soon as its exchange is read, and none is kept.
    """
    creator = json.dumps({"name": "zltrace", "version": __version__})
    out.write(f'{{"log":{{"version":"1.2","creator":{creator},"pages":[],"entries":[')
    count = 0
    for exchange in exchanges:
        out.write(",\n" if count else "\n")
        out.write(json_text(_entry(exchange)))
        count += 1
    out.write("\n]}}\n")
    return count


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def _entry(ex: Exchange) -> dict[str, Any]:
    timings = _timings(ex)
    entry: dict[str, Any] = {
        "startedDateTime": iso_utc_ms(ex.started_at),
        "time": timings["send"] + timings["wait"] + timings["receive"],
        "request": _request(ex),
        "response": _response(ex.response),
        "cache": {},
        "timings": timings,
    }
    rs = ex.response
    extra: dict[str, Any] = {
        "id": ex.id,
        "logical_id": ex.logical_id,
        "outcome": ex.outcome,
        "complete_by": ex.complete_by,
        "error": None if ex.error is None else {"type": ex.error.type, "message": ex.error.message},
        "framing": None if rs is None else rs.framing,
        "chunks": [] if rs is None else [[offset, _ms(ns)] for offset, ns in rs.reads],
    }
    if rs is not None and rs.decode_note is not None:
        extra["decode_note"] = rs.decode_note
    entry["_zltrace"] = extra
    return entry


def _timings(ex: Exchange) -> dict[str, float]:
    t = ex.timing
    end = t.end
    sent = end if t.request_sent is None else min(t.request_sent, end)
    head = end if t.headers_received is None else min(max(t.headers_received, sent), end)
    return {
        "blocked": -1,
        "dns": -1,
        "connect": -1,
        "send": _ms(max(sent, 0)),
        "wait": _ms(head - sent),
        "receive": _ms(end - head),
        "ssl": -1,
    }


def _nv(pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": n, "value": v} for n, v in pairs]


def _request(ex: Exchange) -> dict[str, Any]:
    rq = ex.request
    try:
        parts = urlsplit(rq.url)
        url, query = urlunsplit(parts._replace(fragment="")), parts.query
    except ValueError:  # e.g. an unclosed IPv6 bracket: the URL as recorded, no query
        url, query = rq.url, ""
    body = rq.body
    out: dict[str, Any] = {
        "method": rq.method,
        "url": url,
        "httpVersion": rq.http_version,
        "cookies": [
            {"name": n, "value": v}
            for name, value in rq.headers
            if name.lower() == "cookie" and not _REDACTED.match(value)
            for n, v in _cookie_pairs(value)
        ],
        "headers": _nv(rq.headers),
        "queryString": _nv(parse_qsl(query, keep_blank_values=True, errors="replace")),
        "headersSize": -1,
        "bodySize": 0 if body is None else len(body),
    }
    if body:
        mime = rq.header("content-type") or ""
        # As for responses, the content is shown decoded (a gzip upload as its JSON);
        # bodySize stays what was sent.
        text, encoding = _text(rq.decoded_body or body, mime)
        post: dict[str, Any] = {"mimeType": mime, "text": text}
        if encoding:
            # postData has no "encoding" field in HAR 1.2: a custom one says how to undo it.
            post["_encoding"] = encoding
        out["postData"] = post
    return out


def _cookie_pairs(header: str) -> Iterable[tuple[str, str]]:
    for item in header.split(";"):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            yield name.strip(), value.strip()


def _set_cookie(header: str) -> dict[str, Any] | None:
    first, *attrs = header.split(";")
    name, sep, value = first.partition("=")
    if not sep or not name.strip():
        return None  # RFC 6265 5.2: no "=" or an empty name -> the line is ignored
    cookie: dict[str, Any] = {"name": name.strip(), "value": value.strip()}
    http_only = secure = False
    for attr in attrs:
        key, _, val = attr.partition("=")
        key = key.strip().lower()
        val = val.strip()
        if key in ("path", "domain"):
            cookie[key] = val
        elif key == "expires":
            expires = _http_date(val)
            if expires is not None:
                cookie["expires"] = expires
        elif key == "httponly":
            http_only = True
        elif key == "secure":
            secure = True
    cookie["httpOnly"] = http_only
    cookie["secure"] = secure
    return cookie


def _http_date(value: str) -> str | None:
    try:
        dt = parsedate_to_datetime(value)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return iso_utc_ms(dt)  # UTC may be out of range for year 1 or 9999
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _text(data: bytes, content_type: str) -> tuple[str, str | None]:
    """``data`` as text in its declared charset (UTF-8 if none), else base64."""
    m = _CHARSET.search(content_type)
    if m:
        try:
            charset = codecs.lookup(m.group(1)).name
            if charset != "utf-8":
                return data.decode(charset), None
        except (LookupError, ValueError):  # ValueError: any UnicodeError (idna, punycode, ...)
            pass  # unknown or wrong charset: try UTF-8, then base64
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def _response(rs: Response | None) -> dict[str, Any]:
    if rs is None:
        return {
            "status": 0,
            "statusText": "",
            "httpVersion": "",
            "cookies": [],
            "headers": [],
            "content": {"size": 0, "mimeType": ""},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": 0,
        }
    cookies = []
    for name, value in rs.headers:
        if name.lower() == "set-cookie" and not _REDACTED.match(value):
            cookie = _set_cookie(value)
            if cookie is not None:
                cookies.append(cookie)
    mime = rs.header("content-type") or ""
    body = rs.body
    content: dict[str, Any] = {"size": len(body)}
    if rs.decode_note is None and rs.header("content-encoding"):
        content["compression"] = len(body) - len(rs.raw_body)
    content["mimeType"] = mime
    text, encoding = _text(body, mime)
    content["text"] = text
    if encoding:
        content["encoding"] = encoding
    return {
        "status": rs.status,
        "statusText": rs.reason,
        "httpVersion": rs.http_version,
        "cookies": cookies,
        "headers": _nv(rs.headers),
        "content": content,
        "redirectURL": rs.header("location") or "",
        "headersSize": -1,
        "bodySize": len(rs.raw_body),
    }
