"""The tracer measuring itself: :class:`PerformanceMonitor` (figures, windows, targets, alerts).

Rules:

- The caller thread records nothing for the monitor: in zero-latency mode its whole cost
  is a ``perf_counter_ns`` and a ``SimpleQueue.put`` per event, and the monitor adds zero
  to that. Everything here runs on the worker thread (in standard mode, on the thread
  that writes), from figures the pipeline already has: the events' timestamps, the
  finished exchanges, the writer's counters, the worker's own slice timings. The monitor
  is the worker's observer (``WorkerObserver`` in ``_pipeline/observer.py``).
- Each observation costs the worker a few integer operations (histograms in
  ``histogram.py``); a tick runs once a second, the hook probe once a slot (``slot_s``).

What the figures mean:

- ``hook_ns``, ``send_hook_ns``, ``fixed_hooks_ns`` (and ``fixed_<name>_ns`` per hook):
  the probe's costs of one body read's hook, one request body piece's ``send``, and the
  hooks every exchange goes through once. The probe is handed in by the tracer (the
  capture side owns it: ``_capture/probe.py``); each figure is the median of the last
  ``PROBES_KEPT`` probes, its every per-read round is in the ``chunk`` histogram.
- ``added`` per exchange: ``fixed_hooks_ns`` + ``hook_ns`` x body reads that delivered
  body bytes + ``send_hook_ns`` x request body pieces sent after the head. It is the
  tracer's own code on the caller thread, and only that (a lower bound of what the caller
  pays: see the probe's docstring for what is not in it).
- ``lag``: from an exchange's last byte (its end timestamp, taken on the caller) to its
  line being written by the writer -- includes the flush interval by design.
- ``hold``: how long the worker held the GIL in one slice of work.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import attrs

from .._pipeline.events import FIXED_HOOKS, HookCosts
from .._util import rss_bytes
from .alerts import Alert, AlertEngine, default_rules
from .histogram import Histogram, WindowedHistogram, bucket_of

if TYPE_CHECKING:
    from .._pipeline.assembler import Finished
    from ..config import Config

log = logging.getLogger(__name__)

#: The figures are medians over this many latest probes: one probe that a burst of other
#: work slowed down does not set them alone.
PROBES_KEPT = 3


class Gauges(NamedTuple):
    """What the monitor reads from the pipeline at each tick (the tracer supplies it)."""

    queue_depth: int = 0
    open_exchanges: int = 0
    memory_bytes: int = 0
    records_written: int = 0
    bytes_written: int = 0
    records_lost: int = 0
    write_errors: int = 0
    events: int = 0


class PerformanceMonitor:
    """Figures of one tracer: histograms, gauges, rates, targets; runs the alert rules.

    Fed by the worker (``finished``, ``flushed``, ``hold``, ``batch``, ``tick``); read by
    any thread (``figures``, ``meets_target``, ``histograms``). ``clock`` (seconds,
    monotonic) drives windows, ticks and alert durations -- tests pass their own.
    ``probe`` says what the caller-thread hooks cost (the tracer hands in the capture
    side's; without one the hook figures, and so the added time, stay 0).
    """

    def __init__(
        self,
        config: Config,
        gauges: Callable[[], Gauges] = Gauges,
        *,
        clock: Callable[[], float] = time.monotonic,
        perf_offset_ns: int = 0,
        callbacks: list[Callable[[Alert], Any]] | None = None,
        slot_s: float = 10.0,
        slots: int = 6,
        probe: Callable[[], HookCosts] | None = None,
    ) -> None:
        self.config = config
        self._gauges = gauges
        self._clock = clock
        #: perf_counter_ns minus wall-clock ns, as the assembler's records use them.
        self._offset = perf_offset_ns
        self._probe = probe
        now = clock()
        self.window_s = slot_s * slots
        self.tick_s = 1.0
        #: Whether the worker wakes for ``tick()`` (alerts or endpoints on): without ticks
        #: the counts and histograms still grow, but windows, rates and gauges stand still.
        self.ticking = bool(config.alerts or config.health_port is not None)
        self.added = WindowedHistogram(slots, slot_s, now)
        self.chunk = WindowedHistogram(slots, slot_s, now)
        self.lag = WindowedHistogram(slots, slot_s, now)
        self.hold = WindowedHistogram(slots, slot_s, now)
        # The latest probe's figures (ns): per body read, per send, the fixed hooks of one
        # exchange (their sum and each), and how long the probe took.
        self._hook_ns = 0
        self._send_ns = 0
        self._fixed_ns = 0
        self._fixed: dict[str, int] = dict.fromkeys(FIXED_HOOKS, 0)
        self._probe_ns = 0
        # (per-read median, fixed hook costs) of the last PROBES_KEPT probes.
        self._probed: deque[tuple[int, dict[str, int]]] = deque(maxlen=PROBES_KEPT)
        self._ends: list[int] = []  # end times (wall-scale ns) of records not yet written
        self._holds: list[int] = []  # GIL holds not yet bucketed
        self._buckets: dict[int, int] = {}  # added time -> its bucket (a cache)
        self.exchanges = 0
        self.queue_max = 0  # largest queue seen since the last tick
        self._last = Gauges()
        self._queue_peak = 0  # largest queue seen in the last tick (what alerts look at)
        self._rss: int | None = None
        # (clock, records_written, bytes_written, records_lost) once per tick, over the window
        self._samples: deque[tuple[float, int, int, int]] = deque()
        self._next_tick = now
        self._next_probe = now
        self.alerts = AlertEngine(
            default_rules(config),
            clock=clock,
            report_s=config.report_s if config.alerts else 0,
            callbacks=callbacks,
        )
        if config.alerts:
            self.alerts.configuration(_config_figures(config))

    # -- fed by the worker ---------------------------------------------------------------

    def finished(self, out: Sequence[Finished]) -> None:
        """Exchanges the assembler just ended (before they are handed to the writer)."""
        fixed = self._fixed_ns
        read = self._hook_ns
        send = self._send_ns
        append = self._ends.append
        h = self.added.current
        counts = h.counts
        # An exchange's added time takes a few integer operations; its bucket is cached by
        # value (most exchanges of a client repeat the same few values), so an exchange
        # costs a dict lookup, not a bucketing.
        buckets = self._buckets
        if len(buckets) > 4096:
            buckets.clear()
        total = 0
        most = h.max
        for f in out:
            # The fixed hooks, one per body read that delivered body bytes, and one per
            # request body piece sent after the head.
            reads = f.reads
            body = f.request_body
            v = fixed + (len(reads) >> 1) * read if reads else fixed
            if body:
                v += len(body) * send
            i = buckets.get(v)
            if i is None:
                i = buckets[v] = bucket_of(v)
            counts[i] += 1
            total += v
            if v > most:
                most = v
            append(f.wall_ns + f.timing[3])
        h.n += len(out)
        h.total += total
        h.max = most
        self.exchanges += len(out)
        ends = self._ends
        if len(ends) > 100_000:  # writes failing for long: stop measuring their lag
            del ends[:50_000]

    def flushed(self) -> None:
        """The writer just wrote every record it held."""
        ends = self._ends
        if ends:
            # Ends are on the records' wall-clock scale; ``offset`` brings now onto it.
            self.lag.current.record_since(perf_counter_ns() - self._offset, ends)
            ends.clear()
        if self._holds:
            self._fold_holds()

    def hold_ns(self, ns: int) -> None:
        """The worker held the GIL for ``ns`` in one slice (bucketed later, in a batch)."""
        self._holds.append(ns)

    def _fold_holds(self) -> None:
        holds = self._holds
        self.hold.current.record_many(holds)
        holds.clear()

    def batch(self, depth: int) -> None:
        """The worker drained ``depth`` queued events at once."""
        if depth > self.queue_max:
            self.queue_max = depth

    def due(self) -> float:
        """Seconds until the next tick (0 if due now)."""
        return max(0.0, self._next_tick - self._clock())

    def maybe_tick(self) -> None:
        if self._clock() >= self._next_tick:
            self.tick()

    def tick(self) -> None:
        """Sample gauges, rotate windows, re-probe, evaluate the alert rules."""
        now = self._clock()
        self._next_tick = now + self.tick_s
        g = self._read_gauges()
        self._queue_peak = max(self.queue_max, g.queue_depth)
        self.queue_max = 0
        self._rss = rss_bytes()
        samples = self._samples
        samples.append((now, g.records_written, g.bytes_written, g.records_lost))
        while len(samples) > 2 and samples[0][0] < now - self.window_s:
            samples.popleft()
        if self._holds:
            self._fold_holds()
        for h in (self.added, self.chunk, self.lag, self.hold):
            h.rotate(now)
        if self._probe is not None and now >= self._next_probe:
            self._next_probe = now + self.added.slot_s
            self._reprobe(self._probe)
        if self.config.alerts:
            # The rules need the window's added time and the gauges only; the full
            # figures (several times the work, all of it holding the GIL) only for the
            # report, once a report_s.
            self.alerts.evaluate(self.figures(full=False), full=self.figures)

    def _reprobe(self, probe: Callable[[], HookCosts]) -> None:
        # All or nothing: a probe that fails, or returns something unusable, leaves the
        # previous figures in place (and monitoring going).
        try:
            costs = probe()
            fixed = {name: int(costs.fixed.get(name, 0)) for name in FIXED_HOOKS}
            reads = sorted(int(v) for v in costs.read)
            read = reads[len(reads) // 2]
            took = int(costs.took_ns)
            if reads[0] < 0 or took < 0 or min(fixed.values()) < 0:
                raise ValueError(f"negative hook cost in {costs!r}")
        except Exception:
            log.debug("zltrace: hook probe failed; keeping the previous figures", exc_info=True)
            return
        self.chunk.current.record_many(reads)
        probed = self._probed
        probed.append((read, fixed))
        mid = len(probed) // 2
        self._hook_ns = sorted(r for r, _ in probed)[mid]
        self._fixed = {name: sorted(f[name] for _, f in probed)[mid] for name in FIXED_HOOKS}
        self._send_ns = self._fixed["send"]
        self._fixed_ns = sum(self._fixed.values())
        self._probe_ns = took

    # -- read by anyone ------------------------------------------------------------------

    def _read_gauges(self) -> Gauges:
        try:
            self._last = self._gauges()
        except Exception:  # a half-built or torn-down tracer: the last figures will do
            log.debug("zltrace: reading the gauges failed", exc_info=True)
        return self._last

    @property
    def hook_ns(self) -> int:
        """The latest probed cost of one body read's hook (ns)."""
        return self._hook_ns

    @property
    def fixed_hooks_ns(self) -> int:
        """The latest probed cost of the hooks every exchange goes through once (ns)."""
        return self._fixed_ns

    def meets_target(self, figures: dict[str, Any] | None = None) -> bool:
        """Window p95 added time and held memory both under their targets."""
        cfg = self.config
        if figures is None:
            p95 = self.added.window().p95
            memory = self._read_gauges().memory_bytes
        else:
            p95 = figures["added_p95_ns"]
            memory = figures["memory_bytes"]
        return bool(p95 < cfg.target_p95_us * 1000 and memory < cfg.target_memory)

    def figures(self, full: bool = True) -> dict[str, Any]:
        """Every figure as a flat dict of plain numbers (ns, bytes, per second).

        Gauges are read now; rates, the queue peak and RSS are as of the last tick. With
        ``full=False`` only the window's added time is summarised (what the rules need).
        """
        g = self._read_gauges()
        cfg = self.config
        out: dict[str, Any] = {"window_s": self.window_s}
        summaries = [("added", self.added.window())]
        if full:
            summaries += [
                ("added_run", self.added.run()),
                ("chunk", self.chunk.run()),
                ("lag", self.lag.window()),
                ("hold", self.hold.window()),
            ]
        for name, summary in summaries:
            out[f"{name}_count"] = summary.n
            out[f"{name}_mean_ns"] = round(summary.mean, 1)
            out[f"{name}_p50_ns"] = summary.p50
            out[f"{name}_p95_ns"] = summary.p95
            out[f"{name}_p99_ns"] = summary.p99
            out[f"{name}_max_ns"] = summary.max
        out["hook_ns"] = self._hook_ns
        out["send_hook_ns"] = self._send_ns
        out["fixed_hooks_ns"] = self._fixed_ns
        for name, ns in self._fixed.items():
            out[f"fixed_{name}_ns"] = ns
        out["probe_ns"] = self._probe_ns
        records_s = bytes_s = 0.0
        lost_recent = 0
        samples = self._samples
        if len(samples) >= 2:
            (t0, r0, b0, l0), (t1, r1, b1, l1) = samples[0], samples[-1]
            if t1 > t0:
                records_s = (r1 - r0) / (t1 - t0)
                bytes_s = (b1 - b0) / (t1 - t0)
            lost_recent = l1 - l0
        elif samples:
            lost_recent = samples[-1][3]
        budget = cfg.memory_pool_size
        out.update(
            exchanges=self.exchanges,
            events=g.events,
            queue_depth=g.queue_depth,
            queue_depth_peak=self._queue_peak,
            open_exchanges=g.open_exchanges,
            records_written=g.records_written,
            bytes_written=g.bytes_written,
            records_lost=g.records_lost,
            records_lost_recent=lost_recent,
            write_errors=g.write_errors,
            records_per_s=round(records_s, 3),
            bytes_per_s=round(bytes_s, 3),
            memory_bytes=g.memory_bytes,
            memory_budget_bytes=budget,
            budget_utilization=round(g.memory_bytes / budget, 6),
            rss_bytes=self._rss,
            target_p95_ns=cfg.target_p95_us * 1000,
            target_memory_bytes=cfg.target_memory,
        )
        out["meets_target"] = self.meets_target(out)
        return out

    def histograms(self) -> dict[str, Histogram]:
        """Whole-run copies of the histograms, by name."""
        return {
            "added": self.added.run_histogram(),
            "chunk": self.chunk.run_histogram(),
            "lag": self.lag.run_histogram(),
            "hold": self.hold.run_histogram(),
        }


def _config_figures(config: Config) -> dict[str, Any]:
    """The configuration as log fields (nothing secret is in a Config)."""
    out: dict[str, Any] = {}
    for a in attrs.fields(type(config)):
        value = getattr(config, a.name)
        out[f"config_{a.name}"] = list(value) if isinstance(value, tuple) else value
    return out
