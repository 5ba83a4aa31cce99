"""Realistic LLM API event streams, each with the object its non-streaming call returns.

Shapes follow the public API references: Anthropic "Streaming Messages" (message_start,
content_block_start/delta/stop with text, input_json, thinking, signature and citations
deltas, ping, message_delta, message_stop, error), OpenAI Chat Completions chunks (with
``stream_options.include_usage``) and OpenAI Responses streaming events. The expected
objects are written out by hand, not derived from the events.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Optional

import zltrace

Json = dict[str, Any]


@dataclass(frozen=True)
class Stream:
    """One recorded stream: its events as sent (one SSE event each) and what it stands for."""

    name: str
    events: list[bytes]
    message: Json
    usage: Optional[zltrace.Usage]
    model: str
    #: How many SSE events a parser dispatches (comments and blank-data blocks are not).
    dispatched: int
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        """The whole event-stream body."""
        return b"".join(self.events)

    def expected(self) -> Json:
        """A fresh copy of the expected message (tests may change theirs)."""
        return copy.deepcopy(self.message)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def named(events: list[Json], eol: str = "\n") -> list[bytes]:
    """Anthropic / Responses style: ``event: <type>`` then ``data: <json>``."""
    return [f"event: {e['type']}{eol}data: {_dumps(e)}{eol}{eol}".encode() for e in events]


def data_only(events: list[Any]) -> list[bytes]:
    """Chat Completions style: ``data: <json>`` (or ``data: [DONE]``) only."""
    return [f"data: {e if isinstance(e, str) else _dumps(e)}\n\n".encode() for e in events]


# -- Anthropic Messages ---------------------------------------------------------------------

_SONNET = "claude-sonnet-4-5-20250929"


def _anthropic_start(msg_id: str, model: str, usage: Json) -> Json:
    return {
        "type": "message_start",
        "message": {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        },
    }


def _delta(index: int, **delta: Any) -> Json:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def _start(index: int, block: Json) -> Json:
    return {"type": "content_block_start", "index": index, "content_block": block}


def _stop(index: int) -> Json:
    return {"type": "content_block_stop", "index": index}


ANTHROPIC_TEXT = Stream(
    name="anthropic-text-crlf",
    # CRLF line ends, as some proxies re-frame streams.
    events=named(
        [
            _anthropic_start(
                "msg_01XFDUDYJgAACzvnptvVoYEL",
                _SONNET,
                {
                    "input_tokens": 25,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 1,
                },
            ),
            _start(0, {"type": "text", "text": ""}),
            {"type": "ping"},
            _delta(0, type="text_delta", text="Hello"),
            _delta(0, type="text_delta", text=", wörld 👋"),
            _delta(0, type="text_delta", text="!\nLine two."),
            _stop(0),
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 15},
            },
            {"type": "message_stop"},
        ],
        eol="\r\n",
    ),
    message={
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": _SONNET,
        "content": [{"type": "text", "text": "Hello, wörld 👋!\nLine two."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 25,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 15,
        },
    },
    usage=zltrace.Usage(input_tokens=25, output_tokens=15),
    model=_SONNET,
    dispatched=9,
)

_SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
_WEATHER_INPUT = {"location": "San Francisco, CA", "unit": "fahrenheit"}

ANTHROPIC_THINKING_TOOL = Stream(
    name="anthropic-thinking-tool-use",
    events=named(
        [
            _anthropic_start(
                "msg_014p7gG3wDgGV9EUtLvnow3U",
                _SONNET,
                {
                    "input_tokens": 472,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 2048,
                    "output_tokens": 2,
                },
            ),
            _start(0, {"type": "thinking", "thinking": "", "signature": ""}),
            _delta(0, type="thinking_delta", thinking="The user wants the weather. "),
            _delta(0, type="thinking_delta", thinking="I should call get_weather."),
            _delta(0, type="signature_delta", signature=_SIGNATURE),
            _stop(0),
            _start(1, {"type": "text", "text": ""}),
            {"type": "ping"},
            _delta(1, type="text_delta", text="I'll check the current weather"),
            _delta(1, type="text_delta", text=" in San Francisco for you."),
            _stop(1),
            _start(
                2,
                {
                    "type": "tool_use",
                    "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                    "name": "get_weather",
                    "input": {},
                },
            ),
            _delta(2, type="input_json_delta", partial_json=""),
            _delta(2, type="input_json_delta", partial_json='{"location":'),
            _delta(2, type="input_json_delta", partial_json=' "San Fra'),
            _delta(2, type="input_json_delta", partial_json='ncisco, CA", "unit": "fah'),
            _delta(2, type="input_json_delta", partial_json='renheit"}'),
            _stop(2),
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 89},
            },
            {"type": "message_stop"},
        ]
    ),
    message={
        "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
        "type": "message",
        "role": "assistant",
        "model": _SONNET,
        "content": [
            {
                "type": "thinking",
                "thinking": "The user wants the weather. I should call get_weather.",
                "signature": _SIGNATURE,
            },
            {
                "type": "text",
                "text": "I'll check the current weather in San Francisco for you.",
            },
            {
                "type": "tool_use",
                "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "name": "get_weather",
                "input": _WEATHER_INPUT,
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 472,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 2048,
            "output_tokens": 89,
        },
    },
    usage=zltrace.Usage(input_tokens=472, output_tokens=89, cache_read_tokens=2048),
    model=_SONNET,
    dispatched=20,
)

_OPUS = "claude-opus-4-1-20250805"
_CITATION = {
    "type": "char_location",
    "cited_text": "The grass is green. ",
    "document_index": 0,
    "document_title": "My Document",
    "start_char_index": 0,
    "end_char_index": 20,
}

ANTHROPIC_CITATIONS = Stream(
    name="anthropic-citations",
    events=named(
        [
            _anthropic_start(
                "msg_01Citations9aZQs3d",
                _OPUS,
                {
                    "input_tokens": 610,
                    "cache_creation_input_tokens": 1024,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 1,
                },
            ),
            _start(0, {"type": "text", "text": ""}),
            _delta(0, type="text_delta", text="According to the document, "),
            _stop(0),
            _start(1, {"type": "text", "text": "", "citations": []}),
            _delta(1, type="citations_delta", citation=_CITATION),
            _delta(1, type="text_delta", text="the grass is green"),
            _stop(1),
            _start(2, {"type": "text", "text": ""}),
            _delta(2, type="text_delta", text="."),
            _stop(2),
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {
                    "input_tokens": 610,
                    "cache_creation_input_tokens": 1024,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 24,
                },
            },
            {"type": "message_stop"},
        ]
    ),
    message={
        "id": "msg_01Citations9aZQs3d",
        "type": "message",
        "role": "assistant",
        "model": _OPUS,
        "content": [
            {"type": "text", "text": "According to the document, "},
            {"type": "text", "text": "the grass is green", "citations": [_CITATION]},
            {"type": "text", "text": "."},
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 610,
            "cache_creation_input_tokens": 1024,
            "cache_read_input_tokens": 0,
            "output_tokens": 24,
        },
    },
    usage=zltrace.Usage(input_tokens=610, output_tokens=24, cache_write_tokens=1024),
    model=_OPUS,
    dispatched=13,
)

_OVERLOADED = {"type": "overloaded_error", "message": "Overloaded"}

ANTHROPIC_ERROR = Stream(
    name="anthropic-error-mid-stream",
    events=named(
        [
            _anthropic_start(
                "msg_01ErrMidStream77",
                _SONNET,
                {"input_tokens": 12, "output_tokens": 1},
            ),
            _start(0, {"type": "text", "text": ""}),
            _delta(0, type="text_delta", text="Once upon"),
            {"type": "error", "error": _OVERLOADED},
        ]
    ),
    message={
        "id": "msg_01ErrMidStream77",
        "type": "message",
        "role": "assistant",
        "model": _SONNET,
        "content": [{"type": "text", "text": "Once upon"}],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 1},
        "error": _OVERLOADED,
    },
    usage=zltrace.Usage(input_tokens=12, output_tokens=1),
    model=_SONNET,
    dispatched=4,
)

# -- OpenAI Chat Completions ----------------------------------------------------------------

_GPT4O = "gpt-4o-2024-08-06"


def _chunk(
    choices: list[Json], *, cid: str = "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", usage: Any = None
) -> Json:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": 1741570283,
        "model": _GPT4O,
        "service_tier": "default",
        "system_fingerprint": "fp_eb9dce56a8",
        "choices": choices,
        "usage": usage,
    }


def _choice(delta: Json, finish: Optional[str] = None, index: int = 0, **extra: Any) -> Json:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish, **extra}


_CHAT_USAGE = {
    "prompt_tokens": 1117,
    "completion_tokens": 12,
    "total_tokens": 1129,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}

CHAT_TEXT = Stream(
    name="chat-text-usage",
    events=[
        # OpenRouter-style keep-alive comment: not an event.
        b": OPENROUTER PROCESSING\n\n",
        *data_only(
            [
                _chunk([_choice({"role": "assistant", "content": "", "refusal": None})]),
                _chunk([_choice({"content": "Hello"})]),
                _chunk([_choice({"content": "! How can"})]),
                _chunk([_choice({"content": " I help?"})]),
                _chunk([_choice({}, "stop")]),
                _chunk([], usage=_CHAT_USAGE),
                "[DONE]",
            ]
        ),
    ],
    message={
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": _GPT4O,
        "service_tier": "default",
        "system_fingerprint": "fp_eb9dce56a8",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! How can I help?",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _CHAT_USAGE,
    },
    usage=zltrace.Usage(input_tokens=93, output_tokens=12, cache_read_tokens=1024),
    model=_GPT4O,
    dispatched=7,
)


def _tool(index: int, arguments: str, **head: Any) -> Json:
    call: Json = {"index": index, **head}
    function: Json = {"arguments": arguments}
    if "name" in head:
        function = {"name": call.pop("name"), "arguments": arguments}
    call["function"] = function
    return call


CHAT_TOOL_CALLS = Stream(
    name="chat-parallel-tool-calls",
    events=data_only(
        [
            _chunk(
                [
                    _choice(
                        {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                _tool(
                                    0,
                                    "",
                                    id="call_DdmO9pD3xa9XTPNJ32zg2hcA",
                                    type="function",
                                    name="get_weather",
                                )
                            ],
                            "refusal": None,
                        }
                    )
                ],
                cid="chatcmpl-ToolCalls2",
            ),
            _chunk([_choice({"tool_calls": [_tool(0, '{"lo')]})], cid="chatcmpl-ToolCalls2"),
            _chunk(
                [_choice({"tool_calls": [_tool(0, 'cation": "Par')]})], cid="chatcmpl-ToolCalls2"
            ),
            _chunk([_choice({"tool_calls": [_tool(0, 'is"}')]})], cid="chatcmpl-ToolCalls2"),
            _chunk(
                [
                    _choice(
                        {
                            "tool_calls": [
                                _tool(
                                    1,
                                    "",
                                    id="call_ABXNcBnhXdGUbOuEGlg4fHQM",
                                    type="function",
                                    name="get_time",
                                )
                            ]
                        }
                    )
                ],
                cid="chatcmpl-ToolCalls2",
            ),
            _chunk([_choice({"tool_calls": [_tool(1, '{"tz": ')]})], cid="chatcmpl-ToolCalls2"),
            _chunk(
                [_choice({"tool_calls": [_tool(1, '"Europe/Paris"}')]})], cid="chatcmpl-ToolCalls2"
            ),
            _chunk([_choice({}, "tool_calls")], cid="chatcmpl-ToolCalls2"),
            "[DONE]",
        ]
    ),
    message={
        "id": "chatcmpl-ToolCalls2",
        "object": "chat.completion",
        "created": 1741570283,
        "model": _GPT4O,
        "service_tier": "default",
        "system_fingerprint": "fp_eb9dce56a8",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"location": "Paris"}',
                            },
                        },
                        {
                            "id": "call_ABXNcBnhXdGUbOuEGlg4fHQM",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": '{"tz": "Europe/Paris"}'},
                        },
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
    },
    usage=None,
    model=_GPT4O,
    dispatched=9,
)


def _lp(token: str, logprob: float) -> Json:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": []}


CHAT_TWO_CHOICES = Stream(
    name="chat-n2-logprobs-refusal",
    events=data_only(
        [
            _chunk(
                [
                    _choice({"role": "assistant", "content": ""}, index=0),
                    _choice({"role": "assistant", "content": ""}, index=1),
                ],
                cid="chatcmpl-TwoChoices",
            ),
            _chunk(
                [
                    _choice(
                        {"content": "Hi"},
                        index=1,
                        logprobs={"content": [_lp("Hi", -0.25)], "refusal": None},
                    )
                ],
                cid="chatcmpl-TwoChoices",
            ),
            _chunk(
                [_choice({"refusal": "I can't"}, index=0), _choice({"content": " there"}, index=1)],
                cid="chatcmpl-TwoChoices",
            ),
            _chunk(
                [
                    _choice(
                        {"content": ""},
                        "stop",
                        index=1,
                        logprobs={"content": [_lp(" there", -0.5)], "refusal": None},
                    )
                ],
                cid="chatcmpl-TwoChoices",
            ),
            _chunk(
                [_choice({"refusal": " help with that."}, "stop", index=0)],
                cid="chatcmpl-TwoChoices",
            ),
            _chunk(
                [],
                cid="chatcmpl-TwoChoices",
                usage={"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
            ),
            "[DONE]",
        ]
    ),
    message={
        "id": "chatcmpl-TwoChoices",
        "object": "chat.completion",
        "created": 1741570283,
        "model": _GPT4O,
        "service_tier": "default",
        "system_fingerprint": "fp_eb9dce56a8",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "",
                    "refusal": "I can't help with that.",
                },
                "logprobs": None,
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": "Hi there", "refusal": None},
                "logprobs": {"content": [_lp("Hi", -0.25), _lp(" there", -0.5)], "refusal": None},
                "finish_reason": "stop",
            },
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
    },
    usage=zltrace.Usage(input_tokens=20, output_tokens=9),
    model=_GPT4O,
    dispatched=7,
)

# -- OpenAI Responses -----------------------------------------------------------------------

_GPT41 = "gpt-4.1-2025-04-14"


def _response(rid: str, status: str, output: list[Json], usage: Any, **extra: Any) -> Json:
    return {
        "id": rid,
        "object": "response",
        "created_at": 1741290958,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": "You are a helpful assistant.",
        "max_output_tokens": None,
        "model": _GPT41,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
        **extra,
    }


class _Seq:
    """Numbers Responses events as the API does (``sequence_number`` from 0)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, type_: str, **fields: Any) -> Json:
        event = {"type": type_, "sequence_number": self.n, **fields}
        self.n += 1
        return event


_RID = "resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654"
_MSG_ID = "msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654"
_TEXT = "Hi there! How can I assist you today?"
_MSG_ITEM = {
    "id": _MSG_ID,
    "type": "message",
    "status": "completed",
    "role": "assistant",
    "content": [{"type": "output_text", "text": _TEXT, "annotations": []}],
}
_RESP_USAGE = {
    "input_tokens": 37,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 11,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 48,
}


def _responses_text() -> list[Json]:
    s = _Seq()
    in_progress = _response(_RID, "in_progress", [], None)
    part0 = {"type": "output_text", "text": "", "annotations": []}
    return [
        s("response.created", response=in_progress),
        s("response.in_progress", response=in_progress),
        s(
            "response.output_item.added",
            output_index=0,
            item={**_MSG_ITEM, "status": "in_progress", "content": []},
        ),
        s(
            "response.content_part.added",
            item_id=_MSG_ID,
            output_index=0,
            content_index=0,
            part=part0,
        ),
        s(
            "response.output_text.delta",
            item_id=_MSG_ID,
            output_index=0,
            content_index=0,
            delta="Hi there!",
            logprobs=[],
        ),
        s(
            "response.output_text.delta",
            item_id=_MSG_ID,
            output_index=0,
            content_index=0,
            delta=" How can I assist",
            logprobs=[],
        ),
        s(
            "response.output_text.delta",
            item_id=_MSG_ID,
            output_index=0,
            content_index=0,
            delta=" you today?",
            logprobs=[],
        ),
        s(
            "response.output_text.done",
            item_id=_MSG_ID,
            output_index=0,
            content_index=0,
            text=_TEXT,
            logprobs=[],
        ),
        s(
            "response.content_part.done",
            item_id=_MSG_ID,
            output_index=0,
            content_index=0,
            part=_MSG_ITEM["content"][0],
        ),
        s("response.output_item.done", output_index=0, item=_MSG_ITEM),
        s("response.completed", response=_response(_RID, "completed", [_MSG_ITEM], _RESP_USAGE)),
    ]


RESPONSES_TEXT = Stream(
    name="responses-text",
    events=named(_responses_text()),
    message=_response(_RID, "completed", [_MSG_ITEM], _RESP_USAGE),
    usage=zltrace.Usage(input_tokens=37, output_tokens=11),
    model=_GPT41,
    dispatched=11,
)

_RID2 = "resp_68af4030592c81938ec0a5fbab4a3e9f05438e46b5f69a3b"
_RS_ITEM: Json = {
    "id": "rs_68af4030baa48193b0b43b4c2a176a1a05438e46b5f69a3b",
    "type": "reasoning",
    "summary": [
        {"type": "summary_text", "text": "**Checking the weather**\n\nI need the city first."}
    ],
}
_FC_ITEM = {
    "id": "fc_68af403108a481938c5f1a3bc1c3c47705438e46b5f69a3b",
    "type": "function_call",
    "status": "completed",
    "arguments": '{"location":"Paris, France"}',
    "call_id": "call_wS2xQ0bJ9kQ7uZf3Yx8Lq1Rt",
    "name": "get_weather",
}
_RESP_USAGE2 = {
    "input_tokens": 320,
    "input_tokens_details": {"cached_tokens": 256},
    "output_tokens": 140,
    "output_tokens_details": {"reasoning_tokens": 64},
    "total_tokens": 460,
}


def _responses_tool() -> list[Json]:
    s = _Seq()
    in_progress = _response(_RID2, "in_progress", [], None)
    rs_id, fc_id = _RS_ITEM["id"], _FC_ITEM["id"]
    return [
        s("response.created", response=in_progress),
        s("response.in_progress", response=in_progress),
        s("response.output_item.added", output_index=0, item={**_RS_ITEM, "summary": []}),
        s(
            "response.reasoning_summary_part.added",
            item_id=rs_id,
            output_index=0,
            summary_index=0,
            part={"type": "summary_text", "text": ""},
        ),
        s(
            "response.reasoning_summary_text.delta",
            item_id=rs_id,
            output_index=0,
            summary_index=0,
            delta="**Checking the weather**",
        ),
        s(
            "response.reasoning_summary_text.delta",
            item_id=rs_id,
            output_index=0,
            summary_index=0,
            delta="\n\nI need the city first.",
        ),
        s(
            "response.reasoning_summary_text.done",
            item_id=rs_id,
            output_index=0,
            summary_index=0,
            text=_RS_ITEM["summary"][0]["text"],
        ),
        s(
            "response.reasoning_summary_part.done",
            item_id=rs_id,
            output_index=0,
            summary_index=0,
            part=_RS_ITEM["summary"][0],
        ),
        s("response.output_item.done", output_index=0, item=_RS_ITEM),
        s(
            "response.output_item.added",
            output_index=1,
            item={**_FC_ITEM, "status": "in_progress", "arguments": ""},
        ),
        s(
            "response.function_call_arguments.delta",
            item_id=fc_id,
            output_index=1,
            delta='{"location":',
        ),
        s(
            "response.function_call_arguments.delta",
            item_id=fc_id,
            output_index=1,
            delta='"Paris, ',
        ),
        s(
            "response.function_call_arguments.delta",
            item_id=fc_id,
            output_index=1,
            delta='France"}',
        ),
        s(
            "response.function_call_arguments.done",
            item_id=fc_id,
            output_index=1,
            arguments=_FC_ITEM["arguments"],
        ),
        s("response.output_item.done", output_index=1, item=_FC_ITEM),
        s(
            "response.completed",
            response=_response(_RID2, "completed", [_RS_ITEM, _FC_ITEM], _RESP_USAGE2),
        ),
    ]


RESPONSES_TOOL = Stream(
    name="responses-reasoning-function-call",
    events=named(_responses_tool()),
    message=_response(_RID2, "completed", [_RS_ITEM, _FC_ITEM], _RESP_USAGE2),
    usage=zltrace.Usage(input_tokens=64, output_tokens=140, cache_read_tokens=256),
    model=_GPT41,
    dispatched=16,
)

_FAIL = {"code": "server_error", "message": "The model failed to generate a response."}
_RID3 = "resp_68b0c1f2a9e08190a1c9d6e1f2a3b4c5"


def _responses_failed() -> list[Json]:
    s = _Seq()
    in_progress = _response(_RID3, "in_progress", [], None)
    part0 = {"type": "output_text", "text": "", "annotations": []}
    return [
        s("response.created", response=in_progress),
        s("response.in_progress", response=in_progress),
        s(
            "response.output_item.added",
            output_index=0,
            item={**_MSG_ITEM, "status": "in_progress", "content": []},
        ),
        s(
            "response.content_part.added",
            item_id=_MSG_ID,
            output_index=0,
            content_index=0,
            part=part0,
        ),
        s(
            "response.output_text.delta",
            item_id=_MSG_ID,
            output_index=0,
            content_index=0,
            delta="Partial answ",
            logprobs=[],
        ),
        s("response.failed", response={**_response(_RID3, "failed", [], None), "error": _FAIL}),
    ]


RESPONSES_FAILED = Stream(
    name="responses-failed",
    events=named(_responses_failed()),
    # The failed response carries no output: the one rebuilt from the events stands in.
    message={
        **_response(
            _RID3,
            "failed",
            [
                {
                    **_MSG_ITEM,
                    "status": "in_progress",
                    "content": [{"type": "output_text", "text": "Partial answ", "annotations": []}],
                }
            ],
            None,
        ),
        "error": _FAIL,
    },
    usage=None,
    model=_GPT41,
    dispatched=6,
)

ANTHROPIC = [ANTHROPIC_TEXT, ANTHROPIC_THINKING_TOOL, ANTHROPIC_CITATIONS, ANTHROPIC_ERROR]
CHAT = [CHAT_TEXT, CHAT_TOOL_CALLS, CHAT_TWO_CHOICES]
RESPONSES = [RESPONSES_TEXT, RESPONSES_TOOL, RESPONSES_FAILED]
ALL = [*ANTHROPIC, *CHAT, *RESPONSES]

#: A non-streamed Anthropic message, as ``application/json``.
ANTHROPIC_JSON_BODY = ANTHROPIC_THINKING_TOOL.message
