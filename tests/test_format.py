"""The trace format: JSON Schema, side file, permissions, reader robustness, vendoring."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import urllib3
from support import ROOT, TESTS
from support.server import ScriptedServer, response, send
from support.trace import records

import zltrace
from zltrace._format import INLINE_MAX


@pytest.fixture
def trace_format() -> str:
    """The JSON-lines trace's own tests (the raw event log's: tests/read/test_rawlog.py)."""
    return "jsonl"


@pytest.fixture(params=["jsonl", "raw"])
def any_format_tracer(trace_dir: Path, request: pytest.FixtureRequest) -> Iterator[zltrace.Tracer]:
    """A tracer of each format, for what both formats promise alike."""
    t = zltrace.Tracer(zltrace.Config(dir=str(trace_dir), flush_ms=10, format=request.param))
    yield t
    t.close(timeout=10)


def _schema() -> dict[str, object]:
    text = resources.files("zltrace").joinpath("trace-line.schema.json").read_text()
    schema: dict[str, object] = json.loads(text)
    return schema


def _traffic(tracer: zltrace.Tracer) -> dict[str, bytes]:
    big = bytes(range(256)) * (INLINE_MAX // 256 + 10)
    bodies = {"/text": "héllo".encode(), "/bin": b"\x00\xff\xfe", "/big": big, "/empty": b""}
    replies = [response(200, bodies[p]) for p in bodies]
    replies.append([send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), send(b"")])
    with ScriptedServer(replies, keep_alive=True) as srv:
        pool = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port, retries=False))
        for path in bodies:
            assert pool.urlopen("POST", path, body=bodies[path]).data == bodies[path]
        pool.close()
    return bodies


def test_every_line_validates_against_the_shipped_schema(tracer: zltrace.Tracer) -> None:
    """Lines (inline text, base64, side-file bodies) validate against the packaged schema."""
    bodies = _traffic(tracer)
    exchanges = records(tracer)
    assert len(exchanges) == len(bodies)
    validator = jsonschema.Draft202012Validator(_schema())
    lines = Path(tracer.path).read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(bodies)
    kinds = set()
    for line in lines:
        rec = json.loads(line)
        validator.validate(rec)
        kinds.update(k for k in ("text", "base64", "file") if k in rec["response"]["body"])
    assert kinds == {"text", "base64", "file"}
    for ex in exchanges:
        path = "/" + ex.request.url.rsplit("/", 1)[1]
        assert ex.request.body == bodies[path]
        assert ex.response is not None and ex.response.raw_body == bodies[path]


def test_large_bodies_live_raw_in_the_side_file(tracer: zltrace.Tracer) -> None:
    """A body over INLINE_MAX is stored raw in <stem>.bodies, and read back exactly."""
    bodies = _traffic(tracer)
    records(tracer)
    side = Path(tracer.path).with_suffix(".bodies")
    assert bodies["/big"] in side.read_bytes()


def test_directory_is_0700_and_files_are_0600(
    any_format_tracer: zltrace.Tracer, trace_dir: Path
) -> None:
    """Trace files are private to their owner (a raw log has no side file)."""
    tracer = any_format_tracer
    _traffic(tracer)
    records(tracer)
    assert stat.S_IMODE(trace_dir.stat().st_mode) == 0o700
    files = list(trace_dir.iterdir())
    assert len(files) == (1 if tracer.config.format == "raw" else 2)
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600


def test_file_name_has_utc_time_and_pid(any_format_tracer: zltrace.Tracer) -> None:
    """One file per tracer per process, named with UTC time and pid."""
    name = os.path.basename(any_format_tracer.path)
    suffix = ".zlog" if any_format_tracer.config.format == "raw" else ".jsonl"
    assert name.startswith("zltrace-") and name.endswith(suffix)
    assert f"-{os.getpid()}-" in name
    assert name[8:24].endswith("Z")


def test_reader_skips_torn_and_bad_lines_with_warnings(tracer: zltrace.Tracer) -> None:
    """A torn last line, a non-JSON line and a future version are skipped with warnings."""
    _traffic(tracer)
    good = records(tracer)
    lines = Path(tracer.path).read_bytes().splitlines(keepends=True)
    future = json.loads(lines[0])
    future["v"] = 99
    mangled = [
        lines[0],
        b"not json\n",
        json.dumps(future).encode() + b"\n",
        *lines[1:],
        lines[0][:30],
    ]
    Path(tracer.path).write_bytes(b"".join(mangled))
    with pytest.warns(zltrace.ZltraceWarning) as rec:
        got = list(zltrace.read(tracer.path))
    assert [e.id for e in got] == [e.id for e in good]
    messages = " ".join(str(w.message) for w in rec)
    assert "not JSON" in messages and "version 99" in messages and "torn" in messages
    assert f"{tracer.path}:2" in messages


def test_reader_warns_about_a_missing_side_file_and_reads_the_rest(
    tracer: zltrace.Tracer,
) -> None:
    """A side file that is gone: its records are skipped with file:line warnings (and counted
    through ``skipped``); the inline records are still read."""
    big = b"B" * 100_000
    with ScriptedServer(
        [response(200, b"small"), response(200, big), response(200, b"tail")]
    ) as srv:
        pool = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
        for path in ("/a", "/big", "/c"):
            pool.urlopen("GET", path).data  # noqa: B018
        pool.close()
    assert tracer.close(timeout=10)
    Path(tracer.path).with_suffix(".bodies").unlink()
    skipped: list[zltrace.SkippedLine] = []
    with pytest.warns(zltrace.ZltraceWarning) as rec:
        got = list(zltrace.read(tracer.path, skipped=skipped))
    assert [e.request.url.rsplit("/", 1)[1] for e in got] == ["a", "c"]
    assert [(s.file, s.line) for s in skipped] == [(tracer.path, 2)]
    assert f"{tracer.path}:2" in str(rec[0].message) and "bodies" in str(rec[0].message)


def test_reader_reads_a_directory_of_files(trace_dir: Path) -> None:
    """read(dir) yields the exchanges of every trace file in it."""
    for _ in range(2):
        t = zltrace.Tracer(zltrace.Config(dir=str(trace_dir)))
        with ScriptedServer([response(200, b"d")]) as srv:
            pool = t.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
            pool.urlopen("GET", "/").data  # noqa: B018
            pool.close()
        t.close()
    assert len(list(zltrace.read(trace_dir))) == 2


def test_vendored_copy_traces_through_relative_imports(tmp_path: Path) -> None:
    """zltrace/ copied into another package's _vendor/ works (relative imports only)."""
    pkg = tmp_path / "host_app"
    shutil.copytree(
        ROOT / "zltrace", pkg / "_vendor" / "zltrace", ignore=shutil.ignore_patterns("__pycache__")
    )
    (pkg / "__init__.py").write_text("")
    (pkg / "_vendor" / "__init__.py").write_text("")
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(tmp_path)!r}, {str(TESTS)!r}]
        assert "zltrace" not in sys.modules
        import urllib3
        from host_app._vendor import zltrace
        from support.server import ScriptedServer, response
        with ScriptedServer([response(200, b"vendored")]) as srv:
            t = zltrace.Tracer(zltrace.Config(dir={str(tmp_path / "t")!r}))
            pool = t.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
            assert pool.urlopen("GET", "/v").data == b"vendored"
            pool.close()
            t.close()
        (ex,) = zltrace.read({str(tmp_path / "t")!r})
        assert ex.response.raw_body == b"vendored", ex
        import io
        html = io.StringIO()
        assert zltrace.write_report([ex], html) == 1  # its CSS and JS are package data
        assert "<style>" in html.getvalue()
        assert not [m for m in sys.modules if m == "zltrace" or m.startswith("zltrace.")]
        import logging
        names = list(logging.Logger.manager.loggerDict)
        assert not [n for n in names if n.split(".")[0] == "zltrace"], names
        ours = [n for n in names if n.startswith("host_app._vendor.zltrace.")]
        assert ours, names  # the package logs under its vendored name ...
        root = logging.getLogger("host_app._vendor.zltrace")
        assert any(isinstance(h, logging.NullHandler) for h in root.handlers)  # ... quietly
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-I", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert out.stdout.strip() == "ok", out.stderr
    assert out.stderr == ""


def test_version_is_a_literal() -> None:
    """__version__ is a literal string in _version.py (no importlib.metadata)."""
    src = (ROOT / "zltrace" / "_version.py").read_text()
    assert f'__version__ = "{zltrace.__version__}"' in src
    modules = sorted((ROOT / "zltrace").rglob("*.py"))
    assert len(modules) > 40, modules  # the whole package, subpackages included
    sources = "".join(p.read_text() for p in modules)
    assert "importlib.metadata" not in sources.replace("no importlib.metadata", "")
    assert "from zltrace" not in sources and "import zltrace" not in sources
