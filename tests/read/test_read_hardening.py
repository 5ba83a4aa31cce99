"""The read side takes any file: read() skips a bad line and yields well-typed exchanges only.

Real trace lines (written by a tracer from loopback traffic) are damaged field by field, by
hand for the known cases and by hypothesis for the rest; read(), stats, the report and both
exports must finish on every one of them, with every undamaged line still read.

The module is about the JSON-lines format (its lines and its ``.bodies`` side file), so the
trace it damages is written with ``format="jsonl"`` whatever the default; the raw log's
damage is ``tests/read/test_rawlog.py``'s.
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.llm_fixtures import ANTHROPIC_TEXT
from support.server import ScriptedServer, gzip_bytes, response, sse_response

import zltrace
from zltrace._cli import main
from zltrace._export.stats import format_stats
from zltrace._format import INLINE_MAX

OUTCOMES = {"complete", "error", "abandoned", "incomplete"}
FRAMINGS = {"length", "chunked", "close", "none"}


# -- one real trace for the module ----------------------------------------------------------


class Trace:
    """A trace file's lines and its side file, as a tracer wrote them."""

    def __init__(self, lines: list[bytes], side_name: str, side: bytes) -> None:
        self.lines = lines
        self.side_name = side_name
        self.side = side
        self.records = [json.loads(line) for line in lines]

    def index(self, pred: Callable[[dict[str, Any]], bool]) -> int:
        """The first line whose record satisfies ``pred``."""
        return next(i for i, rec in enumerate(self.records) if pred(rec))

    def write(self, directory: Path, lines: list[bytes], dead: list[bytes] | None = None) -> Path:
        """``lines`` as the trace file in ``directory`` (with the side file and dead letters)."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / self.side_name).write_bytes(self.side)
        path = directory / (self.side_name.removesuffix(".bodies") + ".jsonl")
        path.write_bytes(b"".join(lines))
        if dead is not None:
            path.with_name(path.name.removesuffix(".jsonl") + ".deadletter.jsonl").write_bytes(
                b"".join(dead)
            )
        return path


def _traffic(tracer: zltrace.Tracer) -> None:
    big = bytes(range(256)) * (INLINE_MAX // 256 + 10)
    stepped = b"s" * 600  # read a byte at a time: its arrivals go to the side file
    replies = [
        response(
            200, json.dumps(ANTHROPIC_TEXT.message).encode(), [("Content-Type", "application/json")]
        ),
        response(200, big),
        response(200, stepped, framing="chunked"),
        response(200, gzip_bytes(b"zipped " * 50), [("Content-Encoding", "gzip")]),
        sse_response(ANTHROPIC_TEXT.events),
        response(404, b"not found", [("Set-Cookie", "a=b; Expires=Wed, 09 Jun 2021 10:18:14 GMT")]),
    ]
    with ScriptedServer(replies, keep_alive=True) as srv:
        pool = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port, retries=False))
        pool.urlopen(
            "POST",
            "/v1/messages?q=1",
            body=json.dumps({"model": "m"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert pool.urlopen("PUT", "/big", body=big).status == 200
        r = pool.urlopen("GET", "/stepped", preload_content=False)
        for _ in r.stream(1):
            pass
        r.release_conn()
        assert pool.urlopen("GET", "/gz").status == 200
        assert pool.urlopen("POST", "/sse", body=b"{}").status == 200
        assert pool.urlopen("GET", "/missing", headers={"Cookie": "c=d"}).status == 404
        pool.close()
    refused = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", 1, retries=False))
    with pytest.raises(urllib3.exceptions.HTTPError):
        refused.urlopen("GET", "/refused")


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Trace:
    """A real trace: inline and side-file bodies, side-file arrivals, SSE, gzip, a refusal."""
    directory = tmp_path_factory.mktemp("real")
    tracer = zltrace.Tracer(zltrace.Config(dir=str(directory), flush_ms=10, format="jsonl"))
    try:
        _traffic(tracer)
    finally:
        assert tracer.close(timeout=10)
    path = Path(tracer.path)
    side = path.with_suffix(".bodies")
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 7
    return Trace(lines, side.name, side.read_bytes())


# -- what every consumer must survive -------------------------------------------------------


def _read_quietly(
    path: Path, **kwargs: Any
) -> tuple[list[zltrace.Exchange], list[zltrace.SkippedLine]]:
    skipped: list[zltrace.SkippedLine] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zltrace.ZltraceWarning)
        got = list(zltrace.read(path, skipped=skipped, **kwargs))
    return got, skipped


def assert_well_typed(ex: zltrace.Exchange) -> None:
    """Every field of ``ex`` has the type (and range) its class states."""
    assert type(ex.id) is str and type(ex.logical_id) is str
    assert isinstance(ex.started_at, datetime) and ex.started_at.tzinfo is not None
    rq = ex.request
    assert all(type(v) is str for v in (rq.method, rq.url, rq.http_version))
    assert all(type(n) is str and type(v) is str for n, v in rq.headers)
    assert rq.body is None or type(rq.body) is bytes
    rs = ex.response
    if rs is not None:
        assert type(rs.status) is int and 100 <= rs.status <= 999
        assert type(rs.reason) is str and type(rs.http_version) is str
        assert all(type(n) is str and type(v) is str for n, v in rs.headers)
        assert type(rs.raw_body) is bytes and rs.framing in FRAMINGS
        assert all(type(o) is int and type(t) is int and o >= 0 and t >= 0 for o, t in rs.reads)
    assert ex.outcome in OUTCOMES
    assert ex.error is None or (type(ex.error.type) is str and type(ex.error.message) is str)
    t = ex.timing
    assert all(
        v is None or (type(v) is int and 0 <= v < 2**63)
        for v in (t.request_sent, t.headers_received, t.first_byte, t.end)
    )
    assert t.end is not None


def consume(exchanges: list[zltrace.Exchange]) -> None:
    """stats, the report and both exports finish, and the exports are valid UTF-8 JSON."""
    for ex in exchanges:
        assert_well_typed(ex)
        ex.message(), ex.usage(), ex.model(), ex.sse_events()
    format_stats(zltrace.summarize(exchanges)).encode("utf-8")
    page = io.StringIO()
    assert zltrace.write_report(exchanges, page) == len(exchanges)
    page.getvalue().encode("utf-8")
    har = io.StringIO()
    assert zltrace.export_har(exchanges, har) == len(exchanges)
    json.loads(har.getvalue().encode("utf-8"))
    claude = io.StringIO()
    assert zltrace.export_claude_trace(exchanges, claude) == len(exchanges)
    for line in claude.getvalue().encode("utf-8").splitlines():
        json.loads(line)


def _line(rec: Any) -> bytes:
    return json.dumps(rec).encode() + b"\n"


def _damaged(trace: Trace, index: int, change: Callable[[dict[str, Any]], None]) -> list[bytes]:
    rec = copy.deepcopy(trace.records[index])
    change(rec)
    return [*trace.lines[:index], _line(rec), *trace.lines[index + 1 :]]


def _is_skipped_and_rest_read(trace: Trace, path: Path, index: int) -> None:
    got, skipped = _read_quietly(path)
    assert [(s.line) for s in skipped] == [index + 1]
    want = [rec["id"] for i, rec in enumerate(trace.records) if i != index]
    assert [ex.id for ex in got] == want
    consume(got)


# -- the damaged lines known to have crashed the read side ----------------------------------


def _side_body(rec: dict[str, Any]) -> bool:
    rs = rec["response"]
    return rs is not None and "offset" in rs["body"]


def _inline_request(rec: dict[str, Any]) -> bool:
    body = rec["request"]["body"]
    return body is not None and "text" in body


def _with_response(rec: dict[str, Any]) -> bool:
    return rec["response"] is not None


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(rec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        obj = rec
        for key in parents:
            obj = obj[key]
        obj[last] = value

    return change


KNOWN = {
    "inline body text is a number": (_inline_request, _set("request.body.text", 5)),
    "side file name is a list": (_side_body, _set("response.body.file", [])),
    "side file offset past int64": (_side_body, _set("response.body.offset", 2**63)),
    "body size of a terabyte": (_side_body, _set("response.body.size", 10**12)),
    "status is a string": (_with_response, _set("response.status", "200")),
    "header name is a number": (_with_response, _set("response.headers", [[5, "x"]])),
    "url is null": (_with_response, _set("request.url", None)),
    "timing end is a string": (_with_response, _set("timing.end", "5")),
    "started_at in the year 9999 and a long exchange": (
        _with_response,
        lambda rec: rec.update(
            started_at="9999-12-31T23:59:59.999999Z",
            timing={
                "request_sent": None,
                "headers_received": None,
                "first_byte": None,
                "end": 2**62,
            },
        ),
    ),
    "reads hold a float": (_with_response, _set("response.reads", [1, 0.5])),
    "error message is a list": (_with_response, _set("error", {"type": "E", "message": []})),
    "version is true": (_with_response, _set("v", True)),
    "status nested almost as deep as the parser goes": (
        _with_response,
        _set("response.status", json.loads("[" * 900 + "]" * 900)),
    ),
    "url is a list of five million strings": (
        _with_response,
        _set("request.url", 5_000_000 * ["x"]),
    ),
}


@pytest.mark.parametrize("case", list(KNOWN))
def test_a_known_bad_line_is_skipped_and_the_rest_read(
    trace: Trace, tmp_path: Path, case: str
) -> None:
    """Each known bad line is skipped with a SkippedLine; every other line is read and used."""
    where, change = KNOWN[case]
    index = trace.index(where)
    path = trace.write(tmp_path, _damaged(trace, index, change))
    _is_skipped_and_rest_read(trace, path, index)


def test_a_line_nested_too_deeply_is_skipped(trace: Trace, tmp_path: Path) -> None:
    """A line of 200,000 '[' is skipped as not JSON; the lines after it are read."""
    lines = [trace.lines[0], b"[" * 200_000 + b"\n", *trace.lines[1:]]
    path = trace.write(tmp_path, lines)
    got, skipped = _read_quietly(path)
    assert [s.line for s in skipped] == [2]
    assert [ex.id for ex in got] == [rec["id"] for rec in trace.records]


def test_a_dead_letter_id_that_is_a_list_is_skipped(trace: Trace, tmp_path: Path) -> None:
    """A dead-letter line whose id is a list is skipped; the trace file is read after it."""
    bad = copy.deepcopy(trace.records[0])
    bad["id"] = ["a"]
    path = trace.write(tmp_path, trace.lines, dead=[_line(bad), trace.lines[0]])
    got, skipped = _read_quietly(path)
    assert [(Path(s.file).name.endswith(".deadletter.jsonl"), s.line) for s in skipped] == [
        (True, 1)
    ]
    assert [ex.id for ex in got] == [rec["id"] for rec in trace.records]  # first one once
    consume(got)


def test_a_line_over_the_length_limit_is_skipped(trace: Trace, tmp_path: Path) -> None:
    """A line longer than max_line_bytes is skipped unparsed; the next lines are read."""
    limit = max(len(line) for line in trace.lines)
    long_line = b'{"v":1,"pad":"' + b"x" * limit + b'"}\n'
    path = trace.write(tmp_path, [long_line, *trace.lines])
    got, skipped = _read_quietly(path, max_line_bytes=limit)
    assert [s.line for s in skipped] == [1] and "longer than" in skipped[0].reason
    assert [ex.id for ex in got] == [rec["id"] for rec in trace.records]


def test_parts_that_ask_for_more_than_the_side_file_holds_are_refused(
    trace: Trace, tmp_path: Path
) -> None:
    """A spilled body whose parts repeat one extent past its size is skipped, nothing read."""
    index = trace.index(_side_body)

    def change(rec: dict[str, Any]) -> None:
        body = rec["response"]["body"]
        extent = [body.pop("offset"), body["size"]]
        body["parts"] = [extent] * 100_000
        body["size"] *= 100_000

    path = trace.write(tmp_path, _damaged(trace, index, change))
    _is_skipped_and_rest_read(trace, path, index)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_side_file_that_is_a_fifo_is_refused_without_blocking(
    trace: Trace, tmp_path: Path
) -> None:
    """A line naming a FIFO as its side file is skipped; opening it does not wait for a writer."""
    index = trace.index(_side_body)
    os.mkfifo(tmp_path / "pipe.bodies")
    path = trace.write(tmp_path, _damaged(trace, index, _set("response.body.file", "pipe.bodies")))
    _is_skipped_and_rest_read(trace, path, index)


def test_read_refuses_bad_limits_at_once(tmp_path: Path) -> None:
    """Limits below 1 are refused when read() is called, as a ZltraceError and ValueError."""
    for kwargs in ({"max_decoded_bytes": 0}, {"max_decode_ratio": -1}, {"max_line_bytes": 0}):
        with pytest.raises(zltrace.ZltraceError) as caught:
            zltrace.read(tmp_path, **kwargs)
        assert isinstance(caught.value, ValueError) and str(next(iter(kwargs.values()))) in str(
            caught.value
        )


# -- values a well-typed line may hold, which consumers must still survive ------------------


def test_exports_write_lone_surrogates_as_escapes(trace: Trace, tmp_path: Path) -> None:
    """An error message with lone surrogates (the writer keeps them) exports as valid UTF-8."""
    index = trace.index(lambda rec: rec["error"] is not None)
    path = trace.write(
        tmp_path,
        _damaged(trace, index, _set("error.message", "bad name: caf\udce9 / \ud800")),
    )
    got, skipped = _read_quietly(path)
    assert skipped == [] and "\ud800" in got[index].error.message  # type: ignore[union-attr]
    with open(tmp_path / "out.har", "w", encoding="utf-8") as out:
        zltrace.export_har(got, out)
    entries = json.loads((tmp_path / "out.har").read_text("utf-8"))["log"]["entries"]
    assert entries[index]["_zltrace"]["error"]["message"] == "bad name: caf\udce9 / \ud800"
    with open(tmp_path / "out.jsonl", "w", encoding="utf-8") as out:
        zltrace.export_claude_trace(got, out)
    assert "\\ud800" in (tmp_path / "out.jsonl").read_text("utf-8")


@pytest.mark.parametrize(
    "change",
    [
        _set("request.url", "http://[::1/unclosed?q=1"),
        _set("request.body", {"size": 10_000, "text": "[" * 5000 + "]" * 5000}),
        _set("response.headers", [["Set-Cookie", "a=b; Expires=Fri, 31 Dec 9999 23:30:00 -0100"]]),
        _set("request.url", "http://\ud800.example/"),
        lambda rec: rec["response"].update(
            headers=[["Content-Type", "text/plain; charset=idna"]],
            body={"size": 6, "text": "xn--zz"},  # not punycode: UnicodeError
        ),
    ],
    ids=[
        "unclosed IPv6 URL",
        "request body nested deeper than the parser goes",
        "cookie expiring after year 9999 in UTC",
        "host with a lone surrogate",
        "a charset that raises UnicodeError",
    ],
)
def test_odd_but_well_typed_values_export(
    trace: Trace, tmp_path: Path, change: Callable[[dict[str, Any]], None]
) -> None:
    """A well-typed line with an odd value is read and every consumer handles it."""
    index = trace.index(_with_response)
    path = trace.write(tmp_path, _damaged(trace, index, change))
    got, skipped = _read_quietly(path)
    assert skipped == [] and len(got) == len(trace.lines)
    consume(got)


# -- every field, damaged in turn ------------------------------------------------------------

HOSTILE_VALUES: list[Any] = [
    None, True, 0, -1, 2**63, 10**12, 1.5, float("nan"), "", "200", "\ud800", "../x",
    [], ["a"], [[1, 2]], [[5, "x"]], {}, {"size": 3, "file": "x", "offset": 0},
]  # fmt: skip


def _every_damage(records: list[dict[str, Any]]) -> Iterator[bytes]:
    """Each record with each of its fields in turn deleted or set to each hostile value."""
    for rec in records:
        for path in _paths(rec):
            for value in [_DELETE, *HOSTILE_VALUES]:
                damaged = copy.deepcopy(rec)
                parent = damaged
                for key in path[:-1]:
                    parent = parent[key]
                if value is _DELETE:
                    if not isinstance(parent, dict):
                        continue
                    del parent[path[-1]]
                else:
                    parent[path[-1]] = value
                yield _line(damaged)


_DELETE = object()


def test_every_field_damaged_in_turn(trace: Trace, tmp_path: Path) -> None:
    """Thousands of lines, each a real one with one field damaged: read and consumed whole."""
    lines = list(_every_damage(trace.records))
    path = trace.write(tmp_path, lines)
    got, skipped = _read_quietly(path)
    assert len(got) + len(skipped) == len(lines) and len(skipped) > len(lines) // 2
    consume(got)


def test_the_cli_reads_and_exports_a_damaged_trace(trace: Trace, tmp_path: Path) -> None:
    """stats, report and both exports from the command line finish on a damaged trace."""
    path = str(trace.write(tmp_path, list(_every_damage(trace.records[:2]))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zltrace.ZltraceWarning)
        assert main(["stats", path]) == 0
        assert main(["stats", "--json", path]) == 0
        assert main(["report", path, "-o", str(tmp_path / "r.html")]) == 0
        assert main(["export", "--har", path, "-o", str(tmp_path / "t.har")]) == 0
        assert main(["export", "--claude-trace", path, "-o", str(tmp_path / "t.jsonl")]) == 0
    json.loads((tmp_path / "t.har").read_bytes())


# -- any damage, by hypothesis ---------------------------------------------------------------

_HOSTILE = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            False,
            0,
            -1,
            1,
            2**63 - 1,
            2**63,
            2**64,
            -(2**63) - 1,
            10**12,
            10**30,
            1.5,
            float("nan"),
            float("inf"),
            "",
            "x",
            "200",
            "5",
            "\ud800",
            "../x",
            ".bodies",
            [],
            ["a"],
            [1, 2],
            [[1, 2]],
            [["a", "b"]],
            {},
            {"a": 1},
            {"size": 1, "text": "x"},
            {"size": 3, "file": "x", "offset": 0},
            {"count": 10**9, "file": "x", "offset": 0},
        ]
    ),
    st.integers(),
    st.text(max_size=12),
    st.recursive(
        st.none() | st.integers() | st.text(max_size=4),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
        max_leaves=8,
    ),
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj[:4]):
            yield (*prefix, i)
            yield from _paths(value, (*prefix, i))


@st.composite
def damaged_line(draw: st.DrawFn, records: list[dict[str, Any]]) -> tuple[int, bytes]:
    """One record of the trace with one field replaced, deleted, or one side file name set."""
    index = draw(st.integers(0, len(records) - 1))
    rec = copy.deepcopy(records[index])
    path = draw(st.sampled_from(list(_paths(rec))))
    parent = rec
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(_HOSTILE)
    return index, _line(rec)


@st.composite
def damaged_trace(draw: st.DrawFn, trace: Trace) -> tuple[int, list[bytes], bool]:
    """The trace with one line damaged (structurally or as raw bytes), maybe as a dead letter."""
    if draw(st.integers(0, 4)) == 0:
        index = draw(st.integers(0, len(trace.lines) - 1))
        original = trace.lines[index]
        line = draw(
            st.one_of(
                st.binary(max_size=64).map(lambda b: b.replace(b"\n", b"") + b"\n"),
                st.integers(1, len(original) - 1).map(lambda n: original[:n] + b"\n"),
                st.integers(1, 5000).map(lambda n: b"[" * n + b"\n"),
            )
        )
    else:
        index, line = draw(damaged_line(trace.records))
    lines = [*trace.lines[:index], line, *trace.lines[index + 1 :]]
    return index, lines, draw(st.booleans())


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_damaged_line_leaves_every_consumer_standing(trace: Trace, data: st.DataObject) -> None:
    """read(), stats, report and both exports finish on a trace with any one line damaged."""
    index, lines, as_dead_letter = data.draw(damaged_trace(trace))
    with tempfile.TemporaryDirectory() as tmp:
        if as_dead_letter:
            path = trace.write(Path(tmp), trace.lines, dead=[lines[index]])
        else:
            path = trace.write(Path(tmp), lines)
        got, skipped = _read_quietly(path)
        consume(got)
    if as_dead_letter:  # a dead letter read stands for the trace line of the same id
        assert {rec["id"] for rec in trace.records} <= {ex.id for ex in got}
    else:
        others = [ex.id for ex in got if ex.source[1] != index + 1]
        assert others == [rec["id"] for i, rec in enumerate(trace.records) if i != index]
    assert len(skipped) <= 1


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(keep=st.integers(0, 2**20))
def test_a_truncated_side_file_skips_only_the_lines_it_cannot_serve(
    trace: Trace, tmp_path_factory: pytest.TempPathFactory, keep: int
) -> None:
    """A side file cut short: lines whose bodies it no longer holds are skipped, none raise."""
    directory = tmp_path_factory.mktemp("cut")
    path = trace.write(directory, trace.lines)
    side = directory / trace.side_name
    side.write_bytes(trace.side[: keep % (len(trace.side) + 1)])
    got, skipped = _read_quietly(path)
    consume(got)
    assert len(got) + len(skipped) == len(trace.lines)
    shutil.rmtree(directory)
