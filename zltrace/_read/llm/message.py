"""Which LLM API a response body is, and the message, usage, model and view it stands for.

Goal: for a streamed response, the object the same call would have returned without
``stream: true``; for a JSON body, the parsed body. The provider modules (``anthropic``,
``openai``) know their APIs; this one detects which API a stream speaks and dispatches.

A stream that stops early gives what was built so far (an Anthropic ``stop_reason`` still
None, a Responses ``status`` still "in_progress").

Nothing public here raises on bad input: the read side must show every exchange of a trace,
so anything malformed gives None or the best that could be built.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Callable

from ..eventstream import is_aws_event_stream, parse_event_stream
from ..sse import SSEEvent, parse_sse
from . import anthropic, bedrock, openai
from .usage import Usage
from .values import Json, json_object
from .view import Block, MessageView

__all__ = [
    "is_event_stream",
    "message_from_body",
    "message_view",
    "model_of",
    "rebuild_stream",
    "usage_of",
]

_REBUILD: dict[str, Callable[[list[tuple[str, Json]]], Json | None]] = {
    "anthropic": anthropic.rebuild,
    "chat": openai.rebuild_chat,
    "responses": openai.rebuild_responses,
}


def is_event_stream(content_type: str | None) -> bool:
    """Whether a Content-Type header value names ``text/event-stream``."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "text/event-stream"


def message_from_body(content_type: str | None, body: bytes) -> Json | None:
    """The message a response body stands for; None if it is no JSON object nor known stream."""
    try:
        if is_event_stream(content_type):
            return rebuild_stream(parse_sse(body))
        if is_aws_event_stream(content_type):
            return bedrock.rebuild_event_stream(parse_event_stream(body))
        return json_object(body)
    except Exception:  # a report must not die on one odd body (e.g. RecursionError)
        return None


def rebuild_stream(events: Iterable[SSEEvent]) -> Json | None:
    """The non-streaming object for a stream of one of the known LLM APIs, else None.

    May raise on input no API sends (the public callers catch); tests call it directly so a
    bug shows.
    """
    payloads: list[tuple[str, Json]] = []
    api: str | None = None
    for event in events:
        if event.data == "[DONE]":
            continue
        try:
            obj = json.loads(event.data)
        except (ValueError, RecursionError):
            continue
        if not isinstance(obj, dict):
            continue
        typ = obj.get("type")
        if not isinstance(typ, str):
            typ = "" if event.event == "message" else event.event
        payloads.append((typ, obj))
        if api is None:
            api = "anthropic" if typ in anthropic.STREAM_EVENTS else openai.stream_api(typ, obj)
    if api is not None:
        return _REBUILD[api](payloads)
    # Nothing but errors (or pings): the error body, in the shape its API uses.
    for typ, obj in payloads:
        body = anthropic.error_only(typ, obj)
        if body is None:
            body = openai.error_only(typ, obj)
        if body is not None:
            return body
    return None


def usage_of(
    message: Json | None, headers: Sequence[tuple[str, str]] | None = None
) -> Usage | None:
    """The token counts in a message (any of the known APIs), None if it has none.

    ``headers`` (the response's) are the fallback: Bedrock's InvokeModel answers with
    ``X-Amzn-Bedrock-Input-Token-Count`` / ``-Output-Token-Count`` for every model provider,
    whatever shape the provider's body has.
    """
    found = _usage_in(message) if message is not None else None
    if found is None and headers:
        found = bedrock.usage_from_headers(headers)
    return found


def _usage_in(message: Json) -> Usage | None:
    found = bedrock.usage(message)
    if found is not None:
        return found
    fields = message.get("usage")
    if not isinstance(fields, dict):
        return None
    found = openai.usage(fields)
    return found if found is not None else anthropic.usage(fields)


def model_of(
    message: Json | None, request_body: bytes | None, url: str | None = None
) -> str | None:
    """The model that answered (from the message), else the one the request asked for
    (in its JSON body, or in a Bedrock Runtime URL path)."""
    if message is not None:
        model = message.get("model")
        if isinstance(model, str) and model:
            return model
    if request_body:
        request = json_object(request_body)
        if request is not None:
            model = request.get("model")
            if isinstance(model, str) and model:
                return model
    return bedrock.model_from_url(url) if url else None


def message_view(message: Any) -> MessageView | None:
    """A rebuilt message as display blocks; None for plain JSON that is no LLM message."""
    if not isinstance(message, dict):
        return None
    view = anthropic.view(message)
    if view is None:
        view = openai.view(message)
    if view is None:
        view = bedrock.view(message)
    if view is None:
        return None
    if message.get("error") is not None:  # an error event cut the stream short
        view.blocks.append(Block("error", message["error"]))
    return view
