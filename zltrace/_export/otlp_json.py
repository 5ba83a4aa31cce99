"""OTLP trace export requests in JSON, per the OTLP/JSON rules.

Those rules differ from protobuf's generic JSON mapping: trace and span ids are hex
strings (not base64), enums are integers, keys are lowerCamelCase, 64-bit integers are
decimal strings (``intValue``, the ``*UnixNano`` times). Fields at their default are left
out, but for ``AnyValue``'s oneof member, which is always written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from .otlp_span import Attributes, AttrValue, Event, Span

__all__ = ["encode_request", "encode_span", "parse_response"]


def any_value(value: AttrValue) -> dict[str, Any]:
    """An ``AnyValue`` object."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        if math.isfinite(value):
            return {"doubleValue": value}
        special = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return {"doubleValue": special}
    if isinstance(value, list):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    return {"stringValue": value}


def _attributes(attributes: Attributes) -> list[dict[str, Any]]:
    return [{"key": key, "value": any_value(value)} for key, value in attributes]


def _event(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"timeUnixNano": str(event.time_ns), "name": event.name}
    if event.attributes:
        out["attributes"] = _attributes(event.attributes)
    return out


def encode_span(span: Span) -> bytes:
    """One span as a JSON object (UTF-8 bytes), ready to be joined into a request."""
    out: dict[str, Any] = {
        "traceId": span.trace_id.hex(),
        "spanId": span.span_id.hex(),
    }
    if span.parent_span_id:
        out["parentSpanId"] = span.parent_span_id.hex()
    out["name"] = span.name
    out["kind"] = span.kind
    out["startTimeUnixNano"] = str(span.start_ns)
    out["endTimeUnixNano"] = str(span.end_ns)
    if span.attributes:
        out["attributes"] = _attributes(span.attributes)
    if span.events:
        out["events"] = [_event(e) for e in span.events]
    status: dict[str, Any] = {}
    if span.status_message:
        status["message"] = span.status_message
    if span.status_code:
        status["code"] = span.status_code
    out["status"] = status
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )


def encode_request(resource: Attributes, scope: tuple[str, str], spans: Sequence[bytes]) -> bytes:
    """An ``ExportTraceServiceRequest`` of one resource and one scope holding ``spans``
    (each from :func:`encode_span`)."""
    head = {
        "resource": {"attributes": _attributes(resource)},
        "scope": {"name": scope[0], "version": scope[1]},
    }
    resource_part = json.dumps(head["resource"], separators=(",", ":")).encode()
    scope_part = json.dumps(head["scope"], separators=(",", ":")).encode()
    return b"".join(
        (
            b'{"resourceSpans":[{"resource":',
            resource_part,
            b',"scopeSpans":[{"scope":',
            scope_part,
            b',"spans":[',
            b",".join(spans),
            b"]}]}]}",
        )
    )


def parse_response(data: bytes) -> tuple[int, str]:
    """(rejected spans, error message) of an ``ExportTraceServiceResponse``'s partial
    success; (0, "") when it has none. ``ValueError`` on malformed JSON."""
    if not data.strip():
        return 0, ""
    doc = json.loads(data)
    part = doc.get("partialSuccess") if isinstance(doc, dict) else None
    if not isinstance(part, dict):
        return 0, ""
    rejected = part.get("rejectedSpans", 0)
    message = part.get("errorMessage", "")
    try:
        count = int(rejected)
    except (TypeError, ValueError):
        count = 0
    return count, message if isinstance(message, str) else ""
