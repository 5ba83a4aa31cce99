"""One traced exchange as one OpenTelemetry span (the OTLP data model, encoding-neutral).

Rules:

- Only the read side's public interface is used: :class:`Exchange` and its ``message()``,
  ``usage()``, ``model()``; nothing here knows how a trace file is laid out.
- Ids are deterministic, so sending the same exchange again gives the same span at the
  backend (idempotent resends): the span id is derived from (trace file identity, exchange
  id), the trace id from (trace file identity, logical request id), so the attempts of one
  logical request (retries, redirects) share a trace; every attempt after the first is a
  child of the first. The trace file identity is its name without its extensions (a trace
  and its dead-letter file give the same; moving the directory changes nothing).
- Attributes follow the HTTP semantic conventions (``http.request.method``, ``url.full`` as
  recorded, credentials redacted; ``server.address``/``server.port``,
  ``http.response.status_code``, body sizes, ``error.type``) and, for LLM API calls, the
  GenAI ones (``gen_ai.*``) plus the OpenInference names (``llm.*``) that LLM observability
  backends such as Phoenix display. Prompt and completion content only when asked, capped.
- Timings: the span runs from the exchange's start to its end; request sent, response
  headers and first body byte are span events.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from typing import Callable, Union
from urllib.parse import SplitResult, urlsplit

import attrs

from .._read.exchange import Exchange
from .._read.llm import message_view, model_of

__all__ = ["Event", "Span", "SpanMapper", "span_ids"]

AttrValue = Union[str, bool, int, float, list[str]]
Attributes = list[tuple[str, AttrValue]]

SPAN_KIND_CLIENT = 3
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2

#: Default cap, in characters, of each content attribute (``--content``).
CONTENT_MAX = 16 * 1024
_LOGICAL_MAX = 4096  # logical requests remembered for http.request.resend_count


@attrs.frozen
class Event:
    """A span event: a name, a time (ns since the epoch) and attributes."""

    name: str
    time_ns: int
    attributes: Attributes = attrs.field(factory=list)


@attrs.frozen
class Span:
    """What OTLP's ``Span`` message carries, as this package fills it."""

    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: Attributes
    events: list[Event]
    status_code: int
    status_message: str = ""


def _digest(*parts: str) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.digest()


def trace_identity(file: str) -> str:
    """A trace file's identity: its base name without extensions."""
    return os.path.basename(file).split(".", 1)[0]


def span_ids(identity: str, exchange_id: str, logical_id: str) -> tuple[bytes, bytes, bytes]:
    """(trace id, span id, parent span id) of an exchange; the parent is empty for the
    first attempt of a logical request. Never all zero (OTLP's "invalid")."""
    trace_id = _digest("zltrace.trace", identity, logical_id)[:16]
    span_id = _digest("zltrace.span", identity, exchange_id)[:8]
    parent = b""
    if exchange_id != logical_id:
        parent = _digest("zltrace.span", identity, logical_id)[:8]
    # A digest of all zeros has probability 2**-64; map it to a fixed valid id anyway.
    if not any(trace_id):
        trace_id = b"\0" * 15 + b"\1"
    if not any(span_id):
        span_id = b"\0" * 7 + b"\1"
    return trace_id, span_id, parent


def _provider(host: str, path: str) -> str | None:
    host = host.lower()
    if "bedrock-runtime" in host or path.startswith("/model/"):
        return "aws.bedrock"
    if "anthropic" in host or path.endswith("/messages"):
        return "anthropic"
    if "openai" in host or path.endswith(("/chat/completions", "/responses", "/completions")):
        return "openai"
    return None


def _operation(path: str) -> str:
    if path.endswith("/embeddings"):
        return "embeddings"
    if path.endswith("/completions") and not path.endswith("/chat/completions"):
        return "text_completion"
    return "chat"


def _finish_reasons(message: dict[str, object]) -> list[str]:
    choices = message.get("choices")
    if isinstance(choices, list):
        found = [
            c["finish_reason"]
            for c in choices
            if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
        ]
        if found:
            return found
    view = message_view(message)
    if view is not None and isinstance(view.stop, str):
        return [view.stop]
    return []


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "...[truncated]"


@attrs.define
class SpanMapper:
    """Builds spans from exchanges; remembers recent logical requests to count resends."""

    content: bool = False
    content_max: int = CONTENT_MAX
    _attempts: OrderedDict[tuple[str, str], int] = attrs.field(factory=OrderedDict, init=False)

    def span(self, ex: Exchange, file: str | None = None) -> Span:
        """The span of one exchange read from ``file`` (default: the file it says)."""
        identity = trace_identity(file if file is not None else ex.source[0])
        trace_id, span_id, parent = span_ids(identity, ex.id, ex.logical_id)
        start = _epoch_ns(ex)
        end = start + ex.timing.end
        attrs_: Attributes = []
        add = attrs_.append
        rq, rs = ex.request, ex.response
        parts = urlsplit(rq.url)
        add(("http.request.method", rq.method))
        add(("url.full", rq.url))
        if parts.hostname:
            add(("server.address", parts.hostname))
        port = _port(parts)
        if port is not None:
            add(("server.port", port))
        if parts.scheme:
            add(("url.scheme", parts.scheme))
        add(("network.protocol.version", rq.http_version.rpartition("/")[2] or rq.http_version))
        if rq.body is not None:
            add(("http.request.body.size", len(rq.body)))
        resend = self._resend_count(identity, ex)
        if resend:
            add(("http.request.resend_count", resend))
        add(("zltrace.exchange.id", ex.id))
        add(("zltrace.outcome", ex.outcome))
        status_code, status_message = STATUS_UNSET, ""
        if rs is not None:
            add(("http.response.status_code", rs.status))
            add(("http.response.body.size", len(rs.raw_body)))
            if rs.status >= 400:
                add(("error.type", str(rs.status)))
                status_code = STATUS_ERROR
        if ex.error is not None:
            add(("error.type", ex.error.type))
            status_code, status_message = STATUS_ERROR, str(ex.error)
        elif ex.outcome in ("abandoned", "incomplete") and status_code != STATUS_ERROR:
            add(("error.type", ex.outcome))
        name = rq.method
        provider = _provider(parts.hostname or "", parts.path)
        if provider is not None:
            name = self._llm(ex, provider, parts.path, add) or name
        events = _timing_events(ex, start)
        return Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent,
            name=name,
            kind=SPAN_KIND_CLIENT,
            start_ns=start,
            end_ns=max(end, start),
            attributes=attrs_,
            events=events,
            status_code=status_code,
            status_message=status_message,
        )

    def _resend_count(self, identity: str, ex: Exchange) -> int:
        key = (identity, ex.logical_id)
        if ex.id == ex.logical_id:
            return 0
        n = self._attempts.get(key, 0) + 1
        self._attempts[key] = n
        self._attempts.move_to_end(key)
        if len(self._attempts) > _LOGICAL_MAX:
            self._attempts.popitem(last=False)
        return n

    def _llm(
        self, ex: Exchange, provider: str, path: str, add: Callable[[tuple[str, AttrValue]], None]
    ) -> str | None:
        """GenAI attributes of an LLM call; returns the span name, None if it is no LLM call."""
        # A call that names a model or reports token usage; not any JSON (a model list).
        requested = model_of(None, ex.request.decoded_body, ex.request.url)
        usage = ex.usage()
        if requested is None and usage is None:
            return None
        message = ex.message()
        op = _operation(path)
        add(("gen_ai.operation.name", op))
        add(("gen_ai.provider.name", provider))
        add(("gen_ai.system", provider))
        add(("openinference.span.kind", "LLM"))
        add(("llm.provider", provider.split(".")[-1]))
        add(("llm.system", provider.split(".")[-1]))
        if requested is not None:
            add(("gen_ai.request.model", requested))
        answered = model_of(message, None) if message is not None else None
        if answered is not None:
            add(("gen_ai.response.model", answered))
        model = answered or requested
        if model is not None:
            add(("llm.model_name", model))
        if message is not None:
            rid = message.get("id")
            if isinstance(rid, str):
                add(("gen_ai.response.id", rid))
            reasons = _finish_reasons(message)
            if reasons:
                add(("gen_ai.response.finish_reasons", reasons))
        if usage is not None:
            prompt = usage.total_input_tokens
            add(("gen_ai.usage.input_tokens", prompt))
            add(("gen_ai.usage.output_tokens", usage.output_tokens))
            if usage.cache_read_tokens:
                add(("gen_ai.usage.cache_read.input_tokens", usage.cache_read_tokens))
            if usage.cache_write_tokens:
                add(("gen_ai.usage.cache_creation.input_tokens", usage.cache_write_tokens))
            add(("llm.token_count.prompt", prompt))
            add(("llm.token_count.completion", usage.output_tokens))
            add(("llm.token_count.total", prompt + usage.output_tokens))
        if self.content:
            body = ex.request.decoded_body
            if body:
                text = _cap(body.decode("utf-8", "replace"), self.content_max)
                add(("gen_ai.input.messages", text))
                add(("input.value", text))
                add(("input.mime_type", "application/json"))
            if message is not None:
                text = _cap(json.dumps(message, ensure_ascii=False), self.content_max)
                add(("gen_ai.output.messages", text))
                add(("output.value", text))
                add(("output.mime_type", "application/json"))
        # The conventions name the span by the requested model.
        named = requested or answered
        return f"{op} {named}" if named else op


def _port(parts: SplitResult) -> int | None:
    try:
        port = parts.port
    except ValueError:  # not a number: leave the attribute out
        return None
    return port if port is not None else {"http": 80, "https": 443}.get(parts.scheme)


def _epoch_ns(ex: Exchange) -> int:
    ts = ex.started_at
    # datetime.timestamp() loses precision past microseconds: build from its parts.
    whole = int(ts.replace(microsecond=0).timestamp())
    return whole * 1_000_000_000 + ts.microsecond * 1000


def _timing_events(ex: Exchange, start: int) -> list[Event]:
    t = ex.timing
    events = []
    for name, at in (
        ("http.request.sent", t.request_sent),
        ("http.response.headers", t.headers_received),
        ("http.response.first_byte", t.first_byte),
    ):
        if at is not None:
            events.append(Event(name, start + at))
    if ex.error is not None:
        events.append(
            Event(
                "exception",
                start + t.end,
                [("exception.type", ex.error.type), ("exception.message", ex.error.message)],
            )
        )
    return events
