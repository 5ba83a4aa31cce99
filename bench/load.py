"""A steady traced (or bare) load against the bench server, for profilers to attach to.

    python bench/load.py --seconds 20 --path '/json?size=1024' &
    py-spy record --pid $! --rate 2000 --format raw -o /tmp/zl.txt --duration 10

``--mode`` picks bare, zero-latency or standard; ``--threads`` the client threads.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import urllib3

from zltrace import Config, Tracer
from zltrace._cli.bench.serverproc import BenchServer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--path", default="/json?size=1024")
    ap.add_argument("--mode", choices=("bare", "zero-latency", "standard"), default="zero-latency")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rate", type=float, default=0.0, help="requests/s per thread (0: flat out)")
    args = ap.parse_args()
    with BenchServer() as server, tempfile.TemporaryDirectory() as tmp:
        pool: Any = urllib3.HTTPConnectionPool(
            server.host, server.port, maxsize=args.threads, block=True
        )
        tracer = None
        if args.mode != "bare":
            tracer = Tracer(
                Config(dir=tmp, zero_latency=args.mode == "zero-latency", handle_signals=False)
            )
            pool = tracer.wrap(pool)
        stop = time.monotonic() + args.seconds
        counts = [0] * args.threads

        def work(i: int) -> None:
            gap = 1.0 / args.rate if args.rate else 0.0
            while time.monotonic() < stop:
                r = pool.urlopen("GET", args.path, preload_content=False)
                for _ in r.stream(65536):
                    pass
                r.release_conn()
                counts[i] += 1
                if gap:
                    time.sleep(gap)

        print(f"pid {os.getpid()}", flush=True)
        threads = [threading.Thread(target=work, args=(i,)) for i in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(f"{sum(counts) / args.seconds:.0f} req/s", flush=True)
        if tracer is not None:
            print(tracer.stats(), flush=True)
            tracer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
