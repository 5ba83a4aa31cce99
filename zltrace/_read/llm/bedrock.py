"""Amazon Bedrock Runtime: Converse and InvokeModel, streamed (event-stream frames) or not.

- ``converse``: the body is the Converse response (``output.message.content`` blocks,
  ``stopReason``, ``usage``, ``metrics``) and is used as it is.
- ``converse-stream``: frames ``messageStart``, ``contentBlockStart`` / ``Delta`` / ``Stop``,
  ``messageStop``, ``metadata`` rebuilt into that same Converse response, as boto3's caller
  would have received it from ``converse``: text joined, reasoning text and signature joined
  into a ``reasoningContent.reasoningText`` block, tool input (sent as pieces of JSON text)
  parsed into ``toolUse.input`` (kept as the raw string, with ``"_zltrace_partial_json":
  true``, when it does not parse).
- ``invoke-with-response-stream``: ``chunk`` frames whose ``bytes`` (base64) hold the model
  provider's own stream events. Anthropic Claude's are the Messages stream events and are
  rebuilt by the Anthropic module; Amazon Nova's are Converse-shaped (``{"contentBlockDelta":
  {...}}``) and rebuilt as above. Any other provider's chunks are kept as a list under
  ``"chunks"``. Bedrock puts ``amazon-bedrock-invocationMetrics`` (input and output token
  counts, latencies) into the last chunk for every provider; it is kept in the message, and
  usage falls back to it. A plain ``invoke`` of any provider has its token counts in the
  ``X-Amzn-Bedrock-Input-Token-Count`` / ``-Output-Token-Count`` response headers, the last
  fallback.
- An exception frame (``throttlingException``, ``modelStreamErrorException``, ...) is put
  under ``"error"`` as ``{"type", "message"}``.

The model is not in these bodies: it is in the URL path (``/model/<id>/converse``),
percent-encoded (an inference-profile ARN has ``:`` and ``/`` in it).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from ..eventstream import EventFrame
from . import anthropic
from .usage import Usage
from .values import Json, as_dict, as_index, as_str, as_text, count, dicts
from .view import Block, MessageView

__all__ = [
    "model_from_url",
    "rebuild_converse",
    "rebuild_event_stream",
    "usage",
    "usage_from_headers",
    "view",
]

_METRICS = "amazon-bedrock-invocationMetrics"
_PATH = re.compile(
    r"/model/([^/]+)/(?:converse|converse-stream|invoke|invoke-with-response-stream)$"
)


def model_from_url(url: str) -> str | None:
    """The model id a Bedrock Runtime URL names in its path (percent-decoded), else None."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    match = _PATH.search(path)
    return unquote(match.group(1)) if match else None


def rebuild_event_stream(frames: Iterable[EventFrame]) -> Json | None:
    """The response a Bedrock event stream adds up to (Converse or InvokeModel), else None."""
    events: list[tuple[str, Json]] = []
    chunks: list[Json] = []
    error: Json | None = None
    for frame in frames:
        if frame.error is not None:
            continue
        kind = frame.event_type or ""
        if frame.message_type == "exception":
            error = {"type": kind, "message": _message(frame.payload)}
            continue
        if frame.message_type == "error":
            error = {
                "type": as_text(frame.headers.get(":error-code", "")),
                "message": as_text(frame.headers.get(":error-message", "")),
            }
            continue
        obj = _json(frame.payload)
        if obj is None:
            continue
        if kind == "chunk":
            inner = _json(_b64(obj.get("bytes")))
            if inner is not None:
                chunks.append(inner)
        else:
            events.append((kind, obj))
    if chunks:
        result = _rebuild_invoke(chunks)
    elif events:
        result = rebuild_converse(events)
    elif error is not None:
        return {"error": error}
    else:
        return None
    if error is not None:
        result["error"] = error
    return result


def _message(payload: bytes) -> str:
    obj = _json(payload)
    if obj is not None and isinstance(obj.get("message"), str):
        return str(obj["message"])
    return payload.decode("utf-8", "replace")


def _json(data: bytes) -> Json | None:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return b""


def _rebuild_invoke(chunks: list[Json]) -> Json:
    metrics = None
    for chunk in chunks:
        if isinstance(chunk.get(_METRICS), dict):
            metrics = chunk[_METRICS]
    first = chunks[0]
    result: Json
    if isinstance(first.get("type"), str) and first["type"] in anthropic.STREAM_EVENTS:
        payloads = [(as_str(c.get("type")), c) for c in chunks]
        result = anthropic.rebuild(payloads) or {"chunks": chunks}
    elif any(k in first for k in ("messageStart", "contentBlockDelta", "contentBlockStart")):
        # Amazon Nova: each chunk is one Converse stream event, keyed by its name.
        pairs = [(k, v) for c in chunks for k, v in c.items() if isinstance(v, dict)]
        result = rebuild_converse(pairs)
    else:
        result = {"chunks": chunks}
    if metrics is not None:
        result[_METRICS] = metrics
    return result


def rebuild_converse(events: list[tuple[str, Json]]) -> Json:
    """The Converse response a ConverseStream's (event name, payload) pairs add up to."""
    role = "assistant"
    blocks: dict[int, Json] = {}
    tool_json: dict[int, list[str]] = {}
    result: Json = {}
    for kind, obj in events:
        if kind == "messageStart":
            role = as_str(obj.get("role")) or role
        elif kind == "contentBlockStart":
            start = as_dict(obj.get("start"))
            index = as_index(obj.get("contentBlockIndex"), len(blocks))
            tool = start.get("toolUse")
            if isinstance(tool, dict):
                blocks[index] = {"toolUse": {**tool, "input": {}}}
        elif kind == "contentBlockDelta":
            index = as_index(obj.get("contentBlockIndex"), len(blocks))
            _delta(blocks, tool_json, index, as_dict(obj.get("delta")))
        elif kind == "messageStop":
            if "stopReason" in obj:
                result["stopReason"] = obj["stopReason"]
            if obj.get("additionalModelResponseFields") is not None:
                result["additionalModelResponseFields"] = obj["additionalModelResponseFields"]
        elif kind == "metadata":
            for key in ("usage", "metrics", "trace", "performanceConfig", "serviceTier"):
                if key in obj:
                    result[key] = obj[key]
        # contentBlockStop and unknown events change nothing.
    for index, pieces in tool_json.items():
        text = "".join(pieces)
        tool = blocks[index]["toolUse"]
        if not text.strip():
            continue
        try:
            tool["input"] = json.loads(text)
        except (ValueError, RecursionError):
            tool["input"] = text
            blocks[index]["_zltrace_partial_json"] = True
    content = [blocks[i] for i in sorted(blocks)]
    return {"output": {"message": {"role": role, "content": content}}, **result}


def _delta(blocks: dict[int, Json], tool_json: dict[int, list[str]], i: int, d: Json) -> None:
    if isinstance(d.get("text"), str):
        block = blocks.setdefault(i, {"text": ""})
        block["text"] = as_str(block.get("text")) + d["text"]
    elif isinstance(d.get("toolUse"), dict):
        blocks.setdefault(i, {"toolUse": {"input": {}}})
        tool_json.setdefault(i, []).append(as_str(d["toolUse"].get("input")))
    elif isinstance(d.get("reasoningContent"), dict):
        r = d["reasoningContent"]
        block = blocks.setdefault(i, {"reasoningContent": {}})
        content = block.setdefault("reasoningContent", {})
        if isinstance(r.get("redactedContent"), str):
            content["redactedContent"] = (
                as_str(content.get("redactedContent")) + r["redactedContent"]
            )
            return
        text = content.setdefault("reasoningText", {"text": ""})
        if isinstance(r.get("text"), str):
            text["text"] = as_str(text.get("text")) + r["text"]
        if isinstance(r.get("signature"), str):
            text["signature"] = as_str(text.get("signature")) + r["signature"]
    elif d:
        blocks.setdefault(i, {}).update(d)  # citations, images, ...: kept as sent


def usage(message: Json) -> Usage | None:
    """The usage of a Bedrock response: Converse ``usage``, else the invocation metrics."""
    fields = message.get("usage")
    if isinstance(fields, dict) and ("inputTokens" in fields or "outputTokens" in fields):
        # Bedrock counts cache reads and writes apart from inputTokens (they do not overlap).
        return Usage(
            input_tokens=count(fields.get("inputTokens")),
            output_tokens=count(fields.get("outputTokens")),
            cache_read_tokens=count(fields.get("cacheReadInputTokens")),
            cache_write_tokens=count(fields.get("cacheWriteInputTokens")),
        )
    metrics = message.get(_METRICS)
    if isinstance(metrics, dict):
        return Usage(
            input_tokens=count(metrics.get("inputTokenCount")),
            output_tokens=count(metrics.get("outputTokenCount")),
            cache_read_tokens=count(metrics.get("cacheReadInputTokenCount")),
            cache_write_tokens=count(metrics.get("cacheWriteInputTokenCount")),
        )
    return None


_HEADER_IN = "x-amzn-bedrock-input-token-count"
_HEADER_OUT = "x-amzn-bedrock-output-token-count"


def usage_from_headers(headers: Sequence[tuple[str, str]]) -> Usage | None:
    """The token counts InvokeModel puts in its response headers, None without them (or
    when they are not numbers: redacted by a rule that took them for credentials)."""
    found: dict[str, int] = {}
    for name, value in headers:
        low = name.lower()
        if low in (_HEADER_IN, _HEADER_OUT) and low not in found and value.strip().isdigit():
            found[low] = count(int(value))
    if not found:
        return None
    return Usage(input_tokens=found.get(_HEADER_IN, 0), output_tokens=found.get(_HEADER_OUT, 0))


def view(message: Json) -> MessageView | None:
    """The content blocks of a Converse response, None when ``message`` is not one."""
    output = message.get("output")
    if not isinstance(output, dict) or not isinstance(output.get("message"), dict):
        return None
    blocks = []
    for b in dicts(output["message"].get("content")):
        if isinstance(b.get("text"), str):
            blocks.append(Block("text", b["text"]))
        elif isinstance(b.get("reasoningContent"), dict):
            text = as_dict(b["reasoningContent"].get("reasoningText")).get("text")
            blocks.append(Block("thinking", as_text(text if text is not None else "(redacted)")))
        elif isinstance(b.get("toolUse"), dict):
            tool = b["toolUse"]
            blocks.append(
                Block("tool_use", tool.get("input", {}), name=as_text(tool.get("name", "")))
            )
        else:
            name = next(iter(b), "")
            blocks.append(Block("other", b, name=as_text(name)))
    stop = message.get("stopReason")
    return MessageView(blocks, None if stop is None else as_text(stop))
