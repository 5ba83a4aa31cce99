"""Reading a trace with its dead-letter file: every exchange once, whatever the writer was doing.

The dead-letter file is produced for real (the trace file's writes go to ``/dev/full`` through
the tracer's opener seam). The state a crash between the re-drive's copy and its unlink leaves
-- the same lines in both files -- is made by keeping a copy of the dead-letter file and putting
it back after the re-drive: those are the bytes such a crash leaves on disk. Both trace
formats (``fault_format``): a raw log's records are events, merged back by their numbers.
"""

from __future__ import annotations

import collections
import shutil
import time
from pathlib import Path

import pytest
import urllib3
from support import outage
from support.faults import MainOnly
from support.server import ScriptedServer, response

import zltrace

pytestmark = pytest.mark.usefixtures("fault_format")


def _traffic(t: zltrace.Tracer, srv: ScriptedServer, first: int, n: int) -> None:
    pool = t.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port))
    for i in range(first, first + n):
        assert pool.request("GET", f"/item/{i}").data == b"ok"
    pool.close()


def _items(path: Path) -> list[int]:
    return [int(ex.request.url.rsplit("/", 1)[1]) for ex in zltrace.read(path)]


def _dead_lettered(t: zltrace.Tracer, n: int) -> int:
    """Wait until the records of ``n`` exchanges are all in the dead-letter file; how many."""
    deadline = time.monotonic() + 10
    while True:
        s = t.stats()
        if outage.FORMAT == "jsonl" and s["dead_lettered_records"] >= n:
            return int(s["dead_lettered_records"])
        # raw: every event queued so far has become a record, and none waits in memory
        if (
            outage.FORMAT == "raw"
            and s["dead_lettered_records"] >= outage.at_least(n)
            and not s["queue_depth"]
            and not s["records_pending"]
        ):
            time.sleep(0.05)
            if t.stats() == s:
                return int(s["dead_lettered_records"])
        assert time.monotonic() < deadline, s
        time.sleep(0.01)


def test_reading_the_trace_file_includes_its_dead_letters(tmp_path: Path) -> None:
    """While the trace cannot be written, ``read(tracer.path)`` still finds every exchange
    that was flushed: they are in the dead-letter file."""
    opener = MainOnly()
    opener.full = {outage.suffixes()[0]}
    cfg = zltrace.Config(
        dir=str(tmp_path / "t"),
        flush_ms=5,
        write_retries=0,
        buffer_size=5,
        format=outage.FORMAT,
    )
    t = zltrace.Tracer(cfg, opener=opener)
    with ScriptedServer([response(200, b"ok")]) as srv:
        _traffic(t, srv, 0, 20)
        _dead_lettered(t, 20)
        assert sorted(_items(Path(t.path))) == list(range(20))
        assert sorted(_items(tmp_path / "t")) == list(range(20))
        opener.full.clear()
        _traffic(t, srv, 20, 5)
        assert t.close(timeout=10)
    trace, dead = outage.suffixes()
    assert not Path(t.path[: -len(trace)] + dead).exists()
    assert sorted(_items(Path(t.path))) == list(range(25))


def test_crash_between_redrive_copy_and_unlink_reads_each_exchange_once(tmp_path: Path) -> None:
    opener = MainOnly()
    opener.full = {outage.suffixes()[0]}
    cfg = zltrace.Config(
        dir=str(tmp_path / "t"),
        flush_ms=5,
        write_retries=0,
        buffer_size=5,
        format=outage.FORMAT,
    )
    t = zltrace.Tracer(cfg, opener=opener)
    trace, dead_suffix = outage.suffixes()
    dead = Path(t.path[: -len(trace)] + dead_suffix)
    with ScriptedServer([response(200, b"ok")]) as srv:
        _traffic(t, srv, 0, 30)
        dead_lettered = _dead_lettered(t, 30)
        kept = tmp_path / "kept"
        shutil.copyfile(dead, kept)
        opener.full.clear()
        _traffic(t, srv, 30, 10)
        assert t.close(timeout=10)
    assert t.stats()["redriven_records"] == dead_lettered
    assert not dead.exists()
    shutil.copyfile(kept, dead)  # what the crash would have left: both files hold the 30
    main_ids = [ex.id for ex in zltrace.read(_only_main(Path(t.path)))]
    assert len(main_ids) == 40  # the trace itself has all 40 (30 re-driven)
    for where in (Path(t.path), tmp_path / "t"):
        ids = [ex.id for ex in zltrace.read(where)]
        assert [i for i, c in collections.Counter(ids).items() if c > 1] == []
        assert sorted(_items(where)) == list(range(40))


def _only_main(path: Path) -> Path:
    """The trace file alone, copied where no dead-letter file sits beside it."""
    alone = path.parent.parent / "alone"
    alone.mkdir(exist_ok=True)
    trace, dead = outage.suffixes()
    for side in path.parent.glob(path.name[: -len(trace)] + ".*"):
        if not side.name.endswith(dead):
            shutil.copyfile(side, alone / side.name)
    return alone / path.name
