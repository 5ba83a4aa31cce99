"""The OpenAI Chat Completions and Responses APIs: streams rebuilt, usage, content blocks.

- Chat Completions (``chat.completion.chunk`` objects, then ``[DONE]``): a
  ``chat.completion`` with one choice per index, content/refusal/tool-call arguments joined.
- Responses (``response.*`` events): the ``response`` of the terminal event
  (``response.completed`` / ``.incomplete`` / ``.failed``) when there is one, as it is
  authoritative (its output rebuilt from the events only when it has none); otherwise the
  last ``response.created`` / ``.in_progress`` response with the output rebuilt from the
  item and delta events. An ``error`` event is put under ``"error"``.

A stream with nothing but an error gives the error body the non-streaming call would have
returned (``{"error": ...}``). Both APIs count cached tokens inside the input tokens; the
:class:`Usage` made here subtracts them.
"""

from __future__ import annotations

from typing import Any

from .usage import Usage
from .values import Json, as_dict, as_index, as_list, as_str, as_text, count, dicts
from .view import Block, MessageView

__all__ = ["error_only", "rebuild_chat", "rebuild_responses", "stream_api", "usage", "view"]

_CHUNK = "chat.completion.chunk"


def stream_api(typ: str, obj: Json) -> str | None:
    """The API a stream event names: "chat" or "responses", else None."""
    if obj.get("object") == _CHUNK:
        return "chat"
    if typ.startswith("response."):
        return "responses"
    return None


def error_only(typ: str, obj: Json) -> Json | None:
    """The error body of a stream that had only errors, if ``obj`` is an OpenAI error event."""
    if typ == "error":
        return {"error": _error_fields(obj)}  # Responses
    if isinstance(obj.get("error"), dict):
        return {"error": obj["error"]}  # Chat Completions
    return None


def _error_fields(obj: Json) -> Json:
    return {k: v for k, v in obj.items() if k not in ("type", "sequence_number")}


def usage(fields: Json) -> Usage | None:
    """A Chat Completions or Responses ``usage`` object, None when it is neither."""
    if "prompt_tokens" in fields or "completion_tokens" in fields:  # Chat Completions
        cached = count(as_dict(fields.get("prompt_tokens_details")).get("cached_tokens"))
        return Usage(
            input_tokens=max(0, count(fields.get("prompt_tokens")) - cached),
            output_tokens=count(fields.get("completion_tokens")),
            cache_read_tokens=cached,
        )
    if "input_tokens_details" in fields or "total_tokens" in fields:  # Responses
        cached = count(as_dict(fields.get("input_tokens_details")).get("cached_tokens"))
        return Usage(
            input_tokens=max(0, count(fields.get("input_tokens")) - cached),
            output_tokens=count(fields.get("output_tokens")),
            cache_read_tokens=cached,
        )
    return None


# -- Chat Completions -------------------------------------------------------------------------


def rebuild_chat(payloads: list[tuple[str, Json]]) -> Json | None:
    """The ``chat.completion`` a stream's chunks add up to."""
    completion: Json | None = None
    choices: dict[int, Json] = {}
    tool_calls: dict[int, dict[int, Json]] = {}
    error: Any = None
    for _typ, obj in payloads:
        if obj.get("object") != _CHUNK:
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
        for choice in dicts(obj.get("choices")):
            index = as_index(choice.get("index"), 0)
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
    for key, value in as_dict(choice.get("delta")).items():
        if key == "tool_calls":
            for call in dicts(value):
                _chat_tool_call(calls, call)
        elif key == "function_call":  # the deprecated single-function form
            if isinstance(value, dict):
                merged = as_dict(message.get("function_call"))
                merged["name"] = _join_name(as_str(merged.get("name")), value.get("name"))
                merged["arguments"] = as_str(merged.get("arguments")) + as_str(
                    value.get("arguments")
                )
                message["function_call"] = merged
        elif isinstance(value, str) and isinstance(message.get(key), str) and key != "role":
            message[key] += value  # content, refusal, and e.g. reasoning_content
        elif value is not None:
            message[key] = value
    if choice.get("finish_reason") is not None:
        state["finish_reason"] = choice["finish_reason"]
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict):
        merged = as_dict(state["logprobs"])
        for key in ("content", "refusal"):
            part = logprobs.get(key)
            if isinstance(part, list):
                merged[key] = [*(merged.get(key) or []), *part]
            else:
                merged.setdefault(key, None)
        state["logprobs"] = merged


def _chat_tool_call(calls: dict[int, Json], delta: Json) -> None:
    index = as_index(delta.get("index"), len(calls))
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
        fn["arguments"] += as_str(function.get("arguments"))


def _join_name(have: str, piece: Any) -> str:
    # OpenAI sends the name once; some compatible servers repeat it in every delta.
    piece = as_str(piece)
    return have if piece == have else have + piece


# -- Responses --------------------------------------------------------------------------------

# Events that grow a content part of a message (or reasoning) item.
_PART_EVENTS = ("response.output_text.", "response.refusal.", "response.reasoning_text.")


def rebuild_responses(payloads: list[tuple[str, Json]]) -> Json | None:
    """The ``response`` object a Responses stream's events add up to."""
    response: Json | None = None
    final: Json | None = None
    items: dict[int, Json] = {}
    done: set[int] = set()
    parts: dict[int, dict[int, Json]] = {}
    summaries: dict[int, dict[int, Json]] = {}
    error: Json | None = None
    for typ, obj in payloads:
        out = as_index(obj.get("output_index"), -1)
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
                parts.setdefault(out, {})[as_index(obj.get("content_index"), 0)] = obj["part"]
        elif typ in (
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_part.done",
        ):
            if isinstance(obj.get("part"), dict):
                summaries.setdefault(out, {})[as_index(obj.get("summary_index"), 0)] = obj["part"]
        elif typ == "response.function_call_arguments.delta":
            item = items.get(out)
            if item is not None:
                item["arguments"] = as_str(item.get("arguments")) + as_str(obj.get("delta"))
        elif typ == "response.function_call_arguments.done":
            if out in items and isinstance(obj.get("arguments"), str):
                items[out]["arguments"] = obj["arguments"]
        elif typ.startswith("response.reasoning_summary_text."):
            part = summaries.setdefault(out, {}).setdefault(
                as_index(obj.get("summary_index"), 0), {"type": "summary_text", "text": ""}
            )
            _text_event(part, typ, obj, "text")
        elif typ.startswith(_PART_EVENTS):
            kind = typ.split(".")[1]  # output_text, refusal or reasoning_text
            field = "refusal" if kind == "refusal" else "text"
            part = parts.setdefault(out, {}).setdefault(
                as_index(obj.get("content_index"), 0), {"type": kind, field: ""}
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
        part[field] = as_str(part.get(field)) + as_str(obj.get("delta"))
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


# -- display ----------------------------------------------------------------------------------


def view(message: Json) -> MessageView | None:
    """The blocks of a ``chat.completion`` or a ``response``; None when it is neither."""
    choices = message.get("choices")
    if isinstance(choices, list):
        first = choices[0] if choices else {}
        stop = first.get("finish_reason") if isinstance(first, dict) else None
        return MessageView(_chat_blocks(choices), None if stop is None else as_text(stop))
    output = message.get("output")
    if isinstance(output, list):
        stop = message.get("status")
        return MessageView(_responses_blocks(output), None if stop is None else as_text(stop))
    return None


def _chat_blocks(choices: list[Any]) -> list[Block]:
    blocks = []
    for choice in dicts(choices):
        msg = choice.get("message") or choice.get("delta") or {}
        if not isinstance(msg, dict):
            continue
        reasoning = msg.get("reasoning_content") or msg.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            blocks.append(Block("thinking", reasoning))
        content = msg.get("content")
        if isinstance(content, str) and content:
            blocks.append(Block("text", content))
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    blocks.append(Block("text", part["text"]))
        for call in as_list(msg.get("tool_calls")):
            fn = call.get("function", {}) if isinstance(call, dict) else {}
            if isinstance(fn, dict):
                name = as_text(fn.get("name", ""))
                blocks.append(Block("tool_use", fn.get("arguments", ""), name=name))
    return blocks


def _responses_blocks(output: list[Any]) -> list[Block]:
    blocks = []
    for item in dicts(output):
        kind = item.get("type")
        if kind == "message":
            for part in dicts(item.get("content")):
                text = part.get("text", part.get("refusal"))
                if isinstance(text, str):
                    blocks.append(Block("text", text))
        elif kind == "function_call":
            name = as_text(item.get("name", ""))
            blocks.append(Block("tool_use", item.get("arguments", ""), name=name))
        elif kind == "reasoning":
            pieces = as_list(item.get("summary")) + as_list(item.get("content"))
            text = "\n\n".join(
                p["text"] for p in pieces if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
            blocks.append(Block("thinking", text))
        else:
            blocks.append(Block("other", item, name=as_text(kind)))
    return blocks
