"""Amazon Bedrock read back: event-stream frames, and Converse / InvokeModel messages.

boto3 itself calls the loopback Bedrock of ``support.bedrock`` (all four model calls), which
pins that the fake's bytes are what Bedrock sends: boto3 parses them into the results its
users get. The same requests -- the exact method, path, headers and body boto3 sent, as the
server received them -- are then sent again through a traced urllib3 pool, and the trace is
read back. (Tracing boto3's own pool manager is the capture side's concern.)
"""

from __future__ import annotations

import base64
import json
import struct
import uuid
from binascii import crc32
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import urllib3
from hypothesis import given, settings
from hypothesis import strategies as st
from support import bedrock as B
from support.server import ScriptedServer
from support.trace import records

import zltrace
from zltrace._read.eventstream import parse_event_stream
from zltrace._read.llm import message_from_body, usage_of
from zltrace._read.llm.bedrock import model_from_url, rebuild_converse

boto3 = pytest.importorskip("boto3", reason="boto3 is in the test extra")
botocore_config = pytest.importorskip("botocore.config")

# boto3 warns when a client is made on a Python it is about to stop supporting (3.9 in CI).
pytestmark = pytest.mark.filterwarnings("ignore:Boto3 will no longer support Python")

MESSAGES = [{"role": "user", "content": [{"text": "What is the weather in Seattle?"}]}]
CLAUDE_BODY = json.dumps(
    {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hello"}],
    }
)


@pytest.fixture(scope="module")
def srv() -> Iterator[ScriptedServer]:
    """The loopback Bedrock Runtime (one per module)."""
    with ScriptedServer(B.reply) as s:
        yield s
    assert not s.errors, s.errors


def client(srv: ScriptedServer) -> Any:
    """A real bedrock-runtime client aimed at the fake, with dummy credentials."""
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=srv.url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        config=botocore_config.Config(retries={"max_attempts": 1}),
    )


def replayed(srv: ScriptedServer, tracer: zltrace.Tracer, call: Any) -> zltrace.Exchange:
    """Run ``call`` (a boto3 call); send its request again through a traced pool; read back."""
    before = len(srv.requests)
    call()
    sent = srv.requests[before]
    pool = zltrace.wrap(
        urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False), tracer=tracer
    )
    headers = {k: v for k, v in sent.headers if k.lower() not in ("host", "content-length")}
    r = pool.urlopen(sent.method, sent.target, body=sent.body, headers=headers)
    assert r.status == 200
    (ex,) = records(tracer)
    return ex


def test_converse_usage_and_model_from_the_path(
    srv: ScriptedServer, tracer: zltrace.Tracer
) -> None:
    """converse: the body is the message; usage is inputTokens/outputTokens (not 0/0)."""
    got: dict[str, Any] = {}

    def call() -> None:
        got.update(client(srv).converse(modelId=B.CLAUDE, messages=MESSAGES))

    ex = replayed(srv, tracer, call)
    assert got["usage"] == B.CONVERSE_BODY["usage"]  # boto3 read the fake's bytes as Bedrock's
    assert ex.request.url.endswith("/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse")
    assert ex.message() == B.CONVERSE_BODY
    assert ex.usage() == zltrace.Usage(14, 9, 0, 0)
    assert ex.model() == B.CLAUDE
    assert ex.events() == [] and ex.outcome == "complete"


def test_converse_stream_rebuilt(srv: ScriptedServer, tracer: zltrace.Tracer) -> None:
    """converse_stream: frames decoded, rebuilt into the Converse response; ARN model decoded."""
    names: list[str] = []

    def call() -> None:
        for event in client(srv).converse_stream(modelId=B.PROFILE_ARN, messages=MESSAGES)[
            "stream"
        ]:
            names.extend(event)

    ex = replayed(srv, tracer, call)
    frames = ex.events()
    assert [f.event_type for f in frames] == names  # the frames boto3 saw, in order
    assert all(f.error is None and f.message_type == "event" for f in frames)
    assert ex.message() == B.CONVERSE_STREAM_MESSAGE
    assert ex.usage() == zltrace.Usage(412, 87, 1000, 0)
    assert ex.model() == B.PROFILE_ARN
    assert ex.sse_events() == []
    assert ex.outcome == "complete" and ex.complete_by == "framing"


def test_invoke_model_anthropic(srv: ScriptedServer, tracer: zltrace.Tracer) -> None:
    """invoke_model with an Anthropic body: the Messages response, its usage, its model."""
    got: dict[str, Any] = {}

    def call() -> None:
        r = client(srv).invoke_model(modelId=B.CLAUDE, body=CLAUDE_BODY)
        got.update(json.loads(r["body"].read()))

    ex = replayed(srv, tracer, call)
    assert got == B.INVOKE_BODY
    assert ex.message() == B.INVOKE_BODY
    assert ex.usage() == zltrace.Usage(12, 8, 0, 0)
    assert ex.model() == "claude-3-5-sonnet-20240620"  # the model that answered


def test_invoke_model_with_response_stream_anthropic(
    srv: ScriptedServer, tracer: zltrace.Tracer
) -> None:
    """invoke_model_with_response_stream: base64 chunks decoded into the Anthropic message."""
    chunks: list[Any] = []

    def call() -> None:
        r = client(srv).invoke_model_with_response_stream(modelId=B.CLAUDE, body=CLAUDE_BODY)
        chunks.extend(json.loads(e["chunk"]["bytes"]) for e in r["body"])

    ex = replayed(srv, tracer, call)
    assert chunks == B.INVOKE_STREAM_CHUNKS
    assert [f.event_type for f in ex.events()] == ["chunk"] * len(chunks)
    assert ex.message() == B.INVOKE_STREAM_MESSAGE
    assert ex.usage() == zltrace.Usage(12, 6, 0, 0)
    assert ex.model() == "claude-3-5-sonnet-20240620"


# -- the decoder ------------------------------------------------------------------------------


def test_bad_message_crc_is_reported_and_the_walk_goes_on() -> None:
    """A payload byte flipped: that frame has error set, the frames after it still decode."""
    frames = [B.event("messageStart", {"role": "assistant"}), B.event("messageStop", {})]
    bad = bytearray(frames[0])
    bad[-6] ^= 0xFF
    out = list(parse_event_stream(bytes(bad) + frames[1]))
    assert [f.error for f in out] == ["message CRC mismatch", None]
    assert out[1].event_type == "messageStop" and out[1].offset == len(bad)


def test_bad_prelude_stops_the_walk() -> None:
    """A broken prelude CRC loses the frame boundaries: reported once, nothing after it."""
    good = B.event("messageStart", {"role": "assistant"})
    bad = bytearray(good)
    bad[9] ^= 0x01
    out = list(parse_event_stream(good + bytes(bad) + good))
    assert [f.error for f in out] == [None, "prelude CRC mismatch"]


@pytest.mark.parametrize("cut", [5, 20, -3])
def test_truncated_body_ends_with_a_bad_frame(cut: int) -> None:
    """A stream cut inside a frame: the whole frames, then one saying what is missing."""
    body = B.CONVERSE_STREAM_BODY
    first = len(B.CONVERSE_STREAM_EVENTS[0])
    out = list(parse_event_stream(body[: first + cut] if cut > 0 else body[:cut]))
    assert out[-1].error is not None and "truncated" in out[-1].error
    assert all(f.error is None for f in out[:-1])


def test_every_header_type_decodes() -> None:
    """Header values of each event-stream type come back typed (bool, ints, bytes, time, uuid)."""
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    head = (
        b"\x01a\x00"
        + b"\x01b\x01"
        + b"\x01c\x02\xff"
        + b"\x01d\x03"
        + struct.pack(">h", -2)
        + b"\x01e\x04"
        + struct.pack(">i", 70000)
        + b"\x01f\x05"
        + struct.pack(">q", 1 << 40)
        + b"\x01g\x06"
        + struct.pack(">H", 3)
        + b"xyz"
        + b"\x01h\x08"
        + struct.pack(">q", 1700000000123)
        + b"\x01i\x09"
        + u.bytes
        + B.header("j", "text")
    )
    total = 12 + len(head) + 2 + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", crc32(prelude))
    msg = prelude + head + b"{}"
    msg += struct.pack(">I", crc32(msg))
    (frame,) = parse_event_stream(msg)
    assert frame.error is None and frame.payload == b"{}"
    assert frame.headers == {
        "a": True,
        "b": False,
        "c": -1,
        "d": -2,
        "e": 70000,
        "f": 1 << 40,
        "g": b"xyz",
        "h": datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=timezone.utc),
        "i": u,
        "j": "text",
    }


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 3))
def test_any_bytes_decode_without_raising(data: bytes, prefix: int) -> None:
    """Arbitrary bytes (after some good frames) never raise; frames or bad frames come back."""
    body = b"".join(B.CONVERSE_STREAM_EVENTS[:prefix]) + data
    frames = list(parse_event_stream(body))
    assert all(f.error is None for f in frames[:prefix])
    message_from_body(B.STREAM_TYPE, body)


# -- the rebuilders ---------------------------------------------------------------------------


def test_exception_frame_becomes_the_error() -> None:
    """A throttlingException mid-stream: the message so far, with the error under "error"."""
    body = b"".join(B.CONVERSE_STREAM_EVENTS[:6]) + B.exception(
        "throttlingException", "Too many tokens, please wait before trying again."
    )
    msg = message_from_body(B.STREAM_TYPE, body)
    assert msg is not None
    assert msg["error"] == {
        "type": "throttlingException",
        "message": "Too many tokens, please wait before trying again.",
    }
    assert msg["output"]["message"]["content"][1] == {"text": "Let me "}
    only = message_from_body(B.STREAM_TYPE, B.exception("validationException", "bad"))
    assert only == {"error": {"type": "validationException", "message": "bad"}}


def test_cut_off_tool_input_kept_raw() -> None:
    """Tool input cut mid-JSON is kept as the string, flagged partial."""
    body = b"".join(B.CONVERSE_STREAM_EVENTS[:10])
    msg = message_from_body(B.STREAM_TYPE, body)
    assert msg is not None
    block = msg["output"]["message"]["content"][2]
    assert block["toolUse"]["input"] == '{"location": "Seat'
    assert block["_zltrace_partial_json"] is True
    assert "usage" not in msg and usage_of(msg) is None


def test_redacted_reasoning_and_unknown_deltas_kept() -> None:
    """Redacted reasoning is joined; a delta of a kind not known here is kept as sent."""
    msg = rebuild_converse(
        [
            ("contentBlockDelta", {"delta": {"reasoningContent": {"redactedContent": "QUJD"}}}),
            ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"citation": {"x": 1}}}),
        ]
    )
    content = msg["output"]["message"]["content"]
    assert content == [{"reasoningContent": {"redactedContent": "QUJD"}}, {"citation": {"x": 1}}]


def test_nova_invoke_stream_rebuilt_as_converse() -> None:
    """Amazon Nova's InvokeModel stream (Converse-shaped chunks) gives the Converse response."""
    chunks = [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "Hi"}, "contentBlockIndex": 0}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "end_turn"}},
        {
            "metadata": {"usage": {"inputTokens": 5, "outputTokens": 1}},
            "amazon-bedrock-invocationMetrics": {"inputTokenCount": 5, "outputTokenCount": 1},
        },
    ]
    msg = message_from_body(B.STREAM_TYPE, b"".join(B.chunk(c) for c in chunks))
    assert msg is not None
    assert msg["output"]["message"] == {"role": "assistant", "content": [{"text": "Hi"}]}
    assert msg["stopReason"] == "end_turn"
    assert usage_of(msg) == zltrace.Usage(5, 1, 0, 0)


def test_other_provider_chunks_kept_with_metrics_usage() -> None:
    """A provider not rebuilt here (Meta Llama): chunks kept, usage from the invocation metrics."""
    chunks = [
        {"generation": "Hello", "prompt_token_count": 9, "generation_token_count": 1},
        {
            "generation": "!",
            "stop_reason": "stop",
            "amazon-bedrock-invocationMetrics": {"inputTokenCount": 9, "outputTokenCount": 2},
        },
    ]
    msg = message_from_body(B.STREAM_TYPE, b"".join(B.chunk(c) for c in chunks))
    assert msg is not None and msg["chunks"] == chunks
    assert usage_of(msg) == zltrace.Usage(9, 2, 0, 0)


def test_bad_chunk_bytes_are_skipped() -> None:
    """A chunk whose bytes are not base64 JSON is skipped, never raised."""
    good = B.chunk(B.INVOKE_STREAM_CHUNKS[0])
    bad = B.event("chunk", {"bytes": "%%%not base64"})
    odd = B.event("chunk", {"bytes": base64.b64encode(b"[1, 2]").decode()})
    msg = message_from_body(B.STREAM_TYPE, bad + odd + good)
    assert msg is not None and msg["id"] == "msg_bdrk_01Nx"


@pytest.mark.parametrize(
    ("url", "model"),
    [
        (
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.nova-pro-v1%3A0/converse",
            "amazon.nova-pro-v1:0",
        ),
        ("https://h/model/meta.llama3-8b-instruct-v1:0/invoke", "meta.llama3-8b-instruct-v1:0"),
        (
            "https://h/model/arn%3Aaws%3Abedrock%3Aus-west-2%3A1%3Aapplication-inference-profile"
            "%2Fab12/invoke-with-response-stream",
            "arn:aws:bedrock:us-west-2:1:application-inference-profile/ab12",
        ),
        ("https://h/model/x/converse-stream?a=1", "x"),
        ("https://h/v1/messages", None),
        ("https://h/model/x/other", None),
        ("http://[bad", None),
    ],
)
def test_model_from_url(url: str, model: str | None) -> None:
    """The model id of a Bedrock Runtime URL path, percent-decoded; None for other URLs."""
    assert model_from_url(url) == model


def test_invoke_model_usage_from_headers_for_any_provider(open_tracer: zltrace.Tracer) -> None:
    """A plain invoke of a provider whose body has no usage: the token-count headers give it."""
    tracer = open_tracer  # header redaction is not what this pins
    from support.server import response

    llama = {"generation": "Hi!", "stop_reason": "stop"}
    headers = [
        ("Content-Type", "application/json"),
        ("X-Amzn-Bedrock-Input-Token-Count", "9"),
        ("X-Amzn-Bedrock-Output-Token-Count", "3"),
    ]
    with ScriptedServer([response(200, json.dumps(llama).encode(), headers)]) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        pool.request("POST", "/model/meta.llama3-8b-instruct-v1%3A0/invoke", body=b"{}")
    (ex,) = records(tracer)
    assert ex.message() == llama
    assert ex.usage() == zltrace.Usage(9, 3, 0, 0)
    assert ex.model() == "meta.llama3-8b-instruct-v1:0"
    assert (
        zltrace.summarize([ex])["tokens"]["by_model"]["meta.llama3-8b-instruct-v1:0"]["input"] == 9
    )
