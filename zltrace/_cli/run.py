"""``python -m zltrace run [options] -- COMMAND ...``: run a program traced, unchanged.

The program runs as a child process whose environment has the bootstrap directory (a
``sitecustomize`` that calls ``zltrace.install()``) first on ``PYTHONPATH``, so tracing is
on from its first import, in every Python process it starts too. Options become
``ZLTRACE_*`` variables. Standard input, output and error are the child's own (inherited,
never piped); SIGINT and SIGTERM are passed on to it; the exit status is its own (128 + N
when a signal N ended it). At the end, one line on stderr says how many exchanges were
recorded and where.

``COMMAND`` is run as given (``python app.py``, ``python -m module``, any program); a
first word ending in ``.py`` means ``this-python app.py``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .._export.report import write_report
from .._read.reader import read
from ..config import Config

BOOTSTRAP = str(Path(__file__).resolve().parent.parent / "_bootstrap")


def add_parser(sub: Any) -> None:
    """The ``run`` subcommand's arguments."""
    run = sub.add_parser(
        "run",
        help="run a Python program with every HTTP exchange traced (no code change)",
        description="Run COMMAND traced: python -m zltrace run [options] -- python app.py",
    )
    run.add_argument("--dir", metavar="D", help="trace directory (sets ZLTRACE_DIR)")
    run.add_argument(
        "--no-zero-latency",
        action="store_true",
        help="standard (synchronous) mode: sets ZLTRACE_ZERO_LATENCY=0",
    )
    run.add_argument("--report", metavar="FILE", help="write an HTML report of the run to FILE")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")


def command(argv: list[str]) -> list[str]:
    """The child's command line: ``app.py ...`` becomes ``this-python app.py ...``."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    if argv and argv[0].endswith(".py"):
        return [sys.executable, *argv]
    return argv


def environment(args: argparse.Namespace, base: dict[str, str]) -> dict[str, str]:
    """The child's environment: bootstrap first on PYTHONPATH, options as ZLTRACE_*."""
    env = dict(base)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = BOOTSTRAP + (os.pathsep + old if old else "")
    # Where zltrace itself lives, for a child interpreter that does not have it installed
    # (appended to sys.path by the bootstrap, after the program's own paths).
    env["ZLTRACE_RUN_HOME"] = str(Path(__file__).resolve().parent.parent.parent)
    if args.dir:
        env["ZLTRACE_DIR"] = args.dir
    if args.no_zero_latency:
        env["ZLTRACE_ZERO_LATENCY"] = "0"
    return env


def _trace_dir(env: dict[str, str]) -> Path:
    return Path(env.get("ZLTRACE_DIR") or Config().dir)


def _trace_files(d: Path) -> set[Path]:
    return set(d.glob("*.jsonl")) | set(d.glob("*.zlog")) if d.is_dir() else set()


def main(args: argparse.Namespace) -> int:
    """Run the child; returns its exit status."""
    argv = command(list(args.argv))
    if not argv:
        print(
            "zltrace run: no command given (usage: zltrace run -- python app.py)", file=sys.stderr
        )
        return 2
    env = environment(args, dict(os.environ))
    trace_dir = _trace_dir(env)
    before = _trace_files(trace_dir)
    started = time.time()
    try:
        child = subprocess.Popen(argv, env=env)
    except OSError as e:
        print(f"zltrace run: cannot start {argv[0]!r}: {e}", file=sys.stderr)
        return 127
    forwarded = {}

    def forward(signum: int, frame: Any) -> None:
        child.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        forwarded[sig] = signal.signal(sig, forward)
    try:
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:  # pragma: no cover - the handler above takes SIGINT
                continue
    finally:
        for sig, old in forwarded.items():
            signal.signal(sig, old)
    _summary(trace_dir, before, started, args.report)
    return 128 - code if code < 0 else code


def _summary(trace_dir: Path, before: set[Path], started: float, report: str | None) -> None:
    files = sorted(p for p in _trace_files(trace_dir) - before if p.stat().st_mtime >= started - 1)
    # A trace file is read with its dead-letter file, which is among the files too: an
    # exchange in both is counted (and reported) once, as read() of the directory would.
    exchanges = []
    seen: set[str] = set()
    for p in files:
        for ex in read(str(p)):
            if ex.id not in seen:
                seen.add(ex.id)
                exchanges.append(ex)
    line = f"zltrace: {len(exchanges)} exchanges in {len(files)} trace file(s) in {trace_dir}"
    if report:
        with open(report, "w", encoding="utf-8") as out:
            write_report(exchanges, out, title="zltrace run")
        line += f"; report: {report}"
    print(line, file=sys.stderr)
