"""Alert rules: durations on an injected clock, firing and clearing once, delivery, JSON logs."""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import urllib3
from support.server import ScriptedServer, response
from support.trace import records

import zltrace
from zltrace._monitor.alerts import ALERT_LOGGER, AlertEngine, default_rules
from zltrace._monitor.monitor import Gauges, PerformanceMonitor


class Clock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def healthy_figures(**changes: Any) -> dict[str, Any]:
    """The figures of an idle monitor, with ``changes`` applied."""
    m = PerformanceMonitor(zltrace.Config(alerts=False), probe=None)
    figures = m.figures()
    figures.update(changes)
    return figures


def engine(clock: Clock, **config: Any) -> tuple[AlertEngine, list[zltrace.Alert]]:
    got: list[zltrace.Alert] = []
    e = AlertEngine(default_rules(zltrace.Config(**config)), clock=clock, callbacks=[got.append])
    return e, got


# rule, figures that make its condition true, its default duration (seconds)
BAD = [
    ("target_not_met", {"meets_target": False, "added_p95_ns": 250_000}, 300),
    ("budget_critical", {"budget_utilization": 0.95}, 120),
    ("records_lost", {"records_lost_recent": 3, "records_lost": 3}, 0),
    ("latency_mean_high", {"added_mean_ns": 60_000.0}, 60),
    ("budget_warning", {"budget_utilization": 0.80}, 300),
    ("queue_high", {"queue_depth_peak": 501}, 0),
]


@pytest.mark.parametrize(("rule", "bad", "duration"), BAD, ids=[b[0] for b in BAD])
def test_rule_fires_once_after_its_duration_and_clears_once(
    rule: str, bad: dict[str, Any], duration: int
) -> None:
    """Each spec rule fires exactly when its condition has held for its duration, then clears."""
    clock = Clock()
    e, got = engine(clock)
    figures = healthy_figures(**bad)
    e.evaluate(figures)
    if duration:
        clock.now += duration - 1
        e.evaluate(figures)
        assert [a.name for a in got if a.name == rule] == []
        clock.now += 1
    e.evaluate(figures)
    clock.now += 1000
    e.evaluate(figures)  # still holding: no second notice
    mine = [a for a in got if a.name == rule]
    assert [(a.state, a.at - a.since) for a in mine] == [("firing", float(duration))]
    assert rule in [a.name for a in e.active()]
    clock.now += 1
    e.evaluate(healthy_figures())
    e.evaluate(healthy_figures())
    mine = [a for a in got if a.name == rule]
    assert [a.state for a in mine] == ["firing", "cleared"]
    assert mine[1].since == mine[0].since
    assert rule not in [a.name for a in e.active()]


def test_a_condition_that_flaps_starts_its_duration_over() -> None:
    """Budget above 75% for 299 s, one good tick, 299 s again: no warning."""
    clock = Clock()
    e, got = engine(clock)
    high = healthy_figures(budget_utilization=0.8)
    e.evaluate(high)
    clock.now += 299
    e.evaluate(high)
    clock.now += 1
    e.evaluate(healthy_figures())
    e.evaluate(high)
    clock.now += 299
    e.evaluate(high)
    assert got == []
    clock.now += 1
    e.evaluate(high)
    assert [(a.name, a.severity) for a in got] == [("budget_warning", "warning")]


def test_thresholds_and_durations_come_from_config() -> None:
    """Config moves a rule's threshold and duration."""
    clock = Clock()
    e, got = engine(clock, alert_queue=10, alert_queue_s=30)
    busy = healthy_figures(queue_depth_peak=11)
    e.evaluate(busy)
    clock.now += 29
    e.evaluate(busy)
    assert got == []
    clock.now += 1
    e.evaluate(busy)
    assert [a.name for a in got] == ["queue_high"]
    assert got[0].figures["queue_depth_peak"] == 11


def test_alert_thresholds_read_from_the_environment() -> None:
    """ZLTRACE_ALERT_* and ZLTRACE_TARGET_* variables reach the Config."""
    cfg = zltrace.Config.from_env(
        {
            "ZLTRACE_ALERT_QUEUE": "50",
            "ZLTRACE_ALERT_MEAN_US": "20",
            "ZLTRACE_ALERT_BUDGET_CRITICAL_S": "10",
            "ZLTRACE_TARGET_P95_US": "80",
            "ZLTRACE_ALERTS": "off",
            "ZLTRACE_REPORT_S": "0",
        }
    )
    assert (cfg.alert_queue, cfg.alert_mean_us, cfg.alert_budget_critical_s) == (50, 20, 10)
    assert (cfg.target_p95_us, cfg.alerts, cfg.report_s) == (80, False, 0)


def test_a_bad_alert_variable_warns_and_keeps_the_default() -> None:
    """An invalid threshold in the environment warns, naming it, and is ignored."""
    with pytest.warns(zltrace.ZltraceWarning, match="ZLTRACE_ALERT_BUDGET_WARNING_PCT"):
        cfg = zltrace.Config.from_env({"ZLTRACE_ALERT_BUDGET_WARNING_PCT": "250"})
    assert cfg.alert_budget_warning_pct == 75


def test_notices_are_logged_with_their_figures_as_extra(caplog: pytest.LogCaptureFixture) -> None:
    """Firing logs at the rule's severity, clearing at INFO; the figures are record fields."""
    clock = Clock()
    e, _ = engine(clock)
    with caplog.at_level(logging.INFO, logger=ALERT_LOGGER):
        e.evaluate(healthy_figures(records_lost_recent=2, records_lost=7))
        e.evaluate(healthy_figures())
    fired, cleared = [r for r in caplog.records if getattr(r, "alert", None) == "records_lost"]
    assert fired.levelno == logging.CRITICAL
    assert fired.alert_state == "firing"  # type: ignore[attr-defined]
    assert fired.records_lost == 7  # type: ignore[attr-defined]
    assert "2 records lost" in fired.getMessage()
    assert cleared.levelno == logging.INFO
    assert cleared.alert_state == "cleared"  # type: ignore[attr-defined]


def test_a_failing_callback_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One callback raising does not stop the next one, nor the engine."""
    clock = Clock()
    got: list[str] = []

    def broken(alert: zltrace.Alert) -> None:
        raise RuntimeError("boom")

    e = AlertEngine(
        default_rules(zltrace.Config()),
        clock=clock,
        callbacks=[broken, lambda a: got.append(a.name)],
    )
    with caplog.at_level(logging.ERROR, logger=ALERT_LOGGER):
        e.evaluate(healthy_figures(queue_depth_peak=900))
    assert got == ["queue_high"]
    failures = [r for r in caplog.records if "callback" in r.getMessage()]
    assert failures and failures[0].exc_info is not None
    e.evaluate(healthy_figures())
    assert got == ["queue_high", "queue_high"]


def test_periodic_report_and_configuration_are_logged_not_called_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Info notices go to the log only: the configuration at start, a report each report_s."""
    clock = Clock()
    got: list[zltrace.Alert] = []
    cfg = zltrace.Config(report_s=60)
    with caplog.at_level(logging.INFO, logger=ALERT_LOGGER):
        m = PerformanceMonitor(cfg, clock=clock, callbacks=[got.append], probe=None)
        for _ in range(130):
            clock.now += 1
            m.tick()
    names = [getattr(r, "alert", None) for r in caplog.records]
    assert names.count("configuration") == 1
    assert names.count("performance_report") == 2
    report = next(r for r in caplog.records if getattr(r, "alert", None) == "performance_report")
    assert report.added_p95_ns == 0  # type: ignore[attr-defined]
    config = next(r for r in caplog.records if getattr(r, "alert", None) == "configuration")
    assert config.config_alert_queue == 500  # type: ignore[attr-defined]
    assert got == []


def test_monitor_tick_runs_the_rules_on_its_own_figures() -> None:
    """A monitor whose gauges show lost records fires records_lost on the next tick."""
    clock = Clock()
    got: list[zltrace.Alert] = []
    box = [Gauges()]
    m = PerformanceMonitor(
        zltrace.Config(), lambda: box[0], clock=clock, callbacks=[got.append], probe=None
    )
    m.tick()
    clock.now += 1
    box[0] = Gauges(records_lost=4)
    m.tick()
    assert [(a.name, a.state) for a in got] == [("records_lost", "firing")]
    assert got[0].figures["records_lost"] == 4
    # A window later with no new loss, the alert clears.
    for _ in range(61):
        clock.now += 1
        m.tick()
    assert [(a.name, a.state) for a in got] == [
        ("records_lost", "firing"),
        ("records_lost", "cleared"),
    ]


def test_json_formatter_writes_one_object_with_the_extra_fields() -> None:
    """JsonFormatter: valid JSON with level, logger, message, extra fields and the traceback."""
    fmt = zltrace.JsonFormatter()
    try:
        raise ValueError("bad")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "zltrace.monitor", logging.WARNING, "x.py", 1, "q %d", (5,), exc_info
    )
    record.alert = "queue_high"
    record.queue_depth_peak = 600
    record.odd = object()
    doc = json.loads(fmt.format(record))
    assert doc["level"] == "WARNING"
    assert doc["logger"] == "zltrace.monitor"
    assert doc["message"] == "q 5"
    assert doc["alert"] == "queue_high"
    assert doc["queue_depth_peak"] == 600
    assert doc["odd"].startswith("<object")
    assert "ValueError: bad" in doc["exc_info"]
    assert "msg" not in doc and "args" not in doc


def test_on_degradation_is_called_from_the_worker_and_a_failure_breaks_nothing(
    trace_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real tracer: the queue rule fires on the worker; a raising callback changes nothing."""
    tracer = zltrace.Tracer(zltrace.Config(dir=str(trace_dir), flush_ms=10, alert_queue=1))
    fired = threading.Event()
    seen: list[tuple[str, str]] = []

    def broken(alert: zltrace.Alert) -> None:
        raise RuntimeError("callback bug")

    def good(alert: zltrace.Alert) -> None:
        seen.append((alert.name, threading.current_thread().name))
        fired.set()

    tracer.on_degradation(broken)
    tracer.on_degradation(good)
    with pytest.raises(TypeError) as info:
        tracer.on_degradation("not callable")  # type: ignore[arg-type]
    assert isinstance(info.value, zltrace.ZltraceError)
    with ScriptedServer([response(200, b"y" * 100)] * 40) as srv:
        pool = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
        with caplog.at_level(logging.ERROR, logger=ALERT_LOGGER):
            for _ in range(20):
                pool.urlopen("GET", "/")
            # The worker ticks once a second: wait for it (no timing is asserted).
            assert fired.wait(30)
            for _ in range(20):
                pool.urlopen("GET", "/")
        pool.close()
    assert seen[0][0] == "queue_high"
    assert seen[0][1].startswith("zltrace-worker-")
    assert any("callback" in r.getMessage() for r in caplog.records)
    assert len(records(tracer)) == 40


def test_alerts_log_on_the_package_monitor_logger() -> None:
    """Alerts go to ``<package>.monitor``: ``zltrace.monitor`` here, a vendored copy's own."""
    assert ALERT_LOGGER == f"{zltrace.__name__}.monitor" == "zltrace.monitor"
