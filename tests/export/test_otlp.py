"""Exchanges as OTLP spans: the mapping, and both encoders decoded with the official
opentelemetry-proto definitions (the hand-written protobuf encoder is checked against them)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import urllib3
from support.llm_fake import FakeLLM
from support.llm_fixtures import ANTHROPIC_TEXT, CHAT_TEXT
from support.server import Request, ScriptedServer, Step, response
from support.trace import records

import zltrace
from zltrace._export import otlp_json, otlp_proto
from zltrace._export.otlp_span import Span, SpanMapper, span_ids

pb = pytest.importorskip(
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
    reason="opentelemetry-proto is not installed (pip install -e '.[test]')",
)
from google.protobuf import json_format  # noqa: E402
from support.otlp import attributes, check_span  # noqa: E402

RESOURCE = [("service.name", "svc"), ("n", 3), ("ok", True), ("pi", 3.5)]
SCOPE = ("zltrace", "1.0")


def llm_exchanges(tracer: zltrace.Tracer) -> list[zltrace.Exchange]:
    """Anthropic and Chat Completions calls, streamed and not, through a traced pool."""
    with FakeLLM() as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        for path, model in (("/v1/messages", "claude-x"), ("/v1/chat/completions", "gpt-x")):
            for stream in (False, True):
                body = json.dumps({"model": model, "stream": stream, "messages": []})
                pool.request("POST", path, body=body.encode())
        pool.request("GET", "/nothing?api_key=secret")
    return records(tracer)


def decode_proto(spans: list[Span]) -> Any:
    """The protobuf request of ``spans``, parsed by the official classes."""
    data = otlp_proto.encode_request(RESOURCE, SCOPE, [otlp_proto.encode_span(s) for s in spans])
    return pb.ExportTraceServiceRequest.FromString(data)


def decode_json(spans: list[Span]) -> Any:
    """The JSON request of ``spans``, parsed strictly after turning hex ids into base64."""
    data = otlp_json.encode_request(RESOURCE, SCOPE, [otlp_json.encode_span(s) for s in spans])
    doc = json.loads(data)

    def b64(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {
                k: base64.b64encode(bytes.fromhex(v)).decode()
                if k in ("traceId", "spanId", "parentSpanId")
                else b64(v)
                for k, v in obj.items()
            }
        return [b64(x) for x in obj] if isinstance(obj, list) else obj

    msg = pb.ExportTraceServiceRequest()
    json_format.Parse(json.dumps(b64(doc)), msg)
    return msg


@pytest.mark.parametrize("decode", [decode_proto, decode_json], ids=["protobuf", "json"])
def test_llm_spans_decode_with_the_official_definitions(
    tracer: zltrace.Tracer, decode: Any
) -> None:
    """Every field survives both encodings: ids, kind, times, typed GenAI/HTTP attributes."""
    exchanges = llm_exchanges(tracer)
    mapper = SpanMapper()
    spans = [mapper.span(ex) for ex in exchanges]
    msg = decode(spans)
    rs = msg.resource_spans[0]
    res = {kv.key: kv.value for kv in rs.resource.attributes}
    assert res["service.name"].string_value == "svc"
    assert res["n"].int_value == 3 and res["ok"].bool_value is True
    assert res["pi"].double_value == 3.5
    assert rs.scope_spans[0].scope.name == "zltrace"
    got = rs.scope_spans[0].spans
    assert len(got) == len(exchanges) == 5
    for span, ours in zip(got, spans):
        assert check_span(span) == []
        assert span.trace_id == ours.trace_id and span.span_id == ours.span_id
        assert span.start_time_unix_nano == ours.start_ns
        assert [e.name for e in span.events][:2] == ["http.request.sent", "http.response.headers"]
    a = [attributes(s) for s in got]
    assert a[0]["gen_ai.provider.name"] == "anthropic"
    assert a[0]["gen_ai.request.model"] == "claude-x"
    assert a[0]["gen_ai.response.model"] == ANTHROPIC_TEXT.message["model"]
    assert a[1]["gen_ai.usage.output_tokens"] == ANTHROPIC_TEXT.message["usage"]["output_tokens"]
    assert a[1]["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert a[3]["gen_ai.provider.name"] == "openai"
    assert a[3]["gen_ai.response.model"] == CHAT_TEXT.message["model"]
    assert a[3]["gen_ai.usage.input_tokens"] == CHAT_TEXT.message["usage"]["prompt_tokens"]
    assert a[3]["gen_ai.response.finish_reasons"] == ["stop"]
    assert got[1].name == "chat claude-x"
    plain = a[4]
    assert "gen_ai.system" not in plain and got[4].name == "GET"
    assert plain["http.response.status_code"] == 404 and plain["error.type"] == "404"
    assert got[4].status.code == 2  # STATUS_CODE_ERROR
    assert "secret" not in plain["url.full"]  # redacted as recorded
    assert plain["server.address"] == "127.0.0.1" and isinstance(plain["server.port"], int)
    assert "gen_ai.input.messages" not in a[0]  # content is opt-in


def test_content_is_opt_in_and_capped(tracer: zltrace.Tracer) -> None:
    """--content puts prompt and completion on the span, each cut at the cap."""
    exchanges = llm_exchanges(tracer)
    a = attributes(
        decode_proto([SpanMapper(content=True, content_max=20).span(exchanges[0])])
        .resource_spans[0]
        .scope_spans[0]
        .spans[0]
    )
    assert a["gen_ai.input.messages"].startswith('{"model": "claude-x"')
    assert a["gen_ai.input.messages"].endswith("...[truncated]")
    assert len(a["gen_ai.output.messages"]) == 20 + len("...[truncated]")


def retry_server() -> ScriptedServer:
    """503 on the first request to /r, 200 after; /r0 redirects to /r."""
    seen: list[str] = []

    def reply(req: Request) -> list[Step]:
        seen.append(req.target)
        if req.target == "/r0":
            return response(302, b"", [("Location", "/r")])
        if seen.count("/r") == 1:
            return response(503, b"busy")
        return response(200, b"ok")

    return ScriptedServer(reply)


def test_retries_and_redirects_share_a_trace(tracer: zltrace.Tracer) -> None:
    """A redirect and a retry of one request: one trace id; the later attempts are children
    of the first, with http.request.resend_count."""
    with retry_server() as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        retries = urllib3.Retry(total=3, status_forcelist=[503], backoff_factor=0)
        assert pool.request("GET", "/r0", retries=retries).status == 200
        pool.request("GET", "/other")
    exchanges = records(tracer)
    assert len(exchanges) == 4
    mapper = SpanMapper()
    spans = [mapper.span(ex) for ex in exchanges]
    first, *later, other = spans
    assert {s.trace_id for s in later} == {first.trace_id} != {other.trace_id}
    assert first.parent_span_id == b"" and {s.parent_span_id for s in later} == {first.span_id}
    counts = [dict(s.attributes).get("http.request.resend_count") for s in spans]
    assert counts == [None, 1, 2, None]


def test_ids_are_deterministic_and_depend_on_the_trace_file(tmp_path: Path) -> None:
    """Same (file identity, exchange id): same ids; a dead-letter file shares its trace's."""
    mapper = SpanMapper()
    assert span_ids("zltrace-a", "3", "1") == span_ids("zltrace-a", "3", "1")
    assert span_ids("zltrace-a", "3", "1")[1] != span_ids("zltrace-b", "3", "1")[1]
    from zltrace._export.otlp_span import trace_identity

    assert trace_identity("/x/zltrace-a.jsonl") == trace_identity("/y/zltrace-a.deadletter.jsonl")
    assert mapper is not None


def test_protobuf_edge_values_decode() -> None:
    """Negative and 64-bit ints, false, empty strings, arrays and NaN-free doubles round-trip."""
    span = Span(
        trace_id=b"\1" * 16,
        span_id=b"\2" * 8,
        parent_span_id=b"",
        name="x",
        kind=3,
        start_ns=1,
        end_ns=2,
        attributes=[
            ("neg", -5),
            ("big", (1 << 63) - 1),
            ("f", False),
            ("e", ""),
            ("arr", ["a", "b"]),
            ("d", -0.25),
        ],
        events=[],
        status_code=0,
    )
    for decode in (decode_proto, decode_json):
        a = attributes(decode([span]).resource_spans[0].scope_spans[0].spans[0])
        assert a == {
            "neg": -5,
            "big": (1 << 63) - 1,
            "f": False,
            "e": "",
            "arr": ["a", "b"],
            "d": -0.25,
        }


def test_partial_success_responses_parse() -> None:
    """Both encodings' partial-success answers give (rejected, message)."""
    resp = pb.ExportTraceServiceResponse()
    resp.partial_success.rejected_spans = 2
    resp.partial_success.error_message = "too old"
    assert otlp_proto.parse_response(resp.SerializeToString()) == (2, "too old")
    assert otlp_proto.parse_response(b"") == (0, "")
    body = b'{"partialSuccess": {"rejectedSpans": "2", "errorMessage": "too old"}}'
    assert otlp_json.parse_response(body) == (2, "too old")
    assert otlp_json.parse_response(b"{}") == (0, "")


def test_json_without_model_or_usage_is_no_llm_span(tracer: zltrace.Tracer) -> None:
    """A JSON answer on an LLM API path that names no model and reports no usage (an error
    to a GET) gets HTTP attributes only."""
    with FakeLLM() as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        pool.request("GET", "/v1/messages")
    (ex,) = records(tracer)
    assert ex.message() is not None
    span = SpanMapper().span(ex)
    assert span.name == "GET"
    assert not [k for k, _ in span.attributes if k.startswith(("gen_ai.", "llm."))]


def test_retry_after_takes_seconds_and_http_dates() -> None:
    """Retry-After as delta seconds or an HTTP date (from now); anything else is ignored."""
    from email.utils import formatdate

    from zltrace._export.otlp_send import retry_after

    assert retry_after("7", 1000.0) == 7.0
    assert retry_after(formatdate(1030.0, usegmt=True), 1000.0) == 30.0
    assert retry_after(formatdate(900.0, usegmt=True), 1000.0) == 0.0
    assert retry_after("soon", 1000.0) is None and retry_after(None, 0.0) is None
