"""What the writer counts for ``stats()``, and the rate of the bytes it encodes."""

from __future__ import annotations

import attrs

__all__ = ["RATE_WINDOW_NS", "RateMeter", "WriteCounts"]

#: The rate of encoded bytes is measured over windows this long ...
RATE_WINDOW_NS = 1_000_000_000


@attrs.define
class RateMeter:
    """Encoded line bytes per second over the last whole window."""

    start: int
    added: int = 0  # bytes since ``start``
    rate: float = 0.0
    at: int = 0  # when ``rate`` was measured

    def tick(self, now: int) -> None:
        elapsed = now - self.start
        if elapsed >= RATE_WINDOW_NS:
            self.rate = self.added * 1e9 / elapsed
            self.at = self.start = now
            self.added = 0

    def current(self, now: int) -> float:
        """The rate, or 0 when no window ended lately (no traffic, nothing flushed)."""
        return self.rate if now - self.at <= 2 * RATE_WINDOW_NS else 0.0


class WriteCounts:
    """What the writer has done, for ``stats()``: counters bumped on the writing thread."""

    records_written = 0
    bytes_written = 0  # trace and side file
    batches = 0
    write_errors = 0
    retries = 0
    probes = 0  # failed tries between counted ones
    dead_lettered_batches = 0
    dead_lettered_records = 0
    fallback_records = 0  # records spilled to the fallback directory
    redriven_records = 0
    degradations = 0
    files_recreated = 0
    records_lost = 0
    last_error: str | None = None
    dir_problem: str | None = None  # why the trace directory was refused, while it is
