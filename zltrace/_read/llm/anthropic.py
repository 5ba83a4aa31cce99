"""The Anthropic Messages API: its stream rebuilt into a message, its usage, its content blocks.

A stream (``message_start``, ``content_block_*``, ``message_delta``, ...) gives the message
from ``message_start`` with its content blocks grown by the deltas, as the Anthropic SDK
accumulates them. Tool input arrives as pieces of JSON text and is parsed once the stream is
over; text that does not parse (a stream cut off mid-argument) is kept as the raw string
under ``input`` and the block gets ``"_zltrace_partial_json": true``. An ``error`` event puts
its ``error`` object under the message's ``"error"`` key; a stream with nothing but an error
gives the error body the non-streaming call would have returned.
"""

from __future__ import annotations

import json
from typing import Any

from .usage import Usage
from .values import Json, as_dict, as_index, as_str, as_text, count, dicts
from .view import Block, MessageView

__all__ = ["STREAM_EVENTS", "error_only", "rebuild", "usage", "view"]

#: Event types only a Messages stream sends: one of them names the stream's API.
STREAM_EVENTS = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    }
)


def rebuild(payloads: list[tuple[str, Json]]) -> Json | None:
    """The message a Messages stream's (type, payload) events add up to."""
    message: Json | None = None
    blocks: dict[int, Json] = {}
    partial_json: dict[int, list[str]] = {}
    error: Any = None
    for typ, obj in payloads:
        if typ == "message_start":
            start = obj.get("message")
            if message is None and isinstance(start, dict):
                message = start
                content = start.get("content")
                if isinstance(content, list):
                    blocks = {i: b for i, b in enumerate(content) if isinstance(b, dict)}
        elif typ == "error":
            error = obj.get("error")
        elif message is None:
            continue
        elif typ == "content_block_start":
            block = obj.get("content_block")
            if isinstance(block, dict):
                blocks[as_index(obj.get("index"), len(blocks))] = block
        elif typ == "content_block_delta":
            block = blocks.get(as_index(obj.get("index"), -1))
            delta = obj.get("delta")
            if block is not None and isinstance(delta, dict):
                _delta(block, delta, partial_json, as_index(obj.get("index"), -1))
        elif typ == "message_delta":
            for key, value in as_dict(obj.get("delta")).items():
                message[key] = value
            delta_usage = obj.get("usage")
            if isinstance(delta_usage, dict):
                merged = as_dict(message.get("usage"))
                merged.update((k, v) for k, v in delta_usage.items() if v is not None)
                message["usage"] = merged
        # content_block_stop, message_stop, ping and unknown events change nothing.
    if message is None:
        return None if error is None else {"type": "error", "error": error}
    for index, pieces in partial_json.items():
        text = "".join(pieces)
        if not text.strip():
            continue  # no input deltas with text: the block's own (empty) input stands
        block = blocks[index]
        try:
            block["input"] = json.loads(text)
        except ValueError:
            block["input"] = text
            block["_zltrace_partial_json"] = True
    message["content"] = [blocks[i] for i in sorted(blocks)]
    if error is not None:
        message["error"] = error
    return message


def _delta(block: Json, delta: Json, partial_json: dict[int, list[str]], i: int) -> None:
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = as_str(block.get("text")) + as_str(delta.get("text"))
    elif kind == "input_json_delta":
        partial_json.setdefault(i, []).append(as_str(delta.get("partial_json")))
    elif kind == "thinking_delta":
        block["thinking"] = as_str(block.get("thinking")) + as_str(delta.get("thinking"))
    elif kind == "signature_delta":
        block["signature"] = as_str(delta.get("signature"))  # sent whole, once, as the SDK has it
    elif kind == "citations_delta":
        citations = block.get("citations")
        if not isinstance(citations, list):
            citations = block["citations"] = []
        citations.append(delta.get("citation"))


def error_only(typ: str, obj: Json) -> Json | None:
    """The error body of a stream that had only errors, if ``obj`` is a Messages error event."""
    if typ == "error" and isinstance(obj.get("error"), dict):
        return {"type": "error", "error": obj["error"]}
    return None


def usage(fields: Json) -> Usage:
    """A Messages ``usage`` object (its input excludes cache reads and writes already)."""
    return Usage(
        input_tokens=count(fields.get("input_tokens")),
        output_tokens=count(fields.get("output_tokens")),
        cache_read_tokens=count(fields.get("cache_read_input_tokens")),
        cache_write_tokens=count(fields.get("cache_creation_input_tokens")),
    )


def view(message: Json) -> MessageView | None:
    """The content blocks of a Messages message, None when ``message`` has no content list."""
    content = message.get("content")
    if not isinstance(content, list):
        return None
    blocks = []
    for b in dicts(content):
        kind = b.get("type")
        if kind == "text":
            blocks.append(Block("text", as_text(b.get("text", ""))))
        elif kind == "thinking":
            blocks.append(Block("thinking", as_text(b.get("thinking", ""))))
        elif kind in ("tool_use", "server_tool_use"):
            blocks.append(Block("tool_use", b.get("input", {}), name=as_text(b.get("name", ""))))
        else:
            blocks.append(Block("other", b, name=as_text(kind)))
    stop = message.get("stop_reason")
    return MessageView(blocks, None if stop is None else as_text(stop))
