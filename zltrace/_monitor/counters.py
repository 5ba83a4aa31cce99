"""A tracer's counters and gauges, typed once: ``stats()``, ``/metrics`` and ``/health`` read them.

:class:`Counters` is the one place a figure is named, typed and described. ``Tracer.stats()``
is :meth:`Counters.as_dict` plus the monitor's figures; a field that ``/metrics`` exposes
is declared with :func:`_exposed`, and ``/metrics`` derives those families from the
fields; ``/health`` reads :attr:`Counters.worker_ok`. A new counter is one field here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import attrs

_METRIC = "zltrace_metric"


class Metric(NamedTuple):
    """How a field is exposed on ``/metrics``."""

    name: str
    kind: str  # "counter" or "gauge"
    help: str


def _exposed(name: str, kind: str, help_text: str) -> Any:
    """A counter field (0 by default) that ``/metrics`` exposes as ``name``."""
    return attrs.field(default=0, metadata={_METRIC: Metric(name, kind, help_text)})


@attrs.frozen(kw_only=True)
class Counters:
    """Every counter and gauge of one tracer at one moment (the keys of ``stats()``)."""

    mode: str = "disabled"  # "zero-latency", "standard" or "disabled"
    path: str = ""
    closed: bool = False
    worker_alive: bool = False
    worker_crashed: str | None = None
    queue_depth: int = 0
    open_exchanges: int = 0
    exchanges_finished: int = 0
    records_written: int = 0
    records_pending: int = 0
    records_lost: int = 0
    bytes_written: int = 0
    bytes_held: int = 0
    batches_written: int = 0
    memory_budget: int = 0
    memory_held: int = 0
    memory_held_peak: int = 0
    memory_utilisation: float = 0.0
    budget_trims: int = 0
    budget_spilled_bytes: int = _exposed(
        "zltrace_budget_spilled_bytes_total",
        "counter",
        "In-flight body bytes spilled to the side file",
    )
    budget_throttles: int = _exposed(
        "zltrace_budget_throttles_total",
        "counter",
        "Times app threads were made to wait for the worker",
    )
    budget_throttled: bool = False
    body_bytes_dropped: int = _exposed(
        "zltrace_body_bytes_dropped_total",
        "counter",
        "In-flight body bytes dropped (budget full, side file unwritable)",
    )
    write_errors: int = 0
    last_write_error: str | None = None
    write_retries: int = _exposed(
        "zltrace_write_retries_total", "counter", "Batch writes retried after a failure"
    )
    dead_lettered_batches: int = 0
    dead_lettered_records: int = _exposed(
        "zltrace_dead_lettered_records_total", "counter", "Records written to the dead-letter file"
    )
    redriven_records: int = _exposed(
        "zltrace_redriven_records_total",
        "counter",
        "Dead-lettered or memory-held records later written to the trace",
    )
    writer_mode: str = "batched"
    degradations: int = _exposed(
        "zltrace_writer_degradations_total", "counter", "Writer degradations"
    )
    files_recreated: int = 0
    outage_budget_s: float | None = None  # seconds of outage the budget holds; None: no traffic
    fallback_records: int = 0
    write_probes: int = 0
    #: Why the trace directory is not used (the trace then goes to the fallback directory,
    #: or nowhere while that fails too); None while it is fine.
    trace_dir_problem: str | None = None
    events_processed: int | None = None
    worker_wakeups: int | None = None
    worker_max_slice_ns: int | None = None
    worker_catchups: int | None = None
    #: The raw log's worker: wakes asked for by a caller's mark, a flush or a stop (the rest
    #: are timed); the pool's size in bytes, and payloads that found it full and went by
    #: reference, and times a caller waited for the worker to encode what it had queued by
    #: reference (None: no pool, another format or mode).
    worker_early_wakeups: int | None = None
    pool_bytes: int | None = None
    pool_overflows: int | None = None
    pool_holds: int | None = None
    after_close_events: int = 0
    dropped_events: int = 0
    capture_failures: int = _exposed(
        "zltrace_capture_failures_total",
        "counter",
        "Failures of zltrace's own capture code (process-wide)",
    )

    @property
    def worker_ok(self) -> bool:
        """False only in zero-latency mode with the worker dead or crashed."""
        return self.mode != "zero-latency" or (self.worker_alive and not self.worker_crashed)

    @property
    def writer_degraded(self) -> bool:
        """True while the writer is not in its normal batched mode."""
        return self.writer_mode != "batched"

    def as_dict(self) -> dict[str, Any]:
        """The fields by name, in their order (what ``stats()`` returns, before the monitor's)."""
        return {f.name: getattr(self, f.name) for f in attrs.fields(Counters)}

    def metrics(self) -> Iterator[tuple[Metric, int]]:
        """The fields ``/metrics`` exposes, with their values, in field order."""
        for f in attrs.fields(Counters):
            m = f.metadata.get(_METRIC)
            if m is not None:
                yield m, getattr(self, f.name)
