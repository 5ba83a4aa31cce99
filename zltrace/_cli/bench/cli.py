"""``python -m zltrace bench``'s command line: parse, start the server, run the parts, report."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from typing import Any, Callable, TextIO

import urllib3

from ..._version import __version__
from .httpx_part import part_httpx
from .latency import part_latency
from .memory import part_memory
from .modes import part_modes
from .output import Output
from .plan import PARTS, Plan
from .serverproc import BenchServer
from .sides import Run
from .throughput import part_throughput
from .verify import loss_check


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "urllib3": str(getattr(urllib3, "__version__", "unknown")),
        "zltrace": __version__,
        "platform": platform.platform(),
    }


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m zltrace bench",
        description="Measure what zltrace costs: traced vs bare requests, interleaved A/B, "
        "against a loopback server in a child process.",
    )
    ap.add_argument(
        "part",
        nargs="?",
        default="all",
        choices=(*PARTS, "all"),
        help="what to measure (default: all, under a minute on 2 cores)",
    )
    ap.add_argument("--json", metavar="FILE", help="write every figure to FILE as JSON")
    ap.add_argument("--quick", action="store_true", help="a few seconds: smaller samples")
    ap.add_argument(
        "--concurrent",
        metavar="N",
        type=int,
        nargs="+",
        action="extend",
        help="throughput thread counts (default: 1 16 100)",
    )
    ap.add_argument(
        "--duration",
        metavar="S",
        type=float,
        help="memory: seconds of each sustained run "
        "(default 3 in 'all', 30 alone, 0.5 with --quick)",
    )
    ap.add_argument(
        "--requests",
        metavar="N",
        type=int,
        help="A/B pairs of the 1 KB latency scenario (others scaled from it), and "
        "a bound on requests per throughput run",
    )
    ap.add_argument(
        "--dir",
        metavar="DIR",
        help="where the temporary trace directory is made (default: system temp)",
    )
    return ap


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the flags argparse let through, or None."""
    if args.concurrent and any(n < 1 for n in args.concurrent):
        return "--concurrent takes positive thread counts"
    if (args.requests is not None and args.requests < 1) or (
        args.duration is not None and args.duration <= 0
    ):
        return "--requests and --duration must be positive"
    return None


def main(
    argv: list[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run the benchmark; 0 when every target is met, 1 when one is not, 2 on bad usage."""
    out_stream = stdout or sys.stdout
    err_stream = stderr or sys.stderr
    argv = list(argv if argv is not None else sys.argv[1:])
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 2
    problem = _usage_problem(args)
    if problem is not None:
        err_stream.write(f"zltrace bench: {problem}\n")
        return 2
    parts = list(PARTS) if args.part == "all" else [args.part]
    plan = Plan(args, parts)
    out = Output(out_stream, err_stream)
    machine = _machine()
    out.line(
        f"zltrace {__version__} bench ({', '.join(parts)}{', quick' if args.quick else ''})"
        f": {machine['nproc']} CPUs, {machine['implementation']} {machine['python']}, "
        f"urllib3 {machine['urllib3']}"
    )
    started = time.monotonic()
    report: dict[str, Any] = {
        "command": ["bench", *argv],
        "machine": machine,
        "plan": plan.as_dict(),
        "results": {},
        "checks": out.checks,
    }
    trace_root = tempfile.mkdtemp(prefix="zltrace-bench-", dir=args.dir)
    server = BenchServer()
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        shutil.rmtree(trace_root, ignore_errors=True)
        err_stream.write(f"zltrace bench: {exc}\n")
        return 1
    try:
        with server:
            run = Run(server, os.path.join(trace_root, "traces"), plan, out)
            report["results"] = run.results
            _run_parts(run, parts, err_stream)
            loss_check(run.out, run.accounting)
            report["accounting"] = run.accounting
    finally:
        shutil.rmtree(trace_root, ignore_errors=True)
    return _finish(out, report, time.monotonic() - started, args.json)


_PART_FUNCTIONS: dict[str, Callable[[Run], None]] = {
    "latency": part_latency,
    "throughput": part_throughput,
    "memory": part_memory,
    "modes": part_modes,
    "httpx": part_httpx,
}


def _run_parts(run: Run, parts: list[str], err_stream: TextIO) -> None:
    """Each part in turn; one that raises gets a failed check line and the next one runs."""
    for part in parts:
        try:
            _PART_FUNCTIONS[part](run)
        except Exception as exc:
            traceback.print_exc(file=err_stream)
            run.out.check(
                f"bench part '{part}' ran to the end",
                False,
                "no error",
                f"{type(exc).__name__}: {exc}",
                "bench",
                None,
            )


def _finish(out: Output, report: dict[str, Any], elapsed: float, json_path: str | None) -> int:
    """Write the JSON report (if asked), print the summary line; the exit status."""
    report["elapsed_s"] = round(elapsed, 1)
    failed = [c for c in out.checks if not c["passed"]]
    report["passed"] = not failed
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, default=str)
            f.write("\n")
    out.line(
        f"{len(out.checks) - len(failed)}/{len(out.checks)} checks passed in "
        f"{elapsed:.1f}s" + (f"; figures in {json_path}" if json_path else "")
    )
    return 1 if failed else 0
