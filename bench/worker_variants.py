"""Worker variants: what would the tail and the throughput be with a cheaper worker, or none?

    python bench/worker_variants.py raw bench latency        # python -m zltrace bench, patched
    python bench/worker_variants.py null bench latency
    python bench/worker_variants.py current load --seconds 4  # a traced-only full-speed loop
    python bench/worker_variants.py bare load --seconds 4     # the same loop untraced

Variants, patched over zltrace's private ``Worker`` for measurement only (``raw`` and ``null``
write no readable trace, so the bench's data-loss line fails for them by design):

- ``current``: zltrace as it is;
- ``raw``: the worker only appends raw events -- a packed header and the caller's own bytes,
  request and response heads with credential headers blanked -- to ``<trace>.raw`` with
  ``os.writev``; no assembly, no JSON. "Raw storage, deferred parsing" taken to its end, with
  the same gather, slices and yields as the real worker;
- ``null``: the worker wakes every 100 ms and discards what was queued: capture alone;
- ``null-nobytes``: ``null``, and ``Tee.read`` reports the length of what it read instead of
  the bytes, so nothing keeps the caller's body alive (the paced-p99 experiment).

With ``ZLTRACE_FORMAT=raw`` the ``current`` variant is the raw log's worker; ``--raw-slice-us N``
sets its slice between yields and ``--no-pool`` passes every payload by reference.

``load`` runs one thread of 1 KB GETs against the bench server for ``--seconds`` and prints
requests/s and the user/system CPU per request of the caller and the worker threads (from
``/proc/self/task/<tid>/stat``, Linux).
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import threading
import time
from time import perf_counter_ns, thread_time_ns
from typing import Any

import urllib3

import zltrace
import zltrace._capture.tee as T
import zltrace._pipeline.rawpool as P
import zltrace._pipeline.rawworker as RW
import zltrace._pipeline.worker as W
from zltrace._cli.bench.seams import worker_thread
from zltrace._cli.bench.serverproc import BenchServer
from zltrace._pipeline.events import DATA, EOF, HEAD, SEND, START

_header = struct.Struct("<BIQI").pack  # kind, exchange, perf_counter_ns, payload length
_SECRET = frozenset({"authorization", "proxy-authorization", "x-api-key", "cookie", "set-cookie"})


def _blank_head(head: bytes) -> bytes:
    end = head.find(b"\r\n\r\n")
    for line in (head if end < 0 else head[:end]).split(b"\r\n")[1:]:
        name = line.partition(b":")[0]
        if name.strip().lower().decode("latin-1") in _SECRET:
            head = head.replace(line, name + b": <redacted>")
    return head


def _raw_handle(self: Any, batch: list[Any]) -> bool:
    fd = getattr(self, "_raw_fd", None)
    if fd is None:
        os.makedirs(os.path.dirname(self._writer.path), exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        fd = self._raw_fd = os.open(self._writer.path + ".raw", flags, 0o600)
    out: list[bytes] = []
    start, start_cpu = perf_counter_ns(), thread_time_ns()
    for ev in batch:
        kind = ev[0]
        if kind >= W.FLUSH:
            if out:
                os.writev(fd, out)
                out = []
            ev[1].set()
            if kind == W.STOP:
                os.close(fd)
                return True
            continue
        if kind == DATA:
            out += (_header(DATA, ev[1], ev[3], len(ev[2])), ev[2])
        elif kind == SEND:
            data = bytes(ev[2])
            if data.startswith((b"GET ", b"POST ", b"PUT ", b"DELETE ", b"PATCH ", b"HEAD ")):
                data = _blank_head(data)
            out += (_header(SEND, ev[1], ev[3], len(data)), data)
        elif kind == HEAD:
            resp = ev[3]
            lines = [
                f"{k}: {'<redacted>' if k.lower() in _SECRET else v}\r\n"
                for k, v in resp.msg._headers
            ]
            text = f"{resp.status} {resp.reason} {resp.version} {ev[4]}\r\n" + "".join(lines)
            data = text.encode("latin-1", "replace")
            out += (_header(HEAD, ev[1], ev[2], len(data)), data)
        elif kind == START:
            data = "\t".join(map(str, ev[2:])).encode("utf-8", "replace")
            out += (_header(START, ev[1], ev[4], len(data)), data)
        else:
            out.append(_header(kind, ev[1], ev[-1] if isinstance(ev[-1], int) else 0, 0))
        self.events += 1
        if len(out) >= 1000:  # IOV_MAX is 1024
            os.writev(fd, out)
            out = []
        now = perf_counter_ns()
        if now - start > W.SLICE_NS:  # the real worker's slicing, by CPU time
            if thread_time_ns() - start_cpu < W.SLICE_NS:
                start = now
                continue
            if out:
                os.writev(fd, out)
                out = []
            time.sleep(W.YIELD_S)
            start, start_cpu = perf_counter_ns(), thread_time_ns()
    if out:
        os.writev(fd, out)
    return False


def _null_loop(self: Any) -> None:
    q = self._q
    while True:
        time.sleep(0.1)
        for _ in range(q.qsize()):
            ev = q.get_nowait()
            if ev[0] >= W.FLUSH:
                ev[1].set()
                if ev[0] == W.STOP:
                    return


def _read_no_bytes(self: Any, amt: int | None = None) -> bytes:
    data: bytes = self._raw.read(amt)
    t = perf_counter_ns()
    if data:
        self._sink._put((DATA, self._ex, len(data), t))
    if amt is None or amt < 0 or len(data) < amt:
        self._sink._put((EOF, self._ex, t))
    return data


def _install(variant: str) -> None:
    if variant == "raw":
        W.Worker._handle = _raw_handle  # type: ignore[method-assign]
    elif variant in ("null", "null-nobytes"):
        W.Worker._loop = _null_loop  # type: ignore[method-assign]
        if variant == "null-nobytes":
            T.Tee.read = _read_no_bytes  # type: ignore[method-assign,assignment]
    elif variant != "current":
        raise SystemExit(f"unknown variant {variant!r}")


def _times(tid: int) -> tuple[int, int]:
    with open(f"/proc/self/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # utime, stime in clock ticks


def load(seconds: float, traced: bool) -> None:
    """One thread of 1 KB GETs at full speed; CPU per request of caller and worker."""
    with BenchServer() as srv:
        pool = urllib3.HTTPConnectionPool(srv.host, srv.port, maxsize=1)
        tracer = None
        me = wt = threading.get_native_id()  # bare: "worker" figures are the caller's again
        if traced:
            fmt = os.environ.get("ZLTRACE_FORMAT", "jsonl")
            cfg = zltrace.Config(dir=tempfile.mkdtemp(), handle_signals=False, format=fmt)
            tracer = zltrace.Tracer(cfg)
            pool = tracer.wrap(pool)
            worker = worker_thread(tracer)
            assert worker is not None and worker.native_id is not None
            wt = worker.native_id
        for _ in range(200):
            pool.request("GET", "/json?size=1024")
        n, t0 = 0, time.perf_counter()
        (wu0, ws0), (mu0, ms0) = _times(wt), _times(me)
        while time.perf_counter() - t0 < seconds:
            for _ in range(100):
                pool.request("GET", "/json?size=1024")
            n += 100
        elapsed = time.perf_counter() - t0
        (wu1, ws1), (mu1, ms1) = _times(wt), _times(me)
        tick = os.sysconf("SC_CLK_TCK")

        def per(a: int, b: int) -> float:
            return 1e6 * (b - a) / tick / n

        worker_cpu = f", worker user {per(wu0, wu1):.1f} sys {per(ws0, ws1):.1f}" if tracer else ""
        print(
            f"{n / elapsed:.0f} req/s; caller user {per(mu0, mu1):.1f} sys {per(ms0, ms1):.1f}"
            f"{worker_cpu} us per request"
        )
        if tracer is not None:
            tracer.close()
        pool.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=["bare", "current", "raw", "null", "null-nobytes"])
    parser.add_argument("what", choices=["bench", "load"])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument(
        "--raw-slice-us", type=int, help="ZLTRACE_FORMAT=raw: the raw worker's slice (us)"
    )
    parser.add_argument(
        "--no-pool", action="store_true", help="ZLTRACE_FORMAT=raw: every payload by reference"
    )
    args, rest = parser.parse_known_args(argv)
    if args.raw_slice_us is not None:
        RW.SLICE_NS = args.raw_slice_us * 1000
    if args.no_pool:
        P.SLOT = 0
    if args.what == "load":
        _install("current" if args.variant == "bare" else args.variant)
        load(args.seconds, traced=args.variant != "bare")
        return 0
    _install(args.variant)
    from zltrace._cli import main as cli

    return cli(["bench", *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
