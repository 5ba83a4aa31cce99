"""Health and metrics endpoints answering real HTTP requests; the Grafana dashboard.

The endpoints are the same for both trace formats; the tests that trace run with both
(``trace_format``). A JSON-lines trace writes one record (line) per exchange, a raw log several
(one per capture event), so "records written" is checked against the records in the file and
"exchanges" against the traffic.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from prometheus_client.parser import text_string_to_metric_families
from support.faults import Faults
from support.server import ScriptedServer, response
from support.trace import records_on_disk

import zltrace

ROOT = Path(__file__).parents[2]


@pytest.fixture
def served(trace_dir: Path, trace_format: str) -> Iterator[zltrace.Tracer]:
    """A zero-latency tracer with its endpoints on a free loopback port (each format)."""
    cfg = zltrace.Config(dir=str(trace_dir), flush_ms=10, health_port=0, format=trace_format)
    t = zltrace.Tracer(cfg)
    yield t
    t.close(timeout=10)


@pytest.fixture
def http() -> Iterator[urllib3.PoolManager]:
    """An untraced client for the endpoints."""
    pm = urllib3.PoolManager(retries=False)
    yield pm
    pm.clear()


def traffic(tracer: zltrace.Tracer, n: int, path: str = "/", headers: Any = None) -> None:
    with ScriptedServer([response(200, b"z" * 300)] * n) as srv:
        pool = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
        for _ in range(n):
            assert pool.urlopen("GET", path, headers=headers).status == 200
        pool.close()
    assert tracer.flush(timeout=10)


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_endpoints_are_off_by_default(tracer: zltrace.Tracer) -> None:
    """Without health_port no server runs and health_url is None."""
    assert tracer.config.health_port is None
    assert tracer.health_url is None


def test_health_reports_healthy_zero_latency_as_json(
    served: zltrace.Tracer, http: urllib3.PoolManager
) -> None:
    """GET /health/zero-latency: 200 and the spec's fields, on 127.0.0.1."""
    url = served.health_url
    assert url is not None and url.startswith("http://127.0.0.1:")
    traffic(served, 5)
    r = http.request("GET", url + "/health/zero-latency")
    assert r.status == 200
    assert r.headers["Content-Type"] == "application/json"
    doc = json.loads(r.data)
    assert doc["enabled"] is True
    assert doc["meetsTarget"] is True
    assert doc["status"] == "healthy"
    assert doc["alerts"] == []
    perf = doc["performance"]
    assert perf["exchanges"] == 5
    written = records_on_disk(served.path)
    assert perf["recordsWritten"] == written
    # one line per exchange; a raw log's START, REQHEAD, HEAD, DATA and EOF at least
    assert written == 5 if served.config.format == "jsonl" else written >= 5 * 5
    # Every GET ran the fixed hooks and at least one body read; the target (met) bounds it.
    assert perf["hookNs"] > 0
    assert perf["fixedHooksNs"] + perf["hookNs"] <= perf["addedP95Ns"] < perf["targetP95Ns"]
    assert perf["memoryBudgetBytes"] == served.config.memory_pool_size


def test_health_is_503_and_degraded_when_the_target_is_missed(
    trace_dir: Path, http: urllib3.PoolManager
) -> None:
    """A target no tracer can meet (1 us p95) makes the status degraded, with HTTP 503."""
    cfg = zltrace.Config(dir=str(trace_dir), flush_ms=10, health_port=0, target_p95_us=1)
    with zltrace.Tracer(cfg) as tracer:
        assert tracer.health_url is not None
        traffic(tracer, 5)
        r = http.request("GET", tracer.health_url + "/health/zero-latency")
    assert r.status == 503
    doc = json.loads(r.data)
    assert doc["meetsTarget"] is False
    assert doc["status"] == "degraded"


def test_metrics_parse_with_prometheus_client_and_match_stats(
    served: zltrace.Tracer, http: urllib3.PoolManager
) -> None:
    """GET /metrics: text format 0.0.4 that prometheus_client parses; figures match stats()."""
    assert served.health_url is not None
    traffic(served, 7)
    r = http.request("GET", served.health_url + "/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    fams = families(r.data.decode())
    stats = served.stats()

    def value(name: str, **labels: str) -> float:
        for s in fams[name].samples:
            if all(s.labels.get(k) == v for k, v in labels.items()) and not s.name.endswith(
                ("_bucket", "_sum", "_count", "_created")
            ):
                return float(s.value)
        raise AssertionError(f"{name} {labels} not exposed")

    assert fams["zltrace_exchanges"].type == "counter"
    assert value("zltrace_exchanges") == 7
    written = records_on_disk(served.path)
    assert value("zltrace_records_written") == stats["records_written"] == written
    assert written == 7 if served.config.format == "jsonl" else written >= 7 * 5
    assert value("zltrace_records_lost") == 0
    assert value("zltrace_bytes_written") == stats["bytes_written"]
    assert value("zltrace_memory_budget_bytes") == served.config.memory_pool_size
    assert value("zltrace_meets_target") == 1
    assert value("zltrace_worker_alive") == 1
    assert value("zltrace_info", mode="zero-latency", version=zltrace.__version__) == 1
    assert value("zltrace_alert_active", alert="records_lost", severity="critical") == 0
    assert value("zltrace_write_retries") == stats["write_retries"] == 0
    assert value("zltrace_dead_lettered_records") == 0
    assert value("zltrace_budget_spilled_bytes") == stats["budget_spilled_bytes"]
    assert value("zltrace_body_bytes_dropped") == 0
    assert value("zltrace_writer_degraded") == 0
    hist = fams["zltrace_added_latency_seconds"]
    assert hist.type == "histogram"
    buckets = [s for s in hist.samples if s.name.endswith("_bucket")]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts)
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 7
    count = next(s for s in hist.samples if s.name.endswith("_count"))
    assert count.value == 7
    lag = fams["zltrace_worker_lag_seconds"]
    assert next(s for s in lag.samples if s.name.endswith("_count")).value == 7


def test_unknown_path_is_404_and_other_methods_405(
    served: zltrace.Tracer, http: urllib3.PoolManager
) -> None:
    """Only GET on the two paths answers; other paths 404, other methods 405 with Allow."""
    base = served.health_url
    assert base is not None
    assert http.request("GET", base + "/").status == 404
    assert http.request("GET", base + "/health").status == 404
    assert http.request("GET", base + "/metrics/../secret").status == 404
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW"):
        r = http.request(method, base + "/metrics")
        assert r.status == 405, method
        assert r.headers["Allow"] == "GET"
    # A query string does not change the path.
    assert http.request("GET", base + "/metrics?x=1").status == 200


def test_nothing_secret_is_served(served: zltrace.Tracer, http: urllib3.PoolManager) -> None:
    """Header values, URLs with their queries and the trace path never appear in a response."""
    traffic(
        served,
        3,
        path="/v1/messages?key=query-secret-123",
        headers={"Authorization": "Bearer header-secret-456", "X-Other": "plain-value-789"},
    )
    base = served.health_url
    assert base is not None
    bodies = b"".join(
        http.request("GET", base + p).data for p in ("/health/zero-latency", "/metrics", "/nope")
    ).decode()
    for secret in (
        "query-secret-123",
        "header-secret-456",
        "plain-value-789",
        "/v1/messages",
        served.path,
        str(Path(served.path).parent),
    ):
        assert secret not in bodies


def test_close_stops_the_server(trace_dir: Path, http: urllib3.PoolManager) -> None:
    """After close() the port refuses connections and health_url is None."""
    tracer = zltrace.Tracer(zltrace.Config(dir=str(trace_dir), health_port=0))
    url = tracer.health_url
    assert url is not None
    port = int(url.rsplit(":", 1)[1])
    assert http.request("GET", url + "/metrics").status == 200
    tracer.close()
    assert tracer.health_url is None
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_a_taken_port_warns_and_tracing_goes_on(trace_dir: Path, served: zltrace.Tracer) -> None:
    """A second tracer on the same port: a ZltraceWarning, no endpoint, tracing still works."""
    assert served.health_url is not None
    port = int(served.health_url.rsplit(":", 1)[1])
    cfg = zltrace.Config(dir=str(trace_dir / "b"), flush_ms=10, health_port=port)
    with pytest.warns(zltrace.ZltraceWarning, match="health endpoint could not start"):
        other = zltrace.Tracer(cfg)
    try:
        assert other.health_url is None
        traffic(other, 1)
    finally:
        assert other.close(timeout=10)
    assert len(list(zltrace.read(other.path))) == 1


def test_standard_mode_reports_enabled_false(
    trace_dir: Path, http: urllib3.PoolManager, trace_format: str
) -> None:
    """In standard mode the endpoint still answers; "enabled" (zero-latency) is false; the
    exchanges are counted as exchanges, not as the records written for them."""
    cfg = zltrace.Config(dir=str(trace_dir), zero_latency=False, health_port=0, format=trace_format)
    with zltrace.Tracer(cfg) as tracer:
        assert tracer.health_url is not None
        traffic(tracer, 2)
        doc = json.loads(http.request("GET", tracer.health_url + "/health/zero-latency").data)
    stats = tracer.stats()
    assert doc["enabled"] is False
    assert doc["mode"] == "standard"
    assert doc["performance"]["exchanges"] == 2
    assert stats["exchanges_finished"] == 2
    assert stats["records_written"] == records_on_disk(tracer.path)


def test_health_port_from_the_environment() -> None:
    """ZLTRACE_HEALTH_PORT sets the port; "off" or empty leaves the endpoints off."""
    assert zltrace.Config.from_env({"ZLTRACE_HEALTH_PORT": "9464"}).health_port == 9464
    assert zltrace.Config.from_env({"ZLTRACE_HEALTH_PORT": "off"}).health_port is None
    assert zltrace.Config.from_env({"ZLTRACE_HEALTH_HOST": "::1"}).health_host == "::1"
    with pytest.warns(zltrace.ZltraceWarning, match="ZLTRACE_HEALTH_PORT"):
        assert zltrace.Config.from_env({"ZLTRACE_HEALTH_PORT": "70000"}).health_port is None
    with pytest.raises(zltrace.ConfigError, match="health_port"):
        zltrace.Config(health_port=-1)


def test_ipv6_loopback_host(trace_dir: Path, http: urllib3.PoolManager) -> None:
    """health_host="::1" serves on the IPv6 loopback, with a bracketed URL."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    cfg = zltrace.Config(dir=str(trace_dir), health_port=0, health_host="::1")
    with zltrace.Tracer(cfg) as tracer:
        url = tracer.health_url
        assert url is not None and url.startswith("http://[::1]:")
        assert http.request("GET", url + "/health/zero-latency").status == 200


def _dashboard() -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "zltrace", "dashboard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def test_dashboard_references_only_metrics_that_are_exported(
    served: zltrace.Tracer, http: urllib3.PoolManager
) -> None:
    """python -m zltrace dashboard: valid JSON whose every metric is in /metrics."""
    dash = _dashboard()
    assert dash["panels"]
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bzltrace_[a-z0-9_]+", e)}
    used |= set(re.findall(r"\bzltrace_[a-z0-9_]+", json.dumps(dash["templating"])))
    assert served.health_url is not None
    traffic(served, 1)
    text = http.request("GET", served.health_url + "/metrics").data.decode()
    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert used, exprs
    assert used <= exported, used - exported


def test_metrics_show_write_faults_as_they_happen(
    trace_dir: Path, http: urllib3.PoolManager, trace_format: str
) -> None:
    """Writes failing with ENOSPC (/dev/full through the opener seam): /metrics shows the
    retries and the degraded writer while it lasts, and the recovery after."""
    opener = Faults()
    opener.full = {".jsonl" if trace_format == "jsonl" else ".zlog"}  # the dead letters too

    cfg = zltrace.Config(
        dir=str(trace_dir),
        health_port=0,
        flush_ms=5,
        write_retries=1,
        retry_backoff_ms=1,
        format=trace_format,
    )
    t = zltrace.Tracer(cfg, opener=opener)
    try:
        with ScriptedServer([response(200, b"z" * 300)]) as srv:
            pool = t.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
            for _ in range(5):
                assert pool.urlopen("GET", "/").status == 200
            pool.close()
        for _ in range(100):
            t.flush(timeout=10)
            if t.stats()["writer_mode"] == "memory":
                break
        assert t.health_url is not None
        fams = families(http.request("GET", t.health_url + "/metrics").data.decode())
        assert fams["zltrace_write_retries"].samples[0].value >= 1
        assert fams["zltrace_writer_degraded"].samples[0].value == 1
        assert fams["zltrace_writer_degradations"].samples[0].value >= 1
        opener.full.clear()
        assert t.flush(timeout=10)
        fams = families(http.request("GET", t.health_url + "/metrics").data.decode())
        assert fams["zltrace_writer_degraded"].samples[0].value == 0
        redriven = fams["zltrace_redriven_records"].samples[0].value
        if trace_format == "jsonl":
            assert redriven == 5
        else:  # every record of the five exchanges was held, then re-driven
            assert redriven == records_on_disk(t.path) >= 5 * 5
    finally:
        assert t.close(timeout=10)
    assert len(list(zltrace.read(t.path))) == 5


def test_clients_that_reset_print_nothing_on_the_hosts_stderr(
    served: zltrace.Tracer, capfd: pytest.CaptureFixture[str]
) -> None:
    """Clients that send GET and reset at once leave nothing on stderr; the server still answers."""
    assert served.health_url is not None
    port = int(served.health_url.rsplit(":", 1)[1])
    traffic(served, 5)
    for path in ("/metrics", "/health/zero-latency", "/nope") * 15:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        # linger 0: close() sends RST, so the server's write meets a dead socket
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    pm = urllib3.PoolManager(retries=False)
    assert pm.request("GET", served.health_url + "/health/zero-latency").status == 200
    pm.clear()
    assert served.close(timeout=10)
    assert capfd.readouterr().err == ""
