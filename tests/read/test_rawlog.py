"""Reading a raw event log: the format byte for byte, hostile bytes, incremental reading.

Traces are recorded for real (a loopback server, a raw-format tracer), then damaged the way a
crash, a bad disk or an attacker would: torn tails, flipped bytes, lengths and sizes that lie,
records of kinds no reader knows, garbage between records. ``read()`` must never raise, must
warn for what it skips, and must keep every exchange the damage did not touch.
"""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from pathlib import Path

import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.server import ScriptedServer, chunk_frame, response, send

import zltrace
from zltrace import _format_raw as fr
from zltrace._cli.commands import main
from zltrace._read.rawlog import RawLog

BODIES = [b"alpha" * 50, b"\x00\xff binary \xfe", b"", b"last one"]


def _record(path: Path, n: int = len(BODIES)) -> str:
    """A raw trace of ``n`` POSTs answered with BODIES (the third chunked); its path."""
    replies = []
    for i in range(n):
        body = BODIES[i % len(BODIES)]
        if i % len(BODIES) == 2:
            replies.append(
                [
                    send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
                    send(chunk_frame(b"chunk-one") + chunk_frame(b"-two") + chunk_frame(b"")),
                ]
            )
        else:
            replies.append(response(200, body))
    t = zltrace.Tracer(zltrace.Config(dir=str(path), flush_ms=10, format="raw"))
    with ScriptedServer(replies, keep_alive=True) as srv:
        pool = t.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port, retries=False))
        for i in range(n):
            pool.urlopen("POST", f"/r/{i}", body=b"req-%d" % i).data  # noqa: B018
        pool.close()
    assert t.close(timeout=10)
    return t.path


def _read(path: str | Path) -> tuple[list[zltrace.Exchange], list[zltrace.SkippedLine]]:
    skipped: list[zltrace.SkippedLine] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exchanges = list(zltrace.read(path, skipped=skipped))
    assert len(caught) == len(skipped)
    for ex in exchanges:  # every consumer's values are there and well typed
        assert isinstance(ex.request.url, str)
        if ex.response is not None:
            assert isinstance(ex.response.raw_body, bytes)
    return exchanges, skipped


def _records(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, kind, total size) of each record after the preamble, by their lengths."""
    out, pos = [], fr.PREAMBLE.size
    while pos < len(data):
        _, kind, _, n, _, _, _ = fr.RECORD.unpack_from(data, pos)
        out.append((pos, kind, fr.RECORD.size + n + fr.CRC.size))
        pos += fr.RECORD.size + n + fr.CRC.size
    return out


@pytest.fixture
def trace(tmp_path: Path) -> str:
    """A raw trace of four exchanges."""
    return _record(tmp_path / "t")


def test_the_file_is_laid_out_as_documented(trace: str) -> None:
    """Preamble, then records whose header, payload and checksum are where the table says."""
    data = Path(trace).read_bytes()
    magic, version, flags, reserved = fr.PREAMBLE.unpack_from(data, 0)
    assert (magic, version, flags, reserved) == (fr.MAGIC, fr.RAW_VERSION, 0, 0)
    assert [row[2] for row in fr.RECORD_TABLE] == [
        "sync",
        "kind",
        "flags",
        "length",
        "seq",
        "exchange",
        "t",
        "payload",
        "crc32",
    ]
    recs = _records(data)
    assert sum(size for _, _, size in recs) == len(data) - fr.PREAMBLE.size
    assert recs[0][1] == fr.FILE and recs[-1][1] == fr.STOP
    info = json.loads(data[recs[0][0] + fr.RECORD.size : recs[0][0] + recs[0][2] - 4])
    assert info["format"] == "zltrace-raw" and info["version"] == fr.RAW_VERSION
    seqs = []
    for off, _kind, size in recs:
        sync, _, _, _, seq, _, _ = fr.RECORD.unpack_from(data, off)
        assert sync == fr.SYNC
        (crc,) = fr.CRC.unpack_from(data, off + size - 4)
        assert crc == zlib.crc32(data[off + 2 : off + size - 4])
        seqs.append(seq)
    assert seqs == list(range(len(seqs)))  # FILE is 0, then 1, 2, ... without gaps
    kinds = {k for _, k, _ in recs}
    assert {fr.START, fr.REQHEAD, fr.SEND, fr.HEAD, fr.DATA} <= kinds


def test_a_raw_trace_reads_back_like_a_jsonl_one(tmp_path: Path) -> None:
    """The same traffic in both formats gives the same exchanges (ids and times aside)."""
    raw, _ = _read(_record(tmp_path / "raw"))
    assert [ex.response.raw_body for ex in raw if ex.response] == [
        BODIES[0],
        BODIES[1],
        b"chunk-one-two",
        BODIES[3],
    ]
    assert [ex.request.body for ex in raw] == [b"req-%d" % i for i in range(4)]
    assert {ex.outcome for ex in raw} == {"complete"}
    assert [ex.response.framing for ex in raw if ex.response] == [
        "length",
        "length",
        "chunked",
        "length",
    ]


def test_export_jsonl_writes_lines_that_read_back_the_same(trace: str, tmp_path: Path) -> None:
    """`export --jsonl` of a raw log: version-1 lines, read back to the same exchanges."""
    out = tmp_path / "out.jsonl"
    assert main(["export", "--jsonl", trace, "-o", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 and all(json.loads(line)["v"] == 1 for line in lines)
    again, skipped = _read(out)
    first, _ = _read(trace)
    assert not skipped
    for a, b in zip(first, again):
        assert (a.id, a.request.url, a.request.body, a.outcome, a.timing) == (
            b.id,
            b.request.url,
            b.request.body,
            b.outcome,
            b.timing,
        )
        assert a.response is not None and b.response is not None
        assert (a.response.raw_body, a.response.reads) == (b.response.raw_body, b.response.reads)


def test_a_torn_tail_is_skipped_with_a_warning(trace: str) -> None:
    """Every cut of the last record: the exchanges before it are read, one warning."""
    data = Path(trace).read_bytes()
    off, _, size = _records(data)[-2]  # the last exchange's last record (before STOP)
    for cut in (1, fr.RECORD.size - 1, fr.RECORD.size + 1, size - 1):
        Path(trace).write_bytes(data[: off + cut])
        exchanges, skipped = _read(trace)
        assert len(skipped) == 1 and "torn" in skipped[0].reason
        assert len(exchanges) == 4  # the last one incomplete: its end was cut off
        assert [ex.outcome for ex in exchanges][:3] == ["complete"] * 3


@pytest.mark.parametrize(
    "damage",
    [
        "flip a payload byte",
        "flip the sync",
        "length says 4 GiB",
        "length one too long",
        "garbage between records",
        "unknown kind",
        "future version",
    ],
)
def test_damage_is_skipped_and_the_rest_read(trace: str, damage: str) -> None:
    """A damaged or unknown record costs that record, never the read (warned, counted)."""
    data = bytearray(Path(trace).read_bytes())
    recs = _records(bytes(data))
    off, _, size = next(r for r in recs if r[1] == fr.DATA)  # the first response's body
    if damage == "flip a payload byte":
        data[off + fr.RECORD.size] ^= 0xFF
    elif damage == "flip the sync":
        data[off] ^= 0xFF
    elif damage == "length says 4 GiB":
        struct.pack_into("<I", data, off + 4, 0xFFFFFFFF)
    elif damage == "length one too long":
        struct.pack_into("<I", data, off + 4, size - fr.RECORD.size - fr.CRC.size + 1)
    elif damage == "garbage between records":
        data[off:off] = b"\xa7\x5a" + b"\x00" * 40 + b"\xa7\x5a\x05"
    elif damage == "unknown kind":
        payload = b"from a newer writer"
        head = fr.RECORD.pack(fr.SYNC, 200, 0, len(payload), 10**9, 1, 0)
        crc = zlib.crc32(head[2:] + payload)
        data[off:off] = head + payload + fr.CRC.pack(crc)
    elif damage == "future version":
        struct.pack_into("<H", data, 8, fr.RAW_VERSION + 1)
    Path(trace).write_bytes(bytes(data))
    exchanges, skipped = _read(trace)
    if damage == "future version":
        assert exchanges == [] and "version" in skipped[0].reason
        return
    if damage == "unknown kind":
        assert not skipped  # skipped by its length, silently: room for new kinds
        assert len(exchanges) == 4
        return
    assert len(skipped) == 1, skipped
    assert "damaged" in skipped[0].reason
    assert len(exchanges) == 4
    # the first exchange lost (at most) its body record; the other three are untouched
    assert [ex.response.raw_body for ex in exchanges[1:] if ex.response] == [
        BODIES[1],
        b"chunk-one-two",
        BODIES[3],
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_mutation_leaves_every_consumer_standing(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Random bytes overwritten, inserted or cut anywhere: read(), stats, report and the
    exports all finish."""
    base = tmp_path_factory.mktemp("mut")
    original = Path(_record(base / "t", 2)).read_bytes()
    buf = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(buf)))
        what = data.draw(st.sampled_from(["set", "insert", "cut"]))
        junk = data.draw(st.binary(min_size=1, max_size=16))
        if what == "set":
            buf[pos : pos + len(junk)] = junk
        elif what == "insert":
            buf[pos:pos] = junk
        else:
            del buf[pos : pos + len(junk)]
    path = base / "damaged.zlog"
    path.write_bytes(bytes(buf))
    _read(path)
    out = base / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for argv in (
            ["stats", "--json", str(path)],
            ["report", str(path), "-o", str(out)],
            ["export", "--har", str(path), "-o", str(out)],
            ["export", "--claude-trace", str(path), "-o", str(out)],
            ["export", "--jsonl", str(path), "-o", str(out)],
        ):
            assert main(argv) == 0


def test_incremental_reading_returns_exchanges_as_they_end(tmp_path: Path) -> None:
    """poll() on a growing file: what ended so far, then more; finish() the rest."""
    data = Path(_record(tmp_path / "t")).read_bytes()
    recs = _records(data)
    live = tmp_path / "live.zlog"
    log = RawLog([str(live)])
    live.write_bytes(b"")
    assert log.poll() == []
    seen: list[str] = []
    pos = 0
    for off, _, size in recs:
        end = off + size
        # write each record in two pieces: a poll between them must wait for the rest
        with open(live, "ab") as f:
            f.write(data[pos : off + size // 2])
        seen += [ex.request.url for ex in log.poll()]
        with open(live, "ab") as f:
            f.write(data[off + size // 2 : end])
        pos = end
        seen += [ex.request.url for ex in log.poll()]
    assert len(seen) == 4
    assert log.finish() == []  # STOP ended them all already


def test_an_exchange_open_at_the_end_is_incomplete_with_its_partial_body(trace: str) -> None:
    """The log stops mid-body (a kill): the exchange reads back incomplete, body so far."""
    data = Path(trace).read_bytes()
    recs = _records(data)
    first_data = next(i for i, r in enumerate(recs) if r[1] == fr.DATA)
    off, _, size = recs[first_data]
    Path(trace).write_bytes(data[: off + size])  # up to and with the first body record
    exchanges, skipped = _read(trace)
    assert not skipped
    [ex] = exchanges
    assert ex.outcome == "complete"  # its Content-Length was reached in one read
    cut = next(i for i, r in enumerate(recs) if r[1] == fr.HEAD)
    off, _, size = recs[cut]
    Path(trace).write_bytes(data[: off + size])  # the head, no body yet
    [ex], _ = _read(trace)
    assert ex.outcome == "incomplete" and ex.response is not None
    assert ex.response.raw_body == b""


def test_bodies_are_read_from_the_file_when_asked(tmp_path: Path) -> None:
    """An exchange holds extents, not bytes: a 2 MB body costs nothing until .raw_body."""
    big = bytes(range(256)) * 8192
    t = zltrace.Tracer(zltrace.Config(dir=str(tmp_path), flush_ms=10, format="raw"))
    with ScriptedServer([response(200, big)]) as srv:
        pool = t.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
        assert pool.urlopen("GET", "/big").data == big
        pool.close()
    assert t.close(timeout=10)
    [ex] = zltrace.read(t.path)
    assert ex.response is not None
    held = ex.response._raw_body  # what the exchange keeps until asked
    assert not isinstance(held, bytes) and len(held) == len(big)
    Path(t.path).unlink()  # still readable: the descriptor is shared, not the name
    assert ex.response.raw_body == big


def test_records_split_between_dead_letter_and_trace_are_merged(trace: str) -> None:
    """An exchange whose records are partly in the dead-letter file reads back whole, and
    records found in both files are used once."""
    data = Path(trace).read_bytes()
    recs = _records(data)
    header = data[: recs[1][0]]  # preamble and FILE record
    mid = recs[len(recs) // 2][0]
    dead = trace[: -len(".zlog")] + ".deadletter.zlog"
    # the dead-letter file holds the first half; the trace both halves (a crash between
    # the copy back and the dead-letter file's removal)
    Path(dead).write_bytes(data[:mid])
    exchanges, skipped = _read(trace)
    assert not skipped and len(exchanges) == 4
    # now the first half only in the dead-letter file, the second only in the trace
    Path(trace).write_bytes(header + data[mid:])
    exchanges, skipped = _read(trace)
    assert not skipped and len(exchanges) == 4
    assert {ex.outcome for ex in exchanges} == {"complete"}
    assert [ex.request.body for ex in exchanges] == [b"req-%d" % i for i in range(4)]


def test_credentials_never_reach_a_raw_log(tmp_path: Path) -> None:
    """Request and response heads are redacted before they are written; bodies stay raw."""
    reply = response(200, b"body", [("Set-Cookie", "sid=cookie-secret")])
    t = zltrace.Tracer(zltrace.Config(dir=str(tmp_path), flush_ms=10, format="raw"))
    with ScriptedServer([reply]) as srv:
        pool = t.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
        r = pool.urlopen(
            "POST",
            "/x?api_key=query-secret&n=1",
            body=b"raw body kept",
            headers={"Authorization": "Bearer header-secret", "X-Api-Key": "key-secret"},
        )
        assert r.data == b"body"
        pool.close()
    assert t.close(timeout=10)
    data = Path(t.path).read_bytes()
    for secret in (b"query-secret", b"header-secret", b"key-secret", b"cookie-secret"):
        assert secret not in data
    assert b"raw body kept" in data
    [ex] = zltrace.read(t.path)
    assert ex.request.header(
        "authorization",
    ).startswith("<redacted sha256:")  # type: ignore[union-attr]
    assert "api_key=redacted-sha256-" in ex.request.url and "n=1" in ex.request.url


def test_stats_cli_on_a_damaged_raw_log_warns_and_goes_on(
    trace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stats` over a raw log with a damaged record and a torn tail: warnings, then figures."""
    data = bytearray(Path(trace).read_bytes())
    off, _, _ = next(r for r in _records(bytes(data)) if r[1] == fr.DATA)
    data[off + fr.RECORD.size] ^= 0xFF
    Path(trace).write_bytes(bytes(data) + b"\xa7\x5a\x05")
    assert main(["stats", "--json", trace]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["exchanges"] == 4
    warned = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warned) == 2 and "damaged" in warned[0] and "torn" in warned[1]
