"""OTLP trace export requests in protobuf, written by hand (no protobuf runtime needed).

The messages are few and only written, never read (but for the small partial-success
response): ``ExportTraceServiceRequest`` > ``ResourceSpans`` > ``ScopeSpans`` > ``Span`` >
``KeyValue``/``AnyValue``/``Event``/``Status``, field numbers as in opentelemetry-proto's
``trace/v1/trace.proto``, ``common/v1/common.proto``, ``resource/v1/resource.proto`` and
``collector/trace/v1/trace_service.proto``. The tests decode every payload with the official
generated classes, which is what keeps this honest.

Rules: proto3 scalars at their default are left out, except inside ``AnyValue``'s oneof,
where presence is the value (``false``, ``0`` and ``""`` are written). Spans are encoded
once (:func:`encode_span`) and the request is assembled from those bytes, so a batch split
in two costs no re-encoding.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence

from .otlp_span import Attributes, AttrValue, Event, Span

__all__ = ["encode_request", "encode_span", "parse_response"]

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


_SMALL = [bytes((i,)) for i in range(128)]
# Every field number written here is below 16: each tag is one byte.
_TAGS = {(f, w): bytes((f << 3 | w,)) for f in range(1, 16) for w in (_VARINT, _I64, _LEN, _I32)}


def _varint(n: int) -> bytes:
    if 0 <= n < 128:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64  # int64 negatives: ten bytes of two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _TAGS[field, wire]


def _len(field: int, payload: bytes) -> bytes:
    n = len(payload)
    return _TAGS[field, _LEN] + (_SMALL[n] if n < 128 else _varint(n)) + payload


def _str(field: int, text: str) -> bytes:
    return _len(field, text.encode("utf-8", "replace")) if text else b""


def _fixed64(field: int, n: int) -> bytes:
    return _tag(field, _I64) + struct.pack("<Q", n) if n else b""


def _uint(field: int, n: int) -> bytes:
    return _tag(field, _VARINT) + _varint(n) if n else b""


def any_value(value: AttrValue) -> bytes:
    """An ``AnyValue`` (its oneof member always written)."""
    if isinstance(value, bool):
        return _tag(2, _VARINT) + (b"\1" if value else b"\0")
    if isinstance(value, int):
        return _tag(3, _VARINT) + _varint(value)
    if isinstance(value, float):
        return _tag(4, _I64) + struct.pack("<d", value)
    if isinstance(value, list):
        return _len(5, b"".join(_len(1, any_value(v)) for v in value))
    return _len(1, value.encode("utf-8", "replace"))


@functools.lru_cache(maxsize=1024)
def _key(key: str) -> bytes:
    # Attribute keys repeat on every span: encode each once.
    return _str(1, key)


def _attributes(field: int, attributes: Attributes) -> bytes:
    return b"".join(_len(field, _key(key) + _len(2, any_value(value))) for key, value in attributes)


def _event(event: Event) -> bytes:
    return _fixed64(1, event.time_ns) + _str(2, event.name) + _attributes(3, event.attributes)


def encode_span(span: Span) -> bytes:
    """One ``Span`` message (without its field tag)."""
    status = _str(2, span.status_message) + _uint(3, span.status_code)
    return b"".join(
        (
            _len(1, span.trace_id),
            _len(2, span.span_id),
            _len(4, span.parent_span_id) if span.parent_span_id else b"",
            _str(5, span.name),
            _uint(6, span.kind),
            _fixed64(7, span.start_ns),
            _fixed64(8, span.end_ns),
            _attributes(9, span.attributes),
            b"".join(_len(11, _event(e)) for e in span.events),
            _len(15, status) if status else b"",
        )
    )


def encode_request(resource: Attributes, scope: tuple[str, str], spans: Sequence[bytes]) -> bytes:
    """An ``ExportTraceServiceRequest`` of one resource and one scope holding ``spans``
    (each from :func:`encode_span`)."""
    scope_msg = _str(1, scope[0]) + _str(2, scope[1])
    scope_spans = _len(1, scope_msg) + b"".join(_len(2, s) for s in spans)
    resource_spans = _len(1, _attributes(1, resource)) + _len(2, scope_spans)
    return _len(1, resource_spans)


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    out: list[tuple[int, int, int | bytes]] = []
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, i = _read_varint(data, i)
            out.append((field, wire, value))
        elif wire == _LEN:
            size, i = _read_varint(data, i)
            if i + size > len(data):
                raise ValueError("truncated field")
            out.append((field, wire, data[i : i + size]))
            i += size
        elif wire == _I64:
            i += 8
        elif wire == _I32:
            i += 4
        else:
            raise ValueError(f"wire type {wire} not supported")
    return out


def parse_response(data: bytes) -> tuple[int, str]:
    """(rejected spans, error message) of an ``ExportTraceServiceResponse``'s partial
    success; (0, "") when it has none. ``ValueError`` on a malformed message."""
    rejected, message = 0, ""
    for field, wire, value in _fields(data):
        if field == 1 and wire == _LEN and isinstance(value, bytes):
            for f2, w2, v2 in _fields(value):
                if f2 == 1 and w2 == _VARINT and isinstance(v2, int):
                    rejected = v2 - (1 << 64) if v2 >= 1 << 63 else v2
                elif f2 == 2 and w2 == _LEN and isinstance(v2, bytes):
                    message = v2.decode("utf-8", "replace")
    return rejected, message
