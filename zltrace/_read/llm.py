"""LLM API responses rebuilt from traced bodies (read side): the message, its usage, its model.

Goal: for a streamed response, the object the same call would have returned without
``stream: true``; for a JSON body, the parsed body. Three stream formats are known:

- Anthropic Messages (``message_start``, ``content_block_*``, ``message_delta``, ...): the
  message from ``message_start`` with its content blocks grown by the deltas, as the
  Anthropic SDK accumulates them. Tool input arrives as pieces of JSON text and is parsed
  once the stream is over; text that does not parse (a stream cut off mid-argument) is kept
  as the raw string under ``input`` and the block gets ``"_zltrace_partial_json": true``.
  An ``error`` event puts its ``error`` object under the message's ``"error"`` key.
- OpenAI Chat Completions (``chat.completion.chunk`` objects, then ``[DONE]``): a
  ``chat.completion`` with one choice per index, content/refusal/tool-call arguments joined.
- OpenAI Responses (``response.*`` events): the ``response`` of the terminal event
  (``response.completed`` / ``.incomplete`` / ``.failed``) when there is one, as it is
  authoritative (its output rebuilt from the events only when it has none); otherwise the
  last ``response.created`` / ``.in_progress`` response with the output rebuilt from the
  item and delta events. An ``error`` event is put under ``"error"``.

A stream that stops early gives what was built so far (an Anthropic ``stop_reason`` still
None, a Responses ``status`` still "in_progress"); a stream with nothing but an error gives
the error body the non-streaming call would have returned (``{"type": "error", "error": ...}``
or ``{"error": ...}``).

Nothing here raises on bad input: the read side must show every exchange of a trace, so
anything malformed gives None or the best that could be built.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Optional

import attrs

from .sse import SSEEvent, parse_sse

if TYPE_CHECKING:
    from .reader import Exchange

__all__ = ["Usage", "is_event_stream", "message_from_body", "rebuild_stream", "total_usage"]

Json = dict[str, Any]

_NON_NEGATIVE_INT = attrs.validators.and_(attrs.validators.instance_of(int), attrs.validators.ge(0))


@attrs.frozen
class Usage:
    """Token counts of one call, or a total; the four counts do not overlap.

    ``input_tokens`` counts the input tokens that were neither read from nor written to a
    prompt cache, so ``input_tokens + cache_read_tokens + cache_write_tokens`` is the whole
    prompt for every provider. Anthropic reports it that way; OpenAI's ``prompt_tokens`` /
    ``input_tokens`` include the cached tokens, which are subtracted here.
    """

    input_tokens: int = attrs.field(default=0, validator=_NON_NEGATIVE_INT)
    output_tokens: int = attrs.field(default=0, validator=_NON_NEGATIVE_INT)
    cache_read_tokens: int = attrs.field(default=0, validator=_NON_NEGATIVE_INT)
    cache_write_tokens: int = attrs.field(default=0, validator=_NON_NEGATIVE_INT)

    @property
    def total_input_tokens(self) -> int:
        """The whole prompt: uncached input plus cache reads plus cache writes."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    def __add__(self, other: object) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )

    def __radd__(self, other: object) -> Usage:
        # sum(usages) starts from 0.
        if other == 0:
            return self
        return NotImplemented


def total_usage(exchanges: Iterable[Exchange]) -> Usage:
    """The sum of :meth:`Exchange.usage` over ``exchanges`` (those without usage add nothing)."""
    total = Usage()
    for exchange in exchanges:
        usage = exchange.usage()
        if usage is not None:
            total = total + usage
    return total


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
        return _json_object(body)
    except Exception:  # a report must not die on one odd body (e.g. RecursionError)
        return None


def usage_of(message: Json | None) -> Usage | None:
    """The token counts in a message (any of the three APIs), None if it has none."""
    if message is None:
        return None
    usage = message.get("usage")
    if not isinstance(usage, dict):
        return None
    if "prompt_tokens" in usage or "completion_tokens" in usage:  # Chat Completions
        cached = _int(_dict(usage.get("prompt_tokens_details")).get("cached_tokens"))
        return Usage(
            input_tokens=max(0, _int(usage.get("prompt_tokens")) - cached),
            output_tokens=_int(usage.get("completion_tokens")),
            cache_read_tokens=cached,
        )
    if "input_tokens_details" in usage or "total_tokens" in usage:  # Responses
        cached = _int(_dict(usage.get("input_tokens_details")).get("cached_tokens"))
        return Usage(
            input_tokens=max(0, _int(usage.get("input_tokens")) - cached),
            output_tokens=_int(usage.get("output_tokens")),
            cache_read_tokens=cached,
        )
    return Usage(  # Anthropic
        input_tokens=_int(usage.get("input_tokens")),
        output_tokens=_int(usage.get("output_tokens")),
        cache_read_tokens=_int(usage.get("cache_read_input_tokens")),
        cache_write_tokens=_int(usage.get("cache_creation_input_tokens")),
    )


def model_of(message: Json | None, request_body: bytes | None) -> str | None:
    """The model that answered (from the message), else the one the request asked for."""
    if message is not None:
        model = message.get("model")
        if isinstance(model, str) and model:
            return model
    if request_body:
        try:
            request = _json_object(request_body)
        except Exception:  # as in message_from_body
            return None
        if request is not None:
            model = request.get("model")
            if isinstance(model, str) and model:
                return model
    return None


# -- helpers ----------------------------------------------------------------------------------


def _json_object(body: bytes) -> Json | None:
    head = body[:64].lstrip(b" \t\r\n\xef\xbb\xbf")  # whitespace, a UTF-8 BOM
    if not head.startswith(b"{"):
        return None
    try:
        value = json.loads(body)
    except ValueError:  # includes UnicodeDecodeError
        return None
    return value if isinstance(value, dict) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _dict(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _index(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# -- streams ----------------------------------------------------------------------------------

_ANTHROPIC = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    }
)


def rebuild_stream(events: Iterable[SSEEvent]) -> Json | None:
    """The non-streaming object for a stream of one of the known LLM APIs, else None.

    May raise on input no API sends (the public callers catch); tests call it directly so a
    bug shows.
    """
    payloads: list[tuple[str, Json]] = []
    kind: Optional[str] = None
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
        if kind is None:
            if obj.get("object") == "chat.completion.chunk":
                kind = "chat"
            elif typ in _ANTHROPIC:
                kind = "anthropic"
            elif typ.startswith("response."):
                kind = "responses"
    if kind == "anthropic":
        return _anthropic(payloads)
    if kind == "chat":
        return _chat(payloads)
    if kind == "responses":
        return _responses(payloads)
    # Nothing but errors (or pings): the error body, in the shape its API uses.
    for typ, obj in payloads:
        if typ == "error" and isinstance(obj.get("error"), dict):
            return {"type": "error", "error": obj["error"]}  # Anthropic
        if typ == "error":
            return {"error": _error_fields(obj)}  # Responses
        if isinstance(obj.get("error"), dict):
            return {"error": obj["error"]}  # Chat Completions
    return None


def _error_fields(obj: Json) -> Json:
    return {k: v for k, v in obj.items() if k not in ("type", "sequence_number")}


def _anthropic(payloads: list[tuple[str, Json]]) -> Json | None:
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
                blocks[_index(obj.get("index"), len(blocks))] = block
        elif typ == "content_block_delta":
            block = blocks.get(_index(obj.get("index"), -1))
            delta = obj.get("delta")
            if block is not None and isinstance(delta, dict):
                _anthropic_delta(block, delta, partial_json, _index(obj.get("index"), -1))
        elif typ == "message_delta":
            for key, value in _dict(obj.get("delta")).items():
                message[key] = value
            usage = obj.get("usage")
            if isinstance(usage, dict):
                merged = _dict(message.get("usage"))
                merged.update((k, v) for k, v in usage.items() if v is not None)
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


def _anthropic_delta(block: Json, delta: Json, partial_json: dict[int, list[str]], i: int) -> None:
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = _str(block.get("text")) + _str(delta.get("text"))
    elif kind == "input_json_delta":
        partial_json.setdefault(i, []).append(_str(delta.get("partial_json")))
    elif kind == "thinking_delta":
        block["thinking"] = _str(block.get("thinking")) + _str(delta.get("thinking"))
    elif kind == "signature_delta":
        block["signature"] = _str(delta.get("signature"))  # sent whole, once, as the SDK has it
    elif kind == "citations_delta":
        citations = block.get("citations")
        if not isinstance(citations, list):
            citations = block["citations"] = []
        citations.append(delta.get("citation"))


def _chat(payloads: list[tuple[str, Json]]) -> Json | None:
    completion: Json | None = None
    choices: dict[int, Json] = {}
    tool_calls: dict[int, dict[int, Json]] = {}
    error: Any = None
    for _typ, obj in payloads:
        if obj.get("object") != "chat.completion.chunk":
            if isinstance(obj.get("error"), dict):
                error = obj["error"]
            continue
        if completion is None:
            completion = {"object": "chat.completion"}
        for key, value in obj.items():
            if key not in ("object", "choices", "usage") and (
                value is not None or key not in completion
            ):
                completion[key] = value
        if obj.get("usage") is not None:
            completion["usage"] = obj["usage"]
        raw_choices = obj.get("choices")
        for choice in raw_choices if isinstance(raw_choices, list) else ():
            if isinstance(choice, dict):
                index = _index(choice.get("index"), 0)
                state = choices.get(index)
                if state is None:
                    state = choices[index] = {
                        "index": index,
                        "message": {"role": "assistant", "content": None, "refusal": None},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                _chat_choice(state, choice, tool_calls.setdefault(index, {}))
    if completion is None:
        return None if error is None else {"error": error}
    for index, calls in tool_calls.items():
        if calls:
            choices[index]["message"]["tool_calls"] = [calls[i] for i in sorted(calls)]
    completion["choices"] = [choices[i] for i in sorted(choices)]
    if error is not None:
        completion["error"] = error
    return completion


def _chat_choice(state: Json, choice: Json, calls: dict[int, Json]) -> None:
    message: Json = state["message"]
    for key, value in _dict(choice.get("delta")).items():
        if key == "tool_calls":
            for call in value if isinstance(value, list) else ():
                if isinstance(call, dict):
                    _chat_tool_call(calls, call)
        elif key == "function_call":  # the deprecated single-function form
            if isinstance(value, dict):
                merged = _dict(message.get("function_call"))
                merged["name"] = _join_name(_str(merged.get("name")), value.get("name"))
                merged["arguments"] = _str(merged.get("arguments")) + _str(value.get("arguments"))
                message["function_call"] = merged
        elif isinstance(value, str) and isinstance(message.get(key), str) and key != "role":
            message[key] += value  # content, refusal, and e.g. reasoning_content
        elif value is not None:
            message[key] = value
    if choice.get("finish_reason") is not None:
        state["finish_reason"] = choice["finish_reason"]
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict):
        merged = _dict(state["logprobs"])
        for key in ("content", "refusal"):
            part = logprobs.get(key)
            if isinstance(part, list):
                merged[key] = [*(merged.get(key) or []), *part]
            else:
                merged.setdefault(key, None)
        state["logprobs"] = merged


def _chat_tool_call(calls: dict[int, Json], delta: Json) -> None:
    index = _index(delta.get("index"), len(calls))
    call = calls.get(index)
    if call is None:
        call = calls[index] = {
            "id": None,
            "type": "function",
            "function": {"name": "", "arguments": ""},
        }
    if delta.get("id"):
        call["id"] = call["id"] or delta["id"]
    if isinstance(delta.get("type"), str):
        call["type"] = delta["type"]
    function = delta.get("function")
    if isinstance(function, dict):
        fn = call["function"]
        fn["name"] = _join_name(fn["name"], function.get("name"))
        fn["arguments"] += _str(function.get("arguments"))


def _join_name(have: str, piece: Any) -> str:
    # OpenAI sends the name once; some compatible servers repeat it in every delta.
    piece = _str(piece)
    return have if piece == have else have + piece


# Events that grow a content part of a message (or reasoning) item.
_PART_EVENTS = ("response.output_text.", "response.refusal.", "response.reasoning_text.")


def _responses(payloads: list[tuple[str, Json]]) -> Json | None:
    response: Json | None = None
    final: Json | None = None
    items: dict[int, Json] = {}
    done: set[int] = set()
    parts: dict[int, dict[int, Json]] = {}
    summaries: dict[int, dict[int, Json]] = {}
    error: Json | None = None
    for typ, obj in payloads:
        out = _index(obj.get("output_index"), -1)
        if typ in ("response.created", "response.in_progress", "response.queued"):
            if isinstance(obj.get("response"), dict):
                response = obj["response"]
        elif typ in ("response.completed", "response.incomplete", "response.failed"):
            if isinstance(obj.get("response"), dict):
                final = obj["response"]
        elif typ == "error":
            error = _error_fields(obj)
        elif typ in ("response.output_item.added", "response.output_item.done"):
            if isinstance(obj.get("item"), dict):
                items[out] = obj["item"]
                if typ.endswith(".done"):
                    done.add(out)
        elif out in done:
            continue  # the item's own done event holds all of it
        elif typ in ("response.content_part.added", "response.content_part.done"):
            if isinstance(obj.get("part"), dict):
                parts.setdefault(out, {})[_index(obj.get("content_index"), 0)] = obj["part"]
        elif typ in (
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_part.done",
        ):
            if isinstance(obj.get("part"), dict):
                summaries.setdefault(out, {})[_index(obj.get("summary_index"), 0)] = obj["part"]
        elif typ == "response.function_call_arguments.delta":
            item = items.get(out)
            if item is not None:
                item["arguments"] = _str(item.get("arguments")) + _str(obj.get("delta"))
        elif typ == "response.function_call_arguments.done":
            if out in items and isinstance(obj.get("arguments"), str):
                items[out]["arguments"] = obj["arguments"]
        elif typ.startswith("response.reasoning_summary_text."):
            part = summaries.setdefault(out, {}).setdefault(
                _index(obj.get("summary_index"), 0), {"type": "summary_text", "text": ""}
            )
            _text_event(part, typ, obj, "text")
        elif typ.startswith(_PART_EVENTS):
            kind = typ.split(".")[1]  # output_text, refusal or reasoning_text
            field = "refusal" if kind == "refusal" else "text"
            part = parts.setdefault(out, {}).setdefault(
                _index(obj.get("content_index"), 0), {"type": kind, field: ""}
            )
            _text_event(part, typ, obj, field)
        # Other events (tool progress, audio, ...) are in the items' done events and in the
        # terminal response.
    if final is not None:
        # The terminal response is authoritative; only where it lacks the output (a failed
        # response may carry none) is the output rebuilt from the events.
        if not final.get("output") and items:
            final["output"] = _output(items, done, parts, summaries)
        result = final
    elif response is not None:
        response["output"] = _output(items, done, parts, summaries)
        result = response
    elif items:
        result = {"object": "response", "output": _output(items, done, parts, summaries)}
    else:
        return None if error is None else {"error": error}
    if error is not None and result.get("error") is None:
        result["error"] = error
    return result


def _text_event(part: Json, typ: str, obj: Json, field: str) -> None:
    if typ.endswith(".delta"):
        part[field] = _str(part.get(field)) + _str(obj.get("delta"))
    elif typ.endswith(".annotation.added"):
        annotations = part.get("annotations")
        if not isinstance(annotations, list):
            annotations = part["annotations"] = []
        annotations.append(obj.get("annotation"))
    elif isinstance(obj.get(field), str):  # .done: the whole text
        part[field] = obj[field]


def _output(
    items: dict[int, Json],
    done: set[int],
    parts: dict[int, dict[int, Json]],
    summaries: dict[int, dict[int, Json]],
) -> list[Json]:
    output = []
    for index in sorted(items):
        item = items[index]
        if index not in done:
            if parts.get(index):
                item["content"] = [parts[index][k] for k in sorted(parts[index])]
            if summaries.get(index):
                item["summary"] = [summaries[index][k] for k in sorted(summaries[index])]
        output.append(item)
    return output
