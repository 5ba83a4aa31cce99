"""Alert rules with durations, run on the worker's tick; notices go to logging and callbacks.

Rules:

- A rule is a condition on the monitor's figures and a duration. It fires once when the
  condition has held for the duration (a duration of 0 fires on the first tick that sees
  it), and clears once on the first tick where the condition is false. A condition that
  flaps starts its duration over.
- Time is the ``clock`` the engine is given (seconds, monotonic); tests pass their own and
  never sleep.
- Every firing and clearing is logged on ``zltrace.monitor`` (``ALERT_LOGGER``: the
  package's own name plus ``.monitor``, so a vendored copy logs under its own package)
  with the rule's figures as ``extra`` fields (``alert``, ``severity``, ``alert_state``
  and the figures themselves; :class:`zltrace.JsonFormatter` prints them), then passed to
  each callback registered with ``Tracer.on_degradation``. Info notices (the periodic
  performance report, the configuration at start) are logged only.
- Nothing here raises into the worker: a failing callback is logged with its traceback
  and the other callbacks still run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable

import attrs

if TYPE_CHECKING:
    from ..config import Config

#: The logger alerts and reports go to: a public name (users route it), derived from this
#: module's own name so that ``app._vendor.zltrace`` logs on ``app._vendor.zltrace.monitor``.
ALERT_LOGGER = __name__.rpartition("._monitor.")[0] + ".monitor"

log = logging.getLogger(ALERT_LOGGER)

_LEVELS = {"critical": logging.CRITICAL, "warning": logging.WARNING, "info": logging.INFO}


@attrs.frozen
class Alert:
    """One notice: a rule firing or clearing, or an info report."""

    #: The rule: ``target_not_met``, ``budget_critical``, ``records_lost``,
    #: ``latency_mean_high``, ``budget_warning``, ``queue_high``; or ``performance_report``,
    #: ``configuration`` for info notices.
    name: str
    #: ``critical``, ``warning`` or ``info``.
    severity: str
    #: ``firing``, ``cleared`` or ``info``.
    state: str
    message: str
    #: The figures the rule looked at (plain numbers; ns, bytes, ratios).
    figures: Mapping[str, Any] = attrs.field(eq=False)
    #: Clock time (seconds) when the condition started to hold, and of this notice.
    since: float = 0.0
    at: float = 0.0


Figures = Mapping[str, Any]


@attrs.frozen
class Rule:
    name: str
    severity: str
    duration_s: float
    condition: Callable[[Figures], bool]
    message: Callable[[Figures], str]
    #: Figures attached to the notice.
    keys: tuple[str, ...] = ()


def _us(ns: float) -> str:
    return f"{ns / 1000:.1f} us"


def _mb(n: float) -> str:
    return f"{n / 1048576:.1f} MiB"


def default_rules(config: Config) -> list[Rule]:
    """The rules of the spec, with the thresholds and durations of ``config``."""
    c = config
    target_ns = c.target_p95_us * 1000
    mean_ns = c.alert_mean_us * 1000
    crit = c.alert_budget_critical_pct / 100
    warn = c.alert_budget_warning_pct / 100
    budget_keys = ("budget_utilization", "memory_bytes", "memory_budget_bytes")
    return [
        Rule(
            "target_not_met",
            "critical",
            c.alert_target_s,
            lambda f: not f["meets_target"],
            lambda f: (
                f"zero-latency target not met for {c.alert_target_s}s: p95 added "
                f"{_us(f['added_p95_ns'])} (target {_us(target_ns)}), memory held "
                f"{_mb(f['memory_bytes'])} (target {_mb(c.target_memory)})"
            ),
            (
                "added_p95_ns",
                "target_p95_ns",
                "memory_bytes",
                "target_memory_bytes",
                "added_count",
            ),
        ),
        Rule(
            "budget_critical",
            "critical",
            c.alert_budget_critical_s,
            lambda f: f["budget_utilization"] > crit,
            lambda f: (
                f"memory budget {f['budget_utilization']:.0%} used "
                f"(> {c.alert_budget_critical_pct}%) for {c.alert_budget_critical_s}s"
            ),
            budget_keys,
        ),
        Rule(
            "records_lost",
            "critical",
            0,
            lambda f: f["records_lost_recent"] > 0,
            lambda f: (
                f"{f['records_lost_recent']} records lost in the last {f['window_s']:.0f}s "
                f"({f['records_lost']} in total)"
            ),
            ("records_lost_recent", "records_lost", "write_errors"),
        ),
        Rule(
            "latency_mean_high",
            "warning",
            c.alert_mean_s,
            lambda f: f["added_mean_ns"] > mean_ns,
            lambda f: (
                f"mean added time {_us(f['added_mean_ns'])} > {_us(mean_ns)} for {c.alert_mean_s}s"
            ),
            ("added_mean_ns", "added_p95_ns", "added_count", "fixed_hooks_ns", "hook_ns"),
        ),
        Rule(
            "budget_warning",
            "warning",
            c.alert_budget_warning_s,
            lambda f: f["budget_utilization"] > warn,
            lambda f: (
                f"memory budget {f['budget_utilization']:.0%} used "
                f"(> {c.alert_budget_warning_pct}%) for {c.alert_budget_warning_s}s"
            ),
            budget_keys,
        ),
        Rule(
            "queue_high",
            "warning",
            c.alert_queue_s,
            lambda f: f["queue_depth_peak"] > c.alert_queue,
            lambda f: f"queue reached {f['queue_depth_peak']} events (> {c.alert_queue})",
            ("queue_depth_peak", "queue_depth"),
        ),
    ]


class _State:
    __slots__ = ("active", "since")

    def __init__(self) -> None:
        self.since: float | None = None
        self.active: Alert | None = None


class AlertEngine:
    """Evaluates rules against figures at the clock's time; delivers the notices."""

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        clock: Callable[[], float] = time.monotonic,
        report_s: float = 0,
        callbacks: list[Callable[[Alert], Any]] | None = None,
        logger: logging.Logger = log,
    ) -> None:
        self.rules = list(rules)
        self._clock = clock
        self._state = {r.name: _State() for r in self.rules}
        self.report_s = report_s
        self._next_report = clock() + report_s if report_s else None
        #: Shared with the tracer, so callbacks survive a rebuild after fork.
        self.callbacks: list[Callable[[Alert], Any]] = [] if callbacks is None else callbacks
        self._log = logger
        self.fired = dict.fromkeys(self._state, 0)

    def add_callback(self, fn: Callable[[Alert], Any]) -> None:
        self.callbacks.append(fn)

    def active(self) -> list[Alert]:
        """The alerts firing now, most severe first."""
        out = [s.active for s in self._state.values() if s.active is not None]
        return sorted(out, key=lambda a: a.severity != "critical")

    def evaluate(self, figures: Figures, full: Callable[[], Figures] | None = None) -> list[Alert]:
        """Apply every rule to ``figures`` now; return (and deliver) the notices.

        ``full`` gives the figures of the periodic report when it is due (default:
        ``figures``).
        """
        now = self._clock()
        notices: list[Alert] = []
        for rule in self.rules:
            state = self._state[rule.name]
            try:
                holds = bool(rule.condition(figures))
            except Exception:  # a missing figure is a bug of ours, not the app's problem
                self._log.error("zltrace: alert rule %s failed", rule.name, exc_info=True)
                continue
            if holds:
                if state.since is None:
                    state.since = now
                if state.active is None and now - state.since >= rule.duration_s:
                    state.active = self._notice(rule, "firing", figures, state.since, now)
                    self.fired[rule.name] += 1
                    notices.append(state.active)
            else:
                state.since = None
                if state.active is not None:
                    notices.append(self._notice(rule, "cleared", figures, state.active.since, now))
                    state.active = None
        for alert in notices:
            self._deliver(alert)
        if self._next_report is not None and now >= self._next_report:
            self._next_report = now + self.report_s
            self.info(
                "performance_report",
                "zltrace performance report",
                figures if full is None else full(),
            )
        return notices

    def info(self, name: str, message: str, figures: Figures) -> Alert:
        """Log an info notice (not passed to the degradation callbacks)."""
        now = self._clock()
        alert = Alert(name, "info", "info", message, dict(figures), now, now)
        self._deliver(alert)
        return alert

    def configuration(self, figures: Figures) -> Alert:
        return self.info("configuration", "zltrace configuration", figures)

    def _notice(self, rule: Rule, state: str, figures: Figures, since: float, now: float) -> Alert:
        picked = {k: figures[k] for k in rule.keys if k in figures}
        try:
            message = rule.message(figures)
        except Exception:
            message = rule.name
        if state == "cleared":
            message = f"cleared after {now - since:.0f}s: {message}"
        return Alert(rule.name, rule.severity, state, message, picked, since, now)

    def _deliver(self, alert: Alert) -> None:
        level = logging.INFO if alert.state != "firing" else _LEVELS[alert.severity]
        extra = {"alert": alert.name, "severity": alert.severity, "alert_state": alert.state}
        extra.update(alert.figures)
        try:
            self._log.log(level, "%s: %s", alert.name, alert.message, extra=extra)
        except Exception:  # a broken handler of the app's must not stop the worker
            pass
        if alert.state == "info":
            return
        for fn in list(self.callbacks):
            try:
                fn(alert)
            except Exception:
                try:
                    self._log.error("zltrace: degradation callback %r failed", fn, exc_info=True)
                except Exception:
                    pass
