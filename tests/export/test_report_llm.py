"""The report for Bedrock conversations and compressed uploads, from real loopback exchanges.

Bedrock's bodies come from the loopback fake of ``support.bedrock`` (checked against boto3 in
``tests/read/test_bedrock.py``), sent through a traced urllib3 pool.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from typing import Any

import urllib3
from support import bedrock as B
from support.server import ScriptedServer, response
from support.trace import records

import zltrace

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1%3A0"


def page_blocks(exchanges: list[zltrace.Exchange]) -> tuple[list[Any], list[Any]]:
    """The (summaries, details) data blocks of the report of ``exchanges``."""
    out = io.StringIO()
    zltrace.write_report(exchanges, out)
    blocks = [
        json.loads(b)
        for b in re.findall(
            r'<script type="application/json"[^>]*>(.*?)</script>', out.getvalue(), re.S
        )
    ]
    return [b for b in blocks if "ttfb" in b], [b for b in blocks if "request" in b]


def bedrock_exchanges(tracer: zltrace.Tracer) -> list[zltrace.Exchange]:
    """converse, converse-stream and invoke-with-response-stream, traced."""
    with ScriptedServer(B.reply) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        for op in ("converse", "converse-stream", "invoke-with-response-stream"):
            pool.request("POST", f"/model/{MODEL}/{op}", body=b'{"messages": []}')
    return records(tracer)


def test_bedrock_rows_have_model_tokens_and_stream_tag(tracer: zltrace.Tracer) -> None:
    """Each Bedrock row: the model from the URL path (decoded), its tokens, a stream tag."""
    summaries, _ = page_blocks(bedrock_exchanges(tracer))
    assert [s["model"] for s in summaries] == [
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "claude-3-5-sonnet-20240620",
    ]
    assert [(s["tokens_in"], s["tokens_out"]) for s in summaries] == [(14, 9), (412, 87), (12, 6)]
    assert summaries[1]["tokens_cache_read"] == 1000
    assert [s["frames"] for s in summaries] == [False, True, True]
    assert [s["sse"] for s in summaries] == [False, True, True]


def test_bedrock_conversation_shown_like_anthropic(tracer: zltrace.Tracer) -> None:
    """A ConverseStream: thinking, text, the tool call with parsed input, stop, decoded frames."""
    _, details = page_blocks(bedrock_exchanges(tracer))
    converse, stream, invoke = details
    assert [b["kind"] for b in converse["message"]["blocks"]] == ["text", "tool_use"]
    blocks = stream["message"]["blocks"]
    assert [b["kind"] for b in blocks] == ["thinking", "text", "tool_use"]
    assert blocks[0]["text"] == "The user wants the weather."
    assert blocks[2]["name"] == "get_weather"
    assert json.loads(blocks[2]["text"]) == B.WEATHER
    assert stream["message"]["stop"] == "tool_use"
    frames = stream["sse"]
    assert frames["title"] == "Event-stream frames" and frames["count"] == 14
    assert frames["events"][0]["event"] == "messageStart"
    assert frames["events"][-1]["event"] == "metadata"
    assert json.loads(frames["events"][-1]["data"])["usage"]["inputTokens"] == 412
    # An InvokeModel stream's chunks are shown decoded from their base64 bytes.
    chunks = invoke["sse"]["events"]
    assert [json.loads(e["data"])["type"] for e in chunks] == [
        c["type"] for c in B.INVOKE_STREAM_CHUNKS
    ]
    assert [b["text"] for b in invoke["message"]["blocks"]] == ["Hello there"]


def test_bad_frame_is_shown_not_raised(tracer: zltrace.Tracer) -> None:
    """A frame with a broken CRC shows as a bad frame row; the rest of the page is drawn."""
    frames = list(B.CONVERSE_STREAM_EVENTS)
    broken = bytearray(frames[1])
    broken[-6] ^= 0xFF
    frames[1] = bytes(broken)
    with ScriptedServer([B.stream_reply(frames)]) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        pool.request("POST", f"/model/{MODEL}/converse-stream", body=b"{}")
    _, (detail,) = page_blocks(records(tracer))
    rows = detail["sse"]["events"]
    assert "message CRC mismatch" in rows[1]["data"]
    assert rows[-1]["event"] == "metadata"


def test_compressed_request_body_shown_decoded(tracer: zltrace.Tracer) -> None:
    """A gzip upload (elasticsearch's http_compress) is shown as its decoded JSON."""
    doc = {"query": {"match": {"title": "zltrace"}}}
    raw = gzip.compress(json.dumps(doc).encode(), mtime=0)
    with ScriptedServer([response(200, b"{}", [("Content-Type", "application/json")])]) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        pool.request(
            "POST",
            "/idx/_search",
            body=raw,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
    (ex,) = records(tracer)
    assert ex.request.body == raw and json.loads(ex.request.decoded_body or b"") == doc
    assert ex.request.decode_note is None
    _, (detail,) = page_blocks([ex])
    body = detail["request"]["body"]
    assert body["kind"] == "json" and json.loads(body["text"]) == doc
    assert body["encoding"] == "gzip" and body["raw_size"] == len(raw)


def test_compressed_request_body_decoded_in_har_and_claude_trace(tracer: zltrace.Tracer) -> None:
    """HAR postData and claude-trace's request body hold the decoded upload too."""
    doc = {"model": "m", "messages": []}
    raw = gzip.compress(json.dumps(doc).encode(), mtime=0)
    with ScriptedServer([response(200, b"{}", [("Content-Type", "application/json")])]) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        pool.request(
            "POST",
            "/v1/messages",
            body=raw,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
    exchanges = records(tracer)
    har = io.StringIO()
    zltrace.export_har(exchanges, har)
    request = json.loads(har.getvalue())["log"]["entries"][0]["request"]
    assert json.loads(request["postData"]["text"]) == doc and request["bodySize"] == len(raw)
    lines = io.StringIO()
    zltrace.export_claude_trace(exchanges, lines)
    assert json.loads(lines.getvalue())["request"]["body"] == doc


def test_undecodable_request_body_says_why(tracer: zltrace.Tracer) -> None:
    """A request body that claims gzip but is not: shown as sent, with the reason."""
    with ScriptedServer([response(200, b"")]) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        pool.request("POST", "/", body=b"not gzip", headers={"Content-Encoding": "gzip"})
    (ex,) = records(tracer)
    assert ex.request.decoded_body == b"not gzip" and ex.request.decode_note
    _, (detail,) = page_blocks([ex])
    body = detail["request"]["body"]
    assert body["text"] == "not gzip" and body["encoding"] is None and body["decode_note"]
