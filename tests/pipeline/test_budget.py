"""The memory budget: in-flight bodies spill to the side file, callers wait when the queue
outgrows the budget, and a 1 GB streamed response keeps RSS within the budget plus a constant.

Real loopback servers, real files; the only fault injected (a side file on ``/dev/full``)
goes through the tracer's file-opener seam.

Spilling bodies in flight to the ``.bodies`` side file is the JSON-lines format's (the raw log
has no bodies in flight: every byte is in a record once handled), so those tests pin
``format="jsonl"``; what both formats promise (callers wait instead of the queue outgrowing the
budget; a 1 GiB stream stays within the budget in RSS, all on disk) runs with both.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import urllib3
from support.faults import Faults
from support.server import ScriptedServer, response

import zltrace

MIB = 1024 * 1024
BLOCK = bytes(range(256)) * 4096  # 1 MiB, not valid UTF-8


def stream(tracer: zltrace.Tracer, srv: ScriptedServer, amt: int = 64 * 1024) -> str:
    """GET / through a traced pool, reading it in ``amt`` pieces; the body's sha256."""
    pool = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
    try:
        r = pool.request("GET", "/", preload_content=False)
        h = hashlib.sha256()
        for piece in r.stream(amt):
            h.update(piece)
        r.release_conn()
        return h.hexdigest()
    finally:
        pool.close()


@pytest.mark.parametrize("zero_latency", [True, False], ids=["zero-latency", "standard"])
@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_large_body_spills_and_reads_back_exactly(
    trace_dir: Path, framing: str, zero_latency: bool
) -> None:
    """A 32 MiB body against a 1 MiB budget: spilled while in flight, recorded byte for byte
    (JSON lines: the spill goes to the side file)."""
    body = BLOCK * 32
    with ScriptedServer(
        [response(200, body, framing=framing, chunk_sizes=[300_000])], keep_alive=False
    ) as srv:
        cfg = zltrace.Config(
            dir=str(trace_dir), memory_pool_size=MIB, zero_latency=zero_latency, format="jsonl"
        )
        t = zltrace.Tracer(cfg)
        digest = stream(t, srv)
        assert t.close(timeout=30)
    s = t.stats()
    assert digest == hashlib.sha256(body).hexdigest()
    assert s["budget_trims"] > 0
    assert s["budget_spilled_bytes"] > 16 * MIB
    assert s["records_lost"] == 0 and s["body_bytes_dropped"] == 0
    (ex,) = zltrace.read(t.path)
    assert ex.outcome == "complete"
    assert ex.response is not None
    assert hashlib.sha256(ex.response.raw_body).hexdigest() == digest
    line = json.loads(Path(t.path).read_text())
    assert "parts" in line["response"]["body"]  # stored in side-file extents


def test_unwritable_side_file_drops_bytes_visibly(trace_dir: Path) -> None:
    """Budget full and the side file on a full disk: bytes are dropped, and the record and
    stats() say how many; the app still gets every byte (JSON lines: a side file to fail)."""
    body = BLOCK * 8

    opener = Faults()
    opener.full = {".bodies"}

    with ScriptedServer([response(200, body, chunk_sizes=[100_000])], keep_alive=False) as srv:
        cfg = zltrace.Config(dir=str(trace_dir), memory_pool_size=256 * 1024, format="jsonl")
        t = zltrace.Tracer(cfg, opener=opener)
        digest = stream(t, srv)
        assert t.close(timeout=30)
    assert digest == hashlib.sha256(body).hexdigest()
    s = t.stats()
    assert s["body_bytes_dropped"] > 0
    (ex,) = zltrace.read(t.path)
    assert ex.error is not None and ex.error.type == "zltrace.BodyDropped"
    assert str(s["body_bytes_dropped"]) in ex.error.message
    assert ex.response is not None
    assert len(ex.response.raw_body) == len(body) - s["body_bytes_dropped"]


@pytest.mark.parametrize("fmt", ["jsonl", "raw"])
def test_callers_wait_when_the_queue_outgrows_the_budget(trace_dir: Path, fmt: str) -> None:
    """With a 64 KiB budget the app out-reads the worker; it is made to wait (counted: the
    budget's throttle in JSON lines, the pool's hold on bytes by reference in a raw log), and
    every byte is still recorded."""
    body = BLOCK * 16
    with ScriptedServer([response(200, body, chunk_sizes=[1 << 20])], keep_alive=False) as srv:
        cfg = zltrace.Config(dir=str(trace_dir), memory_pool_size=64 * 1024, format=fmt)
        t = zltrace.Tracer(cfg)
        digest = stream(t, srv, amt=256 * 1024)
        assert t.close(timeout=30)
    s = t.stats()
    assert (s["pool_holds"] if fmt == "raw" else s["budget_throttles"]) >= 1
    assert not s["budget_throttled"]  # released at the end
    (ex,) = zltrace.read(t.path)
    assert ex.response is not None
    assert hashlib.sha256(ex.response.raw_body).hexdigest() == digest


GIGABYTE_CHILD = textwrap.dedent(
    """
    import json, socket, sys, threading
    import urllib3, zltrace

    def hwm():
        # Peak RSS of this process image (VmHWM, KiB). Not ru_maxrss: that survives exec, so
        # a child of a big pytest process would report its parent's peak.
        with open("/proc/self/status") as f:
            return int(next(x for x in f if x.startswith("VmHWM:")).split()[1])

    BLOCK = bytes(range(256)) * 4096
    COUNT = int(sys.argv[2])
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % (len(BLOCK) * COUNT))
        for _ in range(COUNT):
            conn.sendall(BLOCK)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    pool = urllib3.HTTPConnectionPool("127.0.0.1", listener.getsockname()[1])
    tracer = None
    if sys.argv[1] == "traced":
        cfg = zltrace.Config(dir=sys.argv[3], memory_pool_size=10 * 2**20, format=sys.argv[4])
        tracer = zltrace.Tracer(cfg)
        pool = tracer.wrap(pool)
    before = hwm()
    r = pool.request("GET", "/", preload_content=False)
    n = 0
    for piece in r.stream(1 << 16):
        n += len(piece)
    r.release_conn()
    stats = {}
    if tracer is not None:
        assert tracer.close(timeout=120)
        stats = tracer.stats()
    peak = hwm()
    print(json.dumps({"read": n, "before_kib": before, "peak_kib": peak, "stats": stats}))
    """
)


def run_child(mode: str, count: int, trace_dir: Path, fmt: str = "raw") -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", GIGABYTE_CHILD, mode, str(count), str(trace_dir), fmt],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.mark.parametrize("fmt", ["jsonl", "raw"])
def test_one_gigabyte_stream_stays_within_the_budget(trace_dir: Path, fmt: str) -> None:
    """1 GiB streamed through a 10 MiB budget: peak RSS grows by at most budget + 32 MiB over
    the same download untraced, and the whole body is on disk (JSON lines: spilled to the
    side file while in flight; raw: in the log's records)."""
    count = 1024
    bare = run_child("bare", count, trace_dir)
    traced = run_child("traced", count, trace_dir, fmt)
    assert bare["read"] == traced["read"] == count * MIB
    growth_kib = traced["peak_kib"] - bare["peak_kib"]
    s = traced["stats"]
    print(f"peak RSS: bare {bare['peak_kib']} KiB, traced {traced['peak_kib']} KiB; {s}")
    assert growth_kib <= (10 + 32) * 1024, (growth_kib, s)
    assert s["records_lost"] == 0 and s["body_bytes_dropped"] == 0
    assert s["path"].endswith(".jsonl" if fmt == "jsonl" else ".zlog")
    if fmt == "jsonl":
        assert s["budget_spilled_bytes"] > 900 * MIB
        (line,) = Path(s["path"]).read_text().splitlines()
        body = json.loads(line)["response"]["body"]
        assert body["size"] == count * MIB
        assert sum(p[1] for p in body["parts"]) == count * MIB
    # Read back without loading the body: its last arrival ends at the last byte.
    (ex,) = zltrace.read(s["path"])
    assert ex.outcome == "complete" and ex.response is not None
    assert ex.response.reads[-1][0] == count * MIB
