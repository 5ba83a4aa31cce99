"""Server-sent events (``text/event-stream``) parsing.

Rules: the WHATWG HTML "event stream interpretation" (section 9.2.6), byte for byte:

- UTF-8 decoded with replacement characters for bad bytes; one leading BOM is dropped.
- Lines end with CRLF, LF or CR. A CR ending one chunk and an LF starting the next are one
  line end: a CR ends its line at once (so an event is never held back waiting for the next
  chunk) and the parser then drops one LF if that is what comes next.
- ``:`` starts a comment. ``name: value`` sets a field (one space after the colon is
  dropped); a line without a colon is a field with an empty value. ``data`` lines are joined
  with ``\\n``; ``event`` names the event; ``id`` sets the last event id unless it contains
  NUL; ``retry`` counts only when it is all ASCII digits; other fields are ignored.
- A blank line dispatches the event, unless no ``data`` line was seen (the spec drops it).

Two choices the spec leaves to a browser's EventSource, made here for a trace reader:

- ``SSEEvent.id`` is the *last event id* in effect when the event was dispatched, as
  ``MessageEvent.lastEventId`` is: once set, it carries over to later events until changed.
  ``SSEEvent.retry`` belongs to no event in the spec; it is reported on the event in whose
  block it appeared (a ``retry`` line in a block without data is not seen).
- At the end of the stream the spec discards an event that no blank line ended. A trace of a
  cut-off stream should still show what arrived, so :meth:`SSEParser.close` dispatches it
  (and an unterminated last line counts as a line); nothing marks it as cut off -- the
  exchange's ``outcome`` says how the stream ended.

Incremental: :class:`SSEParser` gives the same events for any split of the same bytes.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator

import attrs

from ..exceptions import ParserClosedError

__all__ = ["SSEEvent", "SSEParser", "parse_sse"]

_LINE_END = re.compile(r"\r\n|\r|\n")
_DIGITS = re.compile(r"[0-9]+")


@attrs.frozen
class SSEEvent:
    """One dispatched server-sent event."""

    #: The ``event`` field, "message" when the block had none (or an empty one).
    event: str = "message"
    #: The ``data`` lines joined with "\\n".
    data: str = ""
    #: The last event id in effect (it carries over between events), None if never set.
    id: str | None = None
    #: The ``retry`` value (ms) given in this event's block, if any.
    retry: int | None = None


class SSEParser:
    """Incremental event-stream parser: :meth:`feed` bytes as they come, then :meth:`close`."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._started = False  # a first character was decoded (the BOM check is done)
        self._skip_lf = False  # the last chunk ended with CR: an LF next is its CRLF's half
        self._tail: list[str] = []  # text after the last line end (joined when one comes)
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._retry: int | None = None
        self._closed = False

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Parse the next bytes of the stream; returns the events they complete."""
        if self._closed:
            raise ParserClosedError("SSEParser.feed() after close()")
        return self._text(self._decoder.decode(data))

    def close(self) -> list[SSEEvent]:
        """End of stream: the events still pending, including one no blank line ended."""
        if self._closed:
            return []
        out = self._text(self._decoder.decode(b"", True))
        self._closed = True
        if self._tail:
            self._line("".join(self._tail), out)
            self._tail = []
        # Deliberately not the spec (which discards it): see the module comment.
        self._dispatch(out)
        return out

    def _text(self, text: str) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        if not text:
            return out
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf and text:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        if not _LINE_END.search(text):
            # No line ends yet: keep the piece (joining on every feed would be quadratic in
            # a long line that arrives in many reads).
            if text:
                self._tail.append(text)
            return out
        self._tail.append(text)
        buf = "".join(self._tail)
        pos = 0
        for m in _LINE_END.finditer(buf):
            self._line(buf[pos : m.start()], out)
            pos = m.end()
        self._skip_lf = buf[pos - 1] == "\r" and pos == len(buf)
        self._tail = [buf[pos:]] if pos < len(buf) else []
        return out

    def _line(self, line: str, out: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(out)
            return
        name, colon, value = line.partition(":")
        if not colon:
            value = ""
        elif not name:
            return  # a comment
        elif value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        elif name == "retry" and _DIGITS.fullmatch(value):
            self._retry = int(value)

    def _dispatch(self, out: list[SSEEvent]) -> None:
        if self._data:
            data = "\n".join(self._data)
            out.append(SSEEvent(self._event or "message", data, self._last_id, self._retry))
        self._event = ""
        self._data = []
        self._retry = None


def parse_sse(data: bytes | bytearray | memoryview | Iterable[bytes]) -> Iterator[SSEEvent]:
    """The events of an event stream, given whole or as an iterable of chunks."""
    parser = SSEParser()
    chunks: Iterable[bytes] = (
        (bytes(data),) if isinstance(data, (bytes, bytearray, memoryview)) else data
    )
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.close()
