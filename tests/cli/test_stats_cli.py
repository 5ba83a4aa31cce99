"""`python -m zltrace stats PATH [--json]` and ``zltrace.summarize``: one-pass trace summaries."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import urllib3
from hypothesis import given
from hypothesis import strategies as st
from support.server import ScriptedServer, response, sse_response

import zltrace
from zltrace._cli import main
from zltrace._export.stats import format_stats
from zltrace._util import percentile


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def mixed_trace(tracer: zltrace.Tracer) -> tuple[str, int]:
    """Trace 2xx, 3xx, 4xx, 5xx, an SSE stream and a refused connection; return (path, port)."""
    replies = [
        response(200, b"0123456789", [("Content-Type", "text/plain")]),
        response(301, b"", [("Location", "/x")]),
        response(404, b"missing"),
        response(503, b"busy"),
        sse_response([b"data: 1\n\n", b"data: 2\n\n"]),
    ]
    with ScriptedServer(replies) as srv:
        pool = zltrace.wrap(
            urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False), tracer=tracer
        )
        pool.urlopen("POST", "/a", body=b"abcde")
        pool.urlopen("GET", "/b", redirect=False)
        pool.urlopen("GET", "/c")
        pool.urlopen("PUT", "/d", body=b"xyz")
        pool.urlopen("GET", "/e")
    refused = zltrace.wrap(
        urllib3.HTTPConnectionPool("127.0.0.1", _free_port(), retries=False), tracer=tracer
    )
    with pytest.raises(urllib3.exceptions.HTTPError):
        refused.urlopen("GET", "/f")
    assert tracer.close(timeout=10)
    return tracer.path, srv.port


def test_summary_counts_outcomes_statuses_hosts_and_bytes(tracer: zltrace.Tracer) -> None:
    """summarize() counts exchanges, outcomes, status classes, hosts and body bytes."""
    path, port = mixed_trace(tracer)
    doc = zltrace.summarize(zltrace.read(path))
    assert doc["exchanges"] == 6
    assert doc["outcomes"] == {"complete": 5, "error": 1}
    assert doc["status_classes"] == {"2xx": 2, "3xx": 1, "4xx": 1, "5xx": 1, "none": 1}
    assert doc["hosts"][f"127.0.0.1:{port}"] == 5 and sum(doc["hosts"].values()) == 6
    assert doc["request_bytes"] == 5 + 3
    assert doc["response_bytes"] == 10 + 0 + 7 + 4 + len(b"data: 1\n\ndata: 2\n\n")


def test_latency_percentiles_match_the_trace(tracer: zltrace.Tracer) -> None:
    """Duration, first-byte and head percentiles are nearest-rank over the recorded timings."""
    path, _ = mixed_trace(tracer)
    exchanges = list(zltrace.read(path))
    doc = zltrace.summarize(exchanges)
    ends = sorted(ex.timing.end for ex in exchanges)
    firsts = sorted(ex.timing.first_byte for ex in exchanges if ex.timing.first_byte is not None)
    heads = sorted(
        ex.timing.headers_received for ex in exchanges if ex.timing.headers_received is not None
    )
    for name, values in (("duration_ms", ends), ("ttfb_ms", firsts), ("headers_ms", heads)):
        dist = doc[name]
        assert dist["count"] == len(values)
        assert dist["max"] == round(values[-1] / 1e6, 3)
        assert dist["p50"] == round(values[math.ceil(len(values) / 2) - 1] / 1e6, 3)
        assert dist["p50"] <= dist["p95"] <= dist["p99"] <= dist["max"]
    assert doc["ttfb_ms"]["count"] == 4  # the 301 and the refused connection have no body


def test_empty_trace_summary_has_no_percentiles(tmp_path: Path) -> None:
    """A directory without trace files: zero exchanges, percentiles null, table still prints."""
    doc = zltrace.summarize(zltrace.read(tmp_path))
    assert doc["exchanges"] == 0 and doc["outcomes"] == {}
    assert doc["duration_ms"] == {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}
    table = format_stats(doc)
    assert "exchanges       0" in table and "duration" in table


@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=200), st.floats(0.01, 100))
def test_percentile_is_nearest_rank(values: list[int], pct: float) -> None:
    """percentile(): the smallest value with at least pct% of the values at or below it."""
    ordered = sorted(values)
    got = percentile(ordered, pct)
    assert got in ordered
    at_or_below = sum(v <= got for v in ordered)
    assert at_or_below >= pct / 100 * len(ordered) - 1e-9
    below = sum(v < got for v in ordered)
    assert below < pct / 100 * len(ordered) + 1e-9


def test_percentile_rejects_bad_input() -> None:
    """percentile() of nothing, or of an out-of-range percent, is a ValueError naming it."""
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="101"):
        percentile([1], 101)


def test_cli_stats_table(tracer: zltrace.Tracer, capsys: pytest.CaptureFixture[str]) -> None:
    """`stats PATH` prints a table: counts, classes, hosts, bytes and a latency block."""
    path, port = mixed_trace(tracer)
    assert main(["stats", path]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert lines[0].split() == ["exchanges", "6"]
    assert "complete 5, error 1" in captured.out
    assert "2xx 2, 3xx 1, 4xx 1, 5xx 1, none 1" in captured.out
    assert f"127.0.0.1:{port} 5" in captured.out
    header = next(line for line in lines if line.startswith("latency (ms)"))
    assert header.split()[2:] == ["count", "p50", "p95", "p99", "max"]
    duration = next(line for line in lines if line.startswith("duration"))
    assert duration.split()[1] == "6"


def test_cli_stats_json(tracer: zltrace.Tracer, capsys: pytest.CaptureFixture[str]) -> None:
    """`stats --json` prints the summarize() document, for a file or its directory."""
    path, _ = mixed_trace(tracer)
    assert main(["stats", "--json", path]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert doc == zltrace.summarize(zltrace.read(path))
    assert main(["stats", "--json", str(Path(path).parent)]) == 0
    assert json.loads(capsys.readouterr().out) == doc


def test_cli_stats_missing_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing trace path: an error naming it on stderr, nothing on stdout, exit 2."""
    assert main(["stats", str(tmp_path / "gone")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "gone" in captured.err


def test_cli_stats_reports_unreadable_lines_and_goes_on(
    tracer: zltrace.Tracer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line that is not JSON and a torn last line: warnings on stderr, the rest counted."""
    if tracer.config.format == "raw":
        pytest.skip("JSON lines; a damaged raw log: tests/read/test_rawlog.py")
    path, _ = mixed_trace(tracer)
    text = Path(path).read_text(encoding="utf-8").splitlines(keepends=True)
    Path(path).write_text(text[0] + "not json\n" + "".join(text[1:]) + '{"v":1,"id":', "utf-8")
    assert main(["stats", "--json", path, "--progress"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["exchanges"] == 6
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, captured.err
    assert ":2: not JSON" in warnings[0] and ":8: torn" in warnings[1]


def test_cli_stats_runs_as_a_module(tracer: zltrace.Tracer) -> None:
    """`python -m zltrace stats --json PATH` works as a program."""
    path, _ = mixed_trace(tracer)
    proc = subprocess.run(
        [sys.executable, "-m", "zltrace", "stats", "--json", path],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["exchanges"] == 6 and proc.stderr == ""


def test_progress_lines_every_thousand_exchanges(capsys: pytest.CaptureFixture[str]) -> None:
    """With progress on, a line goes to stderr every PROGRESS_EVERY items; none when off."""
    from zltrace._cli import commands as _cli

    assert list(_cli._counted(range(2500), True, "read")) == list(range(2500))
    assert capsys.readouterr().err.splitlines() == [
        "read 1000 exchanges...",
        "read 2000 exchanges...",
    ]
    assert len(list(_cli._counted(range(2500), False, "read"))) == 2500
    assert capsys.readouterr().err == ""
