"""Health and metrics endpoints: stdlib ``http.server`` on a daemon thread (opt-in).

- ``GET /health/zero-latency``: JSON ``{"enabled", "meetsTarget", "performance", "alerts",
  "status"}``; HTTP 503 when the status is ``degraded`` (target not met, a critical alert
  firing, or the worker dead), so a load balancer or a probe can act on the code alone.
- ``GET /metrics``: Prometheus text exposition format 0.0.4 -- counters (``_total``),
  gauges, and histograms (``_bucket{le=...}``, ``_sum``, ``_count``) in seconds.
- Any other path: 404; any other method: 405 (``Allow: GET``).

Nothing secret is served: figures are numbers, alert messages are built from numbers, and
no header, URL, body or file path of the trace appears (a path can name a user; a scraper
has no use for it). Bound to 127.0.0.1 unless configured otherwise.

The accept loop waits on the listening socket and on a wake-up socket pair, so ``close()``
returns at once (``serve_forever`` would poll, or make close wait for its poll interval).
"""

from __future__ import annotations

import json
import logging
import math
import selectors
import socket
import threading
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable, NamedTuple
from urllib.parse import urlsplit

from .._version import __version__
from .counters import Counters

if TYPE_CHECKING:
    from .histogram import Histogram
    from .monitor import PerformanceMonitor

log = logging.getLogger(__name__)

HEALTH_PATH = "/health/zero-latency"
METRICS_PATH = "/metrics"
CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"

#: Histogram bucket bounds (seconds): 100 ns to 10 s, 1-2.5-5 per decade.
LE_SECONDS: tuple[float, ...] = (
    *(float(f"{m}e{e}") for e in range(-7, 1) for m in ("1", "2.5", "5")),
    10.0,
)


class State(NamedTuple):
    """What the endpoints read, supplied by the tracer at each request."""

    counters: Counters
    monitor: PerformanceMonitor


# -- documents -------------------------------------------------------------------------------


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def health_document(state: State) -> tuple[int, dict[str, Any]]:
    """The health JSON and its HTTP status (200 healthy, 503 degraded)."""
    m = state.monitor
    mode = state.counters.mode
    worker_ok = state.counters.worker_ok
    figures = m.figures()
    meets = bool(figures.pop("meets_target"))
    active = m.alerts.active()
    critical = any(a.severity == "critical" for a in active)
    dir_problem = state.counters.trace_dir_problem
    healthy = meets and worker_ok and not critical and dir_problem is None
    doc = {
        "enabled": mode == "zero-latency",
        "mode": mode,
        "meetsTarget": meets,
        "performance": {_camel(k): v for k, v in figures.items()},
        "alerts": [{"name": a.name, "severity": a.severity, "message": a.message} for a in active],
        "workerAlive": worker_ok,
        "traceDirProblem": dir_problem,
        "status": "healthy" if healthy else "degraded",
    }
    return (200 if healthy else 503), doc


def _num(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _label_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str] | None) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items()) + "}"


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[dict[str, str] | None, float]],
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {_num(value)}")

    def histogram(self, name: str, help_text: str, h: Histogram) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} histogram")
        cum = h.cumulative([round(le * 1e9) for le in LE_SECONDS])
        for le, c in zip(LE_SECONDS, cum):
            self.lines.append(f'{name}_bucket{{le="{_num(le)}"}} {c}')
        self.lines.append(f'{name}_bucket{{le="+Inf"}} {h.n}')
        self.lines.append(f"{name}_sum {_num(h.total / 1e9)}")
        self.lines.append(f"{name}_count {h.n}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


#: Histogram families: (metric name, monitor histogram, help).
HISTOGRAMS = (
    (
        "zltrace_added_latency_seconds",
        "added",
        "Caller-thread time of the tracer's own hooks per exchange (probed hook costs)",
    ),
    (
        "zltrace_chunk_added_seconds",
        "chunk",
        "Caller-thread cost of one event hook (one body read), probed on this machine",
    ),
    (
        "zltrace_worker_lag_seconds",
        "lag",
        "From an exchange's last byte to its record written by the worker",
    ),
    (
        "zltrace_worker_hold_seconds",
        "hold",
        "GIL time the worker held in one slice of work (what a caller may wait)",
    ),
)


def metrics_text(state: State) -> str:
    """The Prometheus text exposition (format 0.0.4) of the tracer's figures."""
    m = state.monitor
    f = m.figures()
    out = _Exposition()
    out.family(
        "zltrace_info",
        "gauge",
        "zltrace version and capture mode",
        [({"version": __version__, "mode": state.counters.mode}, 1)],
    )
    _pipeline_counters(out, f)
    _tracer_counters(out, state.counters)
    _alert_families(out, m)
    _gauges(out, f, state.counters)
    _windows(out, f)
    histograms = m.histograms()
    for name, key, help_text in HISTOGRAMS:
        out.histogram(name, help_text, histograms[key])
    return out.text()


def _pipeline_counters(out: _Exposition, f: Mapping[str, Any]) -> None:
    """Exchanges, events and writes, as the monitor's figures have them."""
    for name, key, help_text in (
        ("zltrace_exchanges_total", "exchanges", "Exchanges finished by the assembler"),
        ("zltrace_events_total", "events", "Caller events processed by the worker"),
        ("zltrace_records_written_total", "records_written", "Trace records written to disk"),
        ("zltrace_records_lost_total", "records_lost", "Trace records lost"),
        ("zltrace_bytes_written_total", "bytes_written", "Bytes written (lines and side file)"),
        ("zltrace_write_errors_total", "write_errors", "Failed writes (retried or lost)"),
    ):
        out.family(name, "counter", help_text, [(None, f[key])])


def _tracer_counters(out: _Exposition, counters: Counters) -> None:
    """Write-fault, memory-budget and capture counters: the fields ``Counters`` exposes."""
    for spec, value in counters.metrics():
        out.family(spec.name, spec.kind, spec.help, [(None, value)])
    out.family(
        "zltrace_writer_degraded",
        "gauge",
        "1 while the writer is not in its normal batched mode",
        [(None, int(counters.writer_degraded))],
    )
    budget_s = counters.outage_budget_s  # None: no traffic, so no limit
    out.family(
        "zltrace_outage_budget_seconds",
        "gauge",
        "Seconds of disk outage the memory budget holds at the current rate",
        [(None, math.inf if budget_s is None else budget_s)],
    )


def _alert_families(out: _Exposition, m: PerformanceMonitor) -> None:
    out.family(
        "zltrace_alerts_fired_total",
        "counter",
        "Alert firings by rule",
        [({"alert": k}, v) for k, v in m.alerts.fired.items()],
    )
    active = {a.name for a in m.alerts.active()}
    out.family(
        "zltrace_alert_active",
        "gauge",
        "1 while the alert is firing",
        [({"alert": r.name, "severity": r.severity}, r.name in active) for r in m.alerts.rules],
    )


def _gauges(out: _Exposition, f: Mapping[str, Any], counters: Counters) -> None:
    for name, value, help_text in (
        ("zltrace_meets_target", f["meets_target"], "1 when the zero-latency target is met"),
        ("zltrace_worker_alive", counters.worker_ok, "1 while the background worker runs"),
        ("zltrace_queue_depth", f["queue_depth"], "Events queued for the worker now"),
        (
            "zltrace_queue_depth_peak",
            f["queue_depth_peak"],
            "Largest queue seen during the last tick",
        ),
        ("zltrace_open_exchanges", f["open_exchanges"], "Exchanges in flight"),
        ("zltrace_memory_held_bytes", f["memory_bytes"], "Bytes held on behalf of the trace"),
        ("zltrace_memory_budget_bytes", f["memory_budget_bytes"], "The memory budget"),
        (
            "zltrace_memory_budget_utilization",
            f["budget_utilization"],
            "Held bytes over the budget (0-1)",
        ),
        ("zltrace_records_per_second", f["records_per_s"], "Records written per second"),
        ("zltrace_bytes_per_second", f["bytes_per_s"], "Bytes written per second"),
        ("zltrace_hook_cost_seconds", f["hook_ns"] / 1e9, "Probed cost of one body read's hook"),
        (
            "zltrace_fixed_hooks_cost_seconds",
            f["fixed_hooks_ns"] / 1e9,
            "Probed cost of the hooks every exchange runs once",
        ),
        ("zltrace_target_p95_seconds", f["target_p95_ns"] / 1e9, "Target p95 added time"),
    ):
        out.family(name, "gauge", help_text, [(None, value)])
    if f["rss_bytes"] is not None:
        out.family(
            "zltrace_rss_bytes", "gauge", "Resident memory of the process", [(None, f["rss_bytes"])]
        )


def _windows(out: _Exposition, f: Mapping[str, Any]) -> None:
    """Window percentiles of the added time and the worker lag, as quantile gauges."""
    for prefix, key in (("added_latency", "added"), ("worker_lag", "lag")):
        out.family(
            f"zltrace_{prefix}_window_seconds",
            "gauge",
            f"{key} percentiles over the last {f['window_s']:.0f} s",
            [
                ({"quantile": q}, f[f"{key}_{p}_ns"] / 1e9)
                for q, p in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"), ("1", "max"))
            ],
        )


# -- the server ------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a client that stalls cannot pin its thread for ever
    server_version = "zltrace"
    sys_version = ""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        try:
            if path == HEALTH_PATH:
                status, doc = health_document(self.server.state())
                self._send(status, "application/json", json.dumps(doc).encode())
            elif path == METRICS_PATH:
                body = metrics_text(self.server.state()).encode()
                self._send(200, CONTENT_TYPE_METRICS, body)
            else:
                body = json.dumps(
                    {"error": "not found", "endpoints": [HEALTH_PATH, METRICS_PATH]}
                ).encode()
                self._send(404, "application/json", body)
        except OSError as exc:
            # The client went away (reset, broken pipe, timeout): nobody to answer.
            log.debug("zltrace endpoint: %s: client gone (%r)", path, exc)
        except Exception:
            log.error("zltrace: the %s endpoint failed", path, exc_info=True)
            try:
                self._send(500, "application/json", b'{"error": "internal error"}')
            except OSError:
                pass

    def _not_allowed(self) -> None:
        body = json.dumps({"error": f"method {self.command} not allowed"}).encode()
        self._send(405, "application/json", body, {"Allow": "GET"})

    def __getattr__(self, name: str) -> Any:
        # http.server looks up do_<METHOD>; every method but GET is a 405 (not its 501).
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _send(
        self, status: int, ctype: str, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("zltrace endpoint: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    timeout = 0.05  # handle_request() after select() said ready: never block long

    def __init__(self, addr: tuple[str, int], state: Callable[[], State]) -> None:
        self.state = state
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints the traceback to stderr, which is the host's: log it instead.
        log.debug("zltrace endpoint: request from %s failed", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class EndpointServer:
    """The endpoints on ``host:port`` (port 0: any free one), served by a daemon thread."""

    def __init__(self, host: str, port: int, state: Callable[[], State]) -> None:
        cls = _Server6 if ":" in host else _Server
        self._server = cls((host, port), state)  # OSError if the port is taken
        self._wake_r, self._wake_w = socket.socketpair()
        bound_host = host if ":" not in host else f"[{host}]"
        self.port: int = self._server.server_address[1]
        self.url = f"http://{bound_host}:{self.port}"
        self._closed = False
        self.thread = threading.Thread(
            target=self._serve, name=f"zltrace-endpoints-{self.port}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._server.socket, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        self._server.handle_request()
                    except Exception:  # pragma: no cover - handle_request catches its own
                        log.error("zltrace: endpoint accept failed", exc_info=True)

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving and close the sockets; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self.thread.is_alive():
            self.thread.join(timeout)
        self._close_sockets()

    def abandon(self) -> None:
        """In a forked child: close the inherited sockets; the parent keeps serving."""
        self._closed = True
        self._close_sockets()

    def _close_sockets(self) -> None:
        self._server.server_close()
        self._wake_r.close()
        self._wake_w.close()
