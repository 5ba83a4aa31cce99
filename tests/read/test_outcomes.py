"""Outcomes read back: a stream ended the usual ways is ``complete``, and the trace says why.

The server holds the zero-size chunk back until the test has closed the response (a
``wait_for`` step, no timing), so the app can only have read up to the stream's own end
marker -- as the OpenAI SDK and ``iter_lines`` loops that break on ``data: [DONE]`` do.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import urllib3
from support import bedrock as B
from support.llm_fixtures import ANTHROPIC_TEXT, CHAT_TEXT, RESPONSES_TEXT, Stream
from support.server import ScriptedServer, Step, chunk_frame, send, sse_response, wait_for
from support.trace import records

import zltrace
from zltrace._assembly.endmark import ends_with_marker

requests = pytest.importorskip("requests", reason="requests is in the test extra")


def held_back(events: list[bytes], release: threading.Event) -> list[Step]:
    """A chunked SSE response whose zero-size chunk waits until ``release`` is set."""
    steps = sse_response(events)
    return [*steps[:-1], wait_for(release), steps[-1]]


def stream_and_break(stream: Stream, stop: Any, tracer: zltrace.Tracer) -> zltrace.Exchange:
    """POST through a traced requests Session; iterate lines until ``stop(line)``; close."""
    release = threading.Event()
    with ScriptedServer([held_back(stream.events, release)]) as srv:
        session = zltrace.wrap(requests.Session(), tracer=tracer)
        r = session.post(srv.url + "/v1/x", json={"stream": True}, stream=True)
        for line in r.iter_lines():
            if stop(line):
                break
        r.close()
        release.set()
        session.close()
    (ex,) = records(tracer)
    return ex


@pytest.mark.parametrize(
    ("stream", "marker"),
    [
        (CHAT_TEXT, b"data: [DONE]"),
        (ANTHROPIC_TEXT, b'data: {"type": "message_stop"'),
        (RESPONSES_TEXT, b'data: {"type": "response.completed"'),
    ],
    ids=["openai-chat-done", "anthropic-message-stop", "openai-responses-completed"],
)
def test_break_at_the_end_marker_is_complete(
    stream: Stream, marker: bytes, tracer: zltrace.Tracer
) -> None:
    """Breaking out of iter_lines at the stream's end marker: complete, by end_marker."""
    ex = stream_and_break(stream, lambda line: line.startswith(marker), tracer)
    assert ex.outcome == "complete" and ex.complete_by == "end_marker"
    assert ex.error is None
    assert ex.message() == stream.expected()
    assert ex.usage() == stream.usage


def test_break_before_the_end_is_abandoned(tracer: zltrace.Tracer) -> None:
    """Breaking out after the first content event: abandoned (the answer was not all read)."""
    ex = stream_and_break(CHAT_TEXT, lambda line: b'"content"' in line, tracer)
    assert ex.outcome == "abandoned" and ex.complete_by is None


def test_read_to_the_end_is_complete_by_framing(tracer: zltrace.Tracer) -> None:
    """A stream read through its zero-size chunk: complete, by framing."""
    with ScriptedServer([sse_response(CHAT_TEXT.events)]) as srv:
        session = zltrace.wrap(requests.Session(), tracer=tracer)
        r = session.post(srv.url + "/v1/x", json={"stream": True}, stream=True)
        assert list(r.iter_lines())
        session.close()
    (ex,) = records(tracer)
    assert ex.outcome == "complete" and ex.complete_by == "framing"


def bedrock_stream_and_close(frames: list[bytes], upto: int, tracer: zltrace.Tracer) -> Any:
    """A Bedrock stream read chunk by chunk through urllib3, closed after ``upto`` frames."""
    release = threading.Event()
    steps = B.stream_reply(frames)
    steps = [*steps[:-1], wait_for(release), steps[-1]]
    with ScriptedServer([steps]) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        r = pool.urlopen("POST", "/model/m/converse-stream", body=b"{}", preload_content=False)
        for n, _chunk in enumerate(r.read_chunked(), 1):
            if n == upto:
                break
        r.close()
        release.set()
        pool.close()
    (ex,) = records(tracer)
    return ex


def test_bedrock_converse_stream_closed_after_metadata_is_complete(
    tracer: zltrace.Tracer,
) -> None:
    """A ConverseStream closed right after its metadata frame: complete, by end_marker."""
    frames = B.CONVERSE_STREAM_EVENTS
    ex = bedrock_stream_and_close(frames, len(frames), tracer)
    assert ex.outcome == "complete" and ex.complete_by == "end_marker"
    assert ex.message() == B.CONVERSE_STREAM_MESSAGE


def test_bedrock_invoke_stream_closed_after_the_metrics_chunk_is_complete(
    tracer: zltrace.Tracer,
) -> None:
    """An InvokeModel stream closed after the chunk with the invocation metrics: complete."""
    frames = [B.chunk(c) for c in B.INVOKE_STREAM_CHUNKS]
    ex = bedrock_stream_and_close(frames, len(frames), tracer)
    assert ex.outcome == "complete" and ex.complete_by == "end_marker"


def test_bedrock_stream_closed_before_metadata_is_abandoned(tracer: zltrace.Tracer) -> None:
    """Closed after messageStop but before metadata: abandoned (usage was never read)."""
    frames = B.CONVERSE_STREAM_EVENTS
    ex = bedrock_stream_and_close(frames, len(frames) - 1, tracer)
    assert ex.outcome == "abandoned"


def test_line_without_complete_by_reads_as_framing(tracer: zltrace.Tracer, tmp_path: Path) -> None:
    """A line written before complete_by existed: a complete one reads back as by framing."""
    if tracer.config.format == "raw":
        pytest.skip("a JSON-lines trace's field; a raw log has no lines")
    with ScriptedServer([sse_response(CHAT_TEXT.events)]) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        pool.request("GET", "/")
        pool.close()
    assert tracer.close(timeout=10)
    rec = json.loads(Path(tracer.path).read_text().splitlines()[0])
    assert rec["complete_by"] == "framing"
    del rec["complete_by"]
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps(rec) + "\n")
    (ex,) = zltrace.read(old)
    assert ex.outcome == "complete" and ex.complete_by == "framing"


SSE = "text/event-stream"


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        ([b"data: {}\n\n", b"data: [DONE]\n\n"], True),
        ([b"data: {}\r\n\r\ndata:[DONE]\r\n\r\n"], True),
        ([b"data: {}\n\n", b"data: [DONE]\n"], False),  # the event is not finished
        ([b"data: [DONE]\n\n", b"data: {}\n\n"], False),  # something came after it
        ([b"event: message_stop\ndata: {}\n\n"], True),
        ([b'data: {"type":"message_stop"}\n\n'], True),
        ([b'event: x\ndata: {"type": "response.failed", "response": {}}\n\n'], True),
        ([b"event: message_delta\ndata: {}\n\n"], False),
        ([], False),
    ],
)
def test_sse_end_markers(pieces: list[bytes], expected: bool) -> None:
    """Which SSE tails count as the stream's own end."""
    assert ends_with_marker(SSE + "; charset=utf-8", pieces) is expected


def test_event_stream_end_markers() -> None:
    """Which event-stream tails count: metadata, the metrics chunk, an exception; whole frames."""
    es = B.STREAM_TYPE
    frames = B.CONVERSE_STREAM_EVENTS
    assert ends_with_marker(es, frames)
    assert ends_with_marker(es, [b"".join(frames)])
    assert not ends_with_marker(es, frames[:-1])
    assert not ends_with_marker(es, [b"".join(frames)[:-1]])  # the last frame cut short
    assert ends_with_marker(es, [B.chunk(c) for c in B.INVOKE_STREAM_CHUNKS])
    assert not ends_with_marker(es, [B.chunk(c) for c in B.INVOKE_STREAM_CHUNKS[:-1]])
    assert ends_with_marker(es, [frames[0], B.exception("throttlingException", "slow down")])
    assert not ends_with_marker(es, [b"\x00" * 40])
    assert not ends_with_marker("application/json", [b'{"type":"message_stop"}'])
    assert not ends_with_marker(None, frames)


def test_chunk_terminator_alone_is_framing(tracer: zltrace.Tracer) -> None:
    """An end marker split across chunks and read to the end is still complete by framing."""
    body = CHAT_TEXT.body
    steps = [
        send(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        ),
        send(chunk_frame(body[:-5]) + chunk_frame(body[-5:]) + chunk_frame(b"")),
    ]
    with ScriptedServer([steps]) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        assert pool.request("GET", "/").data == body
        pool.close()
    (ex,) = records(tracer)
    assert ex.complete_by == "framing"
