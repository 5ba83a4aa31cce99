"""The follower under ``ship --follow`` and ``tail``: only finished lines, resumable positions,
files replaced, truncated, torn or unusable, dead letters read once.

These are the JSON-lines follower's (``_read/follow.py``): the traces are written with
``format="jsonl"`` whatever the default; the raw log's follower is tested in
``tests/read/test_follow_raw.py``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import urllib3
from support.server import ScriptedServer, response
from support.trace import records

import zltrace
from zltrace._read.follow import Follower, Position


def trace_lines(tmp_path: Path, n: int) -> list[bytes]:
    """The lines of a real JSON-lines trace of ``n`` small exchanges."""
    tracer = zltrace.Tracer(zltrace.Config(dir=str(tmp_path / "src"), flush_ms=10, format="jsonl"))
    with ScriptedServer([response(200, b"ok")]) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        for i in range(n):
            pool.request("GET", f"/{i}")
    records(tracer)
    return Path(tracer.path).read_bytes().splitlines(keepends=True)


def urls(follower: Follower) -> list[str]:
    """The last path segment of each exchange one poll yields."""
    return [item.exchange.request.url.rsplit("/", 1)[1] for item in follower.poll()]


def test_only_finished_lines_are_read_and_positions_resume(tmp_path: Path) -> None:
    """A line without its newline waits for the next poll; a stored position resumes after."""
    lines = trace_lines(tmp_path, 3)
    live = tmp_path / "live" / "zltrace-x.jsonl"
    live.parent.mkdir()
    live.write_bytes(lines[0] + lines[1][:10])
    f = Follower(live.parent)
    assert urls(f) == ["0"]
    assert urls(f) == []
    with open(live, "ab") as out:
        out.write(lines[1][10:])
    items = list(f.poll())
    assert [i.exchange.request.url[-1] for i in items] == ["1"]
    with open(live, "ab") as out:
        out.write(lines[2])
    resumed = Follower(live.parent, {str(live): items[0].position})
    assert urls(resumed) == ["2"]
    assert Position.from_json(items[0].position.as_json()) == items[0].position
    with pytest.raises(ValueError, match="4 non-negative"):
        Position.from_json([1, 2, -3, 4])


def test_replaced_and_truncated_files_are_read_from_the_start(tmp_path: Path) -> None:
    """A new inode under the same name, or a file shorter than the position: from 0."""
    lines = trace_lines(tmp_path, 3)
    d = tmp_path / "live"
    d.mkdir()
    path = d / "zltrace-x.jsonl"
    path.write_bytes(b"".join(lines[:2]))
    f = Follower(d)
    assert urls(f) == ["0", "1"]
    tmp = d / "new.tmp"
    tmp.write_bytes(lines[2])
    os.replace(tmp, path)  # a new file, same name
    assert urls(f) == ["2"]
    with open(path, "r+b") as out:
        out.truncate(0)  # same inode, cut below the position
    with pytest.warns(zltrace.ZltraceWarning, match="truncated"):
        assert urls(f) == []
    with open(path, "ab") as out:
        out.write(lines[0])
    assert urls(f) == ["0"]


def test_unusable_lines_are_skipped_and_dead_letters_read_once(tmp_path: Path) -> None:
    """A bad line warns and is passed; an exchange in both a dead-letter file and its trace
    is yielded once; a vanished file is forgotten."""
    lines = trace_lines(tmp_path, 3)
    d = tmp_path / "live"
    d.mkdir()
    (d / "zltrace-x.deadletter.jsonl").write_bytes(lines[0])
    (d / "zltrace-x.jsonl").write_bytes(lines[0] + b"{not json\n" + lines[1])
    f = Follower(d)
    with pytest.warns(zltrace.ZltraceWarning, match="not JSON"):
        assert urls(f) == ["0", "1"]
    os.unlink(d / "zltrace-x.deadletter.jsonl")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert urls(f) == []
    assert list(f.positions) == [str(d / "zltrace-x.jsonl")]


def test_other_formats_are_followed_by_count_through_read(tmp_path: Path) -> None:
    """A file the follower has no tail reader for is read whole by ``read()`` once it has
    settled, and only the exchanges past the stored count are yielded."""
    lines = trace_lines(tmp_path, 3)
    other = tmp_path / "trace.other"
    other.write_bytes(b"".join(lines[:2]))
    f = Follower(other)
    assert urls(f) == ["0", "1"]
    assert urls(f) == []
    with open(other, "ab") as out:
        out.write(lines[2])
    items = list(f.poll())
    assert [i.exchange.request.url[-1] for i in items] == ["2"]
    assert items[0].position.offset == 3
    os.utime(other)  # just written: a follower that waits for files to settle skips it
    assert urls(Follower(other, {str(other): items[0].position}, settle=60)) == []
