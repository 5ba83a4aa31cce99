"""Peers on the same server and scenarios: what each way of recording urllib3 traffic costs.

    python bench/peers.py [--pairs N] [--quick] [--json FILE]

Peers (each optional; skipped with a message when it is not importable):

- ``bare urllib3``     -- a second bare pool: the noise floor of the method;
- ``zltrace zero-latency`` / ``zltrace standard`` -- ``Tracer(Config(zero_latency=...))``;
- ``vcrpy record``     -- ``vcr.VCR(record_mode="all")``, one cassette per scenario;
- ``OpenTelemetry``    -- ``URLLib3Instrumentor`` with a ``TracerProvider`` and a
  ``BatchSpanProcessor`` exporting JSON spans to a file.

Every peer is measured A/B against a bare pool, interleaved, order flipping each pair, exactly
like ``python -m zltrace bench``: added = peer - bare per pair. vcrpy and OpenTelemetry patch
urllib3's classes globally, so the bare side uses :class:`BarePool`, a subclass that pins the
original methods and connection class and so is untouched by their patches. Scenarios: 1 KB
JSON, 256 KB, and an SSE stream of 20 events 1 ms apart (time to first byte shows a recorder
that buffers the stream). ``recorded`` is what reached the peer's output (trace lines,
cassette interactions, exported spans) against requests made.

Install the peers with
``pip install vcrpy opentelemetry-sdk opentelemetry-instrumentation-urllib3``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any, Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import urllib3
from urllib3.connectionpool import HTTPConnectionPool

from zltrace import Config, Tracer
from zltrace._cli.bench.ab import interleave, warm
from zltrace._cli.bench.plan import BYTES_256K, JSON_1K, SSE
from zltrace._cli.bench.serverproc import BenchServer
from zltrace._cli.bench.sides import Side
from zltrace._cli.bench.stats import dist_us
from zltrace._cli.bench.verify import verify_trace


class BarePool(HTTPConnectionPool):
    """A pool whose methods are urllib3's own, whatever vcrpy / OpenTelemetry patch later."""


for _name in ("urlopen", "_get_conn", "_put_conn", "_new_conn", "_make_request", "ConnectionCls"):
    setattr(BarePool, _name, getattr(HTTPConnectionPool, _name))


SCENARIOS = (
    ("json_1k", "1 KB JSON", JSON_1K),
    ("bytes_256k", "256 KB", BYTES_256K),
    ("sse", "SSE 20 ev", SSE),
)

# A peer: a context manager factory taking (server, tmp dir) and yielding
# (make_pool() -> pool, recorded() -> (count, note)).
PeerCtx = Callable[[BenchServer, str], "contextlib.AbstractContextManager[Any]"]


@contextlib.contextmanager
def peer_bare(server: BenchServer, tmp: str) -> Iterator[Any]:
    pools: list[Any] = []

    def make() -> Any:
        pools.append(BarePool(server.host, server.port, maxsize=1))
        return pools[-1]

    yield make, lambda: (None, "nothing recorded")


def _zltrace(zero_latency: bool) -> PeerCtx:
    @contextlib.contextmanager
    def peer(server: BenchServer, tmp: str) -> Iterator[Any]:
        tracers: list[Tracer] = []

        def make() -> Any:
            t = Tracer(Config(dir=tmp, zero_latency=zero_latency, handle_signals=False))
            tracers.append(t)
            return t.wrap(BarePool(server.host, server.port, maxsize=1))

        def recorded() -> tuple[int, str]:
            n = 0
            body = 0
            for t in tracers:
                t.close(timeout=120)
                v = verify_trace(t.path)
                n += v["complete"]
                body += v["body_bytes"]
            return n, f"bodies: {body / 1e6:.1f} MB on disk"

        yield make, recorded
        for t in tracers:
            t.close(timeout=120)

    return peer


@contextlib.contextmanager
def peer_vcrpy(server: BenchServer, tmp: str) -> Iterator[Any]:
    import vcr  # type: ignore[import-untyped]

    my_vcr = vcr.VCR(record_mode="all")
    state: dict[str, Any] = {"stack": None, "cassette": None, "count": 0, "save_s": 0.0}

    def close_current() -> None:
        if state["stack"] is not None:
            state["count"] += len(state["cassette"])
            t0 = time.perf_counter()
            state["stack"].close()  # writes the cassette
            state["save_s"] += time.perf_counter() - t0
            state["stack"] = None

    def make() -> Any:
        close_current()  # one cassette per scenario
        stack = contextlib.ExitStack()
        path = os.path.join(tmp, f"cassette-{state['count']}.yaml")
        state["cassette"] = stack.enter_context(my_vcr.use_cassette(path))
        state["stack"] = stack
        return HTTPConnectionPool(server.host, server.port, maxsize=1)  # patched by vcrpy

    def recorded() -> tuple[int, str]:
        close_current()
        return state["count"], f"in the cassettes (YAML written in {state['save_s']:.1f}s)"

    try:
        yield make, recorded
    finally:
        close_current()


@contextlib.contextmanager
def peer_otel(server: BenchServer, tmp: str) -> Iterator[Any]:
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class FileExporter(SpanExporter):
        def __init__(self, path: str) -> None:
            self.f = open(path, "w", encoding="utf-8")  # noqa: SIM115
            self.count = 0

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            for s in spans:
                self.f.write(s.to_json(indent=None) + "\n")
            self.count += len(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            self.f.close()

    exporter = FileExporter(os.path.join(tmp, "spans.jsonl"))
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    instrumentor = URLLib3Instrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:

        def make() -> Any:
            return HTTPConnectionPool(server.host, server.port, maxsize=1)  # instrumented

        def recorded() -> tuple[int, str]:
            provider.force_flush()
            return exporter.count, "spans only, no bodies"

        yield make, recorded
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


PEERS: list[tuple[str, PeerCtx, str]] = [
    ("bare urllib3", peer_bare, ""),
    ("zltrace zero-latency", _zltrace(True), ""),
    ("zltrace standard", _zltrace(False), ""),
    ("vcrpy record", peer_vcrpy, "vcr"),
    ("OpenTelemetry + BatchSpanProcessor", peer_otel, "opentelemetry.instrumentation.urllib3"),
]


def _importable(module: str) -> str | None:
    if not module:
        return None
    try:
        __import__(module)
    except Exception as exc:  # ImportError, or a peer broken against this urllib3
        return f"{type(exc).__name__}: {exc}"
    return None


def measure(server: BenchServer, peer: PeerCtx, pairs: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, peer(server, tmp) as (make, recorded):
        requests = 0
        for key, _label, path in SCENARIOS:
            bare = Side(BarePool(server.host, server.port, maxsize=1), "bare")
            side = Side(make(), "peer")
            warm([bare, side], path, 20 if key != "sse" else 2)
            gc.collect()
            s = interleave([bare, side], path, pairs=pairs[key])
            requests += side.requests
            out[key] = {
                "pairs": s.n,
                "added_ttlb_us": dist_us(s.added("ttlb", 1)),
                "added_ttfb_us": dist_us(s.added("ttfb", 1)),
                "bare_ttfb_us": dist_us(s.ttfb[0]),
                "peer_ttfb_us": dist_us(s.ttfb[1]),
                "added_caller_cpu_us": dist_us(s.added("cpu", 1)),
            }
            bare.pool.close()
        count, note = recorded()
        out["requests"] = requests
        out["recorded"] = count
        out["note"] = note
    return out


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}"


def table(results: dict[str, Any]) -> str:
    head = (
        "| peer | 1 KB added p50 / p99 (µs) | 256 KB added p50 / p99 (µs) "
        "| SSE first byte: added p50 (µs) | SSE last byte: added p50 (µs) "
        "| caller CPU / 1 KB req (µs) | recorded | bodies |"
    )
    rows = [head, "|" + "---|" * 8]
    for name, r in results.items():
        if "skipped" in r:
            rows.append(f"| {name} | skipped: {r['skipped']} |  |  |  |  |  |  |")
            continue
        j, b, e = r["json_1k"], r["bytes_256k"], r["sse"]
        rec = "n/a" if r["recorded"] is None else f"{r['recorded']}/{r['requests']}"
        rows.append(
            f"| {name} "
            f"| {_fmt(j['added_ttlb_us']['p50'])} / {_fmt(j['added_ttlb_us']['p99'])} "
            f"| {_fmt(b['added_ttlb_us']['p50'])} / {_fmt(b['added_ttlb_us']['p99'])} "
            f"| {_fmt(e['added_ttfb_us']['p50'])} "
            f"| {_fmt(e['added_ttlb_us']['p50'])} "
            f"| {_fmt(j['added_caller_cpu_us']['p50'])} "
            f"| {rec} | {r['note']} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=1000, help="A/B pairs for 1 KB (others scaled)")
    ap.add_argument("--quick", action="store_true", help="small samples (a smoke run)")
    ap.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="peers whose name contains NAME")
    args = ap.parse_args(argv)
    n = 150 if args.quick else args.pairs
    pairs = {"json_1k": n, "bytes_256k": max(20, n // 4), "sse": max(6, n // 25)}
    results: dict[str, Any] = {}
    with BenchServer() as server:
        for name, peer, module in PEERS:
            if args.only and not any(o.lower() in name.lower() for o in args.only):
                continue
            problem = _importable(module)
            if problem is not None:
                print(f"peers: skipping {name} ({problem})", file=sys.stderr)
                results[name] = {"skipped": problem}
                continue
            print(f"peers: {name} ...", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            results[name] = measure(server, peer, pairs)
            print(f"peers: {name} done in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    machine = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "urllib3": getattr(urllib3, "__version__", "?"),
    }
    versions = {}
    for mod, dist in (("vcr", "vcrpy"), ("opentelemetry.sdk", "opentelemetry-sdk")):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            __import__(mod)
            versions[dist] = version(dist)
    print(
        f"machine: {machine['nproc']} CPUs, Python {machine['python']}, urllib3 "
        f"{machine['urllib3']}; " + ", ".join(f"{k} {v}" for k, v in versions.items())
    )
    print(f"pairs: {pairs}; added = peer - bare of one interleaved pair (µs)\n")
    print(table(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {"machine": machine, "versions": versions, "pairs": pairs, "results": results},
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
