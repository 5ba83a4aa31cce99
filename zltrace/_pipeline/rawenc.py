"""Capture events as raw log records (worker thread, or caller in standard mode).

Rules:
- One event, one record (a payload over ``MAX_PAYLOAD`` is split over several), in the order
  the events were queued; ``seq`` numbers them. No assembly, no JSON, no body copy beyond
  the record itself.
- The only parsing is what keeps credentials off the disk. A request head is found in the
  first SEND bytes of its exchange (up to the blank line, possibly over several sends) and
  written as one REQHEAD record, redacted as the JSONL writer redacts it; the bytes after it
  are SEND records as they were sent. Most requests of a client repeat their head: the
  redacted form is cached by the head's bytes (bounded). A response head is written from
  the client's parsed head with the same rules. Error messages are scrubbed of the
  exchange's credentials (http.client quotes bad header values in its exceptions).
- Per-exchange state is only what that needs: the unfinished head of exchanges still sending
  it, and the credentials of exchanges that had some; both bounded.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from .._format_raw import (
    CLOSE,
    DATA,
    EOF,
    ERROR,
    FILE,
    HEAD,
    HEAD_CHUNKED,
    HEAD_FIXED,
    MAX_PAYLOAD,
    RAW_VERSION,
    REQHEAD,
    REQHEAD_COMPLETE,
    SEND,
    START,
    START_FIXED,
    STOP,
    pack_strs,
    preamble,
    record,
)
from .._version import __version__
from . import events as ev_kinds
from .heads import HeadEncoder, _message_pairs
from .redact import SECRET, Redactor

#: Heads longer than this without their blank line are not HTTP heads: written as they are
#: redacted so far (complete flag off), and what follows is body.
_HEAD_MAX = 1 << 20
_CACHE_MAX = 256
_STATE_MAX = 4096


class RawEncoder:
    """Turns capture events into raw records for one tracer."""

    def __init__(self, run_id: str, wall0_ns: int, perf0_ns: int, redactor: Redactor) -> None:
        self._redact = redactor
        #: The clock anchor of the FILE record: wall time at ``perf0_ns``.
        self.wall0_ns, self.perf0_ns = wall0_ns, perf0_ns
        self._scrubber = HeadEncoder(redactor)
        self._seq = 0
        #: Exchanges whose request head is not sent whole yet -> the bytes so far.
        self._heads: dict[int, bytes] = {}
        #: Exchanges with credentials -> (value as it may appear, value to fingerprint).
        self._secrets: dict[int, list[tuple[str, str]]] = {}
        self._cache: dict[bytes, tuple[bytes, list[tuple[str, str]]]] = {}
        self.header = preamble() + record(
            FILE,
            0,
            0,
            0,
            perf0_ns,
            json.dumps(
                {
                    "format": "zltrace-raw",
                    "version": RAW_VERSION,
                    "run": run_id,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "wall_ns": wall0_ns,
                    "perf_ns": perf0_ns,
                    "zltrace": __version__,
                },
                separators=(",", ":"),
            ).encode(),
        )

    @property
    def seq(self) -> int:
        """Records made so far."""
        return self._seq

    @property
    def open_count(self) -> int:
        """Exchanges whose request head is still being sent."""
        return len(self._heads)

    def _rec(self, kind: int, ex: int, t: int, payload: bytes, flags: int = 0) -> bytes:
        self._seq += 1
        return record(kind, flags, self._seq, ex, t, payload)

    def encode(self, ev: tuple[Any, ...], out: list[bytes]) -> None:
        """Append the record(s) of one event to ``out``."""
        kind = ev[0]
        if kind == ev_kinds.DATA:
            data = ev[2]
            if len(data) <= MAX_PAYLOAD:
                out.append(self._rec(DATA, ev[1], ev[3], data))
            else:
                self._split(DATA, ev[1], ev[3], data, out)
        elif kind == ev_kinds.SEND:
            self._send(ev[1], ev[2], ev[3], out)
        elif kind == ev_kinds.START:
            self._start(ev, out)
        elif kind == ev_kinds.HEAD:
            self._head(ev, out)
        elif kind == ev_kinds.EOF:
            out.append(self._rec(EOF, ev[1], ev[2], b""))
        elif kind == ev_kinds.CLOSE:
            self._secrets.pop(ev[1], None)
            out.append(self._rec(CLOSE, ev[1], ev[2], b""))
        elif kind == ev_kinds.ERROR:
            self._error(ev[1], ev[2], ev[3], out)

    def stop(self, t: int) -> bytes:
        """The record that says the tracer closed: what is still open is incomplete."""
        return self._rec(STOP, 0, t, b"")

    def _split(self, kind: int, ex: int, t: int, data: Any, out: list[bytes]) -> None:
        view = memoryview(data)
        for i in range(0, len(view), MAX_PAYLOAD):
            out.append(self._rec(kind, ex, t, bytes(view[i : i + MAX_PAYLOAD])))

    def _start(self, ev: tuple[Any, ...], out: list[bytes]) -> None:
        _, n, prev, logical, t, scheme, host, port, method, target = ev
        if prev in self._heads:
            self._flush_head(prev, t, out)
        redacted, secrets = self._redact.target(str(target))
        if secrets:
            self._remember(n, secrets)
        self._heads[n] = b""
        if len(self._heads) > _STATE_MAX:
            del self._heads[next(iter(self._heads))]
        payload = START_FIXED.pack(
            prev or 0, logical, -1 if port is None else int(port)
        ) + pack_strs([str(scheme), str(host), str(method), redacted])
        out.append(self._rec(START, n, t, payload))

    def _send(self, ex: int, data: Any, t: int, out: list[bytes]) -> None:
        pending = self._heads.get(ex)
        if pending is None:  # head sent already: body bytes
            if len(data) <= MAX_PAYLOAD:
                out.append(self._rec(SEND, ex, t, bytes(data)))
            else:
                self._split(SEND, ex, t, data, out)
            return
        start = max(0, len(pending) - 3)  # the blank line may straddle two sends
        head = pending + bytes(data)
        end = head.find(b"\r\n\r\n", start)
        if end < 0:
            if len(head) <= _HEAD_MAX:
                self._heads[ex] = head
                return
            del self._heads[ex]
            out.append(self._reqhead(ex, t, head, complete=False))
            return
        del self._heads[ex]
        out.append(self._reqhead(ex, t, head[:end], complete=True))
        rest = head[end + 4 :]
        if rest:
            self._send(ex, rest, t, out)

    def _flush_head(self, ex: int, t: int, out: list[bytes]) -> None:
        """The head never finished (an error, a head, a reused connection): write its part."""
        head = self._heads.pop(ex, None)
        if head:
            out.append(self._reqhead(ex, t, head, complete=False))

    def _reqhead(self, ex: int, t: int, head: bytes, complete: bool) -> bytes:
        cached = self._cache.get(head)
        if cached is None:
            cached = self._redact_head(head)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[head] = cached
        text, secrets = cached
        if secrets:
            self._remember(ex, secrets)
        return self._rec(REQHEAD, ex, t, text, REQHEAD_COMPLETE if complete else 0)

    def _redact_head(self, head: bytes) -> tuple[bytes, list[tuple[str, str]]]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        secrets: list[tuple[str, str]] = []
        if len(parts) > 1:
            parts[1], secrets = self._redact.target(parts[1])
        out = [" ".join(parts)]
        redact = self._redact
        name = ""
        for text in lines[1:]:
            if text[:1] in (" ", "\t") and len(out) > 1:
                # obs-fold: a continuation of the previous header, redacted with it.
                kind = redact.kind(name)
                if kind == SECRET:
                    secrets.append((text.strip(), text.strip()))
                    continue  # the fingerprint already stands for the first part
                out.append(text)
                continue
            name, sep, value = text.partition(":")
            value = value.strip()
            kind = redact.kind(name)
            if kind == SECRET and value:
                secrets.append((value, value))
                value = redact.fingerprint(value)
            elif kind and value:
                value = redact.target(value)[0]
            out.append(f"{name}{sep} {value}" if sep else name)
        return "\r\n".join(out).encode("latin-1", "replace"), secrets

    def _head(self, ev: tuple[Any, ...], out: list[bytes]) -> None:
        _, ex, t, resp, length = ev
        self._flush_head(ex, t, out)
        redact = self._redact
        strs = [str(resp._method), str(resp.reason)]
        kind, fingerprint, target = redact.kind, redact.fingerprint, redact.target
        for name, value in _message_pairs(resp.msg):
            k = kind(name)
            if k == SECRET:
                value = fingerprint(value)
            elif k:
                value = target(value)[0]
            strs += (name, value)
        fixed = HEAD_FIXED.pack(
            int(resp.status) & 0xFFFF,
            10 if resp.version == 10 else 11,
            HEAD_CHUNKED if resp.chunked else 0,
            -1 if length is None else int(length),
        )
        out.append(self._rec(HEAD, ex, t, fixed + pack_strs(strs)))

    def _error(self, ex: int, exc: BaseException, t: int, out: list[bytes]) -> None:
        self._flush_head(ex, t, out)
        cls = type(exc)
        name = cls.__qualname__
        if cls.__module__ != "builtins":
            name = f"{cls.__module__}.{name}"
        try:
            message = str(exc)
        except Exception:  # a broken __str__ must not break the worker
            message = "<unprintable>"
        message = self._scrubber.scrub(message, self._secrets.get(ex, []))
        out.append(self._rec(ERROR, ex, t, pack_strs([name, message])))

    def _remember(self, ex: int, secrets: list[tuple[str, str]]) -> None:
        self._secrets.setdefault(ex, []).extend(secrets)
        if len(self._secrets) > _STATE_MAX:
            del self._secrets[next(iter(self._secrets))]
