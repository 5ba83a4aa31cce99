"""One trace line, checked against the format and built into an :class:`Exchange`.

Rules: every field the reader uses is checked for its type and range before it is used, so
what :func:`build` returns is well typed and every consumer (stats, report, exports) can
trust it; anything off raises :class:`TraceLineError` naming the field and showing the value.
Integers are bounded to int64 (what the writer and ``array("q")`` hold), timings to what a
``datetime`` can add to ``started_at``, bodies to what their side file holds. Keys the reader
does not use are ignored, as a newer writer of the same format version may add some.
"""

from __future__ import annotations

import base64
import reprlib
import sys
from array import array
from datetime import datetime, timedelta, timezone
from typing import Any

from ..exceptions import TraceLineError
from .decode import DecodeLimits
from .exchange import ErrorInfo, Exchange, Request, Response, Timing
from .sidefile import SideFiles

__all__ = ["build"]

_INT64 = 1 << 63
_OUTCOMES = ("complete", "error", "abandoned", "incomplete")
_COMPLETE_BY = ("framing", "end_marker")
_FRAMINGS = ("length", "chunked", "close", "none")
_MISSING = object()


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60


def _show(value: Any) -> str:
    # Bounded in length and depth: the value may be a deeply nested or huge part of a line.
    return _REPR.repr(value)


def _bad(where: str, expected: str, value: Any) -> TraceLineError:
    return TraceLineError(f"{where} must be {expected}, got {_show(value)}")


def _get(obj: dict[str, Any], key: str, where: str) -> Any:
    value = obj.get(key, _MISSING)
    if value is _MISSING:
        raise TraceLineError(f"{where}.{key} is missing")
    return value


def _object(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = _get(obj, key, where)
    if not isinstance(value, dict):
        raise _bad(f"{where}.{key}", "an object", value)
    return value


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = _get(obj, key, where)
    if not isinstance(value, str):
        raise _bad(f"{where}.{key}", "a string", value)
    return value


def _int(value: Any, where: str, low: int = 0, high: int = _INT64 - 1) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _bad(where, f"an integer in [{low}, {high}]", value)
    return value


def _count(obj: dict[str, Any], key: str, where: str) -> int:
    return _int(_get(obj, key, where), f"{where}.{key}")


def _maybe_count(obj: dict[str, Any], key: str, where: str) -> int | None:
    value = _get(obj, key, where)
    return None if value is None else _int(value, f"{where}.{key}")


def _one_of(obj: dict[str, Any], key: str, where: str, allowed: tuple[str, ...]) -> str:
    value = _get(obj, key, where)
    if not isinstance(value, str) or value not in allowed:
        raise _bad(f"{where}.{key}", f"one of {allowed}", value)
    return value


def _headers(obj: dict[str, Any], where: str) -> list[tuple[str, str]]:
    value = _get(obj, "headers", where)
    if not isinstance(value, list):
        raise _bad(f"{where}.headers", "a list of [name, value] pairs", value)
    out = []
    for pair in value:
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and isinstance(pair[0], str)
            and isinstance(pair[1], str)
        ):
            raise _bad(f"{where}.headers[]", "a [name, value] pair of strings", pair)
        out.append((pair[0], pair[1]))
    return out


def _b64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text)
    except ValueError as exc:  # binascii.Error is one
        raise _bad(where, f"base64 ({exc})", text) from None


def _body(obj: dict[str, Any], where: str, side: SideFiles) -> bytes | None:
    spec = _get(obj, "body", where)
    where += ".body"
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise _bad(where, "an object or null", spec)
    size = _count(spec, "size", where)
    if "text" in spec:
        try:
            data = _text(spec, "text", where).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: the writer stores such bodies as base64
            raise _bad(f"{where}.text", "valid Unicode", spec["text"]) from None
    elif "base64" in spec:
        data = _b64(_text(spec, "base64", where), f"{where}.base64")
    elif "parts" in spec:
        data = _parts(spec, size, where, side)
    else:
        offset = _count(spec, "offset", where)
        data = side.get(_text(spec, "file", where), offset, size)
    if len(data) != size:
        raise TraceLineError(f"{where} is {len(data)} bytes, its size says {size}")
    return data


def _parts(spec: dict[str, Any], size: int, where: str, side: SideFiles) -> bytes:
    # Spilled while in flight: side-file extents [offset, size], or base64 text for a part
    # that had to stay inline. The sizes are checked against ``size`` and the side file
    # before anything is read, so a damaged line cannot make it hold more than the file.
    name = _text(spec, "file", where)
    parts = _get(spec, "parts", where)
    if not isinstance(parts, list):
        raise _bad(f"{where}.parts", "a list", parts)
    pieces: list[bytes | tuple[int, int]] = []
    total = 0
    for part in parts:
        if isinstance(part, str):
            piece = _b64(part, f"{where}.parts[]")
            total += len(piece)
            pieces.append(piece)
        elif isinstance(part, list) and len(part) == 2:
            offset = _int(part[0], f"{where}.parts[][0]")
            length = _int(part[1], f"{where}.parts[][1]")
            total += length
            pieces.append((offset, length))
        else:
            raise _bad(f"{where}.parts[]", "[offset, size] or a base64 string", part)
        if total > size:
            raise TraceLineError(f"{where}.parts add up to more than its size {size}")
    if total != size:
        raise TraceLineError(f"{where}.parts add up to {total} bytes, its size says {size}")
    # The extents of one body are distinct pieces of the side file: together no larger.
    spilled = sum(p[1] for p in pieces if isinstance(p, tuple))
    if spilled > side.size(name):
        raise TraceLineError(f"{where}.parts ask for {spilled} bytes, more than {name!r} holds")
    return b"".join(p if isinstance(p, bytes) else side.get(name, *p) for p in pieces)


def _reads(obj: dict[str, Any], where: str, side: SideFiles) -> list[tuple[int, int]]:
    spec = _get(obj, "reads", where)
    where += ".reads"
    flat: list[int]
    if isinstance(spec, dict):
        count = _count(spec, "count", where)
        offset = _count(spec, "offset", where)
        if count > (_INT64 - 1) // 16:
            raise _bad(f"{where}.count", "a count of int64 pairs", count)
        arr = array("q")
        arr.frombytes(side.get(_text(spec, "file", where), offset, count * 16))
        if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
            arr.byteswap()
        flat = arr.tolist()
        if flat and min(flat) < 0:
            raise TraceLineError(f"{where} in the side file holds a negative number")
    elif isinstance(spec, list):
        flat = [_int(n, f"{where}[]") for n in spec]
    else:
        raise _bad(where, "a list or a side-file reference", spec)
    return list(zip(flat[0::2], flat[1::2]))


def _started_at(rec: dict[str, Any]) -> datetime:
    text = _text(rec, "started_at", "line")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise _bad("line.started_at", "a UTC time like 2025-01-02T03:04:05.123456Z", text) from None


def _timing(rec: dict[str, Any], started: datetime) -> Timing:
    t = _object(rec, "timing", "line")
    timing = Timing(
        _maybe_count(t, "request_sent", "line.timing"),
        _maybe_count(t, "headers_received", "line.timing"),
        _maybe_count(t, "first_byte", "line.timing"),
        _count(t, "end", "line.timing"),
    )
    # Exports add the offsets to started_at: the sum must stay a datetime.
    offsets = (timing.request_sent, timing.headers_received, timing.first_byte, timing.end)
    latest = max(n for n in offsets if n is not None)
    try:
        started + timedelta(microseconds=latest // 1000)
    except OverflowError:
        raise _bad("line.timing", "offsets that end before the year 10000", latest) from None
    return timing


def _error(rec: dict[str, Any]) -> ErrorInfo | None:
    err = _get(rec, "error", "line")
    if err is None:
        return None
    if not isinstance(err, dict):
        raise _bad("line.error", "an object or null", err)
    return ErrorInfo(_text(err, "type", "line.error"), _text(err, "message", "line.error"))


def _request(rec: dict[str, Any], side: SideFiles, limits: DecodeLimits) -> Request:
    rq = _object(rec, "request", "line")
    where = "line.request"
    return Request(
        method=_text(rq, "method", where),
        url=_text(rq, "url", where),
        http_version=_text(rq, "http_version", where),
        headers=_headers(rq, where),
        body=_body(rq, where, side),
        decode_limits=limits,
    )


def _response(rec: dict[str, Any], side: SideFiles, limits: DecodeLimits) -> Response | None:
    rs = _get(rec, "response", "line")
    if rs is None:
        return None
    if not isinstance(rs, dict):
        raise _bad("line.response", "an object or null", rs)
    where = "line.response"
    return Response(
        status=_int(_get(rs, "status", where), f"{where}.status", 100, 999),
        reason=_text(rs, "reason", where),
        http_version=_text(rs, "http_version", where),
        headers=_headers(rs, where),
        raw_body=_body(rs, where, side) or b"",
        framing=_one_of(rs, "framing", where, _FRAMINGS),
        reads=_reads(rs, where, side),
        decode_limits=limits,
    )


def build(
    rec: dict[str, Any], side: SideFiles, source: tuple[str, int], limits: DecodeLimits
) -> Exchange:
    """The exchange of one parsed trace line (of the current format version)."""
    started = _started_at(rec)
    return Exchange(
        id=_text(rec, "id", "line"),
        logical_id=_text(rec, "logical_id", "line"),
        started_at=started,
        request=_request(rec, side, limits),
        response=_response(rec, side, limits),
        outcome=_one_of(rec, "outcome", "line", _OUTCOMES),
        error=_error(rec),
        timing=_timing(rec, started),
        source=source,
        complete_by=_complete_by(rec),
    )


def _complete_by(rec: dict[str, Any]) -> str | None:
    # Lines written before the field existed say nothing; a complete one was by framing then.
    if "complete_by" in rec:
        return _one_of(rec, "complete_by", "line", _COMPLETE_BY)
    return "framing" if rec.get("outcome") == "complete" else None
