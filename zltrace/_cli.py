"""The command line (argparse): ``python -m zltrace {bench,config} ...``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ._version import __version__
from .config import ENV_NAMES, resolve_env


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
            names = " / ".join(ENV_NAMES[s.field])
            print(f"{s.field:<{width}}  {value!s:<20}  from {s.source}  [{names}]")
        for s in settings:
            if s.problem:
                print(f"warning: {s.problem}", file=sys.stderr)
    bad = [s for s in settings if s.problem]
    return 2 if args.check and bad else 0


def _bench(args: argparse.Namespace, rest: list[str]) -> int:
    from ._bench import main as bench_main

    status: int = bench_main(rest)
    return status


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["bench"]:
        # bench has its own parser (subcommands and flags of its own).
        return _bench(argparse.Namespace(), args_list[1:])
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.command == "config":
        return _config(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
