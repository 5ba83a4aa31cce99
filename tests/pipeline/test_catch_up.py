"""The worker stops yielding the GIL between slices once the events in hand are older than
half ``flush_ms``: on a loaded machine each short sleep can last milliseconds, and a worker
that kept sleeping fell seconds behind with a backlog under ``BACKLOG``, events that a
kill -9 then lost. Observed through ``stats()["worker_catchups"]`` (slices run without a
sleep), with events whose own timestamps say how long they waited."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import zltrace
from zltrace._pipeline import events

N = 1500  # fewer than the backlog that makes the worker run flat out on its own


def _catchups(tmp_path: Path, fmt: str, flush_ms: int, age_ns: int) -> int:
    tracer = zltrace.Tracer(
        zltrace.Config(dir=str(tmp_path), flush_ms=flush_ms, format=fmt, handle_signals=False)
    )
    try:
        t = time.perf_counter_ns() - age_ns
        for i in range(N):
            tracer._put((events.EOF, 10_000_000 + i, t + i))
        assert tracer.flush(timeout=60)
        return int(tracer.stats()["worker_catchups"])
    finally:
        tracer.close(timeout=60)


@pytest.mark.parametrize("fmt", ["raw", "jsonl"])
def test_events_older_than_half_the_flush_interval_are_handled_without_yielding(
    tmp_path: Path, fmt: str
) -> None:
    """Events queued a second ago under flush_ms=100: slices run back to back."""
    assert _catchups(tmp_path, fmt, flush_ms=100, age_ns=1_000_000_000) >= 1


@pytest.mark.parametrize("fmt", ["raw", "jsonl"])
def test_young_events_under_the_backlog_are_handled_in_yielding_slices(
    tmp_path: Path, fmt: str
) -> None:
    """The same events fresh, with flush_ms long: every slice ends in a sleep."""
    assert _catchups(tmp_path, fmt, flush_ms=60_000, age_ns=0) == 0
