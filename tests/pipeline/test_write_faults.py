"""Write faults: retry with backoff, dead-letter file, memory fallback, re-drive, recovery.

Faults are real: writes to ``/dev/full`` (ENOSPC) through the tracer's file-opener seam, a
small tmpfs filled to the last byte, a tmpfs remounted read-only (EROFS), and the trace
directory removed under the worker. Each test counts what it sent and what was recorded.
Mounting needs root (CI runs as root); elsewhere those tests skip with the reason. Every test
runs on both trace formats (``fault_format``): a raw event log's records are events, a few per
exchange (``outage.at_least``), so record counts are checked as such for it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import outage
from support.faults import Faults, MainOnly
from support.outage import BODY, fill, ids_on_disk, make_tracer, tmpfs_for_test, traffic
from support.server import ScriptedServer, response

import zltrace
from zltrace._pipeline.losses import reset_loss_warning

pytestmark = pytest.mark.usefixtures("fault_format")


def counted(value: int, exchanges: int) -> bool:
    """``value`` records stand for ``exchanges`` exchanges: one line each, or raw records."""
    return value == exchanges if outage.FORMAT == "jsonl" else value >= outage.at_least(exchanges)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A loopback server answering every request with BODY."""
    with ScriptedServer([response(200, BODY)]) as srv:
        yield srv
    assert not srv.errors, srv.errors


def settle(t: zltrace.Tracer, done: Any) -> dict[str, Any]:
    """Flush (one forced write attempt each time) until ``done(stats)`` holds; return stats."""
    for _ in range(100):
        t.flush(timeout=10)
        s = t.stats()
        if done(s):
            return s
    raise AssertionError(f"never settled: {t.stats()}")


@pytest.mark.parametrize("mode", ["zero-latency", "standard"])
def test_full_disk_then_recovery_loses_nothing(
    trace_dir: Path, server: ScriptedServer, mode: str
) -> None:
    """ENOSPC on every trace and dead-letter write: records stay in memory, then all land once."""
    faults = Faults()
    faults.full = {outage.suffixes()[0]}
    t = make_tracer(trace_dir, faults, zero_latency=mode == "zero-latency", write_retries=2)
    traffic(t, server, 30)
    s = settle(t, lambda s: s["writer_mode"] == "memory")
    assert s["write_errors"] > 0
    assert s["writer_mode"] == "memory"
    assert counted(s["records_pending"], 30)
    assert s["records_lost"] == 0
    faults.full.clear()
    traffic(t, server, 10)
    assert t.close(timeout=10)
    s = t.stats()
    assert s["records_lost"] == 0
    assert s["redriven_records"] > 0  # the records that were held in memory
    assert s["writer_mode"] == "batched"
    got = ids_on_disk(Path(t.path))
    assert sorted(got, key=int) == sorted(
        [str(i) for i in range(30)] + [str(i) for i in range(10)], key=int
    )


def test_dead_letter_then_redrive(trace_dir: Path, server: ScriptedServer) -> None:
    """A trace file that keeps failing: batches go to the dead-letter file, and come back."""

    opener = MainOnly()
    opener.full = {outage.suffixes()[0]}
    t = make_tracer(trace_dir, opener, write_retries=1, buffer_size=5)
    traffic(t, server, 20)
    # Each flush is one more attempt; a batch is dead-lettered after its second failure.
    s = settle(t, lambda s: s["records_pending"] == 0)
    assert s["records_pending"] == 0
    assert counted(s["dead_lettered_records"], 20)
    dead_lettered = s["dead_lettered_records"]
    assert s["dead_lettered_batches"] >= 2
    assert s["writer_mode"] == "immediate"  # two dead-lettered batches in a row
    assert s["degradations"] >= 1
    dead = trace_dir / (Path(t.path).stem + outage.suffixes()[1])
    assert sorted(ids_on_disk(dead), key=int) == [str(i) for i in range(20)]
    opener.full.clear()
    traffic(t, server, 5)
    assert t.close(timeout=10)
    s = t.stats()
    assert s["redriven_records"] == dead_lettered
    assert s["records_lost"] == 0
    assert s["writer_mode"] == "batched"
    assert not dead.exists()
    got = sorted(ids_on_disk(trace_dir), key=int)
    assert got == sorted([str(i) for i in range(20)] + [str(i) for i in range(5)], key=int)


def test_backoff_spaces_the_attempts(trace_dir: Path, server: ScriptedServer) -> None:
    """Retries back off: with a 1 s first delay, a failing batch is not retried at once."""
    faults = Faults()
    faults.full = {outage.suffixes()[0]}
    t = make_tracer(trace_dir, faults, retry_backoff_ms=1000, write_retries=3, zero_latency=False)
    traffic(t, server, 5)
    s = t.stats()
    # Standard mode tries at the end of each exchange: the first failure schedules the
    # retry 0.75-1.25 s later, so the next four exchanges (a few ms) make no attempt.
    assert s["write_errors"] == 1
    assert s["write_retries"] == 1
    faults.full.clear()
    assert t.close(timeout=10)
    assert len(ids_on_disk(Path(t.path))) == 5


def test_memory_fallback_is_bounded_and_counts_what_it_drops(
    trace_dir: Path, server: ScriptedServer
) -> None:
    """Disk and fallback gone for good: memory holds records up to the budget; the rest are
    counted lost, and the first loss is a ZltraceWarning naming the count and the cause."""
    faults = Faults()
    faults.full = {outage.suffixes()[0]}  # the trace, its dead-letter file and the fallback file
    budget = 64 * 1024  # the smallest allowed; each record here costs ~2 KB held
    t = make_tracer(trace_dir, faults, write_retries=0, memory_pool_size=budget)
    reset_loss_warning()
    raw = outage.FORMAT == "raw"
    with pytest.warns(zltrace.ZltraceWarning, match=r"lost \d+ trace record.*budget"):
        traffic(t, server, 100, noise=2048)
        s = settle(
            t,
            # a raw log: every event made a record, queued ones included
            (lambda s: s["records_lost"] and not s["queue_depth"])
            if raw
            else (
                lambda s: (
                    s["records_pending"] + s["records_lost"] == 100 and not s["open_exchanges"]
                )
            ),
        )
    assert s["writer_mode"] == "memory"
    made = s["records_lost"] + s["records_pending"]
    assert 0 < s["records_lost"] < made
    assert made >= outage.at_least(100) if raw else made == 100
    fallback = str(trace_dir.parent / "fallback")
    assert any(p.startswith(fallback) for p in faults.opens)  # tried before dropping
    assert not t.close(timeout=10)  # close reports the loss
    assert t.stats()["records_lost"] >= 100


def test_directory_removed_under_the_worker(trace_dir: Path, server: ScriptedServer) -> None:
    """The trace directory deleted mid-run is re-created; later records are not written into
    the deleted file."""
    t = make_tracer(trace_dir)
    traffic(t, server, 5)
    assert t.flush(timeout=10)
    shutil.rmtree(trace_dir)
    traffic(t, server, 7)
    assert t.close(timeout=10)
    s = t.stats()
    assert s["files_recreated"] == 1
    assert s["records_lost"] == 0
    # The 5 earlier records were deleted with the directory (by the test, not by us).
    assert sorted(ids_on_disk(Path(t.path)), key=int) == [str(i) for i in range(7)]
    assert oct(trace_dir.stat().st_mode & 0o777) == "0o700"


# -- real filesystems: a full tmpfs, a read-only remount (root only) ---------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for this test (skips when mounting is not permitted)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with tmpfs_for_test(mnt, "1m"):
        yield mnt


def test_real_full_filesystem(tmpfs: Path, server: ScriptedServer) -> None:
    """A tmpfs filled to the last byte: torn writes are cut back, nothing is lost once space
    comes back, and the file reads without a single bad line."""
    trace_dir = tmpfs / "traces"
    trace_dir.mkdir()
    t = make_tracer(trace_dir, write_retries=2)
    traffic(t, server, 3)
    assert t.flush(timeout=10)
    filler = fill(tmpfs)
    traffic(t, server, 40)
    t.flush(timeout=10)
    s = t.stats()
    assert s["write_errors"] > 0
    assert s["records_lost"] == 0
    filler.unlink()
    assert t.close(timeout=10)
    s = t.stats()
    assert s["records_lost"] == 0
    got = ids_on_disk(trace_dir)  # warnings are errors here: no torn or glued line
    assert sorted(got, key=int) == sorted(
        [str(i) for i in range(3)] + [str(i) for i in range(40)], key=int
    )


def test_read_only_filesystem_then_writable(tmpfs: Path, server: ScriptedServer) -> None:
    """EROFS: the directory cannot be written at all; records wait in memory and land once the
    filesystem is writable again."""
    trace_dir = tmpfs / "traces"
    trace_dir.mkdir(mode=0o700)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    t = make_tracer(trace_dir, write_retries=1)
    traffic(t, server, 12)
    s = settle(t, lambda s: s["writer_mode"] == "memory" and counted(s["records_pending"], 12))
    assert "Read-only file system" in (s["last_write_error"] or "")
    assert s["writer_mode"] == "memory"
    subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)
    assert t.close(timeout=10)
    assert t.stats()["records_lost"] == 0
    assert sorted(ids_on_disk(trace_dir), key=int) == [str(i) for i in range(12)]


BACKLOG_BUDGET = 256 * 1024


def backlog_tracer(trace_dir: Path, opener: Any, **cfg: Any) -> zltrace.Tracer:
    """Writes failing behind a 60 s backoff (no retry during a test), a 256 KiB budget."""
    return make_tracer(
        trace_dir,
        opener,
        write_retries=100,
        retry_backoff_ms=60_000,
        memory_pool_size=BACKLOG_BUDGET,
        buffer_size=10,
        **cfg,
    )


@pytest.mark.parametrize("mode", ["zero-latency", "standard"])
def test_backoff_backlog_over_half_the_budget_is_dead_lettered_at_once(
    trace_dir: Path, server: ScriptedServer, mode: str
) -> None:
    """A long backoff does not let lines pile up past half the budget: they go to the
    dead-letter file without waiting for the retries, no caller is throttled and no body is
    spilled or dropped; once writes work, every exchange lands once."""

    opener = MainOnly()
    opener.full = {outage.suffixes()[0]}
    t = backlog_tracer(trace_dir, opener, zero_latency=mode == "zero-latency")
    # ~1.5 KB held per line: ~450 KB, over half the budget. Paced (1 ms after each request), so
    # that what is measured is lines waiting out the backoff, not callers outrunning a worker
    # the machine does not schedule (which the budget bounds by throttling, by design).
    traffic(t, server, 300, noise=1024, pause=0.001)
    deadline = time.monotonic() + 10
    s = t.stats()
    while s["dead_lettered_records"] < outage.at_least(200) and time.monotonic() < deadline:
        time.sleep(0.01)  # no flush() here: that would force a retry
        s = t.stats()
    # Diverted by the budget while the first backoff (60 s) went on: one failed write, no more.
    assert s["dead_lettered_records"] >= outage.at_least(200), s
    assert s["write_retries"] == 1, s
    assert s["memory_held_peak"] <= BACKLOG_BUDGET, s
    assert (s["budget_throttles"], s["budget_spilled_bytes"], s["body_bytes_dropped"]) == (0, 0, 0)
    assert s["records_lost"] == 0
    opener.full.clear()
    assert t.close(timeout=10)
    assert t.stats()["records_lost"] == 0
    assert sorted(ids_on_disk(Path(t.path)), key=int) == [str(i) for i in range(300)]


def test_backoff_backlog_in_memory_mode_is_held_without_new_dead_letter_attempts(
    trace_dir: Path, server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Trace, dead-letter and fallback files all failing, a long backoff: lines are held within
    the budget (the oldest dropped and counted); the dead-letter file is tried when the backlog
    passes half the budget and once more with the fallback when the held lines near the
    budget, not at every flush; what was held lands once writes work."""
    faults = Faults()
    faults.full = {outage.suffixes()[0]}
    t = backlog_tracer(trace_dir, faults)
    traffic(t, server, 300, noise=2048)
    deadline = time.monotonic() + 10
    s = t.stats()
    raw = outage.FORMAT == "raw"
    while time.monotonic() < deadline:
        if raw and s["records_lost"] and not s["queue_depth"]:
            # A raw log: every event made a record, and nothing moves any more. The queue is
            # empty once the worker has drained it, not handled it: a worker the machine does
            # not schedule can sit on a drained batch, so "still" must last a while.
            moving = ("events_processed", "records_lost", "records_pending", "queue_depth")
            time.sleep(0.2)
            now = t.stats()
            if all(now[k] == s[k] for k in moving):
                s = now
                break
        if not raw and s["records_lost"] + s["records_pending"] >= 300:
            break
        time.sleep(0.01)
        s = t.stats()
    assert s["writer_mode"] == "memory", s
    assert s["write_retries"] == 1, s
    dead = [p for p in faults.opens if p.endswith(outage.suffixes()[1])]
    fallback = str(trace_dir.parent / "fallback")
    assert sum(p.startswith(str(trace_dir)) for p in dead) == 2, dead
    assert sum(p.startswith(fallback) for p in dead) == 1, dead
    assert 0 < s["records_lost"] < (s["records_lost"] + s["records_pending"] if raw else 300), s
    lost = s["records_lost"]
    # Dropped many times over, one flush after another, but logged once (with its count):
    drops = [r for r in caplog.records if "records dropped" in r.getMessage()]
    assert len(drops) == 1 and drops[0].levelname == "CRITICAL"
    faults.full.clear()
    assert not t.close(timeout=10)  # False: not everything was written (some were dropped)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a raw log that lost records may miss a file's head
        got = ids_on_disk(Path(t.path))
    if raw:  # events were dropped, oldest first: the exchanges they began are gone
        assert len(got) == len(set(got)) and 0 < len(got) < 300
    else:
        assert len(got) == len(set(got)) == 300 - lost
    assert t.stats()["records_lost"] == lost
