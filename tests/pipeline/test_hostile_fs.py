"""A hostile filesystem: planted symlinks and files at the predictable names, loose or
foreign trace directories, umask 0, and a trace directory that is not a directory.

Everything is real: symlinks, modes and files in pytest's temporary directory; the records
go through a loopback server and are read back.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from support.server import ScriptedServer, response

import zltrace
from zltrace._format import DEAD_LETTER_SUFFIX, SIDE_SUFFIX, TRACE_SUFFIX
from zltrace._pipeline.files import open_ours

BIG = b"x" * 300_000  # larger than what is inlined: goes to the side file


@pytest.fixture
def srv() -> Iterator[ScriptedServer]:
    """A loopback server answering with a body large enough for the side file."""
    with ScriptedServer([response(200, BIG)], keep_alive=False) as s:
        yield s


def tracer(directory: Path, fallback: Path, **cfg: Any) -> zltrace.Tracer:
    """A synchronous tracer writing to ``directory`` with ``fallback`` as its fallback dir."""
    config = zltrace.Config(
        dir=str(directory), fallback_dir=str(fallback), zero_latency=False, **cfg
    )
    return zltrace.Tracer(config)


def one_exchange(t: zltrace.Tracer, srv: ScriptedServer) -> list[str]:
    """Send one request through ``t``, close it; the ZltraceWarning messages it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False), tracer=t)
        assert pool.request("GET", "/").data == BIG
        t.close(timeout=10)
    return [str(w.message) for w in caught if issubclass(w.category, zltrace.ZltraceWarning)]


def bodies(t: zltrace.Tracer) -> list[bytes]:
    """The response bodies of the trace of ``t``, read back."""
    return [x.response.body for x in zltrace.read(t.path) if x.response is not None]


@pytest.mark.parametrize("suffix", [TRACE_SUFFIX, SIDE_SUFFIX, DEAD_LETTER_SUFFIX])
@pytest.mark.parametrize("planted", ["symlink", "file"])
def test_a_planted_name_is_never_written_through(
    tmp_path: Path, srv: ScriptedServer, suffix: str, planted: str
) -> None:
    """A symlink or file at a predictable name is left alone; the trace takes the next name."""
    traces = tmp_path / "traces"
    traces.mkdir(mode=0o700)
    target = tmp_path / "victim"
    target.write_bytes(b"keep me\n")
    t = tracer(traces, tmp_path / "fb")
    planned = Path(t.path[: -len(TRACE_SUFFIX)] + suffix)
    if planted == "symlink":
        planned.symlink_to(target)
    else:
        planned.write_bytes(b"keep me\n")
    messages = one_exchange(t, srv)
    assert target.read_bytes() == b"keep me\n"
    if planted == "file":
        assert planned.read_bytes() == b"keep me\n"
    assert t.path != str(planned.with_suffix("")) + TRACE_SUFFIX
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
    assert {f.name[-len(TRACE_SUFFIX) :] for f in files} >= {TRACE_SUFFIX}
    assert any(f.name.endswith(SIDE_SUFFIX) for f in files)
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
