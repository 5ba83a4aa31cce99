"""The shipping loop: follow trace files, map exchanges to spans, batch, send, checkpoint.

Rules:

- One batch at a time, at most ``batch_spans`` spans and about ``batch_bytes`` encoded
  bytes; exchanges are pulled from the follower one at a time, so memory stays bounded
  whatever the backlog.
- The checkpoint moves only after the backend answered for every span of a batch (accepted,
  rejected by a partial success, or dead-lettered), and it records for each trace file the
  position after the batch's last exchange from that file. Killed at any moment, a restart
  sends again at most the one batch whose answer was not recorded: OTLP has no way to ask a
  backend what it already has, so that resend is the duplicate the protocol forces; the
  span ids are deterministic, so a backend that keys spans by id keeps one copy.
- A clean stop (the ``stop`` event) ends after the batch in flight is answered, or while
  waiting to retry it, without recording it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

import attrs

from .._read.follow import Follower, Position
from . import otlp_checkpoint
from .otlp_send import Sender
from .otlp_span import SpanMapper

__all__ = ["ShipCounters", "Shipper", "rss_bytes"]


@attrs.define
class ShipCounters:
    """What a shipper did (this run, and with ``total_`` since the checkpoint began)."""

    read: int = 0
    accepted: int = 0
    rejected: int = 0
    dead: int = 0
    batches: int = 0


def rss_bytes() -> int:
    """This process's resident set size (Linux ``/proc``; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class Shipper:
    """Ships the exchanges a :class:`Follower` yields through a :class:`Sender`."""

    def __init__(
        self,
        follower: Follower,
        sender: Sender,
        mapper: SpanMapper,
        *,
        checkpoint: str | None = None,
        acked: dict[str, Position] | None = None,
        totals: dict[str, int] | None = None,
        batch_spans: int = 512,
        batch_bytes: int = 4 << 20,
        stats_every: float = 0.0,
        stats_out: TextIO | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.follower = follower
        self.sender = sender
        self.mapper = mapper
        self.checkpoint = checkpoint
        self.acked: dict[str, Position] = dict(acked or {})
        self.totals: dict[str, int] = dict(totals or {})
        self.batch_spans = max(1, batch_spans)
        self.batch_bytes = max(1, batch_bytes)
        self.stats_every = stats_every
        self.stats_out = stats_out
        self.stop = stop if stop is not None else sender.stop
        self.counters = ShipCounters()
        self._started = time.monotonic()
        self._last_stats = self._started

    def run(self, follow: bool = False, interval: float = 0.5) -> ShipCounters:
        """Ship what is there (and with ``follow``, what comes, until stopped)."""
        while not self.stop.is_set():
            self.once()
            if not follow:
                break
            self.stop.wait(interval)
            self._stats()
        self._stats(final=True)
        return self.counters

    def once(self) -> None:
        """One poll: ship every exchange finished since the last."""
        spans: list[bytes] = []
        positions: dict[str, Position] = {}
        size = 0
        for item in self.follower.poll():
            self.counters.read += 1
            span = self.sender.encode_span(self.mapper.span(item.exchange, item.file))
            spans.append(span)
            positions[item.file] = item.position
            size += len(span)
            if len(spans) >= self.batch_spans or size >= self.batch_bytes:
                self._flush(spans, positions)
                spans, positions, size = [], {}, 0
                self._stats()
            if self.stop.is_set():
                return
        if spans:
            self._flush(spans, positions)
        # Everything read is answered: record what was skipped (unusable lines) too.
        seen = self.follower.positions
        if seen != {k: v for k, v in self.acked.items() if k in seen}:
            self.acked.update(seen)
            self._save()

    def _flush(self, spans: list[bytes], positions: dict[str, Position]) -> None:
        result = self.sender.send(spans)
        c = self.counters
        c.batches += 1
        c.accepted += result.accepted
        c.rejected += result.rejected
        c.dead += result.dead
        for key, n in (
            ("accepted", result.accepted),
            ("rejected", result.rejected),
            ("dead", result.dead),
        ):
            self.totals[key] = self.totals.get(key, 0) + n
        self.acked.update(positions)
        self._save()

    def _save(self) -> None:
        if self.checkpoint is None:
            return
        live = {k: v for k, v in self.acked.items() if os.path.exists(k)}
        self.acked = live
        otlp_checkpoint.save(self.checkpoint, live, self.totals)

    def _stats(self, final: bool = False) -> None:
        if self.stats_out is None:
            return
        now = time.monotonic()
        if not final and (not self.stats_every or now - self._last_stats < self.stats_every):
            return
        self._last_stats = now
        c, s = self.counters, self.sender.counters
        elapsed = max(now - self._started, 1e-9)
        print(
            f"ship: {'done ' if final else ''}read {c.read}, accepted {c.accepted}, "
            f"rejected {c.rejected}, dead-lettered {c.dead}, batches {c.batches}, "
            f"requests {s.requests}, retries {s.retries}, splits {s.splits}, "
            f"sent {s.bytes_sent} B, {c.read / elapsed:.0f} spans/s, "
            f"files {len(self.acked)}, last status {s.last_status or '-'}, "
            f"rss {rss_bytes() / 1e6:.1f} MB",
            file=self.stats_out,
            flush=True,
        )
