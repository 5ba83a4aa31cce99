"""The HTML report: ``zltrace.write_report`` and ``python -m zltrace report``.

Traces come from real loopback exchanges (Anthropic-style SSE streams, JSON, errors, and
hostile bytes in bodies, headers, the URL and SSE data). The page is checked twice: as the
HTML file itself (nothing from the trace appears as markup) and as the DOM headless Chromium
builds by running the page's script (rows drawn, one expanded, hostile strings shown as text,
no injected script ran).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.server import ScriptedServer, close, response, send, sse_response
from support.trace import records

import zltrace
from zltrace._cli import main
from zltrace._export import report as _report

# The payload tries, if it ever ran, to leave a mark the DOM dump would show.
PWN = "document.title='pwned';document.body.appendChild(document.createElement('b')).id='pwned'"
SCRIPT_BREAK = f"</script><script>{PWN}</script>"
IMG = "<img src=x onerror=\"document.body.id='pwned'\">"
HOSTILE = SCRIPT_BREAK + IMG + "<!-- &amp; \u2028\u2029"
#: What a header value can carry of it (latin-1, no surrounding space).
HOSTILE_HEADER = SCRIPT_BREAK + IMG + "<!-- &amp;"


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One SSE block: ``event:`` and one ``data:`` line of compact JSON."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def anthropic_stream(
    text: str, *, model: str = "claude-sonnet-4-5", tool: bool = True
) -> list[bytes]:
    """A streamed Anthropic Messages response: thinking, text and (optionally) a tool call."""
    usage = {
        "input_tokens": 25,
        "cache_read_input_tokens": 1200,
        "cache_creation_input_tokens": 30,
        "output_tokens": 1,
    }
    start = {"id": "msg_01", "type": "message", "role": "assistant", "model": model}
    start.update(content=[], stop_reason=None, usage=usage)
    events = [
        sse("message_start", {"type": "message_start", "message": start}),
        sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}},
        ),
        sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "The user wants the weather."},
            },
        ),
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
        delta = {"type": "text_delta", "text": piece}
        events.append(
            sse("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": delta})
        )
    events.append(sse("content_block_stop", {"type": "content_block_stop", "index": 1}))
    if tool:
        block = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
        events.append(
            sse(
                "content_block_start",
                {"type": "content_block_start", "index": 2, "content_block": block},
            )
        )
        for part in ('{"city": "Par', 'is", "unit": "celsius"}'):
            delta = {"type": "input_json_delta", "partial_json": part}
            events.append(
                sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 2, "delta": delta},
                )
            )
        events.append(sse("content_block_stop", {"type": "content_block_stop", "index": 2}))
    stop = "tool_use" if tool else "end_turn"
    events.append(
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": 87},
            },
        )
    )
    events.append(sse("message_stop", {"type": "message_stop"}))
    return events


def llm_request(http: urllib3.HTTPConnectionPool, path: str, prompt: str, **kw: Any) -> None:
    """POST an Anthropic-style request with a JSON body and read the whole response."""
    body = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": True}
    body["messages"] = [{"role": "user", "content": prompt}]
    headers = {"Content-Type": "application/json", "x-api-key": "sk-secret", **kw}
    http.request("POST", path, body=json.dumps(body).encode(), headers=headers)


def capture(tracer: zltrace.Tracer, *, hostile: bool = True) -> list[zltrace.Exchange]:
    """Real loopback exchanges: two SSE streams, JSON, a 404, a 500 and a cut-off body."""
    replies: list[Any] = [
        sse_response(anthropic_stream("Hello! Let me check the weather for you.")),
        sse_response(anthropic_stream(HOSTILE if hostile else "Fine.", tool=False)),
        response(200, b'{"ok": true, "items": [1, 2, 3]}', [("Content-Type", "application/json")]),
        response(404, b"not here", [("Content-Type", "text/plain")]),
        response(
            500,
            json.dumps({"error": HOSTILE if hostile else "boom"}).encode(),
            [("Content-Type", "application/json"), ("X-Note", IMG if hostile else "x")],
        ),
        [send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"), close()],
    ]
    with ScriptedServer(replies) as srv:
        http = zltrace.wrap(
            urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False, timeout=10),
            tracer=tracer,
        )
        llm_request(http, "/v1/messages", "What's the weather in Paris?")
        evil = {"X-Evil": HOSTILE_HEADER} if hostile else {}
        llm_request(http, "/v1/messages", HOSTILE if hostile else "hi", **evil)
        query = "?q=" + SCRIPT_BREAK.replace(" ", "+") if hostile else ""
        http.request("GET", "/v1/models" + query)
        http.request("GET", "/missing")
        http.request("POST", "/v1/fail", body=b"\x00\x01\xff binary")
        with pytest.raises(urllib3.exceptions.ProtocolError):
            http.request("GET", "/cut")
    return records(tracer)


def report_html(exchanges: list[zltrace.Exchange], **kw: Any) -> str:
    """The report of ``exchanges`` as a string."""
    out = io.StringIO()
    assert zltrace.write_report(exchanges, out, **kw) == len(exchanges)
    return out.getvalue()


def data_blocks(page: str) -> list[Any]:
    """Every JSON data block of the page, parsed."""
    blocks = re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', page, re.S)
    return [json.loads(b) for b in blocks]


def strings(obj: Any) -> Iterator[str]:
    """Every string inside ``obj`` (nested lists and dicts)."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v)


@pytest.fixture
def exchanges(tracer: zltrace.Tracer) -> list[zltrace.Exchange]:
    """The captured loopback exchanges, hostile ones included."""
    return capture(tracer)


# -- the HTML file --------------------------------------------------------------------------


def test_nothing_from_the_trace_appears_as_markup(exchanges: list[zltrace.Exchange]) -> None:
    """Hostile bodies, headers, URL and SSE data are escaped: the page's markup is only ours."""
    page = report_html(exchanges)
    assert page.isascii() and "\u2028" not in page
    markup = page[: page.index("<style>")] + page[page.index("</style>") : page.rindex("<script>")]
    tags = set(re.findall(r"<(/?[a-zA-Z!][a-zA-Z0-9]*)", markup))
    ours = {"!DOCTYPE", "html", "head", "meta", "title", "style", "body", "header", "h1", "p"}
    ours |= {"noscript", "main", "div", "script"}
    assert tags <= ours | {"/" + t for t in ours}
    # The script elements are the two data blocks per exchange, the meta block, the program.
    assert page.count("<script") == page.count("</script>") == 2 * len(exchanges) + 2


def test_hostile_values_survive_the_round_trip(exchanges: list[zltrace.Exchange]) -> None:
    """The escaped JSON parses back to the exact hostile strings (shown, not lost)."""
    blocks = data_blocks(report_html(exchanges))
    assert HOSTILE in set(strings(blocks))  # the rebuilt message's text block
    details = [b for b in blocks if "request" in b]
    evil = details[1]["request"]["headers"]
    assert ["X-Evil", HOSTILE_HEADER] in evil
    assert details[4]["response"]["headers"][1] == ["X-Note", IMG]


def test_csp_allows_only_the_report_script_and_style(exchanges: list[zltrace.Exchange]) -> None:
    """A CSP meta tag: default-src 'none', script and style allowed by their hashes only."""
    page = report_html(exchanges)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None
    policy = csp.group(1)
    assert "default-src 'none'" in policy and "unsafe" not in policy
    js = page[page.rindex("<script>") + len("<script>") : page.rindex("</script>")]
    assert f"script-src '{_report._sha256(js)}'" in policy
    css = page[page.index("<style>") + len("<style>") : page.index("</style>")]
    assert f"style-src '{_report._sha256(css)}'" in policy


def test_the_script_never_parses_markup() -> None:
    """The page's script builds the DOM without any API that parses strings as HTML or code."""
    js = _report._asset("report.js")
    for api in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "Function(",
    ):
        assert api not in js, api


def test_summary_has_method_url_status_timing_tokens(exchanges: list[zltrace.Exchange]) -> None:
    """Each exchange's summary carries method, URL, status, duration, TTFB, tokens and model."""
    summaries = [b for b in data_blocks(report_html(exchanges)) if "ttfb" in b]
    assert [s["method"] for s in summaries] == ["POST", "POST", "GET", "GET", "POST", "GET"]
    assert [s["status"] for s in summaries] == [200, 200, 200, 404, 500, 200]
    first = summaries[0]
    assert first["path"] == "/v1/messages" and first["host"].startswith("127.0.0.1:")
    assert first["url"] == exchanges[0].request.url
    assert first["duration"] == exchanges[0].timing.end
    assert first["ttfb"] == exchanges[0].timing.first_byte
    assert (first["tokens_in"], first["tokens_out"]) == (25, 87)
    assert (first["tokens_cache_read"], first["tokens_cache_write"]) == (1200, 30)
    assert first["model"] == "claude-sonnet-4-5" and first["sse"] is True
    assert summaries[5]["outcome"] == "error"


def test_detail_has_pretty_request_message_and_events(exchanges: list[zltrace.Exchange]) -> None:
    """Expanding shows the request body as pretty JSON, the rebuilt message and the raw events."""
    detail = next(b for b in data_blocks(report_html(exchanges)) if "request" in b)
    body = detail["request"]["body"]
    assert body["kind"] == "json" and body["text"].startswith('{\n  "model": "claude-sonnet-4-5"')
    assert ["x-api-key", "sk-secret"] not in detail["request"]["headers"]
    blocks = detail["message"]["blocks"]
    assert [b["kind"] for b in blocks] == ["thinking", "text", "tool_use"]
    assert blocks[1]["text"] == "Hello! Let me check the weather for you."
    assert blocks[2]["name"] == "get_weather"
    assert json.loads(blocks[2]["text"]) == {"city": "Paris", "unit": "celsius"}
    assert detail["message"]["stop"] == "tool_use"
    events = detail["sse"]["events"]
    assert detail["sse"]["count"] == len(events) == 14
    assert events[0]["event"] == "message_start" and events[-1]["event"] == "message_stop"


def test_binary_and_failed_exchanges(exchanges: list[zltrace.Exchange]) -> None:
    """A binary body shows as a hex dump; a cut-off exchange keeps its partial body and error."""
    details = [b for b in data_blocks(report_html(exchanges)) if "request" in b]
    binary = details[4]["request"]["body"]
    assert binary["kind"] == "binary" and binary["text"].startswith("00000000  00 01 ff 20")
    cut = details[5]
    assert cut["outcome"] == "error" and "7 of 100 body bytes" in cut["error"]
    assert cut["response"]["body"]["text"] == "partial"


def test_large_bodies_are_clipped_with_the_size_left_out(tracer: zltrace.Tracer) -> None:
    """A body over the limit shows its first body_limit bytes and how many were left out."""
    big = b"x" * 300_000
    with ScriptedServer([response(200, big, [("Content-Type", "text/plain")])]) as srv:
        http = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        http.request("POST", "/up", body=json.dumps({"blob": "y" * 200_000}).encode())
    page = report_html(records(tracer))
    detail = data_blocks(page)[1]
    rs = detail["response"]["body"]
    assert rs["kind"] == "text" and rs["size"] == 300_000
    assert len(rs["text"]) == _report.DEFAULT_BODY_LIMIT
    assert rs["truncated"] == 300_000 - _report.DEFAULT_BODY_LIMIT
    rq = detail["request"]["body"]
    assert rq["kind"] == "json" and rq["truncated"] > 0
    assert len(rq["text"].encode()) == _report.DEFAULT_BODY_LIMIT
    assert len(page) < 3 * _report.DEFAULT_BODY_LIMIT


def test_the_page_is_written_while_the_trace_is_read(exchanges: list[zltrace.Exchange]) -> None:
    """Each exchange is on the page before the next one is read (nothing is held back)."""
    out = io.StringIO()

    def one_at_a_time() -> Iterator[zltrace.Exchange]:
        for k, ex in enumerate(exchanges):
            assert out.getvalue().count('class="zl-s"') == k
            yield ex

    assert zltrace.write_report(one_at_a_time(), out) == len(exchanges)


def test_memory_stays_at_one_exchange(tracer: zltrace.Tracer, tmp_path: Path) -> None:
    """Reporting a 24 MB trace from disk peaks far below the trace size (bodies not kept)."""
    size, count = 1 << 20, 24
    with ScriptedServer([response(200, b"z" * size, [("Content-Type", "text/plain")])]) as srv:
        http = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        for _ in range(count):
            http.request("GET", "/big")
    assert tracer.close(timeout=30)
    tracemalloc.start()
    try:
        with open(tmp_path / "r.html", "w", encoding="utf-8") as out:
            assert zltrace.write_report(zltrace.read(tracer.path), out) == count
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * size, f"peak {peak} bytes for {count} bodies of {size}"
    assert (tmp_path / "r.html").stat().st_size < count * 2 * _report.DEFAULT_BODY_LIMIT


def one_exchange(tracer: zltrace.Tracer, steps: list[Any], body: bytes) -> tuple[Any, Any]:
    """POST ``body`` to a server answering with ``steps``; the (summary, detail) on the page."""
    with ScriptedServer([steps]) as srv:
        http = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        http.request("POST", "/v1/x", body=body, headers={"Content-Type": "application/json"})
    summary, detail, _meta = data_blocks(report_html(records(tracer)))
    return summary, detail


def test_openai_chat_stream(tracer: zltrace.Tracer) -> None:
    """A streamed Chat Completion shows its text and tool call; cached tokens count as cache."""

    def chunk(delta: dict[str, Any], **extra: Any) -> bytes:
        obj = {"object": "chat.completion.chunk", "model": "gpt-4o-mini", **extra}
        obj.setdefault("choices", [{"index": 0, "delta": delta, "finish_reason": None}])
        return f"data: {json.dumps(obj)}\n\n".encode()

    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "lookup"}}
    events = [
        chunk({"role": "assistant", "content": "Hi "}),
        chunk({"content": "there"}),
        chunk({"tool_calls": [{**call, "function": {"name": "lookup", "arguments": '{"q":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "x"}'}}]}),
        chunk({}, choices=[{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]),
        chunk(
            {},
            choices=[],
            usage={
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 4},
            },
        ),
        b"data: [DONE]\n\n",
    ]
    summary, detail = one_exchange(tracer, sse_response(events), b'{"model": "gpt-4o-mini"}')
    assert (summary["tokens_in"], summary["tokens_cache_read"], summary["tokens_out"]) == (6, 4, 5)
    assert summary["model"] == "gpt-4o-mini"
    blocks = detail["message"]["blocks"]
    assert [(b["kind"], b.get("name")) for b in blocks] == [("text", None), ("tool_use", "lookup")]
    assert blocks[0]["text"] == "Hi there" and json.loads(blocks[1]["text"]) == {"q": "x"}
    assert detail["message"]["stop"] == "tool_calls"
    assert detail["sse"]["events"][-1]["data"] == "[DONE]"


def test_openai_responses_json(tracer: zltrace.Tracer) -> None:
    """A Responses API JSON body shows reasoning, output text and function calls."""
    body = {
        "object": "response",
        "model": "gpt-5",
        "status": "completed",
        "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Think."}]},
            {"type": "message", "content": [{"type": "output_text", "text": "Answer."}]},
            {"type": "function_call", "name": "f", "arguments": '{"a": 1}'},
        ],
        "usage": {"input_tokens": 10, "output_tokens": 3, "total_tokens": 13},
    }
    reply = response(200, json.dumps(body).encode(), [("Content-Type", "application/json")])
    summary, detail = one_exchange(tracer, reply, b"{}")
    assert (summary["tokens_in"], summary["tokens_out"], summary["model"]) == (10, 3, "gpt-5")
    blocks = detail["message"]["blocks"]
    assert [b["kind"] for b in blocks] == ["thinking", "text", "tool_use"]
    assert [b["text"] for b in blocks[:2]] == ["Think.", "Answer."]
    assert detail["message"]["stop"] == "completed" and detail["sse"] is None
    assert detail["response"]["body"]["kind"] == "json"


def test_anthropic_stream_cut_by_an_error_event(tracer: zltrace.Tracer) -> None:
    """An error event mid-stream shows the text so far and the error as its own block."""
    events = anthropic_stream("Partial answer", tool=False)[:7]
    error = {"type": "overloaded_error", "message": "Overloaded"}
    events.append(sse("error", {"type": "error", "error": error}))
    _summary, detail = one_exchange(tracer, sse_response(events), b"{}")
    blocks = detail["message"]["blocks"]
    assert [b["kind"] for b in blocks] == ["thinking", "text", "error"]
    assert blocks[1]["text"] == "Partial answer" and json.loads(blocks[2]["text"]) == error
    assert detail["message"]["stop"] is None


def test_plain_json_and_text_have_no_message(tracer: zltrace.Tracer) -> None:
    """A JSON body that is no LLM message, and a text body, show as bodies only."""
    reply = response(200, b'{"a": [1, 2]}', [("Content-Type", "application/json")])
    summary, detail = one_exchange(tracer, reply, b"not json")
    assert detail["message"] is None and summary["tokens_in"] is None
    assert detail["response"]["body"]["text"] == '{\n  "a": [\n    1,\n    2\n  ]\n}'
    assert detail["request"]["body"] == {
        "size": 8,
        "kind": "text",
        "text": "not json",
        "truncated": 0,
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(), limit=st.integers(0, 64))
def test_clip_keeps_whole_characters_within_the_limit(text: str, limit: int) -> None:
    """Clipping never splits a character and accounts for every byte left out."""
    shown, cut = _report._clip(text, limit)
    assert text.startswith(shown)
    raw = len(text.encode("utf-8", "surrogatepass"))
    assert len(shown.encode("utf-8", "surrogatepass")) <= limit or cut == 0
    assert len(shown.encode("utf-8", "surrogatepass")) + cut == raw


@settings(max_examples=80, deadline=None)
@given(value=st.recursive(st.text() | st.integers() | st.none(), lambda c: st.lists(c)))
def test_json_block_never_contains_markup(value: Any) -> None:
    """Any value, surrogates and U+2028 included, encodes to ASCII JSON without < > &."""
    block = _report._json_block(value)
    assert block.isascii() and not set("<>&") & set(block)
    assert json.loads(block) == value


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300), limit=st.integers(1, 128))
def test_any_body_bytes_render(data: bytes, limit: int) -> None:
    """Arbitrary body bytes give text within the limit or a hex dump, never an error."""
    body = _report._body(data, None, limit)
    assert body is not None and body["size"] == len(data)
    assert body["kind"] in ("empty", "json", "text", "binary")
    if body["kind"] == "text":
        assert data.startswith(body["text"].encode())


_KEYS = st.sampled_from(
    [
        "content",
        "choices",
        "output",
        "type",
        "text",
        "thinking",
        "name",
        "input",
        "message",
        "delta",
        "tool_calls",
        "function",
        "arguments",
        "summary",
        "error",
        "stop_reason",
        "status",
    ]
)
_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(_KEYS, c, max_size=5),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(msg=_JSONISH, limit=st.integers(0, 64))
def test_any_message_shape_renders(msg: Any, limit: int) -> None:
    """Whatever shape a rebuilt message has, it gives blocks of text (or None), never an error."""
    out = _report._message(msg, limit)
    if out is not None:
        assert all(isinstance(b["text"], str) for b in out["blocks"])
        _report._json_block(out)


@pytest.mark.parametrize("data", [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000])
def test_json_nested_too_deep_shows_as_text(data: bytes) -> None:
    """JSON nested deeper than the parser's recursion limit is shown as text, not an error."""
    body = _report._body(data, "application/json", 100)
    assert body is not None and body["kind"] == "text" and body["text"] == "[" * 100


def test_empty_trace_gives_a_valid_page() -> None:
    """No exchanges: still a whole page, with a meta block saying count 0."""
    page = report_html([])
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert data_blocks(page) == [{**data_blocks(page)[0], "count": 0}]


def test_title_is_escaped() -> None:
    """The title is text in <title> and <h1>."""
    page = report_html([], title="<b>t</b> & \u00e9")
    assert "<title>&lt;b&gt;t&lt;/b&gt; &amp; &#233;</title>" in page
    assert "<b>" not in page


def test_negative_body_limit_is_refused() -> None:
    """body_limit below zero is a ValueError naming the value."""
    with pytest.raises(ValueError, match="body_limit must be >= 0, got -1"):
        zltrace.write_report([], io.StringIO(), body_limit=-1)


def test_negative_body_limit_is_a_zltrace_error() -> None:
    """The refusal of a negative body_limit is a ZltraceError (and a ValueError)."""
    with pytest.raises(zltrace.ZltraceError) as caught:
        zltrace.write_report([], io.StringIO(), body_limit=-1)
    assert isinstance(caught.value, ValueError)


# -- the CLI ----------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m zltrace ARGS`` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "zltrace", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_writes_the_report(
    exchanges: list[zltrace.Exchange], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``report PATH -o OUT`` writes the page, quietly, and only OUT appears in its folder."""
    trace = exchanges[0].source[0]
    out = tmp_path / "out" / "r.html"
    out.parent.mkdir()
    assert main(["report", trace, "-o", str(out)]) == 0
    assert capsys.readouterr() == ("", "")
    assert os.listdir(out.parent) == ["r.html"]
    page = out.read_text(encoding="utf-8")
    assert page == out.read_bytes().decode("ascii")
    assert len([b for b in data_blocks(page) if "ttfb" in b]) == len(exchanges)
    assert f"<title>zltrace report: {os.path.basename(trace)}</title>" in page


def test_cli_stdout_and_progress(exchanges: list[zltrace.Exchange], tmp_path: Path) -> None:
    """``-o -`` writes to stdout; ``--progress`` ends with a count on stderr."""
    done = cli("report", os.path.dirname(exchanges[0].source[0]), "-o", "-", "--progress")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("<!DOCTYPE html>")
    assert done.stderr.strip().splitlines()[-1] == f"reported {len(exchanges)} exchanges to stdout"


def test_cli_missing_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing trace path is exit status 2 with a message, and no output file."""
    assert main(["report", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "r.html")]) == 2
    assert "no such trace file or directory" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_cli_unwritable_output_exits_1(
    exchanges: list[zltrace.Exchange], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An output that cannot be created is exit status 1 with the OS error."""
    out = tmp_path / "no-such-dir" / "r.html"
    assert main(["report", exchanges[0].source[0], "-o", str(out)]) == 1
    assert capsys.readouterr().err.startswith("error: [Errno 2]")


def test_cli_reports_around_a_torn_line(
    exchanges: list[zltrace.Exchange], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A torn last line is a warning on stderr; every whole exchange is still reported."""
    trace = exchanges[0].source[0]
    raw = trace.endswith(".zlog")
    with open(trace, "ab") as f:
        # a record's head cut short in a raw log; a line cut short in a JSONL trace
        f.write(b"\xa7\x5a\x05\x00\x40\x00\x00" if raw else b'{"v":1,"id":"torn')
    out = tmp_path / "r.html"
    assert main(["report", trace, "-o", str(out)]) == 0
    assert ("torn last record" if raw else "torn last line") in capsys.readouterr().err
    page = out.read_text(encoding="utf-8")
    assert len([b for b in data_blocks(page) if "ttfb" in b]) == len(exchanges)


# -- the page in a browser ------------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def chromium() -> Iterator[str]:
    """The headless browser; missing is a skip on a workstation and a failure in CI."""
    found = _chromium()
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed (CI=true: the browser test must run)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    yield found


def browser(chromium: str, url: str, tmp_path: Path, *args: str) -> str:
    """Run headless Chromium on ``url`` with a throwaway profile; stdout.

    The page must log nothing to the console: no script error, and no CSP violation (which is
    what an injected script or handler would cause, blocked or not).
    """
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--enable-logging=stderr",
        "--v=0",
        *args,
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90, errors="replace")
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    return done.stdout


def test_chromium_renders_rows_and_expands_one(
    exchanges: list[zltrace.Exchange], tmp_path: Path, chromium: str
) -> None:
    """In Chromium: one row per exchange, #expand=first opens it, hostile text stays text."""
    page = tmp_path / "report.html"
    page.write_text(report_html(exchanges, title="zl-test"), encoding="utf-8")
    dom = browser(chromium, page.as_uri() + "#expand=first", tmp_path, "--dump-dom")
    rows = re.findall(r'<tr class="zl-row[^"]*"[^>]*id="zl-row-(\d+)"', dom)
    assert rows == [str(i) for i in range(len(exchanges))]
    assert re.search(r'<tr class="zl-row open"[^>]*id="zl-row-0"[^>]*aria-expanded="true"', dom)
    detail = dom[dom.index('id="zl-detail-0"') :]
    assert "Hello! Let me check the weather for you." in detail
    assert "get_weather" in detail and "The user wants the weather." in detail
    assert "content_block_delta" in detail  # the raw SSE events
    assert "&quot;model&quot;: &quot;claude-sonnet-4-5&quot;" in detail or (
        '"model": "claude-sonnet-4-5"' in detail
    )
    # Nothing injected ran: the title is ours and no element got the "pwned" id.
    assert "<title>zl-test</title>" in dom and 'id="pwned"' not in dom
    assert "<img" not in dom


def test_chromium_shows_hostile_strings_as_text(
    exchanges: list[zltrace.Exchange], tmp_path: Path, chromium: str
) -> None:
    """Expanding the hostile exchange shows the payloads as text in the message and headers."""
    # urllib3 percent-encodes < and > in URLs; a trace file from elsewhere may hold them raw.
    raw_url = "http://127.0.0.1/" + SCRIPT_BREAK + IMG
    hostile = attrs.evolve(exchanges[1], request=attrs.evolve(exchanges[1].request, url=raw_url))
    page = tmp_path / "report.html"
    page.write_text(report_html([exchanges[0], hostile], title="zl-test"), encoding="utf-8")
    url = f"{page.as_uri()}#expand={exchanges[1].id}"
    dom = browser(chromium, url, tmp_path, "--dump-dom")
    row = dom[dom.index('id="zl-row-1"') : dom.index('id="zl-detail-1"')]
    detail = dom[dom.index('id="zl-detail-1"') :]
    escaped = SCRIPT_BREAK.replace("<", "&lt;").replace(">", "&gt;")
    assert escaped in row  # the URL cell
    # The URL, the X-Evil header, the message text (the request body and the SSE data hold it
    # JSON-escaped).
    assert detail.count(escaped) >= 3
    assert "&lt;img src=x onerror=" in detail
    assert "<title>zl-test</title>" in dom and 'id="pwned"' not in dom
    assert "<img" not in dom and "<b>" not in dom and "<b " not in dom


def test_chromium_filters_from_the_url(
    exchanges: list[zltrace.Exchange], tmp_path: Path, chromium: str
) -> None:
    """#status=4xx shows only the 404; #model=...&path=... narrows to the two LLM calls."""
    page = tmp_path / "report.html"
    page.write_text(report_html(exchanges), encoding="utf-8")

    def rows(fragment: str) -> list[str]:
        dom = browser(chromium, page.as_uri() + fragment, tmp_path, "--dump-dom")
        return re.findall(r'<tr class="zl-row[^"]*"[^>]*id="zl-row-(\d+)"', dom)

    assert rows("#status=4xx") == ["3"]
    assert rows("#model=claude-sonnet-4-5&path=MESSAGES&expand=last") == ["0", "1"]
    assert rows("#model=%00") == ["2", "3", "4", "5"]  # "(no model)"
    assert rows("#host=nowhere") == [str(i) for i in range(6)]  # unknown value: ignored


def test_chromium_pages_long_traces(
    exchanges: list[zltrace.Exchange], tmp_path: Path, chromium: str
) -> None:
    """1200 exchanges: 500 rows drawn, a "show more" button, and #expand reaches row 900."""
    many = [attrs.evolve(exchanges[k % 4], id=f"x.{k}") for k in range(1200)]
    page = tmp_path / "report.html"
    page.write_text(report_html(many), encoding="utf-8")
    dom = browser(chromium, page.as_uri(), tmp_path, "--dump-dom")
    assert len(re.findall(r'<tr class="zl-row', dom)) == 500
    assert "Show 500 more (700 hidden)" in dom and "Showing 500 of 1,200" in dom
    assert "1200 exchanges (5 per bar)" in dom  # the charts bin what they cannot draw
    dom = browser(chromium, page.as_uri() + "#expand=x.900", tmp_path, "--dump-dom")
    assert len(re.findall(r'<tr class="zl-row', dom)) == 901
    assert 'id="zl-detail-900"' in dom


def test_chromium_screenshot(
    exchanges: list[zltrace.Exchange], tmp_path: Path, chromium: str
) -> None:
    """The page renders to a non-empty screenshot (kept at ZLTRACE_REPORT_SCREENSHOT if set)."""
    page = tmp_path / "report.html"
    page.write_text(report_html(exchanges), encoding="utf-8")
    shot = Path(os.environ.get("ZLTRACE_REPORT_SCREENSHOT", str(tmp_path / "shot.png")))
    browser(
        chromium,
        page.as_uri() + "#expand=first",
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1280,900",
        "--hide-scrollbars",
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chromium_no_body_bar_without_a_response(
    tracer: zltrace.Tracer, tmp_path: Path, chromium: str
) -> None:
    """In Chromium: an exchange that got no response has no "receiving the body" bar."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = zltrace.wrap(
        urllib3.HTTPConnectionPool("127.0.0.1", port, retries=False), tracer=tracer
    )
    with pytest.raises(urllib3.exceptions.HTTPError):
        refused.request("GET", "/")
    page = tmp_path / "report.html"
    page.write_text(report_html(records(tracer)), encoding="utf-8")
    dom = browser(chromium, page.as_uri() + "#expand=first", tmp_path, "--dump-dom")
    detail = dom[dom.index('id="zl-detail-0"') :]
    detail = detail[: detail.index("<script")]  # the page's own script names both legends
    assert "No response was received." in detail
    assert "no response" in detail
    assert "receiving the body" not in detail
