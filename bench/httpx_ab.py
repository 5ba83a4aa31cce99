"""What tracing costs an httpx / httpx2 caller: an interleaved A/B against a bare client.

    python bench/httpx_ab.py [--pairs N] [--libs httpx httpx2] [--json FILE]

For each library (skipped with a message when it is not importable) two clients of the same
settings talk to the loopback bench server (a separate process): a bare one and one traced
with ``wrap()`` by a zero-latency tracer. Each pair makes one request on each, the order
flipping each pair; added = traced - bare per pair, so drift of the machine cancels out.
Scenarios: 1 KB JSON, 256 KB, and an SSE stream of 20 events 1 ms apart, read as a stream
(time to first byte shows a tap that buffers). Bounded: ``--pairs`` pairs per scenario (the
256 KB and SSE ones get a quarter), and at most 20 s per scenario. ``recorded`` is what
reached the trace against requests made.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from time import perf_counter_ns
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from zltrace import Config, Tracer, read
from zltrace._capture.httpx_wrap import wrap_target
from zltrace._cli.bench.plan import BYTES_256K, JSON_1K, SSE
from zltrace._cli.bench.serverproc import BenchServer
from zltrace._cli.bench.stats import dist_us

SCENARIOS = {"json_1k": (JSON_1K, 1), "bytes_256k": (BYTES_256K, 4), "sse_20x1ms": (SSE, 4)}
MAX_SECONDS = 20.0


def fetch(client: Any, url: str) -> tuple[int, int]:
    """One streamed GET read to the end: (ttfb_ns, ttlb_ns)."""
    t0 = perf_counter_ns()
    first = 0
    with client.stream("GET", url) as r:
        for _ in r.iter_raw():
            if not first:
                first = perf_counter_ns()
        if r.status_code != 200:
            raise RuntimeError(f"bench server answered {r.status_code} to {url}")
    end = perf_counter_ns()
    return (first or end) - t0, end - t0


def measure(hx: Any, url: str, pairs: int, tracer: Tracer) -> dict[str, Any]:
    bare, traced = hx.Client(), hx.Client()
    wrap_target(traced, tracer)
    with bare, traced:
        for _ in range(20):  # warm: connections open, caches filled
            fetch(bare, url)
            fetch(traced, url)
        ttfb: list[int] = []
        ttlb: list[int] = []
        deadline = time.monotonic() + MAX_SECONDS
        for i in range(pairs):
            if i % 2:
                tb, lb = fetch(traced, url)
                fb, bb = fetch(bare, url)
            else:
                fb, bb = fetch(bare, url)
                tb, lb = fetch(traced, url)
            ttfb.append(tb - fb)
            ttlb.append(lb - bb)
            if time.monotonic() > deadline:
                break
    return {"pairs": len(ttlb), "added_ttfb_us": dist_us(ttfb), "added_ttlb_us": dist_us(ttlb)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--libs", nargs="+", default=["httpx", "httpx2"])
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {}
    with BenchServer() as server, tempfile.TemporaryDirectory() as tmp:
        for name in args.libs:
            try:
                hx = importlib.import_module(name)
            except ImportError as e:
                print(f"{name}: skipped ({e})", file=sys.stderr)
                continue
            for scenario, (path, div) in SCENARIOS.items():
                tracer = Tracer(Config(dir=os.path.join(tmp, f"{name}-{scenario}")))
                row = measure(hx, server.url + path, max(1, args.pairs // div), tracer)
                tracer.close(timeout=30)
                made = row["pairs"] + 20  # with the warm-up
                row["recorded"] = f"{sum(1 for _ in read(tracer.path))}/{made}"
                results[f"{name} {hx.__version__} {scenario}"] = row
                t, b = row["added_ttfb_us"], row["added_ttlb_us"]
                print(
                    f"{name:7} {scenario:11} pairs={row['pairs']:5} "
                    f"added ttfb p50={t['p50']:7.1f}us p95={t['p95']:7.1f}us  "
                    f"ttlb p50={b['p50']:7.1f}us p95={b['p95']:7.1f}us  "
                    f"recorded={row['recorded']}"
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
