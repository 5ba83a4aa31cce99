"""``Tracer``: owns the queue, the worker, the assembler and the writer; lifecycle.

The composition root: it hands itself to the capture front-ends as their sink, the
capture side's hook probe to the monitor, and the monitor to the worker as its observer;
it registers with the process hooks (``_lifecycle``) and builds ``stats()`` from
``Counters``.
"""

from __future__ import annotations

import os
import queue
import secrets
import threading
import time
import warnings
from datetime import datetime, timezone
from itertools import count
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable

from . import _lifecycle
from ._capture.connection import unrecorded
from ._capture.probe import probe_hooks
from ._capture.targets import wrap_target
from ._monitor.alerts import Alert
from ._monitor.counters import Counters
from ._monitor.monitor import Gauges, PerformanceMonitor
from ._pipeline.assembler import Assembler, Finished
from ._pipeline.budget import THROTTLE_POLL_S, THROTTLE_WAIT_S, Budget
from ._pipeline.events import DATA, START, capture_failed, capture_failures
from ._pipeline.rawenc import RawEncoder
from ._pipeline.rawpool import RawInlet
from ._pipeline.rawtally import Ended, RawTally
from ._pipeline.rawworker import RawWorker
from ._pipeline.redact import Redactor
from ._pipeline.worker import Worker
from ._pipeline.writer import Opener, TraceWriter
from .config import Config
from .exceptions import ConfigError, NotCallableError, ZltraceWarning

if TYPE_CHECKING:
    from ._monitor.endpoints import EndpointServer, State


_seq = count(1)


def _dir_name(directory: str) -> str:
    """How warnings name the trace directory: the variable it came from, else the field."""
    return "ZLTRACE_DIR" if os.environ.get("ZLTRACE_DIR") == directory else "Config.dir"


class Tracer:
    """Records every exchange of the pools it wraps into one trace file of its own.

    Use it as a context manager, or call :meth:`close` (also run at exit and on
    SIGTERM/SIGINT). In zero-latency mode (the default) the caller thread only enqueues
    references; a daemon thread writes. With ``Config(zero_latency=False)`` the same records
    are written synchronously at the end of each exchange.
    """

    def __init__(self, config: Config | None = None, *, opener: Opener = os.open) -> None:
        if config is None:
            config = Config.from_env()
        elif not isinstance(config, Config):
            raise ConfigError(f"Tracer(config=...) must be a zltrace.Config, got {config!r}")
        self.config = config
        #: How trace files are opened (``os.open``'s signature): a seam for tests and for
        #: hosts that must route file creation through their own code.
        self._opener = opener
        self._dir = os.path.abspath(config.dir)
        self._closed = False
        # Re-entrant: a signal handler may close the tracer while the main thread is in close().
        self._lifecycle = threading.RLock()
        self._after_close_events = 0
        self._dropped_events = 0
        #: ``on_degradation`` callbacks (kept across the rebuild in a forked child).
        self._callbacks: list[Callable[[Alert], Any]] = []
        self._setup()
        self._endpoint = self._start_endpoint()
        _lifecycle.register(self, handle_signals=config.handle_signals)

    def _setup(self) -> None:
        cfg = self.config
        self._run = secrets.token_hex(4)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        stem = f"zltrace-{stamp}-{os.getpid()}-{next(_seq)}"
        wall0, perf0 = time.time_ns(), time.perf_counter_ns()
        redactor = Redactor(cfg.redact_headers, query=cfg.redact_query)
        #: The raw log's encoder (``Config.format="raw"``): events become records as they come.
        self._raw = RawEncoder(self._run, wall0, perf0, redactor) if cfg.format == "raw" else None
        self._writer = TraceWriter(
            self._dir,
            stem,
            self._opener,
            retries=cfg.write_retries,
            backoff_ms=cfg.retry_backoff_ms,
            memory_limit=cfg.memory_pool_size,
            fallback_dir=cfg.fallback_dir,
            dir_name=_dir_name(cfg.dir),
            raw_header=None if self._raw is None else self._raw.header,
        )
        self._assembler = Assembler(self._run, wall0, perf0, redactor)
        #: Standard mode, raw log: what the monitor needs of each exchange, and how many
        #: exchanges have started (its records are several per exchange, not one).
        self._tally = RawTally(wall0, perf0)
        self._sync_exchanges = 0
        self._budget = Budget(cfg.memory_pool_size)
        self._relief = threading.Event()
        self._relief.set()
        self._sync_lock = threading.Lock()
        self._sync_owner: int | None = None
        self._put: Callable[[tuple[Any, ...]], None]
        self._worker: Worker | RawWorker | None = None
        self._monitor = PerformanceMonitor(
            cfg,
            self._gauges,
            perf_offset_ns=perf0 - wall0,
            callbacks=self._callbacks,
            probe=probe_hooks,
        )
        self.mode = "standard"
        if not cfg.enabled:
            self.mode = "disabled"
            self._put = self._after_close
            return
        if cfg.zero_latency:
            q: queue.SimpleQueue[Any] = queue.SimpleQueue()
            common: dict[str, Any] = {
                "name": f"zltrace-worker-{stem}",
                "on_crash": self._worker_crashed,
                "budget": self._budget,
                "on_pressure": self._pressure,
                "observer": self._monitor,
            }
            # The two workers differ only in what turns events into bytes.
            worker: Worker | RawWorker
            #: What callers' events go through: the queue's put, or the raw log's pool.
            self._enqueue: Callable[[tuple[Any, ...]], None] = q.put
            if self._raw is not None:
                inlet = RawInlet(q.put, cfg.memory_pool_size, cfg.buffer_size)
                self._enqueue = inlet.put
                worker = RawWorker(
                    q, self._raw, self._writer, cfg.buffer_size, cfg.flush_ms, inlet=inlet, **common
                )
            else:
                worker = Worker(
                    q, self._assembler, self._writer, cfg.buffer_size, cfg.flush_ms, **common
                )
            try:
                worker.start()
            except RuntimeError as exc:  # can't start new thread
                warnings.warn(
                    f"zltrace: the background thread could not start ({exc}); "
                    "falling back to standard (synchronous) mode",
                    ZltraceWarning,
                    stacklevel=3,
                )
            else:
                self._worker = worker
                self._queue = q
                self._put = self._enqueue
                self.mode = "zero-latency"
                return
        self._put = self._sync_put

    # -- public ------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The trace file this tracer writes (created with the first record)."""
        return self._writer.path

    def wrap(self, target: Any) -> Any:
        """Trace a pool (returns a traced copy), or in place a PoolManager, a requests.Session,
        a boto3/botocore client, an httpx/httpx2 client, an anthropic/openai client, a
        kubernetes ApiClient or API object, or an Elasticsearch client (``zltrace.wrap``)."""
        if not self.config.enabled:
            return target
        return wrap_target(target, self)

    def flush(self, timeout: float | None = None) -> bool:
        """Write every finished exchange to disk; True when all of them are written."""
        worker = self._worker
        if worker is not None:
            if self._closed:
                return worker.stop(timeout)  # closing or closed: wait for that to finish
            if not worker.alive:
                return self._writer.pending == 0
            return worker.flush(timeout)
        # Standard mode writes at the end of each exchange. Never wait for the lock: a signal
        # handler may be running on the thread that holds it (in _sync_put).
        if not self._sync_lock.acquire(blocking=False):
            return self._writer.pending == 0
        try:
            return self._writer.flush()
        finally:
            self._sync_lock.release()

    def close(self, timeout: float | None = None) -> bool:
        """Finish and write everything, close the files; idempotent. True if all was written.

        Exchanges still in flight are written with outcome ``incomplete``; traffic after
        close() is not recorded (and counted in ``stats()["after_close_events"]``).
        """
        with self._lifecycle:
            already = self._closed
            self._closed = True
            self._put = self._after_close
        self._stop_endpoint()
        worker = self._worker
        if worker is not None:
            # A second close() (a signal handler while the first one waits, atexit) waits
            # for the same stop; the tracer stays registered until the stop is done.
            ok = worker.stop(timeout) if worker.alive or not already else True
            if not worker.thread.is_alive():
                _lifecycle.unregister(self)
            return ok and self._writer.records_lost == 0
        if already:
            return True
        _lifecycle.unregister(self)
        # Standard mode: if a signal handler interrupted _sync_put on this very thread, the
        # lock is ours already and waiting would deadlock; in-flight exchanges then stay
        # unwritten (finished ones were written when they ended).
        if self._sync_owner == threading.get_ident():
            return False
        if not self._sync_lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            if self._raw is not None:
                if self._raw.seq:  # no file for a tracer that saw nothing
                    self._writer.add_record(self._raw.stop(time.perf_counter_ns()))
            else:
                out: list[Finished] = []
                self._assembler.finish_all(time.perf_counter_ns(), out)
                for f in out:
                    self._writer.add(f)
            self._writer.close()
            return self._writer.records_lost == 0
        finally:
            self._sync_lock.release()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def health_url(self) -> str | None:
        """Base URL of the health and metrics endpoints (``Config.health_port``), or None."""
        endpoint = self._endpoint
        return endpoint.url if endpoint is not None else None

    def on_degradation(self, fn: Callable[[Alert], Any]) -> None:
        """Call ``fn(alert)`` (a :class:`zltrace.Alert`) when an alert fires or clears.

        Called on the worker thread: keep it short. An exception it raises is logged on
        ``zltrace.monitor`` and changes nothing else. A ``fn`` that is not callable raises
        :class:`zltrace.exceptions.NotCallableError` (a ``TypeError``).
        """
        if not callable(fn):
            raise NotCallableError(f"on_degradation() takes a callable, got {fn!r}")
        self._callbacks.append(fn)

    def stats(self) -> dict[str, Any]:
        """Counters and gauges of this tracer, as a plain dict (keys: ``Counters``' fields,
        then ``meets_target``, ``alerts_active`` and the monitor's ``performance`` figures)."""
        # ``unrecorded_exchanges``: exchanges seen but not recorded (HTTP/2, a stand-in
        # connection), process-wide, per reason.
        return {
            **self._counters().as_dict(),
            "unrecorded_exchanges": unrecorded(),
            **self._monitor_stats(),
        }

    def _counters(self) -> Counters:
        w = self._worker
        writer = self._writer
        budget = self._budget
        return Counters(
            mode=self.mode,
            path=writer.path,
            closed=self._closed,
            worker_alive=bool(w and w.alive),
            worker_crashed=w.crashed if w else None,
            queue_depth=self._queue.qsize() if w else 0,
            open_exchanges=self._assembler.open_count,
            exchanges_finished=w.exchanges if w else self._sync_finished(),
            records_written=writer.records_written,
            records_pending=writer.pending,
            records_lost=writer.records_lost,
            bytes_written=writer.bytes_written,
            bytes_held=self._assembler.bytes_held,
            batches_written=writer.batches,
            memory_budget=budget.limit,
            memory_held=budget.held,
            memory_held_peak=budget.peak,
            memory_utilisation=round(budget.utilisation, 4),
            budget_trims=budget.trims,
            budget_spilled_bytes=budget.spilled_bytes,
            budget_throttles=budget.throttles,
            budget_throttled=budget.throttled,
            body_bytes_dropped=budget.dropped_bytes,
            write_errors=writer.write_errors,
            last_write_error=writer.last_error,
            write_retries=writer.retries,
            dead_lettered_batches=writer.dead_lettered_batches,
            dead_lettered_records=writer.dead_lettered_records,
            redriven_records=writer.redriven_records,
            writer_mode=writer.mode,
            degradations=writer.degradations,
            files_recreated=writer.files_recreated,
            **writer.outage_stats(),
            events_processed=w.events if w else None,
            worker_wakeups=w.wakeups if w else None,
            worker_max_slice_ns=w.max_slice_ns if w else None,
            worker_catchups=w.catchups if w else None,
            **self._pool_counters(),
            after_close_events=self._after_close_events,
            dropped_events=self._dropped_events,
            capture_failures=sum(capture_failures().values()),
        )

    def _pool_counters(self) -> dict[str, Any]:
        w = self._worker
        if not isinstance(w, RawWorker):
            return {}
        inlet = w.inlet
        return {
            "worker_early_wakeups": w.early_wakeups,
            "pool_bytes": inlet.slots * inlet.slot,
            "pool_overflows": inlet.overflows,
            "pool_holds": inlet.holds,
        }

    def __enter__(self) -> Tracer:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.mode
        return f"<zltrace.Tracer {state} path={self.path!r}>"

    # -- sinks -------------------------------------------------------------------------------

    def _sync_put(self, ev: tuple[Any, ...]) -> None:
        """Standard mode: handle the event on the caller thread, write at the exchange's end."""
        try:
            with self._sync_lock:
                self._sync_owner = threading.get_ident()
                try:
                    if self._raw is not None:
                        self._sync_raw(ev, self._raw)
                        return
                    out: list[Finished] = []
                    asm = self._assembler
                    asm.handle(ev, out)
                    self._budget.update(asm.bytes_held + self._writer.pending_bytes)
                    if asm.bytes_held > self._budget.high:
                        # Same policy as the worker's (see _pipeline/budget.py), on this thread.
                        self._budget.spill(asm, self._writer, self._budget.low)
                    if out:
                        self._monitor.finished(out)
                        for f in out:
                            self._writer.add(f)
                        if self._writer.flush():
                            self._monitor.flushed()
                        if self._monitor.ticking:
                            self._monitor.maybe_tick()
                finally:
                    self._sync_owner = None
        except Exception as exc:
            capture_failed("standard-mode write", exc)

    def _sync_raw(self, ev: tuple[Any, ...], enc: RawEncoder) -> None:
        """Standard mode, raw log: the event's records written now, on the caller thread."""
        records: list[bytes] = []
        enc.encode(ev, records)
        if ev[0] == START:
            self._sync_exchanges += 1
        ended: list[Ended] = []
        self._tally.event(ev, ended)
        if ended:
            self._monitor.finished(ended)  # type: ignore[arg-type]  # what it reads
        writer = self._writer
        for rec in records:
            writer.add_record(rec)
        self._budget.update(writer.pending_bytes)
        if writer.flush():
            self._monitor.flushed()
        if self._monitor.ticking:
            self._monitor.maybe_tick()

    def _sync_finished(self) -> int:
        """Standard mode: exchanges handled (a JSONL line each; a raw log counts its starts)."""
        return self._sync_exchanges if self._raw is not None else self._writer.records_written

    def _pressure(self, on: bool) -> None:
        """From the worker: make callers wait for it (the queue outgrew the budget), or stop."""
        with self._lifecycle:
            if on:
                self._relief.clear()
                if not self._closed:
                    self._put = self._throttled_put
            else:
                if not self._closed:
                    self._put = self._enqueue
                self._relief.set()

    def _throttled_put(self, ev: tuple[Any, ...]) -> None:
        q = self._queue
        self._enqueue(ev)
        if ev[0] == DATA and q.qsize() > self._budget.max_queued:
            deadline = time.monotonic() + THROTTLE_WAIT_S
            while (
                q.qsize() > self._budget.max_queued
                and not self._relief.is_set()
                and time.monotonic() < deadline
            ):
                time.sleep(THROTTLE_POLL_S)

    def _after_close(self, ev: tuple[Any, ...]) -> None:
        self._after_close_events += 1

    def _dropped(self, ev: tuple[Any, ...]) -> None:
        self._dropped_events += 1

    def _worker_crashed(self) -> None:
        """The worker died (a bug of ours): stop queueing, so the app's memory cannot grow."""
        self._put = self._dropped
        self._relief.set()
        self._writer.records_lost += self._writer.pending + self._assembler.open_count

    def _after_fork_in_child(self) -> None:
        """The child gets its own file and worker; the parent's queue is left behind."""
        if self._closed:
            return
        self._writer.abandon()  # the parent's files: the parent writes them, not us
        if self._endpoint is not None:
            self._endpoint.abandon()  # the parent's listening socket: it serves, not us
            self._endpoint = None
        self._lifecycle = threading.RLock()
        self._setup()

    # -- monitoring (figures: _monitor/monitor.py, rules: alerts.py, HTTP: endpoints.py) -------

    def _gauges(self) -> Gauges:
        w = self._worker
        writer = self._writer
        return Gauges(
            queue_depth=self._queue.qsize() if w else 0,
            open_exchanges=self._assembler.open_count,
            memory_bytes=self._budget.held,
            records_written=writer.records_written,
            bytes_written=writer.bytes_written,
            records_lost=writer.records_lost,
            write_errors=writer.write_errors,
            events=w.events if w else 0,
        )

    def _monitor_stats(self) -> dict[str, Any]:
        figures = self._monitor.figures()
        return {
            "meets_target": figures["meets_target"],
            "alerts_active": [a.name for a in self._monitor.alerts.active()],
            "performance": figures,
        }

    def _endpoint_state(self) -> State:
        from ._monitor.endpoints import State

        return State(self._counters(), self._monitor)

    def _start_endpoint(self) -> EndpointServer | None:
        cfg = self.config
        if cfg.health_port is None or not cfg.enabled:
            return None
        from ._monitor.endpoints import EndpointServer

        try:
            endpoint = EndpointServer(cfg.health_host, cfg.health_port, self._endpoint_state)
            endpoint.start()
        except (OSError, RuntimeError) as exc:  # port taken, bad host, no thread
            warnings.warn(
                f"zltrace: the health endpoint could not start on "
                f"{cfg.health_host}:{cfg.health_port} ({exc}); going on without it",
                ZltraceWarning,
                stacklevel=3,
            )
            return None
        return endpoint

    def _stop_endpoint(self) -> None:
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            endpoint.close()
