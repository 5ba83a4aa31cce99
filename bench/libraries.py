"""Added latency per library: the same request, traced and untraced, interleaved (A/B).

For urllib3, requests and boto3 (bedrock-runtime ``invoke_model``), each round makes one
request with an untraced client and one with a traced one (``zltrace.wrap``), alternating
which goes first, against a keep-alive loopback server; the medians and the p90 of the
per-request wall times are printed. Bounded: ``--rounds`` rounds per library.

    python bench/libraries.py [--rounds N] [--body BYTES] [--aa]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


def serve(body: bytes) -> ThreadingHTTPServer:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    reply = head % len(body) + body

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _reply(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            # One write (headers and body): no delayed-ACK stall between two small writes.
            self.wfile.write(reply)

        do_GET = do_POST = _reply

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def clients(
    base: str, tracer: Any, aa: bool = False
) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    import zltrace

    def wrap(target: Any, tracer: Any) -> Any:
        return target if aa else zltrace.wrap(target, tracer=tracer)

    out: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {}
    import urllib3

    a, b = urllib3.PoolManager(), wrap(urllib3.PoolManager(), tracer)
    out["urllib3"] = (
        lambda: a.request("GET", base + "/x").data,
        lambda: b.request("GET", base + "/x").data,
    )
    try:
        import requests

        s1, s2 = requests.Session(), wrap(requests.Session(), tracer)
        out["requests"] = (lambda: s1.get(base + "/x").content, lambda: s2.get(base + "/x").content)
    except ImportError:
        pass
    try:
        import boto3

        def bedrock() -> Any:
            return boto3.client(
                "bedrock-runtime",
                endpoint_url=base,
                region_name="us-east-1",
                aws_access_key_id="t",
                aws_secret_access_key="t",
            )

        c1, c2 = bedrock(), wrap(bedrock(), tracer)
        out["boto3"] = (
            lambda: c1.invoke_model(modelId="m", body=b"{}")["body"].read(),
            lambda: c2.invoke_model(modelId="m", body=b"{}")["body"].read(),
        )
    except ImportError:
        pass
    return out


def main() -> None:
    import zltrace

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=500)
    ap.add_argument("--body", type=int, default=1024)
    ap.add_argument(
        "--aa", action="store_true", help="A/A: both sides untraced (the harness's own bias)"
    )
    args = ap.parse_args()
    srv = serve(b"x" * args.body)
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    with tempfile.TemporaryDirectory() as d:
        tracer = zltrace.Tracer(zltrace.Config(dir=d))
        for name, (bare, traced) in clients(base, tracer, args.aa).items():
            times: dict[str, list[int]] = {"bare": [], "traced": []}
            for _ in range(20):  # warm-up: connections, imports, specialisation
                bare(), traced()
            for i in range(args.rounds):
                order = [("bare", bare), ("traced", traced)]
                for label, fn in order if i % 2 else order[::-1]:
                    t0 = time.perf_counter_ns()
                    fn()
                    times[label].append(time.perf_counter_ns() - t0)
            med = {k: statistics.median(v) / 1000 for k, v in times.items()}
            p90 = {k: sorted(v)[int(len(v) * 0.9)] / 1000 for k, v in times.items()}
            print(
                f"{name:9s} bare p50 {med['bare']:7.1f} us  traced p50 {med['traced']:7.1f} us"
                f"  added p50 {med['traced'] - med['bare']:+6.1f} us"
                f"  (p90 {p90['bare']:.1f} vs {p90['traced']:.1f} us)"
            )
        tracer.close(timeout=10)
    srv.shutdown()


if __name__ == "__main__":
    main()
