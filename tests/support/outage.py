"""Full-speed traffic through a tracer while its disk fails for a while: real faults, no mock.

A tmpfs of our own is remounted read-only (EROFS) or filled to the last byte (ENOSPC) before
the tracer starts, and given back after ``outage_s`` while requests keep going as fast as
one client thread can send them. Used by ``test_outage.py``; run by hand (as root) for a
series, e.g. ``PYTHONPATH=tests python -m support.outage ro 1.5 20``.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import urllib3

import zltrace
from support.server import ScriptedServer, response

#: A 1 KB response body, as in the traffic of the report.
BODY = b'{"ok": true, "pad": "' + b"x" * 900 + b'"}'


def mount_tmpfs(mnt: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` on ``mnt``; the reason when it cannot (not root...)."""
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    return None if r.returncode == 0 else (r.stderr.strip() or "not root")


@contextmanager
def tmpfs_for_test(mnt: Path, size: str) -> Iterator[Path]:
    """A tmpfs on ``mnt`` for a test: skipped where mounting is not permitted (but a failure
    in CI as root), unmounted afterwards."""
    import pytest

    problem = mount_tmpfs(mnt, size)
    if problem is not None:
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail(f"mount failed in CI as root: {problem}")
        pytest.skip(f"cannot mount a tmpfs here ({problem})")
    try:
        yield mnt
    finally:
        umount(mnt)


def umount(mnt: Path) -> None:
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def remount(mnt: Path, how: str) -> None:
    """``how``: ``ro`` or ``rw``."""
    subprocess.run(["mount", "-o", f"remount,{how}", str(mnt)], check=True)


def fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` to the last byte; return the filler file."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


class Traffic:
    """One client thread sending POST /item/<n> as fast as it can until stopped."""

    def __init__(self, tracer: zltrace.Tracer, port: int, body_size: int = 0) -> None:
        self._pool = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1))
        self._body_size = body_size
        self._stop = threading.Event()
        self.sent = 0
        self.broken = 0  # exchanges whose connection broke
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="outage-traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(30)
        self._pool.close()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                n = self.sent
                body = b"req-%d" % n
                if self._body_size:
                    body += os.urandom(self._body_size)  # incompressible, so held lines cost
                try:
                    r = self._pool.request("POST", f"/item/{n}", body=body)
                except urllib3.exceptions.ProtocolError:
                    # The connection broke (seen rarely on a loaded machine): the tracer
                    # records the exchange with outcome "error", so it still counts as sent.
                    self.broken += 1
                else:
                    data = r.data
                    assert data == BODY, (r.status, dict(r.headers), len(data), data[:120])
                self.sent = n + 1
        except BaseException as exc:  # reported by the caller
            self.error = exc


@contextmanager
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer([response(200, BODY)]) as srv:
        yield srv


def run_outage(
    mnt: Path,
    kind: str,
    outage_s: float,
    srv: ScriptedServer,
    fallback_dir: Path,
    after_s: float = 0.2,
    body_size: int = 0,
    **cfg: Any,
) -> tuple[int, list[int], dict[str, Any]]:
    """One run: the disk under ``mnt/traces`` fails (``kind``: ``ro`` or ``full``) when the
    tracer starts and comes back after ``outage_s`` of full-speed traffic, which goes on
    ``after_s`` longer. Returns what was sent, the request numbers read back (every trace
    file under ``mnt``), and the tracer's final stats."""
    trace_dir = mnt / "traces"
    trace_dir.mkdir(mode=0o700, exist_ok=True)
    for old in trace_dir.iterdir():
        old.unlink()
    filler = None
    if kind == "ro":
        remount(mnt, "ro")
    else:
        filler = fill(mnt)
    if "fallback_dir" in attrs.fields_dict(zltrace.Config):  # absent before the fallback existed
        cfg["fallback_dir"] = str(fallback_dir)
    cfg.setdefault("format", FORMAT)
    tracer = zltrace.Tracer(zltrace.Config(dir=str(trace_dir), handle_signals=False, **cfg))
    try:
        with Traffic(tracer, srv.port, body_size) as traffic:
            time.sleep(outage_s)
            if filler is None:
                remount(mnt, "rw")
            else:
                filler.unlink()
            time.sleep(after_s)
            live = tracer.stats()
        if traffic.error is not None:
            raise AssertionError(
                f"traffic failed; server errors: {srv.errors!r}"
            ) from traffic.error
    finally:
        if filler is None:
            remount(mnt, "rw")
        tracer.close(timeout=60)
    got = [int(ex.request.url.rsplit("/", 1)[1]) for ex in zltrace.read(trace_dir)]
    stats = tracer.stats()
    stats["live_outage_budget_s"] = live.get("outage_budget_s")  # while traffic flowed
    return traffic.sent, got, stats


def main(argv: list[str]) -> int:
    """``_outage.py KIND OUTAGE_S RUNS [BODY_SIZE]``: print one line per run and a summary."""
    import tempfile

    kind, outage_s, runs = argv[0], float(argv[1]), int(argv[2])
    body_size = int(argv[3]) if len(argv) > 3 else 0
    with tempfile.TemporaryDirectory() as tmp:
        mnt = Path(tmp) / "mnt"
        mnt.mkdir()
        problem = mount_tmpfs(mnt, "256m")
        if problem:
            print(f"cannot mount a tmpfs: {problem}")
            return 2
        lossless = 0
        try:
            with server() as srv:
                for i in range(runs):
                    sent, got, s = run_outage(
                        mnt, kind, outage_s, srv, Path(tmp) / "fallback", body_size=body_size
                    )
                    ok = sorted(got) == list(range(sent))
                    lossless += ok
                    print(
                        f"run {i + 1}: sent {sent}, read {len(got)}; records_lost "
                        f"{s['records_lost']}, write_probes {s.get('write_probes')}, "
                        f"write_retries {s['write_retries']}, write_errors {s['write_errors']}, "
                        f"fallback_records {s.get('fallback_records')}, memory_held_peak "
                        f"{s['memory_held_peak']}, outage_budget_s {s['live_outage_budget_s']}",
                        flush=True,
                    )
        finally:
            umount(mnt)
        print(f"{kind}, {outage_s} s outage: {lossless} of {runs} runs lost nothing")
    return 0 if lossless == runs else 1


def traffic(
    tracer: zltrace.Tracer, srv: ScriptedServer, n: int, noise: int = 0, pause: float = 0.0
) -> None:
    """Send ``n`` requests through a pool traced by ``tracer``, reading every body; with
    ``noise``, each request body carries that many random bytes (lines that do not compress,
    so lines held in memory cost about what they weigh); ``pause`` seconds after each."""
    pool = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
    try:
        for i in range(n):
            body = b"req-%d" % i + os.urandom(noise)
            r = pool.request("POST", f"/item/{i}", body=body)
            assert r.data == BODY
            if pause:
                time.sleep(pause)
    finally:
        pool.close()


def ids_on_disk(path: Path) -> list[str]:
    """Request paths of the exchanges readable under ``path`` (file or directory)."""
    return [ex.request.url.rsplit("/", 1)[1] for ex in zltrace.read(path)]


#: The trace format the fault tests write (``fault_format`` runs each of them with both).
FORMAT = "jsonl"


def suffixes() -> tuple[str, str]:
    """The trace and dead-letter suffixes of :data:`FORMAT`."""
    return (".zlog", ".deadletter.zlog") if FORMAT == "raw" else (".jsonl", ".deadletter.jsonl")


def at_least(n: int) -> int:
    """What ``n`` exchanges count as records: n lines, or more raw records (a few each)."""
    return n if FORMAT == "jsonl" else 3 * n


def make_tracer(trace_dir: Path, opener: Any = os.open, **cfg: Any) -> zltrace.Tracer:
    """A tracer writing to ``trace_dir`` (its fallback directory beside it) through ``opener``."""
    settings: dict[str, Any] = {
        "format": FORMAT,
        "dir": str(trace_dir),
        "fallback_dir": str(trace_dir.parent / "fallback"),
        "flush_ms": 5,
        "retry_backoff_ms": 1,
    }
    settings.update(cfg)
    return zltrace.Tracer(zltrace.Config(**settings), opener=opener)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
