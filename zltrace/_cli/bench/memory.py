"""The memory part: RSS and tracemalloc peaks of a sustained traced run against a bare one."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Sequence
from time import perf_counter_ns
from typing import Any

from .ab import fetch
from .plan import (
    BYTES_256K,
    GOAL,
    JSON_1K,
    MIB,
    RSS_OVER_MB,
    SLOPE_MAX_MB_PER_MIN,
    SLOPE_VERDICT_MIN_S,
    SPEC,
    SPEC_MEMORY_MB,
)
from .sides import Run, Side, TracedSide
from .stats import current_rss, median, slope_per_s

MEMORY_MIX = (JSON_1K,) * 9 + (BYTES_256K,)


def _sustain(
    side: Side, duration_s: float, sample_s: float = 0.05, tm: bool = False
) -> dict[str, Any]:
    """Full speed, one thread, the memory mix, for ``duration_s``; samples RSS (and tracemalloc)."""
    samples: list[tuple[float, int]] = []
    tm_samples: list[tuple[float, int]] = []
    start = perf_counter_ns()
    end = start + int(duration_s * 1e9)
    next_sample = start
    n = 0
    mix = MEMORY_MIX
    while True:
        now = perf_counter_ns()
        if now >= next_sample:
            t = (now - start) / 1e9
            rss = current_rss()
            if rss is not None:
                samples.append((t, rss))
            if tm:
                tm_samples.append((t, tracemalloc.get_traced_memory()[0]))
            next_sample = now + int(sample_s * 1e9)
        if now >= end:
            break
        _, _, _, nbytes = fetch(side.pool, mix[n % len(mix)])
        side.count(1, nbytes)
        n += 1
    return {
        "requests": n,
        "elapsed_s": (perf_counter_ns() - start) / 1e9,
        "rss": samples,
        "tm": tm_samples,
    }


def _slope_mb_per_min(points: Sequence[tuple[float, int]]) -> float:
    """Slope of the samples after the first 20% of the run (warm-up), MB per minute."""
    if not points:
        return 0.0
    t_end = points[-1][0]
    tail = [(t, v / MIB) for t, v in points if t >= 0.2 * t_end]
    return slope_per_s(tail) * 60


def _mb(v: float) -> float:
    return round(v / MIB, 2)


def part_memory(run: Run) -> None:
    """RSS of a sustained bare run then a traced one, tracemalloc peaks of both; the checks."""
    p = run.plan
    res: dict[str, Any] = {
        "duration_s": p.duration,
        "warm_up_s": p.memory_warm_s,
        "mix": "9 x 1 KB JSON + 1 x 256 KB, one thread",
    }
    run.results["memory"] = res
    if current_rss() is None:
        run.out.info("memory: /proc/self/statm is not available here; RSS figures skipped")
    bare = run.bare()
    _rss_runs(run, bare, res)
    peaks = res["tracemalloc"] = _tracemalloc_peaks(run, bare)
    bare.pool.close()
    res["tracemalloc_peak_over_baseline_mb"] = round(
        peaks["traced"]["peak_mb"] - peaks["bare"]["peak_mb"], 2
    )
    _check(run, res)


def _rss_runs(run: Run, bare: Side, res: dict[str, Any]) -> None:
    """Full speed for the plan's duration, bare then traced (each after a warm-up), RSS sampled."""
    p = run.plan
    d = p.duration
    run.out.progress(f"memory: baseline (bare) {d:g}s at full speed")
    _sustain(bare, p.memory_warm_s)
    gc.collect()
    rb = _sustain(bare, d)
    run.out.progress(f"memory: traced {d:g}s at full speed (after {p.memory_warm_s:g}s warm-up)")
    traced = TracedSide(run, "memory traced")
    _sustain(traced, p.memory_warm_s)
    rt = _sustain(traced, d)
    pre_close = traced.tracer.stats()
    trace = traced.finish()
    after = current_rss()

    base_max = max((v for _, v in rb["rss"]), default=0)
    traced_max = max((v for _, v in rt["rss"]), default=0)
    res["baseline"] = {
        "requests": rb["requests"],
        "elapsed_s": round(rb["elapsed_s"], 3),
        "rss_max_mb": _mb(base_max),
        "rss_median_mb": _mb(median([v for _, v in rb["rss"]])) if rb["rss"] else 0,
        "slope_mb_per_min": round(_slope_mb_per_min(rb["rss"]), 3),
    }
    res["traced"] = {
        "requests": rt["requests"],
        "elapsed_s": round(rt["elapsed_s"], 3),
        "rss_first_mb": _mb(rt["rss"][0][1]) if rt["rss"] else 0,
        "rss_last_mb": _mb(rt["rss"][-1][1]) if rt["rss"] else 0,
        "rss_max_mb": _mb(traced_max),
        "slope_mb_per_min": round(_slope_mb_per_min(rt["rss"]), 3),
        "bytes_held_at_end": pre_close["bytes_held"],
        "queue_depth_at_end": pre_close["queue_depth"],
        "rss_after_close_mb": _mb(after) if after is not None else None,
        "samples": [(round(t, 3), _mb(v)) for t, v in rt["rss"]],
    }
    res["rss_over_baseline_mb"] = _mb(traced_max - base_max)
    res["trace"] = trace


def _tracemalloc_peaks(run: Run, bare: Side) -> dict[str, dict[str, Any]]:
    """Python-level allocation peaks in short runs of their own, bare then traced.

    tracemalloc slows everything down, so it is never on during the RSS runs; it is stopped
    again afterwards unless it was on before the bench started.
    """
    dt = run.plan.tm_duration
    run.out.progress(f"memory: tracemalloc peaks, {dt:g}s bare + {dt:g}s traced")
    was_tracing = tracemalloc.is_tracing()
    peaks = {}
    for name in ("bare", "traced"):
        gc.collect()
        if not was_tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        base_current = tracemalloc.get_traced_memory()[0]
        side: Side = bare if name == "bare" else TracedSide(run, "memory tracemalloc")
        r = _sustain(side, dt, tm=True)
        current, peak = tracemalloc.get_traced_memory()
        if isinstance(side, TracedSide):
            side.finish()
        if not was_tracing:
            tracemalloc.stop()
        peaks[name] = {
            "peak_mb": _mb(peak - base_current),
            "end_mb": _mb(current - base_current),
            "requests": r["requests"],
            "slope_mb_per_min": round(_slope_mb_per_min(r["tm"]), 3),
        }
    return peaks


def _check(run: Run, res: dict[str, Any]) -> None:
    """The spec's memory bound, the goal's bound and slope; the tracemalloc figures as info.

    The slope is a verdict only for runs of ``SLOPE_VERDICT_MIN_S`` or more: over seconds it
    is the allocator's warm-up and the sampling's noise, so a shorter run prints it as INFO.
    """
    d = res["duration_s"]
    over = res["rss_over_baseline_mb"]
    slope = res["traced"]["slope_mb_per_min"]
    run.out.check(
        "Memory (RSS over baseline)",
        over < SPEC_MEMORY_MB,
        f"< {SPEC_MEMORY_MB:g} MB",
        f"{over:.1f} MB",
        SPEC,
        over,
    )
    run.out.check(
        f"RSS over baseline ({d:g}s full-speed run; goal is for 10 min)",
        over <= RSS_OVER_MB,
        f"≤ {RSS_OVER_MB:g} MB",
        f"{over:.1f} MB",
        GOAL,
        over,
    )
    if d >= SLOPE_VERDICT_MIN_S:
        run.out.check(
            "RSS slope while traced (no upward slope)",
            slope <= SLOPE_MAX_MB_PER_MIN,
            f"≤ {SLOPE_MAX_MB_PER_MIN:g} MB/min",
            f"{slope:+.2f} MB/min over {d:g}s",
            GOAL,
            slope,
        )
    else:
        run.out.info(
            f"RSS slope while traced {slope:+.2f} MB/min over {d:g}s (a verdict only for runs "
            f"of {SLOPE_VERDICT_MIN_S / 60:g} minutes or more: --duration "
            f"{SLOPE_VERDICT_MIN_S:g})"
        )
    peaks = res["tracemalloc"]
    run.out.info(
        f"tracemalloc peak: traced {peaks['traced']['peak_mb']:.2f} MB, bare "
        f"{peaks['bare']['peak_mb']:.2f} MB ({run.plan.tm_duration:g}s each); RSS max traced "
        f"{res['traced']['rss_max_mb']:.1f} MB, bare {res['baseline']['rss_max_mb']:.1f} MB"
    )
