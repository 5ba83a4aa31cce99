"""Whether a body the app stopped reading already holds its stream's own end marker.

A streamed LLM response ends twice: once in its own format (``data: [DONE]``, an Anthropic
``message_stop``, a Responses ``response.completed``, a Bedrock event stream's final frame)
and once in HTTP (the zero-size chunk). Clients stop at the first: the OpenAI SDK and most
``iter_lines`` loops break out on ``[DONE]`` and close the response before the zero-size
chunk is read. Such an exchange got its whole answer, so the assembler records it as
``complete`` (``complete_by: "end_marker"``) rather than ``abandoned``.

Rules:
- Only the tail is looked at: the last complete SSE event within the last
  :data:`TAIL` bytes, or the last frame of an event stream of at most :data:`MAX_FRAMES`
  bytes. A body partly spilled to the side file, or whose framing stopped mid-chunk, has no
  marker (it stays ``abandoned``): being wrong the other way would hide a cut-off answer.
- The last SSE event must be finished (the body ends with a blank line); the last event
  stream frame must end exactly where the body does.
- Never raises: anything odd means "no marker".
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Sequence, Sized

#: A piece of a body: bytes, or anything else with a size (bytes not at hand, e.g. spilled
#: to a side file), which stops the tail there.
Piece = Sized

__all__ = ["ends_with_marker"]

TAIL = 64 * 1024
MAX_FRAMES = 16 * 1024 * 1024

_SSE_END = re.compile(
    rb"^(?:data: ?\[DONE\]\s*$"
    rb"|event: ?(?:message_stop|response\.completed|response\.incomplete|response\.failed)\s*$"
    rb'|data: ?\{\s*"type"\s*:\s*"(?:message_stop|response\.completed|response\.incomplete'
    rb'|response\.failed)")',
    re.MULTILINE,
)
_FINAL_BEDROCK_EVENTS = (b"metadata",)


def ends_with_marker(content_type: str | None, pieces: Sequence[Piece]) -> bool:
    """Whether the payload ``pieces`` end with the end marker of their stream format."""
    if not content_type or not pieces:
        return False
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        if kind == "text/event-stream":
            return _sse(_tail(pieces, TAIL))
        if kind == "application/vnd.amazon.eventstream":
            if sum(len(p) for p in pieces) > MAX_FRAMES:
                return False
            return _eventstream(_tail(pieces, MAX_FRAMES))
    except Exception:  # odd bytes must never break the worker
        return False
    return False


def _tail(pieces: Sequence[Piece], limit: int) -> bytes:
    out: list[bytes] = []
    size = 0
    for piece in reversed(pieces):
        if not isinstance(piece, (bytes, bytearray, memoryview)):
            break  # spilled: what came before is not at hand
        out.append(bytes(piece))
        size += len(piece)
        if size >= limit:
            break
    return b"".join(reversed(out))[-limit:]


def _sse(tail: bytes) -> bool:
    text = tail.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if not text.endswith(b"\n\n"):
        return False
    body = text.rstrip(b"\n")
    start = body.rfind(b"\n\n")
    last = body[start + 2 :] if start >= 0 else body
    return _SSE_END.search(last) is not None


def _eventstream(data: bytes) -> bool:
    pos = 0
    last = -1
    while pos < len(data):
        if len(data) - pos < 16:
            return False
        total = struct.unpack_from(">I", data, pos)[0]
        if total < 16:
            return False
        last = pos
        pos += total
    if pos != len(data) or last < 0:
        return False
    total, hlen = struct.unpack_from(">II", data, last)
    headers = _headers(data[last + 12 : last + 12 + hlen])
    if headers.get(b":message-type") in (b"exception", b"error"):
        return True
    event = headers.get(b":event-type")
    if event in _FINAL_BEDROCK_EVENTS:
        return True  # ConverseStream ends with its metadata event
    if event == b"chunk":
        # InvokeModelWithResponseStream: Bedrock puts its invocation metrics into the last
        # chunk of every model provider.
        payload = data[last + 12 + hlen : last + total - 4]
        match = re.search(rb'"bytes"\s*:\s*"([A-Za-z0-9+/=]*)"', payload)
        return match is not None and b"amazon-bedrock-invocationMetrics" in base64.b64decode(
            match.group(1)
        )
    return False


def _headers(block: bytes) -> dict[bytes, bytes]:
    """The string-valued headers of an event-stream header block (others skipped)."""
    sizes = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
    found: dict[bytes, bytes] = {}
    i = 0
    while i < len(block):
        n = block[i]
        name = block[i + 1 : i + 1 + n]
        kind = block[i + 1 + n]
        i += 2 + n
        if kind in (6, 7):
            size = struct.unpack_from(">H", block, i)[0]
            if kind == 7:
                found[name] = block[i + 2 : i + 2 + size]
            i += 2 + size
        else:
            i += sizes[kind]
    return found
