"""The command line (argparse): ``python -m zltrace COMMAND ...`` (see ``--help``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TextIO

from .._version import __version__
from ..config import ENV_NAMES, resolve_env
from ..exceptions import ZltraceWarning
from . import run, ship


def _config(args: argparse.Namespace) -> int:
    settings = resolve_env()
    if args.json:
        doc = {
            s.field: {
                "value": list(s.value) if isinstance(s.value, tuple) else s.value,
                "source": s.source,
                "problem": s.problem,
            }
            for s in settings
        }
        print(json.dumps(doc, indent=2))
    else:
        width = max(len(s.field) for s in settings)
        for s in settings:
            value = ",".join(s.value) if isinstance(s.value, tuple) else s.value
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif value is None:
                value = "off"
            names = " / ".join(ENV_NAMES[s.field])
            print(f"{s.field:<{width}}  {value!s:<20}  from {s.source}  [{names}]")
        for s in settings:
            if s.problem:
                print(f"warning: {s.problem}", file=sys.stderr)
    bad = [s for s in settings if s.problem]
    return 2 if args.check and bad else 0


#: Exchanges between two progress lines of ``export`` and ``stats``.
PROGRESS_EVERY = 1000


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    print(f"warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Unreadable trace lines are reported on stderr as one line each, never raised."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", ZltraceWarning)
        warnings.showwarning = _show_warning
        yield


def _counted(items: Iterable[Any], progress: bool, verb: str) -> Iterator[Any]:
    for n, item in enumerate(items, 1):
        if progress and n % PROGRESS_EVERY == 0:
            print(f"{verb} {n} exchanges...", file=sys.stderr, flush=True)
        yield item


def _trace_exchanges(args: argparse.Namespace, verb: str) -> Iterator[Any] | None:
    """The exchanges at ``args.path`` (with progress lines), or None after an error message.

    A directory is read with its sub-directories (a directory of trace directories); one
    that holds no trace file at all is an error, as a missing path is: an empty result
    with exit status 0 would hide a wrong path.
    """
    from .._read.reader import read, trace_files

    if not os.path.exists(args.path):
        print(f"error: {args.path}: no such trace file or directory", file=sys.stderr)
        return None
    if os.path.isdir(args.path) and not trace_files(args.path):
        print(
            f"error: {args.path}: no trace files (*.jsonl, *.zlog) in it or its sub-directories",
            file=sys.stderr,
        )
        return None
    progress = bool(args.progress or sys.stderr.isatty())
    return _counted(read(args.path), progress, verb)


def _write_exchanges(
    args: argparse.Namespace, write: Callable[[Iterator[Any], TextIO], int], verb: str
) -> int:
    """Stream the exchanges at ``args.path`` through ``write`` to ``args.output`` (or stdout).

    A file is written beside the target and renamed into place: a failed run leaves no half
    document.
    """
    with _warnings_to_stderr():
        exchanges = _trace_exchanges(args, verb)
        if exchanges is None:
            return 2
        to_stdout = args.output in (None, "-")
        tmp = f"{args.output}.{os.getpid()}.tmp"
        try:
            if to_stdout:
                count = write(exchanges, sys.stdout)
                sys.stdout.flush()
            else:
                try:
                    with open(tmp, "w", encoding="utf-8", newline="\n") as out:
                        count = write(exchanges, out)
                    os.replace(tmp, args.output)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if args.progress or sys.stderr.isatty():
        where = "stdout" if to_stdout else args.output
        print(f"{verb} {count} exchanges to {where}", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.claude_trace:
        from .._export.claude_trace import export_claude_trace as export
    elif args.jsonl:
        from .._export.jsonl import export_jsonl as export
    else:
        from .._export.har import export_har as export
    return _write_exchanges(args, export, "exported")


def _report(args: argparse.Namespace) -> int:
    from .._export.report import write_report

    title = args.title or f"zltrace report: {os.path.basename(os.path.normpath(args.path))}"
    return _write_exchanges(
        args, lambda exchanges, out: write_report(exchanges, out, title=title), "reported"
    )


def _stats(args: argparse.Namespace) -> int:
    from .._export.stats import TraceStats, format_stats

    stats = TraceStats()
    with _warnings_to_stderr():
        exchanges = _trace_exchanges(args, "read")
        if exchanges is None:
            return 2
        try:
            for ex in exchanges:
                stats.add(ex)
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    doc = stats.as_dict()
    print(json.dumps(doc, indent=2) if args.json else format_stats(doc))
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from importlib.resources import files

    # The dashboard ships at the package's top, beside the trace schema (vendored copies too).
    package = __package__.rpartition(".")[0]
    sys.stdout.write(files(package).joinpath("dashboard.json").read_text(encoding="utf-8"))
    return 0


def _bench(argv: list[str]) -> int:
    from .bench import main as bench_main

    return bench_main(argv)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m zltrace",
        description="zltrace: a zero-latency HTTP traffic tracer for urllib3.",
    )
    parser.add_argument("--version", action="version", version=f"zltrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser(
        "bench",
        help="measure added latency, throughput and memory against a loopback server",
        add_help=False,
    )
    cfg = sub.add_parser(
        "config", help="print the effective configuration and where each value came from"
    )
    cfg.add_argument("--check", action="store_true", help="exit 2 if any variable is invalid")
    cfg.add_argument("--json", action="store_true", help="print JSON")
    exp = sub.add_parser(
        "export", help="export a trace as HAR 1.2, claude-trace JSON lines or trace lines"
    )
    fmt = exp.add_mutually_exclusive_group(required=True)
    fmt.add_argument("--har", action="store_true", help="HAR 1.2 (one JSON document)")
    fmt.add_argument(
        "--claude-trace", action="store_true", help="claude-trace's JSON lines (one per exchange)"
    )
    fmt.add_argument(
        "--jsonl",
        action="store_true",
        help="zltrace's own trace lines (version 1, bodies inline; a raw log for jq)",
    )
    exp.add_argument("path", metavar="PATH", help="a trace file, or a directory of them")
    exp.add_argument("-o", "--output", metavar="OUT", help="output file (default, or -: stdout)")
    exp.add_argument("--progress", action="store_true", help="progress lines on stderr")
    rep = sub.add_parser(
        "report", help="a self-contained HTML report: exchanges, bodies, LLM messages, charts"
    )
    rep.add_argument("path", metavar="PATH", help="a trace file, or a directory of them")
    rep.add_argument(
        "-o", "--output", metavar="OUT", default="report.html", help="output (-: stdout)"
    )
    rep.add_argument("--title", help="page title (default: from PATH)")
    rep.add_argument("--progress", action="store_true", help="progress lines on stderr")
    st = sub.add_parser(
        "stats",
        help="summarise a trace: outcomes, statuses, hosts, bytes, latency percentiles, "
        "LLM tokens per model and per host",
    )
    st.add_argument("path", metavar="PATH", help="a trace file, or a directory of them")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.add_argument("--progress", action="store_true", help="progress lines on stderr")
    run.add_parser(sub)
    ship.add_parsers(sub)
    sub.add_parser(
        "dashboard", help="print a Grafana dashboard (JSON) for the /metrics endpoint's metrics"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["bench"]:
        # bench has its own parser (subcommands and flags of its own).
        return _bench(args_list[1:])
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.command == "config":
        return _config(args)
    if args.command == "export":
        return _export(args)
    if args.command == "report":
        return _report(args)
    if args.command == "stats":
        return _stats(args)
    if args.command == "run":
        return run.main(args)
    if args.command == "ship":
        return ship.ship_main(args)
    if args.command == "tail":
        return ship.tail_main(args)
    if args.command == "dashboard":
        return _dashboard(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
