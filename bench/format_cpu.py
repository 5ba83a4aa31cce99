"""Worker CPU per 1 KB exchange in place: the JSONL trace against the raw event log.

    python bench/format_cpu.py [--rounds 6] [--requests 2000]

One client thread sends GET /json?size=1024 to the bench server through a traced pool; the
worker thread's CPU time (``pthread_getcpuclockid``) over the run, divided by the exchanges,
is the figure. Rounds alternate the formats (jsonl, raw, jsonl, ...) so that a machine busy
with other work weighs on both alike; the caller's CPU per request is printed too. Also
printed: the read-time cost the raw log moves off the worker (``zltrace.read`` of the trace,
CPU per exchange, bodies left unread), which the JSONL trace pays on the worker instead.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import urllib3

import zltrace
from zltrace._cli.bench.seams import worker_clock
from zltrace._cli.bench.serverproc import BenchServer


def one_round(server: BenchServer, fmt: str, n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        t = zltrace.Tracer(zltrace.Config(dir=d, format=fmt, handle_signals=False, alerts=False))
        pool = t.wrap(urllib3.HTTPConnectionPool(server.host, server.port, maxsize=1))
        for _ in range(50):  # warm up: connection, caches, the worker started
            pool.request("GET", "/json?size=1024").data  # noqa: B018
        assert t.flush(timeout=30)
        clock = worker_clock(t)
        assert clock is not None, "no worker CPU clock on this platform"
        w0, c0 = clock(), time.thread_time_ns()
        for _ in range(n):
            pool.request("GET", "/json?size=1024").data  # noqa: B018
        assert t.flush(timeout=60)
        w1, c1 = clock(), time.thread_time_ns()
        pool.close()
        assert t.close(timeout=60)
        r0 = time.process_time_ns()
        count = sum(1 for _ in zltrace.read(t.path))
        r1 = time.process_time_ns()
        assert count == n + 50, (count, n)
    return {
        "worker_us": (w1 - w0) / n / 1000,
        "caller_us": (c1 - c0) / n / 1000,
        "read_us": (r1 - r0) / count / 1000,
    }


def replay(server: BenchServer, n: int) -> None:
    """The worker's own work alone: events captured once, then handed to each format's
    worker-side code on this thread (no queue, no waking), CPU per exchange."""
    from zltrace._cli.bench.seams import divert_events

    events: list[tuple[object, ...]] = []
    with tempfile.TemporaryDirectory() as d:
        t = zltrace.Tracer(zltrace.Config(dir=d, handle_signals=False, alerts=False))
        assert divert_events(t, events.append)
        pool = t.wrap(urllib3.HTTPConnectionPool(server.host, server.port, maxsize=1))
        for _ in range(n):
            pool.request("GET", "/json?size=1024").data  # noqa: B018
        pool.close()
        t.close(timeout=10)
    for fmt in ("jsonl", "raw", "jsonl", "raw"):
        with tempfile.TemporaryDirectory() as d:
            t = zltrace.Tracer(zltrace.Config(dir=d, format=fmt, handle_signals=False))
            t._worker.stop(10)  # type: ignore[union-attr]  # its work is done here instead
            writer, asm, enc = t._writer, t._assembler, t._raw
            c0 = time.thread_time_ns()
            if enc is not None:  # what RawWorker does per batch: encode, buffer, flush
                recs: list[bytes] = []
                for ev in events:
                    enc.encode(ev, recs)
                    for r in recs:
                        writer.add_record(r)
                    recs.clear()
                    if writer.pending >= 100:
                        writer.flush()
            else:  # what Worker does: assemble, encode finished exchanges, flush
                out: list[object] = []
                for ev in events:
                    asm.handle(ev, out)
                    for f in out:
                        writer.add(f)
                    out.clear()
                    if writer.pending >= 100:
                        writer.flush()
            writer.flush()
            c1 = time.thread_time_ns()
        print(
            f"{fmt:5}  replayed alone (no queue, no wake-ups, flush per 100 records): "
            f"{(c1 - c0) / n / 1000:.1f} us CPU/exchange"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--replay", action="store_true", help="the worker-side code alone")
    args = ap.parse_args()
    if args.replay:
        with BenchServer() as server:
            replay(server, args.requests)
        return
    got: dict[str, list[dict[str, float]]] = {"jsonl": [], "raw": []}
    with BenchServer() as server:
        for i in range(args.rounds):
            for fmt in ("jsonl", "raw") if i % 2 == 0 else ("raw", "jsonl"):
                got[fmt].append(one_round(server, fmt, args.requests))
    for fmt, rows in got.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        spread = {k: (min(r[k] for r in rows), max(r[k] for r in rows)) for k in rows[0]}
        print(
            f"{fmt:5}  worker CPU {med['worker_us']:.1f} us/exchange "
            f"(min {spread['worker_us'][0]:.1f}, max {spread['worker_us'][1]:.1f}); "
            f"caller CPU {med['caller_us']:.1f} us/request; "
            f"read() {med['read_us']:.1f} us/exchange  [median of {len(rows)} rounds]"
        )


if __name__ == "__main__":
    main()
