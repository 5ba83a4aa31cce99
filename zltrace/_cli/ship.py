"""``python -m zltrace ship`` (traces to an OpenTelemetry backend) and ``tail`` (a live trace,
one line per finished exchange).

``ship`` exit statuses:

- 0: everything read was acknowledged (with ``--follow``: stopped by SIGINT/SIGTERM);
- 1: a local error (checkpoint or dead-letter file unusable);
- 2: usage (bad option, no such path, no endpoint);
- 3: gave up: the backend stayed unreachable or busy for ``--give-up-after`` seconds;
- 4: the backend refused the export for good (401, 403, 404, 500, ...: its configuration);
- 5: done, but some spans were dead-lettered (400/413) or rejected by a partial success;
- 130: stopped by a signal before everything read was acknowledged (without ``--follow``).

After 1, 3, 4 and 130 the checkpoint holds what was acknowledged: run again to go on.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping
from types import FrameType
from typing import Any, TextIO
from urllib.parse import unquote

from .._version import __version__
from ..exceptions import ZltraceWarning

__all__ = ["add_parsers", "endpoint", "otel_headers", "ship_main", "tail_main"]

DEFAULT_ENDPOINT = "http://localhost:4318"
TRACES_PATH = "/v1/traces"


def endpoint(cli: str | None, env: Mapping[str, str]) -> str:
    """The traces URL: ``--otlp`` (a base URL, ``/v1/traces`` appended unless it is there),
    else ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` as is, else ``OTEL_EXPORTER_OTLP_ENDPOINT``
    with ``/v1/traces`` appended, else the OTLP/HTTP default on localhost."""
    if cli:
        base = cli.rstrip("/")
        return base if base.endswith(TRACES_PATH) else base + TRACES_PATH
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    return base.rstrip("/") + TRACES_PATH


def otel_headers(value: str, where: str) -> dict[str, str]:
    """``k=v,k2=v2`` (values percent-decoded, as the OTLP exporter variables say)."""
    out: dict[str, str] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        key, eq, val = part.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{where}: expected key=value pairs separated by commas, got {part!r}")
        out[unquote(key.strip())] = unquote(val.strip())
    return out


def _resource(env: Mapping[str, str]) -> list[tuple[str, Any]]:
    attrs: dict[str, Any] = {}
    raw = env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if raw.strip():
        attrs.update(otel_headers(raw, "OTEL_RESOURCE_ATTRIBUTES"))
    name = env.get("OTEL_SERVICE_NAME", "").strip()
    if name:
        attrs["service.name"] = name
    attrs.setdefault("service.name", "zltrace")
    attrs["telemetry.sdk.name"] = "zltrace"
    attrs["telemetry.sdk.language"] = "python"
    attrs["telemetry.sdk.version"] = __version__
    return list(attrs.items())


def _env(env: Mapping[str, str], what: str) -> str:
    # The traces-specific variable first, then the generic one.
    specific = env.get(f"OTEL_EXPORTER_OTLP_TRACES_{what}")
    return specific or env.get(f"OTEL_EXPORTER_OTLP_{what}") or ""


def _encoding(cli: str | None, env: Mapping[str, str]) -> str:
    if cli:
        return cli
    proto = _env(env, "PROTOCOL").strip()
    return "json" if proto == "http/json" else "protobuf"


def add_parsers(sub: Any) -> None:
    """Register ``ship`` and ``tail`` on the CLI's sub-parsers."""
    sp = sub.add_parser(
        "ship",
        help="send trace exchanges to an OpenTelemetry backend (OTLP/HTTP), checkpointed",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sp.add_argument("path", metavar="PATH", help="a trace file, or a directory of them")
    sp.add_argument("--otlp", metavar="URL", help="OTLP/HTTP base URL (/v1/traces is appended)")
    sp.add_argument("--follow", action="store_true", help="keep shipping as files grow and appear")
    sp.add_argument("--headers", metavar="K=V,...", help="extra request headers")
    sp.add_argument("--encoding", choices=("protobuf", "json"), help="default: protobuf")
    sp.add_argument("--no-gzip", action="store_true", help="send uncompressed")
    sp.add_argument("--checkpoint", metavar="FILE", help="record what was acknowledged here")
    sp.add_argument("--dead-letter", metavar="FILE", help="spans refused for good (JSON lines)")
    sp.add_argument("--content", action="store_true", help="LLM prompt/completion as attributes")
    sp.add_argument("--content-max", type=int, default=16 * 1024, metavar="CHARS")
    sp.add_argument("--batch", type=int, default=512, metavar="SPANS", help="spans per request")
    sp.add_argument("--interval", type=float, default=0.5, metavar="S", help="--follow poll")
    sp.add_argument("--timeout", type=float, default=None, metavar="S", help="per request")
    sp.add_argument("--give-up-after", type=float, default=0.0, metavar="S", help="0: never")
    sp.add_argument("--stats", action="store_true", help="progress and counters on stderr")
    sp.add_argument("--stats-every", type=float, default=5.0, metavar="S")
    tp = sub.add_parser("tail", help="follow a live trace: one line per finished exchange")
    tp.add_argument("path", metavar="PATH", help="a trace file, or a directory of them")
    tp.add_argument("--jsonl", action="store_true", help="one JSON object per line")
    tp.add_argument("--once", action="store_true", help="print what is there and exit")
    tp.add_argument("--interval", type=float, default=0.5, metavar="S", help="poll interval")


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    # Unreadable trace lines: one line each on stderr, never raised.
    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        print(f"warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always", ZltraceWarning)
        warnings.showwarning = show
        yield


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def ship_main(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """Run ``ship``; returns the exit status."""
    # The shipper's own requests are never traced, even under ``zltrace run``.
    from .. import uninstall
    from .._export import otlp_checkpoint
    from .._export.otlp_send import GaveUp, Refused, Sender, Stopped
    from .._export.otlp_ship import Shipper
    from .._export.otlp_span import SpanMapper
    from .._read.follow import Follower

    uninstall()
    env = os.environ if env is None else env
    if not os.path.exists(args.path):
        print(f"error: {args.path}: no such trace file or directory", file=sys.stderr)
        return 2
    try:
        headers: dict[str, str] = {}
        for name in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
            headers.update(otel_headers(env.get(name, ""), name))
        headers.update(otel_headers(args.headers or "", "--headers"))
        resource = _resource(env)
        timeout = args.timeout
        if timeout is None:
            ms = _env(env, "TIMEOUT")
            timeout = float(ms) / 1000 if ms else 10.0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    compression = _env(env, "COMPRESSION") or "gzip"
    url = endpoint(args.otlp, env)
    acked: dict[str, Any] = {}
    totals: dict[str, int] = {}
    if args.checkpoint:
        try:
            acked, totals = otlp_checkpoint.load(args.checkpoint)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    stop = threading.Event()
    _stop_on_signals(stop)
    sender = Sender(
        url,
        headers=headers,
        encoding=_encoding(args.encoding, env),
        resource=resource,
        scope=("zltrace", __version__),
        compress=not args.no_gzip and compression.strip().lower() != "none",
        timeout=timeout,
        give_up_after=args.give_up_after,
        dead_letter=args.dead_letter,
        stop=stop,
    )
    follower = Follower(args.path, acked, settle=2.0 if args.follow else 0.0)
    shipper = Shipper(
        follower,
        sender,
        SpanMapper(content=args.content, content_max=args.content_max),
        checkpoint=args.checkpoint,
        acked=acked,
        totals=totals,
        batch_spans=args.batch,
        stats_every=args.stats_every,
        stats_out=sys.stderr if args.stats else None,
        stop=stop,
    )
    try:
        with _warnings_to_stderr():
            counters = shipper.run(follow=args.follow, interval=args.interval)
    except Stopped:
        return 0 if args.follow else 130
    except GaveUp as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        sender.close()
    if stop.is_set() and not args.follow:
        return 130
    return 5 if counters.dead or counters.rejected else 0


def _line(ex: Any) -> str:
    rs = ex.response
    status = str(rs.status) if rs is not None else "---"
    ms = ex.timing.end / 1e6
    out = f"{ex.started_at:%H:%M:%S.%f}"[:-3]
    out += f" {ex.request.method} {ex.request.url} {status} {ex.outcome} {ms:.1f}ms"
    usage = ex.usage()
    model = ex.model() if usage is not None else None
    if model:
        out += f" {model}"
    if usage is not None:
        out += f" in={usage.total_input_tokens} out={usage.output_tokens}"
    if ex.error is not None:
        out += f" {ex.error}"
    return out


def _json(ex: Any, file: str) -> str:
    rs = ex.response
    usage = ex.usage()
    doc = {
        "file": file,
        "id": ex.id,
        "logical_id": ex.logical_id,
        "started_at": ex.started_at.isoformat(),
        "method": ex.request.method,
        "url": ex.request.url,
        "status": rs.status if rs is not None else None,
        "outcome": ex.outcome,
        "duration_ms": round(ex.timing.end / 1e6, 3),
        "request_bytes": len(ex.request.body or b""),
        "response_bytes": len(rs.raw_body) if rs is not None else 0,
        "model": ex.model() if usage is not None else None,
        "input_tokens": usage.total_input_tokens if usage is not None else None,
        "output_tokens": usage.output_tokens if usage is not None else None,
        "error": str(ex.error) if ex.error is not None else None,
    }
    return json.dumps(doc, ensure_ascii=False)


def tail_main(args: argparse.Namespace) -> int:
    """Run ``tail``; returns the exit status (0, or 2 for a missing path)."""
    from .._read.follow import Follower

    if not os.path.exists(args.path):
        print(f"error: {args.path}: no such trace file or directory", file=sys.stderr)
        return 2
    stop = threading.Event()
    _stop_on_signals(stop)
    follower = Follower(args.path)
    with _warnings_to_stderr():
        while not stop.is_set():
            for item in follower.poll():
                text = _json(item.exchange, item.file) if args.jsonl else _line(item.exchange)
                try:
                    print(text, flush=True)
                except BrokenPipeError:
                    return 0
            if args.once:
                break
            stop.wait(args.interval)
    return 0
