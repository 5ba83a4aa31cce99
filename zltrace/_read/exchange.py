"""The values the read side yields: an :class:`Exchange` with its request, response and timing."""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from typing import Any

import attrs

from .decode import DEFAULT_DECODE_LIMITS, DecodeLimits, decode_content
from .eventstream import EventFrame, is_aws_event_stream, parse_event_stream
from .lazybody import LazyBody
from .llm import Usage, is_event_stream, message_from_body, model_of, usage_of
from .sse import SSEEvent, parse_sse

__all__ = ["ErrorInfo", "Exchange", "Request", "Response", "SkippedLine", "Timing"]


@attrs.frozen(slots=False)
class Request:
    """The request as it went on the wire (credential headers redacted)."""

    method: str
    url: str
    http_version: str
    headers: list[tuple[str, str]]
    #: The body (``body=`` when built): bytes, or where a raw log holds them (read on use).
    _body: bytes | LazyBody | None
    #: How far :attr:`decoded_body` may decode (:func:`zltrace.read` sets them).
    decode_limits: DecodeLimits = attrs.field(
        default=DEFAULT_DECODE_LIMITS, kw_only=True, eq=False, repr=False
    )

    @cached_property
    def body(self) -> bytes | None:
        """Exactly the bytes sent (after chunked de-framing), before content decoding."""
        b = self._body
        return b.load() if isinstance(b, LazyBody) else b

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        return _header(self.headers, name)

    @cached_property
    def _decoded(self) -> tuple[bytes | None, str | None]:
        if self.body is None:
            return None, None
        return decode_content(self.body, self.header("content-encoding"), self.decode_limits)

    @property
    def decoded_body(self) -> bytes | None:
        """The body with its Content-Encoding undone (a gzip-compressed upload, as
        elasticsearch's ``http_compress`` sends), within the read limits; else as sent."""
        return self._decoded[0]

    @property
    def decode_note(self) -> str | None:
        """Why :attr:`decoded_body` is left as sent, when it is."""
        return self._decoded[1]


@attrs.frozen(slots=False)
class Response:
    """The response: status line, headers in wire order, and the body as received."""

    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]]
    #: The body as received (``raw_body=`` when built): bytes, or where a raw log holds them.
    _raw_body: bytes | LazyBody
    #: How the body was delimited: "length", "chunked", "close" or "none".
    framing: str
    #: Arrival of body bytes: (end offset in raw_body, ns since the exchange started).
    reads: list[tuple[int, int]]
    #: How far :attr:`body` may decode (:func:`zltrace.read` sets them).
    decode_limits: DecodeLimits = attrs.field(
        default=DEFAULT_DECODE_LIMITS, kw_only=True, eq=False, repr=False
    )

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        return _header(self.headers, name)

    @cached_property
    def raw_body(self) -> bytes:
        """Exactly the bytes received, after chunked de-framing, before content decoding
        (read from the trace file when first asked, for a raw log)."""
        b = self._raw_body
        return b.load() if isinstance(b, LazyBody) else b

    @cached_property
    def _decoded(self) -> tuple[bytes, str | None]:
        return decode_content(self.raw_body, self.header("content-encoding"), self.decode_limits)

    @property
    def body(self) -> bytes:
        """The body with its Content-Encoding undone (gzip, deflate; br/zstd if installed).

        Decoded up to the limits :func:`zltrace.read` was given; past them, the body as
        received (and :attr:`decode_note` says so).
        """
        return self._decoded[0]

    @property
    def decode_note(self) -> str | None:
        """Why :attr:`body` is left as received, when it is."""
        return self._decoded[1]


@attrs.frozen
class Timing:
    """Nanoseconds from the start of the exchange (None when it did not happen)."""

    request_sent: int | None
    headers_received: int | None
    first_byte: int | None
    end: int


@attrs.frozen
class ErrorInfo:
    """An exception seen during the exchange: its qualified type name and message."""

    type: str
    message: str

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


@attrs.frozen
class Exchange:
    """One HTTP exchange (one attempt: retries and redirects are exchanges of their own)."""

    id: str
    #: Shared by every attempt of one logical request (the first attempt's id).
    logical_id: str
    started_at: datetime
    request: Request
    response: Response | None
    #: "complete", "error", "abandoned" (the app stopped before the body was complete) or
    #: "incomplete" (still in flight when the tracer closed).
    outcome: str
    error: ErrorInfo | None
    timing: Timing
    #: (trace file, line number) the exchange was read from.
    source: tuple[str, int]
    #: Why a "complete" exchange is complete: "framing" (Content-Length reached, the last
    #: chunk read, the connection closed a close-delimited body, or no body) or
    #: "end_marker" (the stream's own end marker -- ``data: [DONE]``, ``message_stop``, a
    #: Bedrock stream's final frame -- was read, and the app closed before the HTTP end).
    #: None for the other outcomes.
    complete_by: str | None = None

    # Computed on each call (a frozen slots class has no cache): a report that wants the
    # message, its usage and its model parses the body three times, which is fine at read
    # time. None of these raises on a malformed body.

    def sse_events(self) -> list[SSEEvent]:
        """The server-sent events of a ``text/event-stream`` response body, else []."""
        rs = self.response
        if rs is None or not is_event_stream(rs.header("content-type")):
            return []
        return list(parse_sse(rs.body))

    def events(self) -> list[EventFrame]:
        """The frames of an AWS event-stream response body (Bedrock streams), else [].

        Each frame's CRCs are checked; a bad one is yielded with ``error`` set, never raised.
        """
        rs = self.response
        if rs is None or not is_aws_event_stream(rs.header("content-type")):
            return []
        return list(parse_event_stream(rs.body))

    def message(self) -> dict[str, Any] | None:
        """What an LLM API call returned, as its non-streaming form would have.

        A streamed Anthropic Messages, OpenAI Chat Completions or Responses body is rebuilt
        into the message / ``chat.completion`` / response object; a Bedrock event stream
        (ConverseStream, InvokeModelWithResponseStream) into the Converse response or the
        model provider's message; any other JSON object body is parsed; anything else (or
        no response) gives None.
        """
        rs = self.response
        if rs is None:
            return None
        return message_from_body(rs.header("content-type"), rs.body)

    def usage(self) -> Usage | None:
        """The token counts reported in :meth:`message` (else in Bedrock InvokeModel's
        token-count response headers), None if there are none."""
        rs = self.response
        return usage_of(self.message(), None if rs is None else rs.headers)

    def model(self) -> str | None:
        """The model that answered (from :meth:`message`), else the one the request named
        (its JSON body's ``model``, or the ``/model/<id>/`` of a Bedrock Runtime URL)."""
        return model_of(self.message(), self.request.decoded_body, self.request.url)


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    low = name.lower()
    for n, v in headers:
        if n.lower() == low:
            return v
    return None


@attrs.frozen
class SkippedLine:
    """A line :func:`read` could not use: where it is and why."""

    file: str
    line: int
    reason: str
