"""Back-to-back blocks: the 1 KB added latency of a program that traces every call it makes.

The worker wakes on a traced request's first event, gathers for a couple of milliseconds and
then runs holding the GIL, so its work for one request lands on whichever request of this
process runs then. Interleaving single requests puts that on the next bare request as often
as on a traced one, and a per-pair difference cancels it. Here each side makes a block of
calls one after another, so the traced side's deferred work lands on its own later calls:

- three sides: ``bare``, ``bare-again`` (untraced too: the A/A line, the method's own noise)
  and ``traced``; each round one block per side, the order rotating through all six
  permutations so drift hits every side alike;
- before each block the tracer is flushed and the thread sleeps ``SETTLE_S``, so one block's
  deferred work does not reach the next block; the first ``SKIP`` calls of a block are not
  counted (the switch between pools);
- the figure is the median over rounds of (traced block median - bare block median): drift
  between rounds does not reach it. Whole-process CPU per call (the worker included, over the
  block and the flush after it) is kept beside it.

Bounded by the plan's round count and time budget (whole rounds only, at least one per
permutation).
"""

from __future__ import annotations

import gc
import time
from time import perf_counter_ns, process_time_ns
from typing import Any

from .ab import fetch, warm
from .output import Output, fmt_us
from .plan import GOAL, JSON_1K, P50_1K_US
from .sides import Run, Side, TracedSide
from .stats import median

BLOCK = 20
SKIP = 3
SETTLE_S = 0.01
PERMUTATIONS = ((0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1), (2, 1, 0), (1, 0, 2))
SIDES = ("bare", "bare_again", "traced")


def paired_median(side_medians: list[float], bare_medians: list[float]) -> float:
    """The median over rounds of (this side's block median - the bare block median)."""
    return median([a - b for a, b in zip(side_medians, bare_medians)])


def measure_blocks(run: Run) -> dict[str, Any]:
    """Rounds of one back-to-back block of 1 KB requests per side; the paired figures."""
    p = run.plan
    run.out.progress(
        f"latency: back-to-back blocks, 1 KB, up to {p.block_rounds} rounds of "
        f"{BLOCK} calls per side (at most {p.block_budget_s:g}s)"
    )
    traced = TracedSide(run, "1 KB back-to-back")
    sides: list[Side] = [run.bare(label="bare"), run.bare(label="bare-again"), traced]
    warm(sides, JSON_1K, 20)
    traced.tracer.flush(timeout=60)
    gc.collect()
    block_medians: list[list[float]] = [[], [], []]
    pooled: list[list[int]] = [[], [], []]
    proc_ns = [0, 0, 0]
    deadline = perf_counter_ns() + int(p.block_budget_s * 1e9)
    rounds = 0
    while rounds < p.block_rounds and (rounds < len(PERMUTATIONS) or perf_counter_ns() < deadline):
        for idx in PERMUTATIONS[rounds % len(PERMUTATIONS)]:
            side = sides[idx]
            traced.tracer.flush(timeout=10)
            time.sleep(SETTLE_S)
            block: list[int] = []
            c0 = process_time_ns()
            for i in range(BLOCK):
                _, ttlb, _, nbytes = fetch(side.pool, JSON_1K)
                side.count(1, nbytes)
                if i >= SKIP:
                    block.append(ttlb)
            traced.tracer.flush(timeout=10)
            proc_ns[idx] += process_time_ns() - c0
            pooled[idx] += block
            block_medians[idx].append(median(block) / 1000)
        rounds += 1
    trace = traced.finish()
    for side in sides[:2]:
        side.pool.close()
    calls = rounds * BLOCK

    def pooled_p50(idx: int) -> float:
        return round((median(pooled[idx]) - median(pooled[0])) / 1000, 3)

    def proc_per_call(idx: int) -> float:
        return round((proc_ns[idx] - proc_ns[0]) / calls / 1000, 3) if calls else 0.0

    return {
        "path": JSON_1K,
        "rounds": rounds,
        "block": BLOCK,
        "skip": SKIP,
        "settle_s": SETTLE_S,
        "counted_per_side": len(pooled[0]),
        "bare_p50_us": round(median(pooled[0]) / 1000, 3),
        "added_paired_us": round(paired_median(block_medians[2], block_medians[0]), 3),
        "aa_paired_us": round(paired_median(block_medians[1], block_medians[0]), 3),
        "added_p50_us": pooled_p50(2),
        "aa_p50_us": pooled_p50(1),
        "added_process_cpu_us": proc_per_call(2),
        "aa_process_cpu_us": proc_per_call(1),
        "block_medians_us": {
            name: [round(v, 3) for v in block_medians[i]] for i, name in enumerate(SIDES)
        },
        "trace": trace,
    }


def check_blocks(out: Output, r: dict[str, Any]) -> None:
    """The back-to-back verdict against the 1 KB p50 target, its A/A noise beside it."""
    v = r["added_paired_us"]
    out.check(
        "1 KB added latency back to back (paired median of block medians)",
        v <= P50_1K_US,
        f"≤ {P50_1K_US:g}µs",
        f"{fmt_us(v)} (A/A bare-again {fmt_us(r['aa_paired_us'])}; {r['rounds']} rounds of "
        f"{r['block']} calls per side, first {r['skip']} not counted)",
        GOAL,
        v,
    )
    out.info(
        f"back to back, 1 KB: p50 traced - p50 bare over all counted calls "
        f"{fmt_us(r['added_p50_us'])} (A/A {fmt_us(r['aa_p50_us'])}); whole-process CPU "
        f"added per call, worker included, {fmt_us(r['added_process_cpu_us'])} "
        f"(A/A {fmt_us(r['aa_process_cpu_us'])}); bare p50 {fmt_us(r['bare_p50_us'])}"
    )
