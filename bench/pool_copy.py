"""Where the raw log's pool pays: caller CPU per payload, copied into the pool or by reference.

    python bench/pool_copy.py [--rounds N] [--batch B] [--sizes 256 1024 ...]

Per size, on one thread, in rounds that alternate the two ways: a fresh ``bytes`` of that size
is made as a socket read makes it (a slice of a larger buffer: allocation and copy), put
through :class:`RawInlet` either copied into the pool (the caller's object freed at once) or by
reference (kept alive in the queue), and every ``--batch`` puts the queue is drained and the
slots released, as a worker's wake does. The figure is ``thread_time_ns`` per payload, the
allocation included; the median over rounds. Deterministic work, but timings: a loaded
machine makes them noisy, so compare the two columns of one run.
"""

from __future__ import annotations

import argparse
import queue
import statistics
from time import thread_time_ns
from typing import Any

from zltrace._pipeline.events import CLOSE, DATA, EOF, HEAD, SEND, START
from zltrace._pipeline.rawpool import RawInlet

POOL = 10 * 1024 * 1024


def one(size: int, copy: bool, batch: int, n: int) -> float:
    q: queue.SimpleQueue[Any] = queue.SimpleQueue()
    inlet = RawInlet(q.put, POOL, 1 << 30, slot=max(size, 64) if copy else 0)
    src = bytes(range(256)) * (size // 256 + 2)
    get = q.get_nowait
    put = inlet.put
    t0 = thread_time_ns()
    for i in range(n):
        data = src[i % 200 : i % 200 + size]  # a new object, as a read makes one
        put((DATA, 1, data, i))
        del data
        if i % batch == batch - 1:
            evs = [get() for _ in range(q.qsize())]
            inlet.release(ev[4] for ev in evs if len(ev) > 4)
            del evs
    return (thread_time_ns() - t0) / n


def per_request(n: int, rounds: int) -> None:
    """The events of one 1 KB GET, put the way each variant puts them: the bare queue's
    ``put`` (no pool, no marks), the inlet with the pool off, and the inlet with the pool."""
    head = b"GET /json?size=1024 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n"
    src = bytes(1100)
    variants: dict[str, list[float]] = {"queue.put": [], "inlet, no pool": [], "inlet, pool": []}
    for r in range(rounds):
        for name in variants if r % 2 else reversed(list(variants)):
            q: queue.SimpleQueue[Any] = queue.SimpleQueue()
            inlet = RawInlet(q.put, POOL, 100, slot=0 if name == "inlet, no pool" else None)
            put = q.put if name == "queue.put" else inlet.put
            get = q.get_nowait
            t0 = thread_time_ns()
            for i in range(n):
                put((START, i + 1, 0, i + 1, i, "http", "127.0.0.1", 80, "GET", "/json"))
                put((SEND, i + 1, head, i))
                put((HEAD, i + 1, i, None, 1024))
                put((DATA, i + 1, src[: 1024 + i % 8], i))
                put((EOF, i + 1, i))
                put((CLOSE, i + 1, i))
                if i % 100 == 99:
                    evs = [get() for _ in range(q.qsize())]
                    inlet.release(ev[4] for ev in evs if ev[0] in (SEND, DATA) and len(ev) > 4)
                    del evs
            variants[name].append((thread_time_ns() - t0) / n)
    print(f"ns per 1 KB request's six events (median of {rounds}, the DATA bytes made each time)")
    for name, got in variants.items():
        print(f"  {name:<16} {statistics.median(got):8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[128, 512, 1024, 2048, 4096, 8192, 16384, 65536]
    )
    args = parser.parse_args()
    per_request(args.n, args.rounds)
    print(f"ns per payload (median of {args.rounds}); batch {args.batch}")
    print(f"{'size':>7} {'copied':>8} {'by ref':>8} {'copy - ref':>10}")
    for size in args.sizes:
        got: dict[bool, list[float]] = {True: [], False: []}
        for r in range(args.rounds):
            for copy in (True, False) if r % 2 else (False, True):
                got[copy].append(one(size, copy, args.batch, args.n))
        c, b = statistics.median(got[True]), statistics.median(got[False])
        print(f"{size:>7} {c:>8.0f} {b:>8.0f} {c - b:>+10.0f}")


if __name__ == "__main__":
    main()
