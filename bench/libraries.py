"""Added latency per library: the same call, traced (``zltrace.wrap``) and untraced.

    python bench/libraries.py [--rounds N] [--isolated N] [--modes M ...] [--only LIB ...]
                              [--json FILE] [--markdown]

Libraries (each skipped with a message when not importable): urllib3, requests, boto3
(Bedrock ``converse_stream``, read to the end), httpx and httpx2 (sync and async), the
anthropic and openai SDKs (streamed calls, read to the end), elasticsearch (``search``) and
kubernetes (``list_namespaced_pod``). Each talks to a loopback server in a **child process**
(it never competes with this process for the GIL) that answers with canned wire bytes: a
1 KiB JSON document, a Bedrock event stream, Anthropic / OpenAI SSE streams (one HTTP chunk
per event), an Elasticsearch search result (with ``X-Elastic-Product``), a Kubernetes
PodList.

Method. Per library three clients of the same settings: ``bare``, ``bare2`` (untraced too:
the A/A line, the harness's own noise) and ``traced``. Each round runs one block of calls on
each client, the order of the three rotating through all six permutations, so drift of the
machine hits every side alike; before each block the tracer is flushed and the process
sleeps 10 ms. Two modes:

- ``back-to-back``: blocks of 20 calls, the first 3 not counted (the switch between
  clients): an application making one call after another, where the tracer's worker
  processes earlier calls while later ones run (``--rounds`` blocks per side).
- ``isolated``: blocks of one call: a call after a pause, the worker idle when it starts (as
  for most LLM calls; ``--isolated`` calls per side).

Added p50 = p50(traced) - p50(bare) over all counted calls; added paired = the median over
rounds of (median of the traced block - median of the bare block), which drift between
rounds does not reach; added p99 = p99(traced) - p99(bare); the A/A columns are the same for
``bare2``. CPU per call: this thread's CPU time (``thread_time``), and the whole
process's (``process_time``, the tracer's worker included, taken over each block and the
flush after it), traced minus bare. Every traced call must be in the trace (``recorded``).

Why not alternate single calls back to back: the worker wakes on a traced call's first
event, gathers events for 2 ms and then assembles and writes them, holding the GIL in
slices -- so part of a traced call's cost lands on whatever call of this process runs a few
milliseconds later. In the order traced, bare, bare, traced, ... with ~1 ms per call that is
always a bare call (bare came out 100-400 us slower than traced for requests and boto3);
with other call durations it is spread over both sides and cancels out of the difference.
In a back-to-back block it lands on the traced side's own later calls, as in an application
that traces all its calls, and the pause before each block keeps it off the next block.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
Call = Callable[[], Any]
Client = tuple[Call, Callable[[], None], Any]  # (call, close, object to wrap)

# -- the server (child process, stdlib only) --------------------------------------------------


def _read_request(f: Any) -> tuple[str, dict[str, str]] | None:
    line = f.readline(65536)
    if not line:
        return None
    target = line.split()[1].decode()
    headers: dict[str, str] = {}
    while True:
        h = f.readline(65536)
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return target, headers


def _serve_connection(sock: socket.socket, routes: list[tuple[str, list[bytes]]]) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = sock.makefile("rb")
    try:
        while True:
            got = _read_request(f)
            if got is None:
                return
            target, headers = got
            if headers.get("expect", "").lower() == "100-continue":
                sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            if "content-length" in headers:
                f.read(int(headers["content-length"]))
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                while f.readline() not in (b"0\r\n", b""):
                    pass
                f.readline()
            path = target.partition("?")[0]
            pieces = next((p for suffix, p in routes if path.endswith(suffix)), None)
            for piece in pieces or [b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"]:
                sock.sendall(piece)
    except OSError:
        pass
    finally:
        f.close()
        sock.close()


def serve_forever(routes_file: str) -> None:
    """The child: serve the pickled routes on 127.0.0.1, print ``PORT n``, exit on stdin EOF."""
    with open(routes_file, "rb") as f:
        routes = pickle.load(f)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print("PORT", listener.getsockname()[1], flush=True)

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=_serve_connection, args=(conn, routes), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    sys.stdin.read()


# -- what the server answers ------------------------------------------------------------------


def _response(body: bytes, content_type: str, extra: str = "") -> list[bytes]:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{extra}"
    return [f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body]


def _chunked(pieces: list[bytes], content_type: str) -> list[bytes]:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    return [head.encode(), *(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces), b"0\r\n\r\n"]


def build_routes() -> list[tuple[str, list[bytes]]]:
    """(path suffix, pieces written one ``sendall`` each), first match wins."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from support import bedrock, llm_fixtures

    doc = json.dumps({"items": [{"id": i, "name": "x" * 40} for i in range(16)]}).encode()
    pod = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": "web-1", "namespace": "default", "uid": "u-1"},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
        "status": {"phase": "Running"},
    }
    pods = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}}
    hits = {"took": 1, "timed_out": False, "hits": {"total": {"value": 1, "relation": "eq"}}}
    hits["hits"]["hits"] = [{"_index": "docs", "_id": "1", "_source": {"a": 1}}]  # type: ignore[index]
    es = "X-Elastic-Product: Elasticsearch\r\n"
    return [
        ("/converse-stream", _chunked(bedrock.CONVERSE_STREAM_EVENTS, bedrock.STREAM_TYPE)),
        ("/v1/messages", _chunked(llm_fixtures.ANTHROPIC_TEXT.events, "text/event-stream")),
        ("/v1/chat/completions", _chunked(llm_fixtures.CHAT_TEXT.events, "text/event-stream")),
        ("/_search", _response(json.dumps(hits).encode(), "application/json", es)),
        ("/pods", _response(json.dumps({**pods, "items": [pod] * 3}).encode(), "application/json")),
        ("/json", _response(doc, "application/json")),
    ]


class Server:
    """The server child process; ``url`` once started."""

    def __enter__(self) -> Server:
        fd, self._routes = tempfile.mkstemp(suffix=".routes")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(build_routes(), f)
        self._proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve", self._routes],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        port = int(self._proc.stdout.readline().split()[1])
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(10)
        os.unlink(self._routes)


# -- the clients --------------------------------------------------------------------------------

ASK = [{"role": "user", "content": "Hello"}]


def _urllib3(url: str) -> Client:
    import urllib3

    m = urllib3.PoolManager()
    return (lambda: m.request("GET", url + "/json").data), m.clear, m


def _requests(url: str) -> Client:
    import requests

    s = requests.Session()
    return (lambda: s.get(url + "/json").content), s.close, s


def _boto3(url: str) -> Client:
    import boto3

    c = boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    message = [{"role": "user", "content": [{"text": "Hello"}]}]

    def call() -> Any:
        return list(c.converse_stream(modelId="m", messages=message)["stream"])

    return call, c.close, c


def _httpx(name: str, is_async: bool) -> Callable[[str], Client]:
    def make(url: str) -> Client:
        hx = importlib.import_module(name)
        if not is_async:
            c = hx.Client()
            return (lambda: c.get(url + "/json").content), c.close, c
        ac = hx.AsyncClient()
        loop = asyncio.new_event_loop()

        async def get() -> bytes:
            return bytes((await ac.get(url + "/json")).content)

        def close() -> None:
            loop.run_until_complete(ac.aclose())
            loop.close()

        return (lambda: loop.run_until_complete(get())), close, ac

    return make


def _anthropic(url: str) -> Client:
    import anthropic

    c = anthropic.Anthropic(api_key="sk-ant-bench", base_url=url, max_retries=0)

    def call() -> Any:
        return list(c.messages.create(model="m", max_tokens=10, messages=ASK, stream=True))

    return call, c.close, c


def _openai(url: str) -> Client:
    import openai

    c = openai.OpenAI(api_key="sk-bench", base_url=url + "/v1", max_retries=0)

    def call() -> Any:
        return list(c.chat.completions.create(model="m", messages=ASK, stream=True))

    return call, c.close, c


def _elasticsearch(url: str) -> Client:
    import elasticsearch

    es = elasticsearch.Elasticsearch(url)
    return (lambda: es.search(index="docs", query={"match": {"a": 1}}).body), es.close, es


def _kubernetes(url: str) -> Client:
    import kubernetes

    cfg = kubernetes.client.Configuration()
    cfg.host = url
    api = kubernetes.client.ApiClient(cfg)
    v1 = kubernetes.client.CoreV1Api(api)
    return (lambda: v1.list_namespaced_pod("default")), api.close, api


LIBRARIES: dict[str, Callable[[str], Client]] = {
    "urllib3": _urllib3,
    "requests": _requests,
    "boto3": _boto3,
    "httpx": _httpx("httpx", False),
    "httpx-async": _httpx("httpx", True),
    "httpx2": _httpx("httpx2", False),
    "httpx2-async": _httpx("httpx2", True),
    "anthropic": _anthropic,
    "openai": _openai,
    "elasticsearch": _elasticsearch,
    "kubernetes": _kubernetes,
}

# -- the measurement ----------------------------------------------------------------------------

PERMUTATIONS = [(0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1), (2, 1, 0), (1, 0, 2)]
SIDES = ("bare", "bare2", "traced")


def _quantile(values: list[int], q: float) -> float:
    s = sorted(values)
    i = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[i] / 1000.0


MODES = {
    # name: (block, skip, settle_ms) -- rounds come from the command line
    "back-to-back": (20, 3, 10.0),
    "isolated": (1, 0, 10.0),
}


def measure(name: str, url: str, mode: str, rounds: int, trace_dir: str) -> dict[str, Any]:
    import zltrace

    block, skip, settle_ms = MODES[mode]
    tracer = zltrace.Tracer(zltrace.Config(dir=trace_dir))
    make = LIBRARIES[name]
    clients = [make(url), make(url), make(url)]
    zltrace.wrap(clients[2][2], tracer=tracer)
    wall: list[list[int]] = [[], [], []]
    cpu: list[list[int]] = [[], [], []]
    proc_cpu = [0, 0, 0]
    counted = [0, 0, 0]
    block_p50: list[list[float]] = [[], [], []]  # per round, the median of each side's block
    for _ in range(10):  # warm-up: connections, imports, caches
        for call, _, _ in clients:
            call()
    for r in range(rounds):
        for side in PERMUTATIONS[r % len(PERMUTATIONS)]:
            call = clients[side][0]
            tracer.flush(timeout=10)
            time.sleep(settle_ms / 1000)
            p0 = time.process_time_ns()
            for i in range(block):
                c0 = time.thread_time_ns()
                t0 = time.perf_counter_ns()
                call()
                t1 = time.perf_counter_ns()
                c1 = time.thread_time_ns()
                if i >= skip:
                    wall[side].append(t1 - t0)
                    cpu[side].append(c1 - c0)
            tracer.flush(timeout=10)
            proc_cpu[side] += time.process_time_ns() - p0
            counted[side] += block
            block_p50[side].append(_quantile(wall[side][-(block - skip) :], 0.5))
    for _, close, _ in clients:
        close()
    tracer.close(timeout=30)
    recorded = sum(1 for _ in zltrace.read(tracer.path))
    p50 = [_quantile(w, 0.5) for w in wall]
    p99 = [_quantile(w, 0.99) for w in wall]
    cpu_mean = [sum(c) / len(c) / 1000.0 for c in cpu]
    proc = [proc_cpu[i] / counted[i] / 1000.0 for i in range(3)]

    def paired(side: int) -> float:
        diffs = sorted(a - b for a, b in zip(block_p50[side], block_p50[0]))
        return diffs[len(diffs) // 2]

    return {
        "library": name,
        "mode": mode,
        "calls_per_side": len(wall[0]),
        **{f"{s}_p50_us": round(p50[i], 1) for i, s in enumerate(SIDES)},
        **{f"{s}_p99_us": round(p99[i], 1) for i, s in enumerate(SIDES)},
        "added_p50_us": round(p50[2] - p50[0], 1),
        "added_p99_us": round(p99[2] - p99[0], 1),
        "aa_p50_us": round(p50[1] - p50[0], 1),
        "added_paired_us": round(paired(2), 1),
        "aa_paired_us": round(paired(1), 1),
        "aa_p99_us": round(p99[1] - p99[0], 1),
        "added_caller_cpu_us": round(cpu_mean[2] - cpu_mean[0], 1),
        "aa_caller_cpu_us": round(cpu_mean[1] - cpu_mean[0], 1),
        "added_process_cpu_us": round(proc[2] - proc[0], 1),
        "aa_process_cpu_us": round(proc[1] - proc[0], 1),
        "recorded": f"{recorded}/{counted[2] + 10}",
    }


def single(name: str, url: str, order: str, rounds: int, trace_dir: str) -> str:
    """The old harness: single calls, bare (B) and traced (T), alternating without blocks."""
    import zltrace

    tracer = zltrace.Tracer(zltrace.Config(dir=trace_dir))
    bare, traced = LIBRARIES[name](url), LIBRARIES[name](url)
    zltrace.wrap(traced[2], tracer=tracer)
    sides = {"B": bare[0], "T": traced[0]}
    times: dict[str, list[int]] = {"B": [], "T": []}
    for _ in range(20):
        bare[0](), traced[0]()
    for i in range(rounds):
        pair = "TB" if order == "TBTB" or i % 2 == 0 else "BT"
        for label in pair:
            if order == "pause":
                time.sleep(0.005)
            t0 = time.perf_counter_ns()
            sides[label]()
            times[label].append(time.perf_counter_ns() - t0)
    for _, close, _ in (bare, traced):
        close()
    tracer.close(timeout=30)
    b, t = _quantile(times["B"], 0.5), _quantile(times["T"], 0.5)
    return f"{name:14s} {order:6s} bare p50 {b:8.1f}  traced p50 {t:8.1f}  added {t - b:+7.1f} us"


COLUMNS = [
    ("library", "library"),
    ("mode", "mode"),
    ("calls_per_side", "calls/side"),
    ("bare_p50_us", "bare p50"),
    ("added_p50_us", "added p50"),
    ("aa_p50_us", "A/A p50"),
    ("added_paired_us", "added paired"),
    ("aa_paired_us", "A/A paired"),
    ("added_p99_us", "added p99"),
    ("aa_p99_us", "A/A p99"),
    ("added_caller_cpu_us", "caller CPU added"),
    ("aa_caller_cpu_us", "A/A caller CPU"),
    ("added_process_cpu_us", "process CPU added"),
    ("aa_process_cpu_us", "A/A process CPU"),
    ("recorded", "recorded"),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument(
        "--rounds", type=int, default=60, help="back-to-back blocks per side (default 60)"
    )
    ap.add_argument(
        "--isolated", type=int, default=300, help="isolated calls per side (default 300)"
    )
    ap.add_argument("--modes", nargs="+", choices=sorted(MODES), default=list(MODES))
    ap.add_argument(
        "--single",
        nargs="+",
        choices=["TBBT", "TBTB", "pause"],
        help="instead: the old harness, single calls in this order (pause: 5 ms before each)",
    )
    ap.add_argument("--only", nargs="+", choices=sorted(LIBRARIES), help="these libraries")
    ap.add_argument("--json", help="write the rows to this file")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args(argv)
    if args.serve:
        serve_forever(args.serve)
        return 0
    if args.rounds < 1 or args.isolated < 1:
        ap.error("need --rounds >= 1 and --isolated >= 1")
    sys.path.insert(0, ROOT)
    rows = []
    with Server() as srv, tempfile.TemporaryDirectory() as d:
        for name in args.only or LIBRARIES:
            try:
                importlib.import_module(name.split("-")[0])
            except ImportError as e:
                print(f"{name:14s} skipped: {e}", file=sys.stderr)
                continue
            if args.single:
                for order in args.single:
                    where = os.path.join(d, name, order)
                    print(single(name, srv.url, order, args.isolated, where), flush=True)
                continue
            for mode in args.modes:
                rounds = args.rounds if mode == "back-to-back" else args.isolated
                row = measure(name, srv.url, mode, rounds, os.path.join(d, name, mode))
                rows.append(row)
                print("  ".join(f"{title} {row[key]}" for key, title in COLUMNS), flush=True)
    if args.markdown:
        print("| " + " | ".join(title for _, title in COLUMNS) + " |")
        print("|" + "---|" * len(COLUMNS))
        for row in rows:
            print("| " + " | ".join(str(row[key]) for key, _ in COLUMNS) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"argv": sys.argv[1:], "python": sys.version, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
