"""Lifecycle in real processes: exit, SIGTERM, SIGINT (chained), fork; flush and close.

Both trace formats promise these: the tests run with each (``trace_format``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import urllib3
from support.server import ScriptedServer, response
from support.trace import records

import zltrace

TESTS = Path(__file__).parent
ROOT = TESTS.parent

# A child process: a loopback server and a traced pool, configured from argv.
CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    sys.path[:0] = [{root!r}, {tests!r}]
    import urllib3, zltrace
    from support.server import ScriptedServer, response
    mode, trace_dir, n, fmt = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if mode == "app-handler":
        def handler(signum, frame):
            print("app handler called", flush=True)
            sys.exit(3)
        signal.signal(signal.SIGINT, handler)
    srv = ScriptedServer([response(200, b"x" * 100)]).__enter__()
    tracer = zltrace.Tracer(
        zltrace.Config(dir=trace_dir, flush_ms=60000, buffer_size=100000, format=fmt)
    )
    pool = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
    for i in range(n if mode == "exit" else 10**9):
        assert pool.urlopen("GET", "/r%d" % i).data == b"x" * 100
        if mode != "exit" and i + 1 == n:
            print("ready", flush=True)
        if mode != "exit" and i + 1 >= n:
            time.sleep(0.001)
    print("done", i + 1, flush=True)
    """
)


def _child(tmp_path: Path, mode: str, n: int, fmt: str) -> subprocess.Popen[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT), tests=str(TESTS)))
    return subprocess.Popen(
        [sys.executable, str(script), mode, str(tmp_path / "t"), str(n), fmt],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")


def _outcomes(trace_dir: Path) -> list[str]:
    return [ex.outcome for ex in zltrace.read(trace_dir)]


def _assert_flushed_when_killed(trace_dir: Path, at_least: int) -> None:
    outcomes = _outcomes(trace_dir)
    assert outcomes.count("complete") >= at_least
    # At most the one request in flight when the signal came is not complete.
    assert len(outcomes) - outcomes.count("complete") <= 1


def test_normal_exit_writes_everything_through_atexit(tmp_path: Path, trace_format: str) -> None:
    """A process that exits without close() still has every exchange on disk (atexit)."""
    proc = _child(tmp_path, "exit", 200, trace_format)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert _outcomes(tmp_path / "t") == ["complete"] * 200


def test_sigterm_flushes_then_dies_of_sigterm(tmp_path: Path, trace_format: str) -> None:
    """SIGTERM with the default disposition: records flushed, process still ends by SIGTERM."""
    proc = _child(tmp_path, "loop", 50, trace_format)
    _wait_ready(proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    _assert_flushed_when_killed(tmp_path / "t", 50)


def test_sigint_default_raises_keyboardinterrupt_and_flushes(
    tmp_path: Path, trace_format: str
) -> None:
    """SIGINT with Python's default handler: KeyboardInterrupt as before, records flushed."""
    proc = _child(tmp_path, "loop", 50, trace_format)
    _wait_ready(proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert "KeyboardInterrupt" in err
    _assert_flushed_when_killed(tmp_path / "t", 50)


def test_sigint_chains_to_the_apps_own_handler(tmp_path: Path, trace_format: str) -> None:
    """An app's SIGINT handler installed before zltrace still runs, after the flush."""
    proc = _child(tmp_path, "app-handler", 50, trace_format)
    _wait_ready(proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert "app handler called" in out, err
    assert proc.returncode == 3
    assert _outcomes(tmp_path / "t").count("complete") >= 50


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_gets_its_own_file_and_worker(tracer: zltrace.Tracer) -> None:
    """After fork the child writes its own file; nothing is written twice or interleaved."""
    with ScriptedServer([response(200, b"ok")]) as srv:
        pool = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
        assert pool.urlopen("GET", "/parent-before").data == b"ok"
        parent_path = tracer.path
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            code = 1
            try:
                child_pool = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
                for i in range(5):
                    child_pool.urlopen("GET", f"/child{i}").data  # noqa: B018
                ok = tracer.close(timeout=10) and tracer.path != parent_path
                code = 0 if ok else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert pool.urlopen("GET", "/parent-after").data == b"ok"
    parent = records(tracer)
    assert [ex.request.url.rsplit("/", 1)[1] for ex in parent] == ["parent-before", "parent-after"]
    suffix = Path(parent_path).suffix  # .jsonl or .zlog
    files = sorted(p for p in Path(parent_path).parent.glob("*" + suffix) if str(p) != parent_path)
    assert len(files) == 1
    child = list(zltrace.read(files[0]))
    assert [ex.request.url.rsplit("/", 1)[1] for ex in child] == [f"child{i}" for i in range(5)]


def test_close_is_idempotent_and_flush_after_close_is_harmless(tracer: zltrace.Tracer) -> None:
    """close() twice is fine; flush() after close() returns without error."""
    assert tracer.close(timeout=5)
    assert tracer.close(timeout=5)
    tracer.flush(timeout=1)
    assert tracer.stats()["closed"] is True


def test_flush_writes_finished_exchanges_without_closing(tracer: zltrace.Tracer) -> None:
    """flush() puts every finished exchange on disk and the tracer keeps working."""
    with ScriptedServer([response(200, b"a")]) as srv:
        pool = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
        for _ in range(3):
            pool.urlopen("GET", "/").data  # noqa: B018
        assert tracer.flush(timeout=10)
        assert len(list(zltrace.read(tracer.path))) == 3
        pool.urlopen("GET", "/").data  # noqa: B018
        pool.close()
    assert len(records(tracer)) == 4


def test_standard_mode_records_synchronously(std_tracer: zltrace.Tracer) -> None:
    """Standard mode: the record is on disk when the exchange ends, no worker thread."""
    assert std_tracer.stats()["mode"] == "standard"
    with ScriptedServer([response(200, b"sync")]) as srv:
        pool = std_tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
        assert pool.urlopen("GET", "/s").data == b"sync"
        (ex,) = zltrace.read(std_tracer.path)  # no flush needed
        assert ex.response is not None and ex.response.raw_body == b"sync"
        pool.close()


def test_worker_thread_is_a_daemon_and_named(tracer: zltrace.Tracer) -> None:
    """The worker is a daemon thread, so it never keeps the host process alive."""
    import threading

    # This tracer's worker only: tracers of other tests may still be running.
    name = "zltrace-worker-" + Path(tracer.path).stem
    workers = [t for t in threading.enumerate() if t.name == name]
    assert len(workers) == 1 and workers[0].daemon
    tracer.close(timeout=5)
    deadline = time.monotonic() + 5
    while any(t.is_alive() for t in workers) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.is_alive() for t in workers)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_module_locks_held_at_fork_are_free_in_the_child(trace_dir: Path) -> None:
    """A lock of zltrace's held by another thread at fork() does not deadlock the child."""
    import threading

    from zltrace._capture import connection as _connection
    from zltrace._capture import pool as _pool
    from zltrace._pipeline import events as _events

    locks = [_events._failures_lock, _connection._classes_lock, _pool._lock]
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        for lock in locks:
            lock.acquire()
        held.set()
        release.wait(30)
        for lock in locks:
            lock.release()

    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    assert held.wait(10)
    with ScriptedServer([response(200, b"ok")]) as srv:
        with warnings.catch_warnings():
            # 3.12+: "This process is multi-threaded, use of fork() may lead to deadlocks"
            # -- which is exactly what this test checks zltrace copes with.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            code = 1
            try:
                t = zltrace.Tracer(zltrace.Config(dir=str(trace_dir), flush_ms=10))

                class MyPool(urllib3.HTTPConnectionPool):  # a new class: the class cache locks
                    pass

                pool = t.wrap(MyPool("127.0.0.1", srv.port))
                ok = pool.urlopen("GET", "/in-child").data == b"ok"
                _events.capture_failed("fork test", ValueError("x"))
                code = 0 if ok and t.close(timeout=10) else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError("the child deadlocked on a lock held at fork()")
            time.sleep(0.02)
    release.set()
    thread.join(10)
    assert os.waitstatus_to_exitcode(status) == 0
    (ex,) = zltrace.read(trace_dir)
    assert ex.request.url.endswith("/in-child")


THREADLESS_CHILD = textwrap.dedent(
    """
    import sys, warnings
    import urllib3, zltrace

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = zltrace.Tracer(zltrace.Config(dir=sys.argv[2], handle_signals=False))
    print("mode", t.mode)
    for w in caught:
        print("warning", w.category.__name__, w.message)
    pool = t.wrap(urllib3.HTTPConnectionPool("127.0.0.1", int(sys.argv[1])))
    for i in range(3):
        assert pool.urlopen("GET", f"/n{i}").data == b"ok"
    print("closed", t.close(timeout=10))
    """
)


def test_a_worker_that_cannot_start_falls_back_to_standard_mode(tmp_path: Path) -> None:
    """No thread can be created (a pids cgroup at its limit): the tracer warns, runs in
    standard mode, and records every exchange."""
    cgroup = Path("/sys/fs/cgroup/pids") / f"zltrace-test-{os.getpid()}"
    try:
        cgroup.mkdir()
        (cgroup / "pids.max").write_text("1")
    except OSError as exc:
        pytest.skip(f"cannot make a pids cgroup here ({exc})")
    trace_dir = tmp_path / "t"
    try:

        def join_cgroup() -> None:  # in the child, before exec: it is one task then
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

        with ScriptedServer([response(200, b"ok")]) as srv:
            out = subprocess.run(
                [sys.executable, "-c", THREADLESS_CHILD, str(srv.port), str(trace_dir)],
                capture_output=True,
                text=True,
                timeout=60,
                preexec_fn=join_cgroup,
                env={**os.environ, "PYTHONPATH": str(Path(zltrace.__file__).parent.parent)},
            )
    finally:
        cgroup.rmdir()
    assert out.returncode == 0, out.stderr
    assert "mode standard" in out.stdout
    assert "warning ZltraceWarning zltrace: the background thread could not start" in out.stdout
    assert "falling back to standard (synchronous) mode" in out.stdout
    assert "closed True" in out.stdout
    got = [ex.request.url.rsplit("/", 1)[1] for ex in zltrace.read(trace_dir)]
    assert got == ["n0", "n1", "n2"]
