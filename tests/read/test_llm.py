"""LLM message reconstruction: real traced exchanges rebuilt into the non-streaming objects.

Each fixture stream of ``fixtures_llm`` is served by a loopback server to urllib3 through a
traced pool; the trace is read back and ``Exchange.message()`` must equal the object the
non-streaming call returns, whatever the chunking. Direct tests of the rebuilders cover the
edges (cut-off streams, error-only streams, odd shapes), and a fuzz test pins "never raises".
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import urllib3
from hypothesis import given, settings
from hypothesis import strategies as st
from support.llm_fixtures import (
    ALL,
    ANTHROPIC_ERROR,
    ANTHROPIC_JSON_BODY,
    ANTHROPIC_THINKING_TOOL,
    CHAT_TEXT,
    CHAT_TOOL_CALLS,
    RESPONSES_TEXT,
    RESPONSES_TOOL,
    Stream,
    _responses_text,
    _responses_tool,
    data_only,
    named,
)
from support.server import (
    Routes,
    ScriptedServer,
    Step,
    chunk_frame,
    close,
    gzip_bytes,
    response,
    send,
    sse_response,
)
from support.trace import records

import zltrace
from zltrace._read.llm import message_from_body, rebuild_stream, usage_of
from zltrace._read.sse import SSEEvent, parse_sse

Json = dict[str, Any]
SSE = [("Content-Type", "text/event-stream; charset=utf-8")]
REQUEST = {
    "model": "requested-model",
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}

# -- one loopback server for the module; each case registers its own route ------------------

_routes = Routes("/v1/case/")
route = _routes.route


@pytest.fixture(scope="module")
def srv() -> Iterator[ScriptedServer]:
    """A keep-alive scripted server answering each path with the steps registered for it."""
    with _routes.serve() as s:
        yield s


def post(pool: urllib3.HTTPConnectionPool, path: str, body: Json | None = None) -> bytes:
    """POST a JSON request (the model-naming request by default) and read the whole answer."""
    r = pool.request(
        "POST",
        path,
        body=json.dumps(REQUEST if body is None else body).encode(),
        headers={"Content-Type": "application/json"},
    )
    data: bytes = r.data
    return data


def traced_once(tracer: zltrace.Tracer, srv: ScriptedServer, steps: list[Step]) -> zltrace.Exchange:
    """Serve ``steps`` to one traced POST and return the exchange read back from the trace."""
    pool = zltrace.wrap(
        urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False, timeout=30), tracer=tracer
    )
    post(pool, route(steps))
    (exchange,) = records(tracer)
    return exchange


# -- the fixtures, end to end ---------------------------------------------------------------


@pytest.mark.parametrize("stream", ALL, ids=[s.name for s in ALL])
def test_stream_rebuilt_from_trace(
    stream: Stream, srv: ScriptedServer, tracer: zltrace.Tracer
) -> None:
    """A traced stream reads back as the non-streaming object, with its usage and model."""
    ex = traced_once(tracer, srv, sse_response(stream.events, headers=stream.headers))
    assert ex.outcome == "complete"
    assert ex.message() == stream.message
    assert ex.usage() == stream.usage
    assert ex.model() == stream.model
    assert len(ex.sse_events()) == stream.dispatched


@pytest.mark.parametrize("stream", [ANTHROPIC_THINKING_TOOL, RESPONSES_TOOL], ids=lambda s: s.name)
def test_gzipped_stream_rebuilt(
    stream: Stream, srv: ScriptedServer, tracer: zltrace.Tracer
) -> None:
    """A gzip-encoded stream in odd-sized chunks is decoded before it is parsed."""
    steps = response(
        200,
        gzip_bytes(stream.body),
        [*SSE, ("Content-Encoding", "gzip")],
        framing="chunked",
        chunk_sizes=[13, 101],
    )
    ex = traced_once(tracer, srv, steps)
    assert ex.message() == stream.message
    assert ex.sse_events() == list(parse_sse(stream.body))


def test_stream_read_in_small_pieces_by_the_app(
    srv: ScriptedServer, tracer: zltrace.Tracer
) -> None:
    """The app reading the stream 7 bytes at a time does not change what is rebuilt."""
    pool = zltrace.wrap(
        urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False, timeout=30), tracer=tracer
    )
    r = pool.request(
        "POST", route(sse_response(CHAT_TOOL_CALLS.events)), body=b"{}", preload_content=False
    )
    got = b"".join(r.stream(7))
    r.release_conn()
    assert got == CHAT_TOOL_CALLS.body
    (ex,) = records(tracer)
    assert ex.message() == CHAT_TOOL_CALLS.message


@pytest.mark.parametrize("stream", ALL, ids=[s.name for s in ALL])
@given(sizes=st.lists(st.integers(24, 1500), min_size=1, max_size=6))
@settings(max_examples=6, deadline=None)
def test_any_wire_chunking_rebuilds_the_same(
    stream: Stream, srv: ScriptedServer, sizes: list[int]
) -> None:
    """However the server cuts the stream into HTTP chunks, the rebuilt message is the same."""
    with tempfile.TemporaryDirectory() as tmp:
        tracer = zltrace.Tracer(zltrace.Config(dir=tmp, flush_ms=10))
        try:
            steps = response(200, stream.body, SSE, framing="chunked", chunk_sizes=sizes)
            ex = traced_once(tracer, srv, steps)
        finally:
            tracer.close(timeout=10)
        assert ex.message() == stream.message


def test_one_byte_http_chunks(srv: ScriptedServer, tracer: zltrace.Tracer) -> None:
    """A stream sent one byte per HTTP chunk rebuilds the same message."""
    steps = response(200, ANTHROPIC_ERROR.body, SSE, framing="chunked", chunk_sizes=[1])
    assert traced_once(tracer, srv, steps).message() == ANTHROPIC_ERROR.message


def test_cut_off_tool_input_kept_raw(srv: ScriptedServer, tracer: zltrace.Tracer) -> None:
    """A stream cut mid tool input keeps the raw JSON text and marks the block partial."""
    body = ANTHROPIC_THINKING_TOOL.body
    cut = body.index(b"ncisco, CA")  # inside the tool input's JSON
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    pool = zltrace.wrap(
        urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False, timeout=30), tracer=tracer
    )
    with pytest.raises(urllib3.exceptions.ProtocolError):
        post(pool, route([send(head + chunk_frame(body[:cut])), close()]))
    (ex,) = records(tracer)
    assert ex.outcome == "error"
    msg = ex.message()
    assert msg is not None
    assert msg["stop_reason"] is None
    _thinking, text, tool = msg["content"]
    assert text["text"] == "I'll check the current weather in San Francisco for you."
    assert tool["input"] == '{"location": "San Fra'
    assert tool["_zltrace_partial_json"] is True
    assert ex.usage() == zltrace.Usage(input_tokens=472, output_tokens=2, cache_read_tokens=2048)


def test_no_response_gives_request_model(srv: ScriptedServer, tracer: zltrace.Tracer) -> None:
    """With no response, message/usage are None, no events, and the model is the request's."""
    pool = zltrace.wrap(
        urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False, timeout=30), tracer=tracer
    )
    with pytest.raises(urllib3.exceptions.ProtocolError):
        post(pool, route([close()]))
    (ex,) = records(tracer)
    assert ex.response is None
    assert ex.message() is None
    assert ex.usage() is None
    assert ex.sse_events() == []
    assert ex.model() == "requested-model"


def test_error_only_stream_gives_error_body_and_request_model(
    srv: ScriptedServer, tracer: zltrace.Tracer
) -> None:
    """An Anthropic stream that is only an error event reads as the API's error body."""
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    ex = traced_once(tracer, srv, sse_response(named([error])))
    assert ex.message() == error
    assert ex.usage() is None
    assert ex.model() == "requested-model"


def test_json_body_parsed(srv: ScriptedServer, tracer: zltrace.Tracer) -> None:
    """A non-streamed JSON response is the parsed body, with its usage and model."""
    body = json.dumps(ANTHROPIC_JSON_BODY).encode()
    ex = traced_once(tracer, srv, response(200, body, [("Content-Type", "application/json")]))
    assert ex.message() == ANTHROPIC_JSON_BODY
    assert ex.usage() == ANTHROPIC_THINKING_TOOL.usage
    assert ex.model() == ANTHROPIC_THINKING_TOOL.model
    assert ex.sse_events() == []


def test_json_error_body_parsed(srv: ScriptedServer, tracer: zltrace.Tracer) -> None:
    """A JSON error response (HTTP 429) is parsed too; it has no usage."""
    error = {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
    body = json.dumps({"error": error}).encode()
    ex = traced_once(tracer, srv, response(429, body, [("Content-Type", "application/json")]))
    assert ex.message() == json.loads(body)
    assert ex.usage() is None


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html", b"<html>hi</html>"),
        ("application/json", b"[1, 2, 3]"),
        ("application/json", b'{"truncated": '),
        ("application/json", b"\xff\xfe{not utf-8"),
        ("application/octet-stream", b"\x00\x01"),
    ],
    ids=["html", "json-array", "json-truncated", "not-utf8", "binary"],
)
def test_non_llm_bodies_give_none(
    content_type: str, body: bytes, srv: ScriptedServer, tracer: zltrace.Tracer
) -> None:
    """A body that is no JSON object and no known stream gives no message and no usage."""
    ex = traced_once(tracer, srv, response(200, body, [("Content-Type", content_type)]))
    assert ex.message() is None
    assert ex.usage() is None
    assert ex.model() == "requested-model"


def test_generic_event_stream(srv: ScriptedServer, tracer: zltrace.Tracer) -> None:
    """A non-LLM event stream has events but no message."""
    events = [b"event: tick\ndata: 1\n\n", b"data: not json\n\n", b'data: {"a": 1}\n\n']
    ex = traced_once(tracer, srv, sse_response(events))
    assert [e.event for e in ex.sse_events()] == ["tick", "message", "message"]
    assert ex.message() is None


def test_event_stream_content_type_needed_for_events(
    srv: ScriptedServer, tracer: zltrace.Tracer
) -> None:
    """An event-stream body served as text/plain has no events and is not rebuilt."""
    steps = response(200, CHAT_TEXT.body, [("Content-Type", "text/plain")])
    ex = traced_once(tracer, srv, steps)
    assert ex.sse_events() == []
    assert ex.message() is None


def test_total_usage_over_a_trace(srv: ScriptedServer, tracer: zltrace.Tracer) -> None:
    """total_usage sums every exchange's usage and skips those without."""
    pool = zltrace.wrap(
        urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False, timeout=30), tracer=tracer
    )
    for stream in ALL:
        post(pool, route(sse_response(stream.events)))
    post(pool, route(response(200, b"plain", [("Content-Type", "text/plain")])))
    exchanges = records(tracer)
    assert len(exchanges) == len(ALL) + 1
    want = sum((s.usage for s in ALL if s.usage is not None), zltrace.Usage())
    assert zltrace.total_usage(exchanges) == want
    assert want.output_tokens == 15 + 89 + 24 + 1 + 12 + 9 + 11 + 140


# -- the rebuilders directly ------------------------------------------------------------------


def rebuild(body: bytes) -> Json | None:
    """The rebuilt object of an event-stream body, unguarded (a bug raises here)."""
    return rebuild_stream(parse_sse(body))


def test_responses_rebuilt_without_terminal_event() -> None:
    """Cut before response.completed, the Responses output is rebuilt from the deltas alone."""
    for events, final in ((_responses_text(), RESPONSES_TEXT), (_responses_tool(), RESPONSES_TOOL)):
        no_done = [e for e in events[:-1] if not e["type"].endswith((".done",))]
        got = rebuild(b"".join(named(no_done)))
        assert got is not None
        assert got["status"] == "in_progress"
        want = copy.deepcopy(final.message["output"])
        for item in want:
            item.pop("status", None)
        for item in got["output"]:
            item.pop("status", None)
        assert got["output"] == want


def test_responses_error_event() -> None:
    """A Responses ``error`` event lands under "error" of the response built so far."""
    events = [
        *_responses_text()[:2],
        {
            "type": "error",
            "code": "ERR_SOMETHING",
            "message": "Something went wrong",
            "param": None,
            "sequence_number": 2,
        },
    ]
    got = rebuild(b"".join(named(events)))
    assert got is not None
    assert got["status"] == "in_progress"
    assert got["output"] == []
    assert got["error"] == {
        "code": "ERR_SOMETHING",
        "message": "Something went wrong",
        "param": None,
    }


def test_responses_error_only() -> None:
    """A Responses stream that is only an error reads as an ``{"error": ...}`` body."""
    body = named(
        [{"type": "error", "code": "c", "message": "m", "param": None, "sequence_number": 0}]
    )
    assert rebuild(body[0]) == {"error": {"code": "c", "message": "m", "param": None}}


def test_chat_error_chunk() -> None:
    """A Chat Completions error object mid-stream lands under "error"; alone it is the body."""
    error = {
        "message": "The server had an error",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    body = b"".join(CHAT_TEXT.events[:3] + data_only([{"error": error}]))
    got = rebuild(body)
    assert got is not None
    assert got["choices"][0]["message"]["content"] == "Hello"
    assert got["error"] == error
    assert rebuild(b"".join(data_only([{"error": error}]))) == {"error": error}


def test_chat_repeated_tool_name_and_id_not_doubled() -> None:
    """OpenAI-compatible servers that repeat the tool name and id in each delta: kept once."""
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    call = {"index": 0, "id": "call_1", "type": "function"}
    chunks = [
        {
            **head,
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [{**call, "function": {"name": "f", "arguments": '{"a"'}}]
                    },
                }
            ],
        },
        {
            **head,
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [{**call, "function": {"name": "f", "arguments": ": 1}"}}]
                    },
                }
            ],
        },
    ]
    got = rebuild(b"".join(data_only(chunks)))
    assert got is not None
    assert got["choices"][0]["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    ]


def test_chat_other_string_deltas_joined() -> None:
    """Unknown string fields of a delta (e.g. reasoning_content) are joined like content."""
    head = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "deepseek-reasoner",
    }
    chunks = [
        {
            **head,
            "choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "Let"}}],
        },
        {**head, "choices": [{"index": 0, "delta": {"reasoning_content": " me think"}}]},
        {**head, "choices": [{"index": 0, "delta": {"content": "42"}, "finish_reason": "stop"}]},
    ]
    got = rebuild(b"".join(data_only(chunks)))
    assert got is not None
    message = got["choices"][0]["message"]
    assert message["reasoning_content"] == "Let me think"
    assert message["content"] == "42"


def test_anthropic_tool_without_input_deltas_keeps_its_input() -> None:
    """A tool_use block with no (or only empty) input deltas keeps the input it started with."""
    start = copy.deepcopy(ANTHROPIC_ERROR.message)
    start.pop("error")
    start["content"] = []
    events: list[Json] = [
        {"type": "message_start", "message": start},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t", "name": "noargs", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {"type": "content_block_stop", "index": 0},
    ]
    got = rebuild(b"".join(named(events)))
    assert got is not None
    assert got["content"] == [{"type": "tool_use", "id": "t", "name": "noargs", "input": {}}]


def test_anthropic_ignores_what_it_cannot_place() -> None:
    """Events before message_start, deltas for unknown blocks or of unknown types are skipped."""
    events = [
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "early"},
        },
        *[json.loads(e.split(b"data: ", 1)[1]) for e in ANTHROPIC_ERROR.events[:3]],
        {"type": "content_block_delta", "index": 9, "delta": {"type": "text_delta", "text": "x"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "future_delta", "x": 1}},
        {"type": "content_block_delta", "index": 0, "delta": "not an object"},
    ]
    got = rebuild(b"".join(named(events)))
    assert got is not None
    assert got["content"] == [{"type": "text", "text": "Once upon"}]


def test_done_marker_and_garbage_events_alone_give_none() -> None:
    """[DONE], non-JSON data and JSON that is no object do not make a message."""
    assert rebuild(b"data: [DONE]\n\ndata: nope\n\ndata: [1]\n\ndata: 3\n\n") is None
    assert rebuild(b'event: ping\ndata: {"type": "ping"}\n\n') is None


def test_message_from_body_guards_deep_nesting() -> None:
    """A body nested too deep for the JSON parser gives None rather than raising."""
    deep = b"{" + b'"a":[' * 100_000 + b"1" + b"]" * 100_000 + b"}"
    assert message_from_body("application/json", deep) is None
    sse = b"data: " + deep + b"\n\n"
    assert message_from_body("text/event-stream", sse) is None


@pytest.mark.parametrize(
    "content_type", ["text/event-stream", "Text/Event-Stream; charset=utf-8", " text/event-stream "]
)
def test_event_stream_content_type_forms(content_type: str) -> None:
    """The media type is matched case-insensitively, with parameters and spaces allowed."""
    assert message_from_body(content_type, CHAT_TEXT.body) == CHAT_TEXT.message


# -- usage ----------------------------------------------------------------------------------


def test_usage_addition_and_sum() -> None:
    """Usage adds field by field, sum() works from 0, and other operands are refused."""
    a = zltrace.Usage(1, 2, 3, 4)
    b = zltrace.Usage(10, 20, 30, 40)
    assert a + b == zltrace.Usage(11, 22, 33, 44)
    assert sum([a, b]) == zltrace.Usage(11, 22, 33, 44)
    assert a.total_input_tokens == 1 + 3 + 4
    with pytest.raises(TypeError):
        a + 1
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        a.input_tokens = 5  # type: ignore[misc]


@pytest.mark.parametrize("bad", [-1, 1.5, "3", None])
def test_usage_validates(bad: Any) -> None:
    """A count that is not a non-negative int is refused, naming the field."""
    with pytest.raises((TypeError, ValueError), match="output_tokens"):
        zltrace.Usage(output_tokens=bad)


def test_usage_of_each_api_shape() -> None:
    """Each API's usage maps to non-overlapping counts (OpenAI's cached tokens subtracted)."""
    assert usage_of(
        {
            "usage": {
                "input_tokens": 5,
                "output_tokens": 6,
                "cache_read_input_tokens": 7,
                "cache_creation_input_tokens": 8,
            }
        }
    ) == zltrace.Usage(5, 6, 7, 8)
    assert usage_of(
        {
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 6,
                "total_tokens": 106,
                "prompt_tokens_details": {"cached_tokens": 64},
            }
        }
    ) == zltrace.Usage(36, 6, 64, 0)
    assert usage_of(
        {
            "usage": {
                "input_tokens": 100,
                "output_tokens": 6,
                "total_tokens": 106,
                "input_tokens_details": {"cached_tokens": 64},
            }
        }
    ) == zltrace.Usage(36, 6, 64, 0)
    assert usage_of({"usage": {"prompt_tokens": None, "completion_tokens": "7"}}) == zltrace.Usage()
    assert usage_of({"usage": {"input_tokens": -3, "output_tokens": True}}) == zltrace.Usage()
    assert usage_of({"usage": None}) is None
    assert usage_of({}) is None
    assert usage_of(None) is None


# -- never raises ---------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
_TYPES = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.output_item.done",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.output_text.annotation.added",
    "response.refusal.delta",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.completed",
    "response.failed",
    "x",
]
_KEYS = [
    "message",
    "index",
    "content_block",
    "delta",
    "usage",
    "error",
    "object",
    "choices",
    "id",
    "model",
    "response",
    "output_index",
    "item",
    "content_index",
    "part",
    "summary_index",
    "annotation",
    "text",
    "arguments",
    "type",
    "finish_reason",
    "logprobs",
    "tool_calls",
    "content",
    "input",
    "role",
    "refusal",
    "function",
    "name",
    "partial_json",
    "citation",
]
_SMALL_INT = st.integers(0, 2)


def _values(depth: int = 2) -> st.SearchStrategy[Any]:
    if depth == 0:
        return (
            _JSON
            | _SMALL_INT
            | st.sampled_from([*_TYPES, "text_delta", "input_json_delta", "chat.completion.chunk"])
        )
    return (
        _values(depth - 1)
        | st.dictionaries(st.sampled_from(_KEYS), _values(depth - 1), max_size=5)
        | st.lists(
            st.dictionaries(st.sampled_from(_KEYS), _values(depth - 1), max_size=4), max_size=2
        )
    )


_EVENT = st.builds(
    lambda typ, fields: {**fields, "type": typ} if typ else fields,
    st.sampled_from([*_TYPES, None]),
    st.dictionaries(st.sampled_from(_KEYS), _values(), max_size=6),
)


@pytest.mark.slow
@given(st.lists(_EVENT, max_size=12), st.booleans())
@settings(max_examples=150, deadline=None)
def test_rebuild_never_raises_on_odd_events(events: list[Json], chat: bool) -> None:
    """Events of the known types with arbitrary fields rebuild to a dict or None, never raise."""
    if chat:
        events = [{**e, "object": "chat.completion.chunk"} for e in events]
    sse = [SSEEvent(data=json.dumps(e)) for e in events]
    got = rebuild_stream(sse)
    assert got is None or isinstance(got, dict)
    usage_of(got)


@given(st.binary(max_size=400), st.sampled_from(["text/event-stream", "application/json", None]))
@settings(max_examples=200, deadline=None)
def test_message_from_arbitrary_bytes(body: bytes, content_type: str | None) -> None:
    """Any body under any content type gives a dict or None."""
    got = message_from_body(content_type, body)
    assert got is None or isinstance(got, dict)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path (keys and indexes) into a JSON value, the value itself first."""
    yield prefix
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in items:
        yield from _paths(child, (*prefix, key))


_FIXTURE_EVENTS = [
    [json.loads(e.data) for e in parse_sse(s.body) if e.data.startswith("{")] for s in ALL
]
_FIXTURE_PATHS = [list(_paths(events)) for events in _FIXTURE_EVENTS]
_SCALARS: st.SearchStrategy[Any] = (
    st.none() | st.booleans() | st.integers(-2, 3) | st.text(max_size=4) | st.just([])
)


def _replace(root: Any, path: tuple[Any, ...], value: Any) -> None:
    """Set the value at ``path`` in ``root``, if an earlier change left that path in place."""
    target = root
    for key in path:
        parent = target
        in_dict = isinstance(target, dict) and isinstance(key, str) and key in target
        in_list = isinstance(target, list) and isinstance(key, int) and key < len(target)
        if not (in_dict or in_list):
            return
        target = target[key]
    parent[path[-1]] = value


@pytest.mark.slow
@given(st.data())
@settings(max_examples=500, deadline=None)
def test_rebuild_never_raises_on_mutated_fixtures(data: st.DataObject) -> None:
    """Real streams with events dropped and values swapped for any JSON never make it raise."""
    which = data.draw(st.integers(0, len(ALL) - 1))
    events: list[Any] = copy.deepcopy(_FIXTURE_EVENTS[which])
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(_FIXTURE_PATHS[which][1:]))
        _replace(events, path, data.draw(_SCALARS | _JSON))
    dropped = data.draw(st.sets(st.integers(0, len(events) - 1), max_size=3))
    events = [e for i, e in enumerate(events) if i not in dropped]
    got = rebuild_stream([SSEEvent(data=json.dumps(e)) for e in events])
    assert got is None or isinstance(got, dict)
    usage_of(got)
