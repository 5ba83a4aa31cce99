"""The anthropic and openai SDKs, wrapped, against a loopback fake of each API.

What is pinned: ``wrap()`` takes the SDK client itself (sync and async) and returns it; the
SDK's result is the same traced and untraced; the trace holds the body exactly as the
server sent it, and ``message()`` rebuilds the assistant message from it.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest
from support.llm_fake import FakeLLM
from support.llm_fixtures import ANTHROPIC_TEXT, CHAT_TEXT
from support.trace import records

import zltrace
from zltrace._capture.httpx_wrap import wrap_target


def _sdk(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as e:  # the current SDKs run on httpx2, which needs Python >= 3.11
        pytest.skip(f"{name} is not importable here: {e}")


ASK = [{"role": "user", "content": "Hello"}]


def _anthropic(sdk: Any, srv: FakeLLM, stream: bool, tracer: zltrace.Tracer | None) -> Any:
    client = sdk.Anthropic(api_key="sk-ant-secret", base_url=srv.url, max_retries=0)
    if tracer is not None:
        assert wrap_target(client, tracer) is client
    with client:
        if not stream:
            return client.messages.create(model="m", max_tokens=10, messages=ASK).to_dict()
        events = client.messages.create(model="m", max_tokens=10, messages=ASK, stream=True)
        return [e.to_dict() for e in events]


def _openai(sdk: Any, srv: FakeLLM, stream: bool, tracer: zltrace.Tracer | None) -> Any:
    client = sdk.OpenAI(api_key="sk-secret", base_url=f"{srv.url}/v1", max_retries=0)
    if tracer is not None:
        assert wrap_target(client, tracer) is client
    with client:
        if not stream:
            return client.chat.completions.create(model="m", messages=ASK).to_dict()
        chunks = client.chat.completions.create(model="m", messages=ASK, stream=True)
        return [c.to_dict() for c in chunks]


CASES = [("anthropic", _anthropic, ANTHROPIC_TEXT), ("openai", _openai, CHAT_TEXT)]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
@pytest.mark.parametrize(("name", "call", "fixture"), CASES, ids=["anthropic", "openai"])
def test_sdk_result_unchanged_and_trace_byte_exact(
    name: str, call: Any, fixture: Any, stream: bool, tracer: zltrace.Tracer
) -> None:
    """Traced equals untraced; raw_body is what the server sent; message() is the reply."""
    sdk = _sdk(name)
    with FakeLLM() as srv:
        untraced = call(sdk, srv, stream, None)
        traced = call(sdk, srv, stream, tracer)
        sent = srv.sent[-1]
    assert traced == untraced
    [ex] = records(tracer)
    # The openai SDK stops reading at ``data: [DONE]`` and closes the response, maybe before
    # the last chunk of the framing: complete all the same, by the stream's own end marker.
    assert ex.outcome == "complete"
    assert ex.complete_by in (("framing", "end_marker") if stream else ("framing",))
    assert ex.response is not None
    assert ex.response.raw_body == sent
    assert ex.message() == fixture.expected()
    secret = ex.request.header("x-api-key") or ex.request.header("authorization")
    assert secret is not None and "secret" not in secret


@pytest.mark.parametrize(
    ("name", "cls"), [("anthropic", "AsyncAnthropic"), ("openai", "AsyncOpenAI")]
)
def test_async_sdk_stream(name: str, cls: str, tracer: zltrace.Tracer) -> None:
    """The async SDK clients are wrapped in place; a streamed call is recorded byte-exact."""
    sdk = _sdk(name)

    async def run(srv: FakeLLM) -> list[Any]:
        if name == "anthropic":
            client = getattr(sdk, cls)(api_key="k", base_url=srv.url, max_retries=0)
        else:
            client = getattr(sdk, cls)(api_key="k", base_url=f"{srv.url}/v1", max_retries=0)
        assert wrap_target(client, tracer) is client
        async with client:
            if name == "anthropic":
                events = await client.messages.create(
                    model="m", max_tokens=10, messages=ASK, stream=True
                )
            else:
                events = await client.chat.completions.create(model="m", messages=ASK, stream=True)
            return [e async for e in events]

    with FakeLLM() as srv:
        got = asyncio.run(run(srv))
        sent = srv.sent[-1]
    assert got
    [ex] = records(tracer)
    assert ex.response is not None
    assert ex.response.raw_body == sent
    expected = (ANTHROPIC_TEXT if name == "anthropic" else CHAT_TEXT).expected()
    assert ex.message() == expected


def test_sdk_object_without_httpx_client_is_refused(tracer: zltrace.Tracer) -> None:
    """An SDK object whose ``_client`` is no httpx client is refused with a clear error."""
    sdk = _sdk("anthropic")
    client = sdk.Anthropic(api_key="k", base_url="http://127.0.0.1:9")
    inner = client._client
    try:
        client._client = object()
        with pytest.raises(zltrace.UnsupportedTargetError, match="no httpx"):
            wrap_target(client, tracer)
    finally:
        client._client = inner
        client.close()
