"""The modes part: zero-latency vs standard mode, each A/B against bare."""

from __future__ import annotations

import gc
from typing import Any

from .ab import interleave, summarise, warm
from .output import fmt_us
from .plan import BYTES_256K, JSON_1K, SSE
from .sides import Run, TracedSide


def part_modes(run: Run) -> None:
    """Zero-latency vs standard mode: one A/B run against bare for each, one tracer at a time
    (a worker's GIL holds land on whatever request runs next, so two tracers in one
    interleave would be charged for each other)."""
    p = run.plan
    res: dict[str, Any] = {}
    run.results["modes"] = res
    for key, label, path, pairs, warmup in (
        ("json_1k", "1 KB JSON", JSON_1K, p.modes_1k, 200),
        ("bytes_256k", "256 KB", BYTES_256K, p.modes_256k, 30),
        ("sse", "SSE", SSE, p.modes_sse, 2),
    ):
        res[key] = {"path": path}
        for mode, zero_latency in (("zero_latency", True), ("standard", False)):
            run.out.progress(f"modes: {label}, bare vs {mode.replace('_', '-')}, {pairs} pairs")
            bare = run.bare()
            traced = TracedSide(run, f"modes {label} {mode}", zero_latency=zero_latency)
            warm([bare, traced], path, warmup)
            traced.tracer.flush(timeout=60)
            gc.collect()
            s = interleave([bare, traced], path, pairs=pairs)
            res[key][mode] = summarise(s, 1)
            res[key][mode]["trace"] = traced.finish()
            bare.pool.close()
        z, st = res[key]["zero_latency"], res[key]["standard"]
        which = "added_ttfb_us" if key == "sse" else "added_ttlb_us"
        what = "time-to-first-byte delta" if key == "sse" else "added latency"
        run.out.info(
            f"modes, {label} {what} p50/p99: zero-latency "
            f"{fmt_us(z[which]['p50'])}/{fmt_us(z[which]['p99'])}, standard "
            f"{fmt_us(st[which]['p50'])}/{fmt_us(st[which]['p99'])}"
        )
