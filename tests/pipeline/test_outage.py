"""A disk that comes back is used at once; an outage costs memory compactly, spills to the
fallback directory before anything is dropped, and a loss is never silent.

Faults are real: writes to ``/dev/full`` through the tracer's opener seam, and (root only, as
in ``test_write_faults.py``) a tmpfs of our own remounted read-only or filled to the last
byte under full-speed traffic, then given back. Each run counts what was sent and what was
read back. Every test runs on both trace formats (``fault_format``; see
``test_write_faults.py`` for how records are counted).
"""

from __future__ import annotations

import re
import stat
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import outage as outage_mod
from support.faults import Faults
from support.outage import ids_on_disk, make_tracer, run_outage, server, tmpfs_for_test, traffic
from support.server import ScriptedServer

import zltrace
from zltrace._pipeline.losses import reset_loss_warning

pytestmark = pytest.mark.usefixtures("fault_format")

SERIES = 20


def counted(value: int, exchanges: int) -> bool:
    """``value`` records stand for ``exchanges`` exchanges: one line each, or raw records."""
    if outage_mod.FORMAT == "jsonl":
        return value == exchanges
    return value >= outage_mod.at_least(exchanges)


#: Outages of the repeated runs, cycled: short, so that twenty runs stay cheap.
SHORT_OUTAGES = (0.1, 0.2, 0.3, 0.5)


@pytest.fixture
def srv() -> Iterator[ScriptedServer]:
    """A loopback server answering every request with a 1 KB body."""
    with server() as s:
        yield s


def wait_until(t: zltrace.Tracer, done: Any, what: str) -> dict[str, Any]:
    """Poll ``t.stats()`` (never flushing: that would force a write) until ``done`` holds."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        s = t.stats()
        if done(s):
            return s
        time.sleep(0.01)
    raise AssertionError(f"never {what}: {t.stats()}")


# -- through the opener seam -------------------------------------------------------------------


def test_a_disk_that_comes_back_is_used_before_the_backoff_ends(
    trace_dir: Path, srv: ScriptedServer
) -> None:
    """With a 60 s backoff running, records are written soon after the disk works again."""
    faults = Faults()
    faults.full = {outage_mod.suffixes()[0]}
    t = make_tracer(trace_dir, faults, retry_backoff_ms=60_000, write_retries=100)
    traffic(t, srv, 50)
    s = wait_until(
        t, lambda s: s["write_errors"] >= 1 and counted(s["records_pending"], 50), "failed"
    )
    assert s["write_retries"] == 1  # the backoff counted one failure; later tries are probes
    faults.full.clear()
    s = wait_until(t, lambda s: s["records_pending"] == 0, "recovered")
    assert counted(s["records_written"], 50) and s["records_lost"] == 0
    assert s["write_retries"] == 1  # recovered by a probe, long before the backoff's retry
    assert t.close(timeout=10)
    assert sorted(ids_on_disk(Path(t.path)), key=int) == [str(i) for i in range(50)]


def test_held_lines_cost_their_compressed_size(trace_dir: Path, srv: ScriptedServer) -> None:
    """With every file failing, more encoded lines than the budget holds wait in memory
    compressed, and none is lost; they all land once the disk works."""
    faults = Faults()
    faults.full = {outage_mod.suffixes()[0]}
    budget = 64 * 1024
    t = make_tracer(trace_dir, faults, write_retries=0, memory_pool_size=budget)
    traffic(t, srv, 150)  # ~1.2 KB lines that repeat themselves: ~180 KB encoded
    # (a raw log: once the worker has made every event a record, none left queued)
    s = wait_until(t, lambda s: counted(s["records_pending"], 150) and not s["queue_depth"], "held")
    assert s["writer_mode"] == "memory"
    assert s["records_lost"] == 0
    assert s["memory_held"] < budget, s["memory_held"]
    faults.full.clear()
    assert t.close(timeout=10)
    assert sorted(ids_on_disk(Path(t.path)), key=int) == [str(i) for i in range(150)]


def test_held_lines_spill_to_the_fallback_then_come_back(
    trace_dir: Path, srv: ScriptedServer
) -> None:
    """Trace and dead-letter file failing, the budget nearly full: held lines go to the
    fallback directory (created 0700, file 0600), nothing is dropped, and the fallback file
    is re-driven into the trace and removed once the disk works."""
    faults = Faults()
    faults.dirs = {str(trace_dir)}
    t = make_tracer(trace_dir, faults, write_retries=0, memory_pool_size=64 * 1024)
    traffic(t, srv, 200, noise=2048)  # ~2 KB held per line: ~400 KB, six budgets
    s = wait_until(
        t,
        lambda s: s["records_pending"] + s["fallback_records"] >= outage_mod.at_least(200),
        "spilled",
    )
    assert s["records_lost"] == 0
    assert s["fallback_records"] > 0
    fallback = trace_dir.parent / "fallback"
    assert stat.S_IMODE(fallback.stat().st_mode) == 0o700
    (spilled,) = fallback.iterdir()
    assert spilled.name == Path(t.path).stem + outage_mod.suffixes()[1]
    assert stat.S_IMODE(spilled.stat().st_mode) == 0o600
    faults.dirs.clear()
    assert t.close(timeout=10)
    s = t.stats()
    assert s["records_lost"] == 0
    assert s["redriven_records"] >= s["fallback_records"]
    assert not spilled.exists()
    assert sorted(ids_on_disk(Path(t.path)), key=int) == [str(i) for i in range(200)]


@pytest.mark.parametrize("kind", ["open to others", "symlink"])
def test_a_fallback_directory_that_is_not_private_is_refused(
    trace_dir: Path, tmp_path: Path, srv: ScriptedServer, kind: str
) -> None:
    """A fallback directory others may enter, or a symlink, is never written into: the
    records are dropped (and said so) rather than left where others can read them."""
    fallback = tmp_path / "fallback"
    if kind == "symlink":
        real = tmp_path / "elsewhere"
        real.mkdir(mode=0o700)
        fallback.symlink_to(real)
    else:
        fallback.mkdir()
        fallback.chmod(0o755)
    faults = Faults()
    faults.dirs = {str(trace_dir)}
    t = make_tracer(
        trace_dir, faults, write_retries=0, memory_pool_size=64 * 1024, fallback_dir=str(fallback)
    )
    reset_loss_warning()
    with pytest.warns(zltrace.ZltraceWarning, match=r"lost \d+ trace record"):
        traffic(t, srv, 200, noise=2048)
        s = wait_until(t, lambda s: s["records_lost"] > 0, "dropped")
    assert s["fallback_records"] == 0
    assert not any(p.startswith(str(fallback)) for p in faults.opens)
    assert list((tmp_path / "elsewhere").iterdir() if kind == "symlink" else []) == []
    faults.dirs.clear()
    assert not t.close(timeout=10)


def test_outage_budget_seconds_in_stats_and_metrics(tmp_path: Path, srv: ScriptedServer) -> None:
    """``stats()["outage_budget_s"]`` and ``zltrace_outage_budget_seconds`` say how many
    seconds of records at the current rate the memory budget would hold."""
    t = make_tracer(tmp_path / "traces", health_port=0)
    assert t.stats()["outage_budget_s"] is None  # no traffic yet: no rate to speak of
    start = time.monotonic()
    while time.monotonic() - start < 1.5:  # past one whole rate window
        traffic(t, srv, 20)
    seconds = t.stats()["outage_budget_s"]
    assert seconds is not None and seconds > 0
    assert t.health_url is not None
    with urllib.request.urlopen(t.health_url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^zltrace_outage_budget_seconds (\S+)$", text, re.M)
    assert m is not None and float(m.group(1)) > 0
    assert t.close(timeout=10)


# -- real filesystems, full-speed traffic (root only) ------------------------------------------


@pytest.fixture(scope="module")
def tmpfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 64 MiB tmpfs for this module's runs (skips when mounting is not permitted)."""
    mnt = tmp_path_factory.mktemp("outage") / "mnt"
    mnt.mkdir()
    with tmpfs_for_test(mnt, "64m"):
        yield mnt


@pytest.fixture
def fast_srv() -> Iterator[ScriptedServer]:
    """A loopback server for one run (it keeps every request it saw)."""
    with server() as s:
        yield s


def assert_lossless(sent: int, got: list[int], s: dict[str, Any]) -> None:
    assert s["records_lost"] == 0, s
    assert sorted(got) == list(range(sent)), (sent, len(got), s)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ro", "full"])
@pytest.mark.parametrize("run", range(SERIES))
def test_disk_back_after_a_short_outage_loses_nothing(
    tmpfs: Path, fast_srv: ScriptedServer, tmp_path: Path, kind: str, run: int
) -> None:
    """Read-only (or full) when the tracer starts, writable again after 0.1-0.5 s of
    full-speed traffic: every record sent is read back once, in every run."""
    outage = SHORT_OUTAGES[run % len(SHORT_OUTAGES)]
    sent, got, s = run_outage(tmpfs, kind, outage, fast_srv, tmp_path / "fallback")
    assert_lossless(sent, got, s)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ro", "full"])
def test_disk_back_after_five_seconds_loses_nothing(
    tmpfs: Path, fast_srv: ScriptedServer, tmp_path: Path, kind: str
) -> None:
    """A 5 s outage under full-speed traffic, default 10 MB budget: nothing lost, nothing
    needed the fallback."""
    sent, got, s = run_outage(tmpfs, kind, 5.0, fast_srv, tmp_path / "fallback")
    assert_lossless(sent, got, s)
    assert s["fallback_records"] == 0


@pytest.mark.slow
def test_longer_outage_spills_to_the_fallback_and_loses_nothing(
    tmpfs: Path, fast_srv: ScriptedServer, tmp_path: Path
) -> None:
    """An outage longer than the budget holds (a 1 MiB budget, incompressible bodies): the
    held lines go to the fallback directory while the disk is read-only, and come back."""
    sent, got, s = run_outage(
        tmpfs,
        "ro",
        3.0,
        fast_srv,
        tmp_path / "fallback",
        body_size=2048,
        memory_pool_size=1 << 20,
    )
    assert s["fallback_records"] > 0, s
    assert_lossless(sent, got, s)
