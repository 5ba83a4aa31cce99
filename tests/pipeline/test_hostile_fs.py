"""A hostile filesystem: planted symlinks and files at the predictable names, loose or
foreign trace directories, umask 0, and a trace directory that is not a directory.

Everything is real: symlinks, modes and files in pytest's temporary directory; the records
go through a loopback server and are read back. Both trace formats (``fault_format``).
"""

from __future__ import annotations

import json
import os
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from support import outage
from support.server import ScriptedServer, response

import zltrace
from zltrace._format import SIDE_SUFFIX
from zltrace._pipeline.files import open_ours
from zltrace._pipeline.losses import reset_loss_warning

pytestmark = pytest.mark.usefixtures("fault_format")

BIG = b"x" * 300_000  # larger than what is inlined: goes to the side file


@pytest.fixture
def srv() -> Iterator[ScriptedServer]:
    """A loopback server answering with a body large enough for the side file."""
    with ScriptedServer([response(200, BIG)], keep_alive=False) as s:
        yield s


def tracer(directory: Path, fallback: Path, **cfg: Any) -> zltrace.Tracer:
    """A synchronous tracer writing to ``directory`` with ``fallback`` as its fallback dir."""
    config = zltrace.Config(
        dir=str(directory),
        fallback_dir=str(fallback),
        zero_latency=False,
        format=outage.FORMAT,
        **cfg,
    )
    return zltrace.Tracer(config)


def one_exchange(t: zltrace.Tracer, srv: ScriptedServer, close: bool = True) -> list[str]:
    """Send one request through ``t`` (then close it, or flush); the ZltraceWarning messages."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False), tracer=t)
        assert pool.request("GET", "/").data == BIG
        t.close(timeout=10) if close else t.flush(timeout=10)
    return [str(w.message) for w in caught if issubclass(w.category, zltrace.ZltraceWarning)]


def bodies(t: zltrace.Tracer) -> list[bytes]:
    """The response bodies of the trace of ``t``, read back."""
    return [x.response.body for x in zltrace.read(t.path) if x.response is not None]


@pytest.mark.parametrize("which", ["trace", "side", "dead letter"])
@pytest.mark.parametrize("planted", ["symlink", "file"])
def test_a_planted_name_is_never_written_through(
    tmp_path: Path, srv: ScriptedServer, which: str, planted: str
) -> None:
    """A symlink or file at a predictable name is left alone; the trace takes the next name."""
    traces = tmp_path / "traces"
    traces.mkdir(mode=0o700)
    target = tmp_path / "victim"
    target.write_bytes(b"keep me\n")
    t = tracer(traces, tmp_path / "fb")
    trace_suffix, dead_suffix = outage.suffixes()
    suffix = {"trace": trace_suffix, "side": SIDE_SUFFIX, "dead letter": dead_suffix}[which]
    stem = t.path[: -len(trace_suffix)]
    planned = Path(stem + suffix)
    if planted == "symlink":
        planned.symlink_to(target)
    else:
        planned.write_bytes(b"keep me\n")
    messages = one_exchange(t, srv)
    assert target.read_bytes() == b"keep me\n"
    if planted == "file":
        assert planned.read_bytes() == b"keep me\n"
    assert t.path != stem + trace_suffix
    assert bodies(t) == [BIG]
    assert [m for m in messages if "already exists" in m and str(planned) in m]


def test_a_file_swapped_in_under_our_name_is_refused(tmp_path: Path) -> None:
    """Reopening our file after it was replaced by a symlink fails instead of following it."""
    path = str(tmp_path / "f.jsonl")
    fd, ident = open_ours(path, os.open, None)
    os.close(fd)
    os.unlink(path)
    (tmp_path / "victim").write_bytes(b"")
    os.symlink(tmp_path / "victim", path)
    with pytest.raises(OSError):
        open_ours(path, os.open, ident)
    fd, again = open_ours(str(tmp_path / "g.jsonl"), os.open, None)
    os.close(fd)
    assert open_ours(str(tmp_path / "g.jsonl"), os.open, again)[1] == again


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_loose_trace_directory_is_refused_with_one_warning(
    tmp_path: Path, srv: ScriptedServer, mode: int
) -> None:
    """A trace directory others may write to is not used; the trace goes to the fallback."""
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(mode)
    fallback = tmp_path / "fb"
    t = tracer(loose, fallback)
    messages = one_exchange(t, srv)
    assert os.listdir(loose) == []
    assert [m for m in messages if str(loose) in m] and len(messages) == 1
    assert Path(t.path).parent == fallback
    assert bodies(t) == [BIG]
    assert t.stats()["trace_dir_problem"]


def test_a_symlinked_trace_directory_is_refused(tmp_path: Path, srv: ScriptedServer) -> None:
    """A symlink in place of the trace directory is not followed."""
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    t = tracer(link, tmp_path / "fb")
    messages = one_exchange(t, srv)
    assert os.listdir(real) == []
    assert len(messages) == 1 and str(link) in messages[0]
    assert bodies(t) == [BIG]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_a_directory_owned_by_someone_else_is_refused(tmp_path: Path, srv: ScriptedServer) -> None:
    """A trace directory owned by another user is not used, even when closed to others."""
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 65534, 65534)
    t = tracer(foreign, tmp_path / "fb")
    messages = one_exchange(t, srv)
    assert os.listdir(foreign) == []
    assert len(messages) == 1 and "owned by uid 65534" in messages[0]
    assert bodies(t) == [BIG]


def test_umask_zero_gives_private_directories_and_files(
    tmp_path: Path, srv: ScriptedServer
) -> None:
    """Under umask 0 every directory created is 0700 and every file 0600."""
    nested = tmp_path / "a" / "b" / "c"
    old = os.umask(0)
    try:
        t = tracer(nested, tmp_path / "fb")
        assert one_exchange(t, srv) == []
    finally:
        os.umask(old)
    for d in (tmp_path / "a", tmp_path / "a" / "b", nested):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    files = list(nested.iterdir())
    trace_suffix = outage.suffixes()[0]
    assert {f.name[-len(trace_suffix) :] for f in files} >= {trace_suffix}
    if outage.FORMAT == "jsonl":  # a raw log keeps its bodies in its records
        assert any(f.name.endswith(SIDE_SUFFIX) for f in files)
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


# -- a trace directory that cannot be one ------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "/dev/null", "/proc/self", "under-a-file"])
def test_an_unusable_zltrace_dir_warns_once_naming_it_and_loses_nothing(
    tmp_path: Path, srv: ScriptedServer, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """ZLTRACE_DIR naming a file, a device or /proc/self: one warning naming the variable and
    its value, the problem in stats() and /health, and every record in the fallback dir."""
    if kind == "/proc/self" and not os.path.exists("/proc/self"):
        pytest.skip("no /proc on this system")
    plain = tmp_path / "plain-file"
    plain.write_bytes(b"not a directory\n")
    value = {"file": str(plain), "under-a-file": str(plain / "sub")}.get(kind, kind)
    fallback = tmp_path / "fb"
    monkeypatch.setenv("ZLTRACE_DIR", value)
    monkeypatch.setenv("ZLTRACE_FALLBACK_DIR", str(fallback))
    cfg = zltrace.Config.from_env().evolve(zero_latency=False, health_port=0, format=outage.FORMAT)
    t = zltrace.Tracer(cfg)
    try:
        messages = one_exchange(t, srv, close=False)
        assert len(messages) == 1 and f"ZLTRACE_DIR={value!r}" in messages[0]
        s = t.stats()
        assert s["trace_dir_problem"] and value in s["trace_dir_problem"]
        assert s["records_lost"] == 0
        assert s["records_written"] >= outage.at_least(1) if outage.FORMAT == "raw" else 1
        assert Path(t.path).parent == fallback
        url = t.health_url
        assert url is not None
        r = urllib3.PoolManager().request("GET", url + "/health/zero-latency", retries=False)
        assert r.status == 503 and "ZLTRACE_DIR" in json.loads(r.data)["traceDirProblem"]
    finally:
        t.close()
    assert bodies(t) == [BIG]
    assert plain.read_bytes() == b"not a directory\n"


def test_a_bad_config_dir_is_named_as_the_field(tmp_path: Path, srv: ScriptedServer) -> None:
    """``Config(dir=...)`` pointing at a file warns naming ``Config.dir`` and the value."""
    plain = tmp_path / "plain-file"
    plain.write_bytes(b"")
    t = tracer(plain, tmp_path / "fb")
    messages = one_exchange(t, srv)
    assert len(messages) == 1 and f"Config.dir={str(plain)!r}" in messages[0]
    assert bodies(t) == [BIG]


def test_with_no_usable_directory_at_all_the_loss_is_never_silent(
    tmp_path: Path, srv: ScriptedServer
) -> None:
    """Neither the trace dir nor the fallback usable: a warning, write errors in stats, and
    records counted as lost at close with the loss warning."""
    plain = tmp_path / "plain-file"
    plain.write_bytes(b"")
    reset_loss_warning()  # warned once per process: a test before may have had it
    t = tracer(plain, plain / "fb", write_retries=0)
    messages = one_exchange(t, srv)
    s = t.stats()
    assert s["trace_dir_problem"] and s["write_errors"] > 0
    assert s["records_lost"] >= outage.at_least(1) if outage.FORMAT == "raw" else 1
    assert any("Config.dir=" in m for m in messages)
    assert any("lost" in m for m in messages)
