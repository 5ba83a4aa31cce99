"""A loopback OTLP/HTTP traces receiver that decodes every payload with the official
definitions (opentelemetry-proto's generated classes) and checks what it decodes.

Protobuf payloads are parsed with ``ExportTraceServiceRequest.FromString``; JSON payloads
with protobuf's ``json_format.Parse`` after the OTLP/JSON hex ids are turned into the
base64 the generic mapping expects -- so an unknown key (not lowerCamelCase), an enum
given by name or a value of the wrong JSON type fails the parse. Every span is then checked
(:func:`check_span`): id sizes, enum ranges, attribute value types. Problems are collected
in ``problems`` (tests assert it stays empty) and answered with 400.

``script`` decides each answer: ``script(received) -> (status, headers, body) | None``
(None: 200 with an empty partial success).
"""

from __future__ import annotations

import base64
import gzip
import http.server
import json
import threading
import time
from collections.abc import Callable
from typing import Any, Optional

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

__all__ = ["OTLPReceiver", "Received", "attributes", "check_span", "value_of"]

Answer = Optional[tuple[int, dict[str, str], bytes]]

#: Attribute keys whose value type is fixed by the semantic conventions (or by zltrace).
TYPES: dict[str, str] = {
    "http.request.method": "string_value",
    "url.full": "string_value",
    "url.scheme": "string_value",
    "server.address": "string_value",
    "server.port": "int_value",
    "http.response.status_code": "int_value",
    "http.request.body.size": "int_value",
    "http.response.body.size": "int_value",
    "http.request.resend_count": "int_value",
    "error.type": "string_value",
    "gen_ai.operation.name": "string_value",
    "gen_ai.provider.name": "string_value",
    "gen_ai.system": "string_value",
    "gen_ai.request.model": "string_value",
    "gen_ai.response.model": "string_value",
    "gen_ai.response.id": "string_value",
    "gen_ai.response.finish_reasons": "array_value",
    "gen_ai.usage.input_tokens": "int_value",
    "gen_ai.usage.output_tokens": "int_value",
    "llm.token_count.prompt": "int_value",
    "llm.token_count.completion": "int_value",
    "llm.token_count.total": "int_value",
}


def value_of(v: AnyValue) -> Any:
    """The Python value of an ``AnyValue`` (lists for arrays)."""
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value_of(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def attributes(span: Span) -> dict[str, Any]:
    """A span's attributes as a dict."""
    return {kv.key: value_of(kv.value) for kv in span.attributes}


def check_span(span: Span) -> list[str]:
    """What is wrong with a decoded span (empty: nothing)."""
    bad = []
    if len(span.trace_id) != 16 or not any(span.trace_id):
        bad.append(f"trace_id {span.trace_id.hex()!r}")
    if len(span.span_id) != 8 or not any(span.span_id):
        bad.append(f"span_id {span.span_id.hex()!r}")
    if span.parent_span_id and len(span.parent_span_id) != 8:
        bad.append(f"parent_span_id {span.parent_span_id.hex()!r}")
    if span.kind != Span.SPAN_KIND_CLIENT:
        bad.append(f"kind {span.kind}")
    if span.status.code not in (
        Status.STATUS_CODE_UNSET,
        Status.STATUS_CODE_OK,
        Status.STATUS_CODE_ERROR,
    ):
        bad.append(f"status code {span.status.code}")
    if not 0 < span.start_time_unix_nano <= span.end_time_unix_nano:
        bad.append(f"times {span.start_time_unix_nano}..{span.end_time_unix_nano}")
    if not span.name:
        bad.append("no name")
    for kv in [*span.attributes, *(a for e in span.events for a in e.attributes)]:
        kind = kv.value.WhichOneof("value")
        if kind is None:
            bad.append(f"attribute {kv.key} has no value")
        expected = TYPES.get(kv.key)
        if expected is not None and kind != expected:
            bad.append(f"attribute {kv.key} is {kind}, expected {expected}")
        if kind == "array_value":
            kinds = {x.WhichOneof("value") for x in kv.value.array_value.values}
            if len(kinds) > 1:
                bad.append(f"attribute {kv.key} mixes {sorted(map(str, kinds))}")
    for event in span.events:
        if not span.start_time_unix_nano <= event.time_unix_nano <= span.end_time_unix_nano:
            bad.append(f"event {event.name} outside the span")
    return bad


def _hex_ids_to_base64(doc: Any) -> Any:
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                out[k] = base64.b64encode(bytes.fromhex(v)).decode()
            else:
                out[k] = _hex_ids_to_base64(v)
        return out
    if isinstance(doc, list):
        return [_hex_ids_to_base64(x) for x in doc]
    return doc


class Received:
    """One request as received: its headers, raw body and decoded message."""

    def __init__(self, headers: dict[str, str], body: bytes, message: ExportTraceServiceRequest):
        self.headers = headers
        self.body = body
        self.message = message

    @property
    def spans(self) -> list[Span]:
        """Every span of the request."""
        return [s for rs in self.message.resource_spans for ss in rs.scope_spans for s in ss.spans]


class OTLPReceiver:
    """``with OTLPReceiver() as rx: ... rx.url``; ``rx.requests``, ``rx.spans``, ``rx.problems``."""

    def __init__(self, script: Callable[[Received], Answer] | None = None) -> None:
        self.script = script
        self.requests: list[Received] = []
        self.problems: list[str] = []
        self.attempts = 0  # POSTs seen, answered or not
        self.inflight = 0  # POSTs being handled now
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                outer._handle(self)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL (the shipper appends /v1/traces)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def spans(self) -> list[Span]:
        """Every span of every accepted request, in arrival order."""
        with self.lock:
            return [s for r in self.requests for s in r.spans]

    def __enter__(self) -> OTLPReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _decode(self, headers: dict[str, str], body: bytes) -> ExportTraceServiceRequest:
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        ctype = headers.get("content-type", "")
        if ctype == "application/x-protobuf":
            return ExportTraceServiceRequest.FromString(body)
        if ctype == "application/json":
            doc = json.loads(body)
            msg = ExportTraceServiceRequest()
            json_format.Parse(json.dumps(_hex_ids_to_base64(doc)), msg)
            return msg
        raise ValueError(f"content-type {ctype!r}")

    def wait_idle(self, timeout: float = 30) -> None:
        """Wait until no request is being handled (a killed client's included)."""
        deadline = time.monotonic() + timeout
        while self.inflight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not self.inflight, "a request is still being handled"

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.inflight += 1
        try:
            self._answer(h)
        finally:
            with self.lock:
                self.inflight -= 1

    def _answer(self, h: http.server.BaseHTTPRequestHandler) -> None:
        size = int(h.headers.get("Content-Length", "0"))
        try:
            body = h.rfile.read(size)
        except OSError:
            return
        if len(body) < size:
            return  # the client died while sending: nothing was received
        headers = {k.lower(): v for k, v in h.headers.items()}
        with self.lock:
            self.attempts += 1
        answer: Answer
        if h.path != "/v1/traces":
            answer = (404, {}, b"not found")
        else:
            try:
                message = self._decode(headers, body)
            except Exception as exc:
                with self.lock:
                    self.problems.append(f"undecodable payload: {exc!r}")
                answer = (400, {}, repr(exc).encode())
            else:
                received = Received(headers, body, message)
                bad = [p for s in received.spans for p in check_span(s)]
                if bad:
                    with self.lock:
                        self.problems.extend(bad)
                    answer = (400, {}, "; ".join(bad).encode())
                else:
                    answer = self.script(received) if self.script else None
                    if answer is None or 200 <= answer[0] < 300:
                        with self.lock:
                            self.requests.append(received)
        if answer is None:
            if headers.get("content-type") == "application/json":
                answer = (200, {"Content-Type": "application/json"}, b"{}")
            else:
                out = ExportTraceServiceResponse().SerializeToString()
                answer = (200, {"Content-Type": "application/x-protobuf"}, out)
        status, extra, data = answer
        try:
            h.send_response(status)
            for k, v in extra.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except OSError:
            pass  # the client is gone (killed): what it sent was recorded all the same
