"""Encodes a finished exchange as one trace line (worker thread, or caller in standard mode).

Format (``FORMAT_VERSION``; the README documents it and ``zltrace/trace-line.schema.json`` is
its JSON Schema): a JSON Lines file, one exchange per line, plus a side file of raw bytes.

- Bodies up to ``INLINE_MAX`` bytes are inline, as ``{"size", "text"}`` when they are valid
  UTF-8 (readable with ``jq``) or ``{"size", "base64"}`` otherwise.
- Larger bodies are appended raw to the side file ``<stem>.bodies`` and the line holds
  ``{"size", "file", "offset"}``. Escaping a large body into JSON would hold the GIL for
  long; ``os.writev`` of the caller's own ``bytes`` objects releases it, and copies nothing
  in Python. The body is written before its line, so a line never points at bytes that are
  not on disk.
- A body partly spilled to the side file while in flight is ``{"size", "file", "parts"}``:
  ``[offset, size]`` pairs in the side file, or base64 strings for bytes the side file
  refused after the spill.
- Arrival times of the response body (``reads``: flat ``[end_offset, t_ns, ...]``) are inline
  up to ``INLINE_READS`` pairs, else in the side file as little-endian int64 pairs.

A side file that cannot be written costs nothing but inlining: the bytes go into the line.
The line is assembled from fragments rather than by ``json.dumps`` of a dict: its structure
is fixed, and the fragments of the heads come ready-encoded from the assembler.
"""

from __future__ import annotations

import base64
import json
import sys
from array import array
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Callable

from .._format import FORMAT_VERSION, INLINE_MAX, INLINE_READS
from .finished import Buffer, Extent, Finished, Piece, StoredReads
from .jsonenc import js as _js

#: Appends buffers to the side file and returns their offset; raises ``OSError``.
Store = Callable[[Sequence[Buffer]], int]
#: Told of a side-file write that failed (what failed, the error); the bytes went inline.
OnError = Callable[[str, OSError], None]


class LineEncoder:
    """Turns :class:`Finished` exchanges into trace lines, storing large bodies via ``store``."""

    def __init__(self, side_name: str, store: Store, on_error: OnError) -> None:
        self._side = _js(side_name)
        self._store = store
        self._on_error = on_error

    def rename(self, side_name: str) -> None:
        """Point later lines at ``side_name`` (the writer picked another free name)."""
        self._side = _js(side_name)

    def encode(self, f: Finished) -> bytes:
        """The line of one finished exchange (large bodies written to the side file now)."""
        request_body = "null" if f.request_body is None else self._body(f.request_body)
        if f.response_json is None:
            response = "null"
        else:
            response = (
                f'{f.response_json},"body":{self._body(f.response_body or [])},'
                f'"reads":{self._reads(f.reads or [])}}}'
            )
        error = "null" if f.error is None else _encode(f.error)
        sent, head, first, end = f.timing
        by = "" if f.complete_by is None else f'"complete_by":"{f.complete_by}",'
        line = (
            f'{{"v":{FORMAT_VERSION},"id":"{f.id}","logical_id":"{f.logical}",'
            f'"started_at":"{_iso(f.wall_ns)}",'
            f'"request":{f.request_json},"body":{request_body}}},"response":{response},'
            f'"outcome":"{f.outcome}",{by}"error":{error},"timing":{{"request_sent":{_n(sent)},'
            f'"headers_received":{_n(head)},"first_byte":{_n(first)},"end":{end}}}}}\n'
        )
        # Lone surrogates (from surrogateescape'd names or odd exception messages) can only be
        # inside JSON strings here; backslashreplace turns them into \udXXX escapes, which
        # keeps the line valid UTF-8 and valid JSON.
        return line.encode("utf-8", "backslashreplace")

    def _stored(self, buffers: Sequence[Buffer]) -> int | None:
        """Offset of ``buffers`` appended to the side file; None if it failed (go inline)."""
        try:
            return self._store(buffers)
        except OSError as exc:
            self._on_error("side file write", exc)
            return None

    def _body(self, pieces: Sequence[Piece]) -> str:
        size = sum(len(p) for p in pieces)
        if any(isinstance(p, Extent) for p in pieces):
            return self._parts(pieces, size)
        buffers: Sequence[Buffer] = pieces  # type: ignore[assignment]  # no Extent: checked
        if size > INLINE_MAX:
            offset = self._stored(buffers)
            if offset is not None:
                return f'{{"size":{size},"file":{self._side},"offset":{offset}}}'
        data = buffers[0] if len(buffers) == 1 else b"".join(buffers)
        raw = bytes(data) if not isinstance(data, bytes) else data
        try:
            return f'{{"size":{size},"text":{_js(raw.decode("utf-8"))}}}'
        except UnicodeDecodeError:
            return f'{{"size":{size},"base64":"{_b64(raw)}"}}'

    def _parts(self, pieces: Sequence[Piece], size: int) -> str:
        """A body partly spilled already: the rest goes to the side file as well."""
        parts: list[str] = []
        run: list[Buffer] = []
        for p in [*pieces, None]:
            if isinstance(p, (bytes, memoryview)):
                run.append(p)
                continue
            if run:
                offset = self._stored(run)
                if offset is not None:
                    parts.append(f"[{offset},{sum(len(b) for b in run)}]")
                else:
                    parts.append(f'"{_b64(b"".join(run))}"')
                run = []
            if isinstance(p, Extent):
                parts.append(f"[{p.offset},{p.size}]")
        return f'{{"size":{size},"file":{self._side},"parts":[{",".join(parts)}]}}'

    def _reads(self, reads: Sequence[int] | StoredReads) -> str:
        if isinstance(reads, StoredReads):  # spilled while in flight, gathered at the end
            return f'{{"count":{reads.count},"file":{self._side},"offset":{reads.offset}}}'
        if len(reads) > 2 * INLINE_READS:
            arr = array("q", reads)
            if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
                arr.byteswap()
            offset = self._stored([arr.tobytes()])
            if offset is not None:
                return f'{{"count":{len(reads) // 2},"file":{self._side},"offset":{offset}}}'
        return "[" + ",".join(map(str, reads)) + "]"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _n(value: int | None) -> str:
    return "null" if value is None else str(value)


_last_second: tuple[int, str] = (-1, "")


def _iso(wall_ns: int) -> str:
    """``2026-11-26T18:01:41.463344Z``; the part up to the second is cached (one tuple,
    replaced whole, so workers of several tracers can share it)."""
    global _last_second
    sec, ns = divmod(wall_ns, 1_000_000_000)
    last = _last_second
    if last[0] != sec:
        stamp = datetime.fromtimestamp(sec, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        last = _last_second = (sec, stamp)
    return f"{last[1]}.{ns // 1000:06d}Z"
