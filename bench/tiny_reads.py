"""What tracing costs an app that reads one response in tiny pieces, against bare urllib3.

    python bench/tiny_reads.py [--size N] [--rounds R] [--budget BYTES] [--how read stream]
                               [--json FILE]

The loopback bench server (a separate process) sends one response of ``--size`` bytes
(default 1,000,000); the app reads it with ``read(1)`` in a loop, or with ``stream(1)``, bare
or through a zero-latency tracer whose ``memory_pool_size`` is ``--budget`` (default 1 MiB).
Every run is a fresh child process (RSS does not shrink back within a process), and the runs
are interleaved: bare, traced, bare, traced ... with the order flipping each round, so drift
of a loaded machine falls on both sides alike.

Per run the child reports: the reading thread's CPU time (``thread_time``), the whole
process's CPU time (worker thread included), wall time, RSS growth over the read
(``zltrace._util.rss_bytes`` after minus before; the trace is closed first) and peak RSS
growth (VmHWM), and the tracer's ``memory_held_peak``. Printed: medians per side and the
per-read difference traced - bare in microseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

CHILD = r"""
import json, os, sys, time
import urllib3
import zltrace
from zltrace._util import rss_bytes

def hwm():
    with open("/proc/self/status") as f:
        return int(next(x for x in f if x.startswith("VmHWM:")).split()[1]) * 1024

mode, how, size, budget, port, tdir = sys.argv[1:7]
size, budget, port = int(size), int(budget), int(port)
pool = urllib3.HTTPConnectionPool("127.0.0.1", port)
tracer = None
if mode == "traced":
    tracer = zltrace.Tracer(zltrace.Config(dir=tdir, memory_pool_size=budget))
    pool = tracer.wrap(pool)
pool.request("GET", "/bytes?size=1024")  # warm: connection open, code paths loaded
rss0, hwm0 = rss_bytes(), hwm()
cpu0, tcpu0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
r = pool.request("GET", "/bytes?size=%d" % size, preload_content=False)
n = 0
if how == "read":
    read = r.read
    while True:
        b = read(1)
        if not b:
            break
        n += len(b)
else:
    for b in r.stream(1):
        n += len(b)
r.release_conn()
tcpu, wall = time.thread_time() - tcpu0, time.perf_counter() - wall0
stats = {}
if tracer is not None:
    assert tracer.close(timeout=300)
    stats = tracer.stats()
cpu = time.process_time() - cpu0
out = {"read": n, "thread_cpu_s": tcpu, "process_cpu_s": cpu, "wall_s": wall,
       "rss_growth": rss_bytes() - rss0, "hwm_growth": hwm() - hwm0,
       "memory_held_peak": stats.get("memory_held_peak"),
       "records_lost": stats.get("records_lost"),
       "budget_throttles": stats.get("budget_throttles"),
       "budget_spilled_bytes": stats.get("budget_spilled_bytes")}
if tracer is not None:
    (ex,) = [e for e in zltrace.read(tracer.path) if e.request.url.endswith("size=%d" % size)]
    out["recorded"] = len(ex.response.raw_body)
    out["reads_recorded"] = len(ex.response.reads)
print(json.dumps(out))
"""


def run(mode: str, how: str, size: int, budget: int, port: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="zl-tiny-") as tdir:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, mode, how, str(size), str(budget), str(port), tdir],
            capture_output=True,
            text=True,
            timeout=900,
        )
    if out.returncode:
        raise RuntimeError(f"child {mode} {how} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout)
    if result["read"] != size:
        raise RuntimeError(f"child {mode} {how} read {result['read']} of {size} bytes")
    return result


def med(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main(argv: list[str] | None = None) -> int:
    from zltrace._cli.bench.serverproc import BenchServer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--budget", type=int, default=1 << 20)
    p.add_argument("--how", nargs="+", default=["read", "stream"], choices=["read", "stream"])
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    report: dict[str, Any] = {"size": args.size, "budget": args.budget, "load": os.getloadavg()}
    with BenchServer() as server:
        for how in args.how:
            sides: dict[str, list[dict[str, Any]]] = {"bare": [], "traced": []}
            for i in range(args.rounds):
                order = ["bare", "traced"] if i % 2 == 0 else ["traced", "bare"]
                for mode in order:
                    r = run(mode, how, args.size, args.budget, server.port)
                    sides[mode].append(r)
                    print(f"{how} {mode}: {json.dumps(r)}", file=sys.stderr)
            bare, traced = sides["bare"], sides["traced"]
            per_read = 1e6 / args.size
            summary = {
                "bare_thread_cpu_s": med(bare, "thread_cpu_s"),
                "traced_thread_cpu_s": med(traced, "thread_cpu_s"),
                "bare_wall_s": med(bare, "wall_s"),
                "traced_wall_s": med(traced, "wall_s"),
                "added_thread_cpu_us_per_read": (
                    med(traced, "thread_cpu_s") - med(bare, "thread_cpu_s")
                )
                * per_read,
                "added_process_cpu_us_per_read": (
                    med(traced, "process_cpu_s") - med(bare, "process_cpu_s")
                )
                * per_read,
                "added_wall_us_per_read": (med(traced, "wall_s") - med(bare, "wall_s")) * per_read,
                "rss_growth_mib": {
                    "bare": med(bare, "rss_growth") / 2**20,
                    "traced": med(traced, "rss_growth") / 2**20,
                },
                "peak_rss_growth_mib": {
                    "bare": med(bare, "hwm_growth") / 2**20,
                    "traced": med(traced, "hwm_growth") / 2**20,
                },
                "memory_held_peak": max(r["memory_held_peak"] for r in traced),
                "recorded_exactly": all(r["recorded"] == args.size for r in traced),
                "reads_recorded": [r["reads_recorded"] for r in traced],
                "records_lost": sum(r["records_lost"] for r in traced),
            }
            report[how] = {"summary": summary, "runs": sides}
            print(f"{how}(1) x {args.size}: {json.dumps(summary)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    started = time.perf_counter()
    status = main()
    print(f"took {time.perf_counter() - started:.0f} s", file=sys.stderr)
    sys.exit(status)
