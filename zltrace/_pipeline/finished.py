"""What the assembler hands the writer: a finished exchange and the body pieces it refers to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import attrs

#: Body bytes as the caller read them: its own ``bytes``, or a ``memoryview`` slice of them.
Buffer = Union[bytes, memoryview]


class Extent:
    """Body bytes already stored in the side file (spilled under memory pressure)."""

    __slots__ = ("offset", "size")

    def __init__(self, offset: int, size: int) -> None:
        self.offset = offset
        self.size = size

    def __len__(self) -> int:
        return self.size


#: A piece of a body: the caller's bytes (or a slice of them), or a stored extent.
Piece = Union[bytes, memoryview, Extent]


class StoredReads:
    """Arrival times already in the side file: ``count`` little-endian int64 pairs of
    ``(end offset, ns after the start)`` at ``offset`` (spilled while the body was in flight)."""

    __slots__ = ("count", "offset")

    def __init__(self, offset: int, count: int) -> None:
        self.offset = offset
        self.count = count

    def __len__(self) -> int:
        return 2 * self.count  # as many numbers as the flat pairs would be


@attrs.define(eq=False)
class Finished:
    """One ended exchange, ready for the writer: JSON fragments, body pieces, timings."""

    id: str
    logical: str
    wall_ns: int
    #: ``{"method":...,"complete":...`` -- the request object without body and brace.
    request_json: str
    request_body: list[Piece] | None
    #: ``{"status":...,"framing":...`` -- the response object without body, reads, brace.
    response_json: str | None
    response_body: list[Piece] | None
    #: Flat ``[end_offset, t_ns, end_offset, t_ns, ...]`` of the body's arrivals (an
    #: ``array('q')`` or a list), or where they are in the side file already.
    reads: Sequence[int] | StoredReads | None
    outcome: str
    error: dict[str, str] | None
    #: Request sent, headers received, first byte, end: ns after the start (None: never).
    timing: tuple[int | None, int | None, int | None, int]
    #: Why a ``complete`` exchange is complete: "framing" (its HTTP framing ended, or it
    #: has no body) or "end_marker" (its stream's own end marker was read); else None.
    complete_by: str | None = None
