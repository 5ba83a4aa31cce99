"""What ``python -m zltrace ship`` costs: spans shipped per second and the shipper's memory.

    python bench/ship.py [--exchanges N] [--encoding protobuf|json] [--trace DIR] [--json FILE]

Records N LLM exchanges (an Anthropic Messages JSON answer, ~1 KB each, through a traced
urllib3 pool against a loopback server), or takes an existing trace with ``--trace``; then
runs ``python -m zltrace ship TRACE --otlp URL`` as a child process against a loopback OTLP
receiver that answers 200 at once. Prints the child's wall time, its CPU time (user + sys,
from ``wait4``: what the shipper itself spent, whatever else the machine was doing), spans
per wall second and per CPU second, and its peak RSS.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import urllib3

from zltrace import Config, Tracer, read, wrap

MESSAGE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "x" * 600}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 120, "output_tokens": 40},
}


class _Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    body = b""
    ctype = "application/json"
    counter: list[int] = [0]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        self.counter[0] += 1
        self.send_response(200)
        self.send_header("Content-Type", self.ctype)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


def _serve(body: bytes, ctype: str) -> tuple[http.server.ThreadingHTTPServer, list[int]]:
    counter = [0]
    handler = type("H", (_Quiet,), {"body": body, "ctype": ctype, "counter": counter})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, counter


def record(directory: str, n: int) -> None:
    """N traced LLM calls into ``directory``."""
    srv, _ = _serve(json.dumps(MESSAGE).encode(), "application/json")
    tracer = Tracer(Config(dir=directory))
    pool = wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.server_address[1]), tracer=tracer)
    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": []}).encode()
    for _ in range(n):
        pool.request("POST", "/v1/messages", body=body)
    tracer.close(timeout=60)
    srv.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints one result line (and JSON with --json)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exchanges", type=int, default=20000)
    p.add_argument("--encoding", choices=("protobuf", "json"), default="protobuf")
    p.add_argument("--trace", help="an existing trace file or directory (default: record one)")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--json", dest="json_out", metavar="FILE")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        trace = args.trace
        if trace is None:
            trace = os.path.join(tmp, "trace")
            print(f"recording {args.exchanges} exchanges...", file=sys.stderr)
            record(trace, args.exchanges)
        n = sum(1 for _ in read(trace))
        size = sum(
            os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(trace) for f in fs
        ) if os.path.isdir(trace) else os.path.getsize(trace)  # fmt: skip
        srv, posts = _serve(b"", "application/x-protobuf")
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        cmd = [sys.executable, "-m", "zltrace", "ship", trace, "--otlp", url]
        cmd += ["--encoding", args.encoding, "--batch", str(args.batch)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        srv.shutdown()
        code = os.waitstatus_to_exitcode(status)
        cpu = ru.ru_utime + ru.ru_stime
        result = {
            "exchanges": n,
            "trace_bytes": size,
            "encoding": args.encoding,
            "batch": args.batch,
            "requests": posts[0],
            "exit": code,
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "spans_per_wall_s": round(n / wall),
            "spans_per_cpu_s": round(n / cpu) if cpu else None,
            "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
        }
    print(
        f"ship {args.encoding}: {n} spans from {size / 1e6:.1f} MB of trace in {wall:.2f} s wall "
        f"/ {cpu:.2f} s CPU = {result['spans_per_wall_s']} spans/s wall, "
        f"{result['spans_per_cpu_s']} spans/CPU-s; peak RSS {result['peak_rss_mb']} MB; "
        f"{posts[0]} requests; exit {code}"
    )
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
