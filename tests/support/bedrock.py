"""A loopback Amazon Bedrock Runtime: what its four model calls answer, byte for byte.

Event-stream framing as botocore's ``eventstream.py`` parses it: a prelude (total length,
headers length, CRC32 of those 8 bytes), headers (1-byte name length, name, type 7 =
string with a 2-byte length), the payload, and a CRC32 of everything before it. Payload
shapes follow the bedrock-runtime service model (``ConverseStreamOutput``,
``ResponseStream``/``PayloadPart``) and the Anthropic-on-Bedrock message format; every
payload carries the ``"p"`` padding field Bedrock adds. The expected objects are written
out by hand.

``BedrockFake().reply`` routes ``POST /model/<id>/<operation>`` to the recorded answer, so
one server serves boto3 (``endpoint_url=srv.url``) and the traced urllib3 pool alike.
"""

from __future__ import annotations

import base64
import json
import struct
from binascii import crc32
from collections.abc import Sequence
from typing import Any

from support.server import Request, Step, chunk_frame, response, send

Json = dict[str, Any]

STREAM_TYPE = "application/vnd.amazon.eventstream"
CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
PROFILE_ARN = (
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
    "us.anthropic.claude-sonnet-4-20250514-v1:0"
)
_PAD = "abcdefghijklmnopqrstuvwxyzABCDEFGH"


def header(name: str, value: str) -> bytes:
    """One string header (type 7)."""
    raw_name, raw = name.encode(), value.encode()
    return bytes([len(raw_name)]) + raw_name + b"\x07" + struct.pack(">H", len(raw)) + raw


def frame(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """One event-stream message with both CRCs right."""
    head = b"".join(header(n, v) for n, v in headers)
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", crc32(prelude) & 0xFFFFFFFF)
    body = prelude + head + payload
    return body + struct.pack(">I", crc32(body) & 0xFFFFFFFF)


def event(kind: str, payload: Json) -> bytes:
    """An ``event`` message of type ``kind`` with a JSON payload (padding added)."""
    headers = [
        (":event-type", kind),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ]
    return frame(headers, json.dumps({**payload, "p": _PAD[: 5 + len(kind)]}).encode())


def exception(kind: str, message: str) -> bytes:
    """An ``exception`` message (a modeled error in the middle of a stream)."""
    headers = [
        (":exception-type", kind),
        (":content-type", "application/json"),
        (":message-type", "exception"),
    ]
    return frame(headers, json.dumps({"message": message}).encode())


def chunk(inner: Json) -> bytes:
    """An InvokeModelWithResponseStream ``chunk``: the provider's event, base64 in ``bytes``."""
    data = base64.b64encode(json.dumps(inner).encode()).decode()
    return event("chunk", {"bytes": data})


# -- converse ---------------------------------------------------------------------------------

WEATHER = {"location": "Seattle, WA", "unit": "celsius"}

CONVERSE_BODY: Json = {
    "output": {
        "message": {
            "role": "assistant",
            "content": [
                {"text": "Let me check the weather."},
                {
                    "toolUse": {
                        "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                        "name": "get_weather",
                        "input": WEATHER,
                    }
                },
            ],
        }
    },
    "stopReason": "tool_use",
    "usage": {"inputTokens": 14, "outputTokens": 9, "totalTokens": 23},
    "metrics": {"latencyMs": 512},
}

_STREAM_USAGE = {
    "inputTokens": 412,
    "outputTokens": 87,
    "totalTokens": 1499,
    "cacheReadInputTokens": 1000,
    "cacheWriteInputTokens": 0,
}
_SIGNATURE = "ErcBCkgIBhABGAIiQMuh3Fz5sQ"

CONVERSE_STREAM_EVENTS = [
    event("messageStart", {"role": "assistant"}),
    event(
        "contentBlockDelta",
        {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "The user wants "}}},
    ),
    event(
        "contentBlockDelta",
        {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "the weather."}}},
    ),
    event(
        "contentBlockDelta",
        {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": _SIGNATURE}}},
    ),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Let me "}}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "check."}}),
    event("contentBlockStop", {"contentBlockIndex": 1}),
    event(
        "contentBlockStart",
        {
            "contentBlockIndex": 2,
            "start": {"toolUse": {"toolUseId": "tooluse_abc123", "name": "get_weather"}},
        },
    ),
    event(
        "contentBlockDelta",
        {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"location": "Seat'}}},
    ),
    event(
        "contentBlockDelta",
        {"contentBlockIndex": 2, "delta": {"toolUse": {"input": 'tle, WA", "unit": "celsius"}'}}},
    ),
    event("contentBlockStop", {"contentBlockIndex": 2}),
    event("messageStop", {"stopReason": "tool_use"}),
    event("metadata", {"usage": _STREAM_USAGE, "metrics": {"latencyMs": 1834}}),
]

CONVERSE_STREAM_MESSAGE: Json = {
    "output": {
        "message": {
            "role": "assistant",
            "content": [
                {
                    "reasoningContent": {
                        "reasoningText": {
                            "text": "The user wants the weather.",
                            "signature": _SIGNATURE,
                        }
                    }
                },
                {"text": "Let me check."},
                {
                    "toolUse": {
                        "toolUseId": "tooluse_abc123",
                        "name": "get_weather",
                        "input": WEATHER,
                    }
                },
            ],
        }
    },
    "stopReason": "tool_use",
    "usage": _STREAM_USAGE,
    "metrics": {"latencyMs": 1834},
}

# -- invoke_model (Anthropic Claude on Bedrock) ------------------------------------------------

INVOKE_BODY: Json = {
    "id": "msg_bdrk_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-3-5-sonnet-20240620",
    "content": [{"type": "text", "text": "Hello! How can I help?"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 8},
}

_METRICS = {
    "inputTokenCount": 12,
    "outputTokenCount": 6,
    "invocationLatency": 655,
    "firstByteLatency": 402,
}

INVOKE_STREAM_CHUNKS: list[Json] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_bdrk_01Nx",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-sonnet-20240620",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 6},
    },
    {"type": "message_stop", "amazon-bedrock-invocationMetrics": _METRICS},
]

INVOKE_STREAM_MESSAGE: Json = {
    "id": "msg_bdrk_01Nx",
    "type": "message",
    "role": "assistant",
    "model": "claude-3-5-sonnet-20240620",
    "content": [{"type": "text", "text": "Hello there"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 6},
    "amazon-bedrock-invocationMetrics": _METRICS,
}

CONVERSE_STREAM_BODY = b"".join(CONVERSE_STREAM_EVENTS)
INVOKE_STREAM_BODY = b"".join(chunk(c) for c in INVOKE_STREAM_CHUNKS)


def _json_reply(body: Json, headers: Sequence[tuple[str, str]] = ()) -> list[Step]:
    raw = json.dumps(body).encode()
    return response(200, raw, [("Content-Type", "application/json"), *headers])


def stream_reply(body_frames: list[bytes]) -> list[Step]:
    """A chunked event-stream response, one HTTP chunk per frame (as Bedrock sends them)."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: "
        + STREAM_TYPE.encode()
        + b"\r\nx-amzn-RequestId: 5b3e0c1e-0000-4000-8000-000000000000\r\n"
        + b"Transfer-Encoding: chunked\r\n\r\n"
    )
    return [send(head), *(send(chunk_frame(f)) for f in body_frames), send(chunk_frame(b""))]


def reply(req: Request) -> list[Step]:
    """The recorded answer for a Bedrock Runtime request (404 for anything else)."""
    path = req.target.split("?", 1)[0]
    if path.endswith("/converse"):
        return _json_reply(CONVERSE_BODY)
    if path.endswith("/converse-stream"):
        return stream_reply(CONVERSE_STREAM_EVENTS)
    if path.endswith("/invoke"):
        return _json_reply(
            INVOKE_BODY,
            [
                ("X-Amzn-Bedrock-Input-Token-Count", "12"),
                ("X-Amzn-Bedrock-Output-Token-Count", "8"),
            ],
        )
    if path.endswith("/invoke-with-response-stream"):
        return stream_reply([chunk(c) for c in INVOKE_STREAM_CHUNKS])
    return response(404, b'{"message":"not found"}', [("Content-Type", "application/json")])
