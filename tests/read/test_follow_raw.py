"""The follower on a growing raw event log: each exchange once it has ended, never a torn
record, and a stored position from which a restarted follower yields exactly the exchanges
not yet yielded, exchanges interleaved in the log included."""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

import pytest
import urllib3
from support.server import ScriptedServer, response, send, wait_for

import zltrace
from zltrace import _format_raw as fr
from zltrace._read.follow import Follower, Item, Position


def interleaved_trace(path: Path) -> tuple[bytes, list[zltrace.Exchange]]:
    """A raw trace where a streamed exchange ends after three that started after it; its
    bytes and its exchanges as ``read()`` gives them."""
    go = threading.Event()
    slow = [
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst"),
        wait_for(go),
        send(b"-last"),
    ]
    t = zltrace.Tracer(zltrace.Config(dir=str(path), flush_ms=10, format="raw"))
    with ScriptedServer([slow]) as a, ScriptedServer([response(200, b"quick")]) as b:
        pa = t.wrap(urllib3.HTTPConnectionPool(a.host, a.port, retries=False, timeout=30))
        pb = t.wrap(urllib3.HTTPConnectionPool(b.host, b.port, retries=False, timeout=30))
        pb.request("GET", "/before")
        streamed = pa.urlopen("GET", "/slow", preload_content=False)
        assert streamed.read(5) == b"first"
        for i in range(3):
            pb.request("POST", f"/quick/{i}", body=b"q%d" % i)
        go.set()
        assert streamed.read() == b"-last"
        streamed.release_conn()
        pb.request("GET", "/after")
        pa.close()
        pb.close()
    assert t.close(timeout=10)
    data = Path(t.path).read_bytes()
    return data, list(zltrace.read(t.path))


def record_ends(data: bytes) -> list[int]:
    """The offset after each record of a raw log."""
    out, pos = [], fr.PREAMBLE.size
    while pos < len(data):
        n = fr.RECORD.unpack_from(data, pos)[3]
        pos += fr.RECORD.size + n + fr.CRC.size
        out.append(pos)
    return out


def record_of(data: bytes, offset: int) -> tuple[int, int]:
    """The kind and exchange number of the record at ``offset``."""
    fields = fr.RECORD.unpack_from(data, offset)
    return int(fields[1]), int(fields[5])


def paths_of(items: list[Item]) -> list[str]:
    """The URL path of each item's exchange."""
    return [i.exchange.request.url.split("/", 3)[3] for i in items]


def test_a_growing_raw_log_is_followed_record_by_record(tmp_path: Path) -> None:
    """Grown a record at a time, torn records included, the log yields each exchange once,
    when it ends, whole; an open exchange is not yielded before its end."""
    data, full = interleaved_trace(tmp_path / "src")
    live = tmp_path / "live" / "zltrace-x.zlog"
    live.parent.mkdir()
    live.write_bytes(b"")
    f = Follower(live.parent)
    got: list[Item] = []
    written = 0
    for end in record_ends(data):
        for cut in (end - 3, end):  # a torn record first, then the whole one
            with open(live, "ab") as out:
                out.write(data[written:cut])
            written = cut
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                got += f.poll()
    assert paths_of(got) == [ex.request.url.split("/", 3)[3] for ex in full]
    assert [i.exchange.outcome for i in got] == ["complete"] * len(full)
    assert [i.exchange.id for i in got] == [ex.id for ex in full]
    bodies = [i.exchange.response.raw_body for i in got if i.exchange.response]
    assert bodies == [b"quick"] * 4 + [b"first-last", b"quick"]
    assert [i.exchange.request.body for i in got[1:4]] == [b"q0", b"q1", b"q2"]


@pytest.mark.parametrize("torn", [False, True])
def test_a_restart_from_any_stored_position_yields_exactly_the_rest(
    tmp_path: Path, torn: bool
) -> None:
    """Stopped after any record (or inside one) and restarted on the whole log from the
    last item's stored position (through its JSON form): no exchange lost, none twice."""
    data, full = interleaved_trace(tmp_path / "src")
    ids = [ex.id for ex in full]
    live = tmp_path / "live" / "zltrace-x.zlog"
    live.parent.mkdir()
    for end in record_ends(data):
        cut = end - 3 if torn else end
        live.write_bytes(data[:cut])
        first = list(Follower(live.parent).poll())
        start: dict[str, Position] = {}
        if first:
            stored = first[-1].position.as_json()
            start = {str(live): Position.from_json(stored)}
        live.write_bytes(data)
        rest = list(Follower(live.parent, start).poll())
        assert [i.exchange.id for i in first + rest] == ids, f"cut at {cut}"


def test_every_item_position_resumes_after_it(tmp_path: Path) -> None:
    """On the whole log, the position of the k-th item resumes with item k+1."""
    data, full = interleaved_trace(tmp_path / "src")
    live = tmp_path / "zltrace-x.zlog"
    live.write_bytes(data)
    items = list(Follower(live).poll())
    assert len(items) == len(full)
    # The streamed exchange ends after three that started after it.
    assert paths_of(items) == ["before", "quick/0", "quick/1", "quick/2", "slow", "after"]
    for k, item in enumerate(items):
        again = list(Follower(live, {str(live): item.position}).poll())
        assert [i.exchange.id for i in again] == [i.exchange.id for i in items[k + 1 :]]
    slow = paths_of(items).index("slow")
    # While the streamed exchange is open, positions go back to its start and name the
    # quick exchanges yielded since; once it has ended, they move past it.
    pinned = items[1].position.offset
    assert {i.position.offset for i in items[1:slow]} == {pinned}
    quick = [int(i.exchange.id.rsplit(".", 1)[1]) for i in items[1:slow]]
    assert items[slow - 1].position.done == (min(quick), max(quick))
    assert items[slow].position.offset > pinned


def test_dead_letters_are_merged_and_read_once(tmp_path: Path) -> None:
    """Records of a raw trace split between the trace and its dead-letter file (some in
    both) read back once each, followed live and after a restart."""
    data, full = interleaved_trace(tmp_path / "src")
    ends = record_ends(data)
    d = tmp_path / "live"
    d.mkdir()
    pre = data[: fr.PREAMBLE.size]
    # The FILE record and the first half of the records in the dead-letter file, the
    # records from a third on (an overlap) in the trace.
    half, third = ends[len(ends) // 2], ends[len(ends) // 3]
    (d / "zltrace-x.deadletter.zlog").write_bytes(data[:half])
    trace = pre + data[fr.PREAMBLE.size : ends[0]] + data[third:]
    slow = next(ex for ex in full if ex.request.url.endswith("/slow")).id.rsplit(".", 1)[1]
    last = max(
        e for e in [fr.PREAMBLE.size, *ends[:-1]] if record_of(data, e) == (fr.DATA, int(slow))
    )
    # Torn inside the record of the streamed exchange's last body bytes.
    (d / "zltrace-x.zlog").write_bytes(trace[: len(trace) - (len(data) - last) + 3])
    f = Follower(d)
    items = list(f.poll())
    assert "slow" not in paths_of(items)
    (d / "zltrace-x.zlog").write_bytes(trace)
    items += f.poll()
    assert [i.exchange.id for i in items] == [ex.id for ex in full]
    assert [i.file for i in items] == [str(d / "zltrace-x.zlog")] * len(full)
    for k in (0, len(items) // 2):
        again = list(Follower(d, {str(d / "zltrace-x.zlog"): items[k].position}).poll())
        assert [i.exchange.id for i in again] == [ex.id for ex in full[k + 1 :]]


def test_a_replaced_or_truncated_raw_log_is_read_from_its_start(tmp_path: Path) -> None:
    """A new file under the name, or one cut below what was read, is read from 0."""
    data, full = interleaved_trace(tmp_path / "src")
    live = tmp_path / "zltrace-x.zlog"
    live.write_bytes(data)
    f = Follower(live)
    assert len(list(f.poll())) == len(full)
    tmp = tmp_path / "new.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, live)
    assert len(list(f.poll())) == len(full)
    with open(live, "r+b") as out:
        out.truncate(fr.PREAMBLE.size)
    with pytest.warns(zltrace.ZltraceWarning, match="truncated"):
        assert list(f.poll()) == []
    with open(live, "ab") as out:
        out.write(data[fr.PREAMBLE.size :])
    assert len(list(f.poll())) == len(full)


def test_raw_positions_round_trip_and_are_checked() -> None:
    """A raw position survives its JSON form; malformed ids are refused."""
    pos = Position(1, 2, 300, 0, (4, 6, 9, 9))
    assert Position.from_json(pos.as_json()) == pos
    assert Position.from_json([1, 2, 3, 4]).done is None
    with pytest.raises(ValueError, match="pairs"):
        Position.from_json([1, 2, 3, 4, [1]])


def test_a_poll_left_mid_way_resumes_after_the_last_item_taken(tmp_path: Path) -> None:
    """A caller that stops pulling after two items gets the rest, once, on the next poll."""
    data, full = interleaved_trace(tmp_path / "src")
    live = tmp_path / "zltrace-x.zlog"
    live.write_bytes(data)
    f = Follower(live)
    poll = f.poll()
    taken = [next(poll), next(poll)]
    poll.close()
    rest = list(f.poll())
    assert [i.exchange.id for i in taken + rest] == [ex.id for ex in full]


def test_a_lone_dead_letter_file_is_followed_and_its_exchanges_not_repeated(
    tmp_path: Path,
) -> None:
    """A raw dead-letter file whose trace does not exist yet is followed on its own; when
    its records are copied into the new trace and it is removed, nothing comes twice."""
    data, full = interleaved_trace(tmp_path / "src")
    ends = record_ends(data)
    d = tmp_path / "live"
    d.mkdir()
    (d / "zltrace-x.deadletter.zlog").write_bytes(data[: ends[len(ends) // 2]])
    f = Follower(d)
    first = list(f.poll())
    assert first and {i.file for i in first} == {str(d / "zltrace-x.deadletter.zlog")}
    (d / "zltrace-x.zlog").write_bytes(data)
    os.unlink(d / "zltrace-x.deadletter.zlog")
    rest = list(f.poll())
    assert [i.exchange.id for i in first + rest] == [ex.id for ex in full]
