"""``ship --follow`` on a live trace, both formats: exchanges are shipped as they end while the
tracer keeps writing (one streamed exchange stays open across them), and SIGKILLs followed by
restarts lose nothing and send a span twice only when it was in the one batch the backend had
taken but whose answer the dead shipper never recorded."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import urllib3
from support.server import ScriptedServer, response, send, wait_for

import zltrace

pytest.importorskip(
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
    reason="opentelemetry-proto is not installed (pip install -e '.[test]')",
)
from support.otlp import OTLPReceiver, Received, attributes


def ship_cmd(trace: Path, url: str, cp: Path, *extra: str) -> list[str]:
    """The ship command line."""
    return [
        sys.executable, "-m", "zltrace", "ship", str(trace), "--otlp", url,
        "--checkpoint", str(cp), *extra,
    ]  # fmt: skip


def wait_until(cond: Any, timeout: float = 60) -> bool:
    """Poll ``cond`` until true or ``timeout`` (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return bool(cond())


def url_counts(rx: OTLPReceiver) -> Counter[str]:
    """How often each URL path arrived as a span."""
    return Counter(str(attributes(s)["url.full"]).split("/", 3)[3] for s in rx.spans)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "raw"])
def test_follow_killed_and_restarted_on_a_live_trace(tmp_path: Path, fmt: str) -> None:
    """Rounds of quick exchanges written while a streamed one stays open; after each round
    the follower ships them and is killed (mid-batch or idle); at the end the streamed one is
    shipped once, complete; nothing is missing, and a duplicate is only an unrecorded batch."""
    go = threading.Event()
    slow_reply = [
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst"),
        wait_for(go, timeout=60),
        send(b"-last"),
    ]

    def held(r: Received) -> Any:
        time.sleep(random.uniform(0, 0.02))  # a kill can land while the backend holds a batch
        return None

    rng = random.Random(16)
    trace, cp = tmp_path / "t", tmp_path / "cp.json"
    expected: list[str] = []
    unrecorded: list[set[str]] = []
    tracer = zltrace.Tracer(zltrace.Config(dir=str(trace), flush_ms=10, format=fmt))
    with ScriptedServer([slow_reply]) as a, ScriptedServer([response(200, b"ok")]) as b:
        pa = tracer.wrap(urllib3.HTTPConnectionPool(a.host, a.port, retries=False, timeout=60))
        pb = tracer.wrap(urllib3.HTTPConnectionPool(b.host, b.port, retries=False, timeout=30))
        streamed = pa.urlopen("GET", "/slow", preload_content=False)
        assert streamed.read(5) == b"first"
        with OTLPReceiver(held) as rx:
            for round_ in range(4):
                for i in range(3):
                    pb.request("GET", f"/quick/{round_}/{i}")
                    expected.append(f"quick/{round_}/{i}")
                assert tracer.flush(timeout=10)
                before = len(rx.requests)
                proc = subprocess.Popen(
                    ship_cmd(trace, rx.url, cp, "--follow", "--interval", "0.02", "--batch", "1"),
                    stderr=subprocess.DEVNULL,
                )
                # Killed once this round's exchanges arrived, or earlier, mid-way.
                target = len(expected) if round_ % 2 else len(expected) - rng.randint(1, 2)
                assert wait_until(
                    lambda t=target: len(set(url_counts(rx))) >= t,
                    timeout=60,  # type: ignore[misc]
                )
                time.sleep(rng.uniform(0, 0.02))
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                rx.wait_idle()
                if len(rx.requests) > before:
                    unrecorded.append(set(url_counts_of(rx.requests[-1])))
            go.set()
            assert streamed.read() == b"-last"
            streamed.release_conn()
            expected.append("slow")
            assert tracer.close(timeout=10)
            proc = subprocess.Popen(
                ship_cmd(trace, rx.url, cp, "--follow", "--interval", "0.02"),
                stderr=subprocess.PIPE,
            )
            try:
                assert wait_until(lambda: "slow" in url_counts(rx), timeout=60)
                rx.wait_idle()
            finally:
                proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
        assert rx.problems == []
    counts = url_counts(rx)
    assert set(counts) == set(expected)  # nothing missing, nothing foreign
    for path, n in counts.items():
        assert n <= 1 + sum(path in u for u in unrecorded), (path, n)
    assert counts["slow"] == 1
    outcomes = [attributes(s)["zltrace.outcome"] for s in rx.spans]
    assert set(outcomes) == {"complete"}


def url_counts_of(r: Received) -> list[str]:
    """The URL paths of one request's spans."""
    return [str(attributes(s)["url.full"]).split("/", 3)[3] for s in r.spans]
