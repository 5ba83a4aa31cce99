"""The throughput part: requests per second, traced vs bare, at several thread counts.

Beside each traced/bare ratio, the same run with capture only: a traced pool whose events go
to a queue that a thread empties every ``DISCARD_EVERY_S`` (a worker that discards). Its ratio
to bare is the physical ceiling of the traced ratio with capture as it is.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterable
from time import perf_counter_ns
from typing import Any

from .plan import GOAL, JSON_1K, RATIO_MIN, SPEC, SPEC_RPS
from .sides import CallerOnlySide, Run, Side, TracedSide

DISCARD_EVERY_S = 0.1


def _tp_run(
    side: Side, threads: int, duration_s: float, max_requests: int | None, path: str
) -> dict[str, Any]:
    stop = threading.Event()
    counts = [0] * threads
    nbytes = [0] * threads
    errors = [0] * threads
    lasts = [0] * threads
    barrier = threading.Barrier(threads + 1)
    per_thread = -(-max_requests // threads) if max_requests else 0
    pool = side.pool

    def work(i: int) -> None:
        c = b = err = 0
        barrier.wait()
        while not stop.is_set():
            try:
                r = pool.urlopen("GET", path, retries=False)
                b += len(r.data)
                c += 1
            except Exception:
                err += 1
            if per_thread and c >= per_thread:
                break
        lasts[i] = perf_counter_ns()
        counts[i], nbytes[i], errors[i] = c, b, err

    ts = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = perf_counter_ns()
    stop.wait(duration_s)
    stop.set()
    for t in ts:
        t.join()
    elapsed = (max(lasts) - t0) / 1e9
    side.count(sum(counts), sum(nbytes))
    return {"requests": sum(counts), "errors": sum(errors), "elapsed_s": elapsed}


def part_throughput(run: Run) -> None:
    """Requests per second, traced vs bare, at each thread count of the plan; then the checks."""
    res: dict[str, Any] = {"path": JSON_1K, "levels": {}}
    run.results["throughput"] = res
    for n in run.plan.concurrency:
        res["levels"][str(n)] = _level(run, n)
    _check(run, res["levels"].values())
    _report_ceiling(run, res["levels"].values())


def _level(run: Run, n: int) -> dict[str, Any]:
    """``n`` threads sharing one pool of ``n`` connections per side, rounds of both sides."""
    p = run.plan
    run.out.progress(
        f"throughput: {n} thread(s), {p.tp_rounds} rounds of bare/traced/capture-only/"
        f"capture-only/traced/bare, {p.tp_run_s:g}s each"
    )
    bare = run.bare(maxsize=n)
    traced = TracedSide(run, f"throughput {n} threads", maxsize=n)
    capture = CallerOnlySide(
        run, maxsize=n, discard_every_s=DISCARD_EVERY_S, label=f"capture only {n} threads"
    )
    order: tuple[tuple[str, Side], ...] = (("bare", bare), ("traced", traced))
    if capture.usable:
        order += (("capture_only", capture),) * 2
    order += (("traced", traced), ("bare", bare))
    for _, side in order[: len(order) // 2]:  # open n connections each
        _tp_run(side, n, min(0.2, p.tp_run_s / 2), None, JSON_1K)
    traced.tracer.flush(timeout=60)
    try:
        runs = [
            _timed_run(run, name, side, traced, n)
            for _ in range(p.tp_rounds)
            for name, side in order
        ]
    finally:
        capture.close()

    def total(name: str, key: str) -> Any:
        return sum(r[key] for r in runs if r["side"] == name)

    drain_s = total("traced", "drain_s")
    bare_rps = total("bare", "requests") / total("bare", "elapsed_s")
    capture_rps = (
        total("capture_only", "requests") / total("capture_only", "elapsed_s")
        if capture.usable
        else None
    )
    traced_rps = total("traced", "requests") / total("traced", "elapsed_s")
    sustained_rps = total("traced", "requests") / (total("traced", "elapsed_s") + drain_s)
    level = {
        "threads": n,
        "bare_rps": round(bare_rps, 1),
        "traced_rps": round(traced_rps, 1),
        "ratio": round(traced_rps / bare_rps, 4),
        "traced_rps_with_drain": round(sustained_rps, 1),
        "ratio_with_drain": round(sustained_rps / bare_rps, 4),
        "capture_only_rps": round(capture_rps, 1) if capture_rps is not None else None,
        "capture_only_ratio": round(capture_rps / bare_rps, 4) if capture_rps is not None else None,
        "worker_backlog_events_at_run_end": [
            r["backlog_events"] for r in runs if r["side"] == "traced"
        ],
        "drain_s": round(drain_s, 3),
        "errors": {"bare": total("bare", "errors"), "traced": total("traced", "errors")},
        "runs": runs,
        "trace": traced.finish(),
    }
    bare.pool.close()
    run.out.progress(
        f"  bare {bare_rps:.0f} req/s, traced {traced_rps:.0f} req/s "
        f"({sustained_rps:.0f} with the worker's backlog drained)"
    )
    return level


def _timed_run(run: Run, name: str, side: Side, traced: TracedSide, n: int) -> dict[str, Any]:
    """One timed run of one side; a traced one is followed by draining the worker's backlog."""
    gc.collect()
    r = _tp_run(side, n, run.plan.tp_run_s, run.plan.tp_max_requests, JSON_1K)
    if isinstance(side, CallerOnlySide):
        side.drain()
    if side is traced:
        # What the worker still has to do when the app is done: the app-side rate
        # is only sustainable if the worker keeps up.
        r["backlog_events"] = traced.tracer.stats()["queue_depth"]
        t0 = perf_counter_ns()
        traced.tracer.flush(timeout=120)
        r["drain_s"] = (perf_counter_ns() - t0) / 1e9
    return {"side": name, **r, "rps": round(r["requests"] / r["elapsed_s"], 1)}


def _check(run: Run, levels: Iterable[dict[str, Any]]) -> None:
    """The spec's rate at the slowest level; the goal's traced/bare ratio at each."""
    levels = list(levels)
    worst = min(levels, key=lambda lv: lv["traced_rps"])
    run.out.check(
        "Throughput (traced, slowest of "
        + "/".join(str(n) for n in run.plan.concurrency)
        + " threads)",
        worst["traced_rps"] > SPEC_RPS,
        f"> {SPEC_RPS:.0f} req/s",
        f"{worst['traced_rps']:.0f} req/s at {worst['threads']} thread(s)",
        SPEC,
        worst["traced_rps"],
    )
    for lv in levels:
        run.out.check(
            f"Throughput ratio traced/bare, {lv['threads']} thread(s)",
            lv["ratio"] >= RATIO_MIN,
            f"≥ {RATIO_MIN}",
            f"{lv['ratio']:.3f} ({lv['traced_rps']:.0f} vs {lv['bare_rps']:.0f} req/s; "
            f"{lv['ratio_with_drain']:.3f} counting the worker's "
            f"{lv['drain_s'] * 1000:.0f}ms of catching up; capture-only ceiling "
            + (
                f"{lv['capture_only_ratio']:.3f})"
                if lv["capture_only_ratio"] is not None
                else "not measured)"
            ),
            GOAL,
            lv["ratio"],
        )


def _report_ceiling(run: Run, levels: Iterable[dict[str, Any]]) -> None:
    """One line: the capture-only ceiling beside the traced ratio at each thread count."""
    levels = list(levels)
    if any(lv["capture_only_ratio"] is None for lv in levels):
        run.out.info("throughput capture-only ceiling: not measured (events cannot be diverted)")
        return
    run.out.info(
        f"throughput ratio to bare, traced vs capture only (a worker that wakes every "
        f"{DISCARD_EVERY_S * 1000:.0f}ms and discards: the ceiling of capture as it is): "
        + ", ".join(
            f"{lv['threads']} thread(s) {lv['ratio']:.3f} vs {lv['capture_only_ratio']:.3f}"
            for lv in levels
        )
    )
