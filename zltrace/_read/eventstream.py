"""AWS event-stream bodies (``application/vnd.amazon.eventstream``) split into frames.

The framing (what Bedrock, Transcribe, S3 Select and Kinesis use for streamed responses):
each message is a 12-byte prelude (total length, headers length, CRC32 of those 8 bytes,
all big-endian uint32), the headers, the payload, and a CRC32 of everything before it.
A header is a 1-byte name length, the name, a 1-byte type and a value of that type.

Rules:
- Never raises on bytes: a frame whose prelude or message CRC does not match, whose lengths
  are impossible, or whose headers do not parse is yielded as an :class:`EventFrame` with
  ``error`` set. Once a prelude is bad the frame boundaries are lost, so the walk stops
  there; a bad message CRC or header block under a good prelude is reported and the walk
  goes on from the next frame (its length is trustworthy).
- A body that ends inside a frame (a stream cut short) ends with a frame whose ``error``
  says how many bytes of it were missing.
"""

from __future__ import annotations

import struct
import uuid
from binascii import crc32
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import attrs

__all__ = ["CONTENT_TYPE", "EventFrame", "is_aws_event_stream", "parse_event_stream"]

CONTENT_TYPE = "application/vnd.amazon.eventstream"

_PRELUDE = 12
_MAX_FRAME = 16 * 1024 * 1024  # the limit botocore and the AWS SDKs enforce
_MAX_HEADERS = 128 * 1024


@attrs.frozen
class EventFrame:
    """One event-stream message: its headers, its payload, and where it starts in the body."""

    #: Header name -> value (str, bytes, bool, int, datetime or uuid.UUID, by header type).
    headers: dict[str, Any]
    payload: bytes
    #: Offset of the frame's first byte in the body.
    offset: int
    #: Why the frame is unusable (a CRC mismatch, a truncated frame, ...), else None.
    error: str | None = None

    @property
    def message_type(self) -> str | None:
        """``:message-type``: "event", "exception" or "error" (None if absent)."""
        return _str(self.headers.get(":message-type"))

    @property
    def event_type(self) -> str | None:
        """``:event-type`` (an event's name), or ``:exception-type`` for an exception."""
        return _str(self.headers.get(":event-type")) or _str(self.headers.get(":exception-type"))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def is_aws_event_stream(content_type: str | None) -> bool:
    """Whether a Content-Type header value names the AWS event-stream framing."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == CONTENT_TYPE


def parse_event_stream(data: bytes) -> Iterator[EventFrame]:
    """The frames of an event-stream body, bad ones reported in place (see module rules)."""
    view = memoryview(data)
    pos = 0
    n = len(data)
    while pos < n:
        if n - pos < _PRELUDE:
            yield EventFrame({}, b"", pos, f"truncated prelude: {n - pos} of 12 bytes")
            return
        total, hlen, pcrc = struct.unpack_from(">III", data, pos)
        if crc32(view[pos : pos + 8]) & 0xFFFFFFFF != pcrc:
            yield EventFrame({}, b"", pos, "prelude CRC mismatch")
            return
        if total > _MAX_FRAME or hlen > _MAX_HEADERS or total < _PRELUDE + hlen + 4:
            yield EventFrame({}, b"", pos, f"impossible lengths: total {total}, headers {hlen}")
            return
        if n - pos < total:
            yield EventFrame({}, b"", pos, f"truncated frame: {n - pos} of {total} bytes")
            return
        end = pos + total
        (mcrc,) = struct.unpack_from(">I", data, end - 4)
        payload = bytes(view[pos + _PRELUDE + hlen : end - 4])
        headers, header_error = _headers(view[pos + _PRELUDE : pos + _PRELUDE + hlen])
        error = header_error
        if crc32(view[pos : end - 4]) & 0xFFFFFFFF != mcrc:
            error = "message CRC mismatch"
        yield EventFrame(headers, payload, pos, error)
        pos = end


# Header value types: fixed sizes (struct format) or 2-byte length-prefixed.
_FIXED = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}


def _headers(block: memoryview) -> tuple[dict[str, Any], str | None]:
    headers: dict[str, Any] = {}
    i = 0
    n = len(block)
    try:
        while i < n:
            nlen = block[i]
            name = bytes(block[i + 1 : i + 1 + nlen]).decode("utf-8")
            i += 1 + nlen
            kind = block[i]
            i += 1
            value: Any
            if kind in (0, 1):
                value = kind == 0
            elif kind in _FIXED:
                fmt = _FIXED[kind]
                size = struct.calcsize(fmt)
                if i + size > n:
                    raise ValueError("header value past the header block")
                (value,) = struct.unpack_from(fmt, block, i)
                i += size
                if kind == 8:
                    value = datetime.fromtimestamp(value / 1000, tz=timezone.utc)
            elif kind in (6, 7):
                (size,) = struct.unpack_from(">H", block, i)
                raw = bytes(block[i + 2 : i + 2 + size])
                if len(raw) != size:
                    raise ValueError("header value past the header block")
                i += 2 + size
                value = raw.decode("utf-8") if kind == 7 else raw
            elif kind == 9:
                raw = bytes(block[i : i + 16])
                if len(raw) != 16:
                    raise ValueError("header value past the header block")
                value = uuid.UUID(bytes=raw)
                i += 16
            else:
                raise ValueError(f"unknown header type {kind}")
            if i > n:
                raise ValueError("header past the header block")
            headers[name] = value
    except (ValueError, IndexError, struct.error, OverflowError, OSError) as exc:
        return headers, f"bad headers: {exc}"
    return headers, None
