"""The latency part: added latency per scenario against its bare-vs-bare noise floor.

Verdicts use the difference of the two interleaved samples' quantiles (traced pN - bare pN);
the per-pair quantiles (traced - bare of one round) are printed as INFO. The worker's deferred
work for a traced request lands on whichever request runs a few milliseconds later, often the
next bare one, and the per-pair difference then cancels it; the back-to-back blocks
(``blocks.py``) keep it on the traced side.
"""

from __future__ import annotations

import gc
from time import perf_counter_ns
from typing import Any

from .ab import diff_of_quantiles, interleave, summarise, warm
from .blocks import check_blocks, measure_blocks
from .output import Output, fmt_us
from .plan import (
    BYTES_1M,
    BYTES_256K,
    CALLER_PER_CHUNK_US,
    CALLER_PER_REQUEST_US,
    CAPACITY_GOAL_MBPS,
    CAPACITY_P50_US,
    CAPACITY_STEPS_MBPS,
    CHUNKED_MANY,
    CHUNKED_ONE,
    CHUNKS_MANY,
    GOAL,
    JSON_1K,
    MB,
    P50_1K_US,
    P99_1K_US,
    PACED_P99_US,
    PACED_RATE_MBPS,
    SPEC,
    SPEC_P95_MS,
    SSE,
    SSE_TTFB_P50_US,
)
from .sides import CallerOnlySide, Run, TracedSide
from .stats import dist_us


def _scenario(
    run: Run, label: str, path: str, pairs: int, warmup: int, *, body_size: int = 0
) -> dict[str, Any]:
    """One A/B latency scenario at full speed with a fresh tracer."""
    run.out.progress(f"latency: {label} ({path}), {pairs} pairs")
    bare = run.bare()
    traced = TracedSide(run, label)
    warm([bare, traced], path, warmup)
    traced.tracer.flush(timeout=60)
    gc.collect()
    w0 = traced.worker_cpu_ns()
    e0 = traced.tracer.stats()["exchanges_finished"]
    s = interleave([bare, traced], path, pairs=pairs)
    traced.tracer.flush(timeout=60)
    w1 = traced.worker_cpu_ns()
    e1 = traced.tracer.stats()["exchanges_finished"]
    result = summarise(s, 1)
    result["path"] = path
    if w0 is not None and w1 is not None and e1 > e0:
        result["worker_cpu_per_exchange_us"] = round((w1 - w0) / (e1 - e0) / 1000, 3)
        if body_size:
            mbytes = (e1 - e0) * body_size / MB
            result["worker_cpu_per_mb_us"] = round((w1 - w0) / mbytes / 1e3, 1)
    result["trace"] = traced.finish()
    bare.pool.close()
    return result


def part_latency(run: Run) -> None:
    """Measure every latency scenario, then check the figures against their targets."""
    res: dict[str, Any] = {}
    run.results["latency"] = res  # before measuring: a part that fails keeps what it measured
    _measure(run, res)
    _report_noise(run.out, res["noise_floor"])
    _check_spec(run.out, res)
    _check_goals(run.out, res)
    _report_per_pair(run.out, res)
    res["back_to_back"] = measure_blocks(run)
    check_blocks(run.out, res["back_to_back"])
    _report_diagnostics(run.out, res)


def _measure(run: Run, res: dict[str, Any]) -> None:
    """Fill ``res`` with the noise floors, the A/B scenarios, the paced runs and the ramp."""
    p = run.plan
    # A/A: bare against bare, the noise floor of the method on this machine.
    res["noise_floor"] = nf = {
        "json_1k": _noise(run, JSON_1K, p.pairs_noise, 100),
        "bytes_256k": _noise(run, BYTES_256K, max(30, p.pairs_noise // 3), 30),
        "sse": _noise(run, SSE, max(6, p.pairs_sse // 3), 2),
    }

    j = res["json_1k"] = _scenario(run, "1 KB JSON", JSON_1K, p.pairs_1k, 300)
    res["bytes_256k"] = _scenario(run, "256 KB", BYTES_256K, p.pairs_256k, 50, body_size=262144)
    res["sse"] = _scenario(run, "SSE 20 events", SSE, p.pairs_sse, 3)
    many = res["chunked_1024"] = _scenario(
        run, "chunked 1024 x 64 B", CHUNKED_MANY, p.pairs_chunked, 20
    )
    one = res["chunked_1"] = _scenario(run, "chunked 1 x 64 KiB", CHUNKED_ONE, p.pairs_chunked, 20)
    per_chunk_cpu = (many["caller_cpu_added_us"]["p50"] - one["caller_cpu_added_us"]["p50"]) / (
        CHUNKS_MANY - 1
    )
    per_chunk_wall = (many["added_ttlb_us"]["p50"] - one["added_ttlb_us"]["p50"]) / (
        CHUNKS_MANY - 1
    )
    res["caller_per_chunk_us"] = round(per_chunk_cpu, 4)
    res["added_wall_per_chunk_us"] = round(per_chunk_wall, 4)
    res["caller_per_request_us"] = j["caller_cpu_added_us"]["p50"]

    res["caller_only"] = _caller_only(run)
    nf["paced_256k"] = _noise_paced(run, "256 KB", BYTES_256K, 262144, p.paced_s)
    res["paced_256k"] = _paced(run, "256 KB", BYTES_256K, 262144, p.paced_s)
    nf["paced_1m"] = _noise_paced(run, "1 MB", BYTES_1M, 1048576, p.paced_1m_s)
    res["paced_1m"] = _paced(run, "1 MB", BYTES_1M, 1048576, p.paced_1m_s)
    res["writer_capacity"] = _capacity(run)


def _report_noise(out: Output, nf: dict[str, Any]) -> None:
    """Two lines: the bare-vs-bare noise floor every added figure is to be read against."""
    for what, key in (("pN bare-b - pN bare-a", "diff_ttlb_us"), ("per pair", "added_ttlb_us")):
        out.info(
            f"noise floor (bare vs bare, {what}) p50/p95/p99: "
            + ", ".join(
                f"{name} {fmt_us(d['p50'])}/{fmt_us(d['p95'])}/{fmt_us(d['p99'])}"
                for name, d in (
                    ("1 KB", nf["json_1k"][key]),
                    ("256 KB", nf["bytes_256k"][key]),
                    ("SSE last byte", nf["sse"][key]),
                )
            )
        )


def _report_per_pair(out: Output, res: dict[str, Any]) -> None:
    """The per-pair quantiles (traced - bare of one round), which the verdicts no longer use."""
    parts = [
        f"{name} {fmt_us(d['p50'])}/{fmt_us(d['p95'])}/{fmt_us(d['p99'])}"
        for name, d in (
            ("1 KB", res["json_1k"]["added_ttlb_us"]),
            ("256 KB", res["bytes_256k"]["added_ttlb_us"]),
            ("SSE last byte", res["sse"]["added_ttlb_us"]),
            ("SSE first byte", res["sse"]["added_ttfb_us"]),
            ("256 KB paced", res["paced_256k"]["added_ttlb_us"]),
            ("1 MB paced", res["paced_1m"]["added_ttlb_us"]),
        )
    ]
    out.info("added latency per pair (traced - bare of one round) p50/p95/p99: " + ", ".join(parts))


def _check_spec(out: Output, res: dict[str, Any]) -> None:
    """The product spec's latency target, for each scenario."""
    nf = res["noise_floor"]
    for name, key in (
        ("1 KB JSON", "json_1k"),
        ("256 KB", "bytes_256k"),
        ("SSE last byte", "sse"),
    ):
        r = res[key]
        v = r["diff_ttlb_us"]["p95"] / 1000
        out.check(
            f"Response Latency ({name}, p95 traced - p95 bare)",
            v < SPEC_P95_MS,
            f"< {SPEC_P95_MS}ms",
            f"{v:.3f}ms (bare-vs-bare {nf[key]['diff_ttlb_us']['p95'] / 1000:.3f}ms)",
            SPEC,
            v,
        )


def _check_goals(out: Output, res: dict[str, Any]) -> None:
    """The stricter goals: 1 KB tails, SSE first byte, paced tails, capacity, caller cost."""
    nf = res["noise_floor"]
    j, e = res["json_1k"], res["sse"]
    noise = nf["json_1k"]["diff_ttlb_us"]
    a1 = j["diff_ttlb_us"]
    out.check(
        "1 KB added latency p50 (p50 traced - p50 bare)",
        a1["p50"] <= P50_1K_US,
        f"≤ {P50_1K_US:g}µs",
        f"{fmt_us(a1['p50'])} (bare-vs-bare {fmt_us(noise['p50'])})",
        GOAL,
        a1["p50"],
    )
    out.check(
        "1 KB added latency p99 (p99 traced - p99 bare)",
        a1["p99"] <= P99_1K_US,
        f"≤ {P99_1K_US:g}µs",
        f"{fmt_us(a1['p99'])} (bare-vs-bare {fmt_us(noise['p99'])})",
        GOAL,
        a1["p99"],
    )
    f = e["diff_ttfb_us"]
    out.check(
        "SSE time-to-first-byte delta p50 (p50 traced - p50 bare)",
        f["p50"] <= SSE_TTFB_P50_US,
        f"≤ {SSE_TTFB_P50_US:g}µs",
        f"{fmt_us(f['p50'])} (p99 traced - p99 bare {fmt_us(f['p99'])}; bare-vs-bare p50 "
        f"{fmt_us(nf['sse']['diff_ttfb_us']['p50'])})",
        GOAL,
        f["p50"],
    )
    for key, name in (("paced_256k", "256 KB"), ("paced_1m", "1 MB")):
        r = res[key]
        v = r["diff_ttlb_us"]["p99"]
        out.check(
            f"{name} at {PACED_RATE_MBPS:g} MB/s added p99 (p99 traced - p99 bare)",
            v <= PACED_P99_US,
            f"≤ {PACED_P99_US:g}µs",
            f"{fmt_us(v)} (p50 {fmt_us(r['diff_ttlb_us']['p50'])}, "
            f"{r['achieved_body_mbps']:.0f} MB/s; "
            f"bare-vs-bare paced p99 {fmt_us(nf[key]['diff_ttlb_us']['p99'])})",
            GOAL,
            v,
        )
    cap = res["writer_capacity"]["capacity_mbps"]
    best = max(res["writer_capacity"]["steps"], key=lambda st: st["persisted_mbps"])
    out.check(
        f"Writer capacity (p50 traced - p50 bare ≤ {CAPACITY_P50_US:g}µs)",
        cap >= CAPACITY_GOAL_MBPS,
        f"≥ {CAPACITY_GOAL_MBPS:g} MB/s",
        f"{cap:.0f} MB/s (most persisted: {best['persisted_mbps']:.0f} MB/s at p50 added "
        f"{fmt_us(best['diff_ttlb_us']['p50'])})",
        GOAL,
        cap,
    )
    v = res["caller_per_chunk_us"]
    out.check(
        "Caller-thread cost per chunk",
        v <= CALLER_PER_CHUNK_US,
        f"≤ {CALLER_PER_CHUNK_US:g}µs",
        f"{v:.2f}µs",
        GOAL,
        v,
    )
    v = res["caller_per_request_us"]
    out.check(
        "Caller-thread cost per request (1 KB)",
        v <= CALLER_PER_REQUEST_US,
        f"≤ {CALLER_PER_REQUEST_US:g}µs",
        f"{v:.1f}µs",
        GOAL,
        v,
    )


def _report_diagnostics(out: Output, res: dict[str, Any]) -> None:
    """Figures without a target: caller cost with the worker kept out, the worker's own time."""
    j, k = res["json_1k"], res["bytes_256k"]
    co = res["caller_only"]
    if co is not None:
        out.info(
            f"caller-thread cost with the worker kept out (events queued, never drained; "
            f"diagnostic): {co['per_request_us']:.1f}µs per 1 KB request, "
            f"{co['per_chunk_us']:.2f}µs per chunk"
        )
    st = j["trace"]["stats_before_close"]
    out.info(
        f"tracer self-time: worker CPU {j.get('worker_cpu_per_exchange_us', 'n/a')}µs per "
        f"1 KB exchange, {k.get('worker_cpu_per_mb_us', 'n/a')}µs per MB of 256 KB bodies; "
        f"max worker slice {st['worker_max_slice_ns'] / 1000:.0f}µs (1 KB), "
        f"{k['trace']['stats_before_close']['worker_max_slice_ns'] / 1000:.0f}µs (256 KB)"
    )


def _noise(run: Run, path: str, pairs: int, warmup: int) -> dict[str, Any]:
    run.out.progress(f"latency: noise floor, bare vs bare, {path}, {pairs} pairs")
    a, b = run.bare(label="bare-a"), run.bare(label="bare-b")
    warm([a, b], path, warmup)
    gc.collect()
    s = interleave([a, b], path, pairs=pairs)
    a.pool.close()
    b.pool.close()
    return {
        "pairs": s.n,
        "diff_ttlb_us": diff_of_quantiles(s.ttlb[1], s.ttlb[0]),
        "diff_ttfb_us": diff_of_quantiles(s.ttfb[1], s.ttfb[0]),
        "added_ttlb_us": dist_us(s.added("ttlb", 1)),
        "added_ttfb_us": dist_us(s.added("ttfb", 1)),
        "added_cpu_us": dist_us(s.added("cpu", 1)),
    }


def _noise_paced(run: Run, label: str, path: str, size: int, duration_s: float) -> dict[str, Any]:
    """The paced scenario with two bare pools: what pacing alone does to the pairs' tails
    (presumably a request after an idle gap meets a cold thread, cache and CPU, on either side)."""
    run.out.progress(f"latency: noise floor, bare vs bare, {label} paced for {duration_s:g}s")
    a, b = run.bare(label="bare-a"), run.bare(label="bare-b")
    warm([a, b], path, 10)
    gc.collect()
    s = interleave([a, b], path, duration_s=duration_s, rate_mbps=PACED_RATE_MBPS, body_size=size)
    a.pool.close()
    b.pool.close()
    return {
        "pairs": s.n,
        "diff_ttlb_us": diff_of_quantiles(s.ttlb[1], s.ttlb[0]),
        "added_ttlb_us": dist_us(s.added("ttlb", 1)),
    }


def _caller_only(run: Run) -> dict[str, Any] | None:
    p = run.plan
    run.out.progress("latency: caller-thread cost with no worker draining (diagnostic)")
    bare = run.bare()
    co = CallerOnlySide(run)
    if not co.usable:
        co.close()
        return None
    res: dict[str, Any] = {}
    try:
        for key, path, pairs in (
            ("json_1k", JSON_1K, p.pairs_1k // 2),
            ("chunked_1024", CHUNKED_MANY, p.pairs_chunked),
            ("chunked_1", CHUNKED_ONE, p.pairs_chunked),
        ):
            warm([bare, co], path, 20)
            co.drain()
            gc.collect()
            s = interleave([bare, co], path, pairs=pairs)
            co.drain()
            res[key] = {
                "pairs": s.n,
                "added_cpu_us": dist_us(s.added("cpu", 1)),
                "added_ttlb_us": dist_us(s.added("ttlb", 1)),
            }
    finally:
        co.close()
        bare.pool.close()
    res["per_request_us"] = res["json_1k"]["added_cpu_us"]["p50"]
    res["per_chunk_us"] = round(
        (res["chunked_1024"]["added_cpu_us"]["p50"] - res["chunked_1"]["added_cpu_us"]["p50"])
        / (CHUNKS_MANY - 1),
        4,
    )
    return res


def _paced(run: Run, label: str, path: str, size: int, duration_s: float) -> dict[str, Any]:
    run.out.progress(f"latency: {label} paced at {PACED_RATE_MBPS:g} MB/s for {duration_s:g}s")
    bare = run.bare()
    traced = TracedSide(run, f"{label} paced")
    warm([bare, traced], path, 10)
    traced.tracer.flush(timeout=60)
    gc.collect()
    s = interleave(
        [bare, traced], path, duration_s=duration_s, rate_mbps=PACED_RATE_MBPS, body_size=size
    )
    result = summarise(s, 1)
    result["path"] = path
    result["target_mbps"] = PACED_RATE_MBPS
    result["trace"] = traced.finish()
    bare.pool.close()
    return result


def _capacity(run: Run) -> dict[str, Any]:
    """Ramp the traced body rate (256 KB bodies); the writer's capacity is the largest rate it
    persists (bytes on disk / time until flushed) while p50 traced - p50 bare stays low."""
    step_s = run.plan.capacity_step_s
    run.out.progress(f"latency: writer capacity ramp, 256 KB bodies, {step_s:g}s per step")
    bare = run.bare()
    traced = TracedSide(run, "capacity ramp")
    warm([bare, traced], BYTES_256K, 20)
    traced.tracer.flush(timeout=60)
    steps: list[dict[str, Any]] = []
    for rate in CAPACITY_STEPS_MBPS:
        gc.collect()
        b0 = traced.body_bytes
        t0 = perf_counter_ns()
        s = interleave(
            [bare, traced], BYTES_256K, duration_s=step_s, rate_mbps=rate, body_size=262144
        )
        traced.tracer.flush(timeout=120)
        persisted_s = (perf_counter_ns() - t0) / 1e9
        added = diff_of_quantiles(s.ttlb[1], s.ttlb[0])
        persisted = (traced.body_bytes - b0) / persisted_s / MB
        steps.append(
            {
                "offered_mbps": rate,
                "achieved_mbps": round(s.body_bytes[1] / s.elapsed_s / MB, 1),
                "persisted_mbps": round(persisted, 1),
                "flush_wait_ms": round((persisted_s - s.elapsed_s) * 1000, 1),
                "diff_ttlb_us": added,
                "added_ttlb_us": dist_us(s.added("ttlb", 1)),
            }
        )
        run.out.progress(
            f"  offered {rate or 'max'} MB/s: persisted {persisted:.0f} MB/s, "
            f"p50 added {added['p50']:.1f}µs"
        )
    trace = traced.finish()
    bare.pool.close()
    ok = [st["persisted_mbps"] for st in steps if st["diff_ttlb_us"]["p50"] <= CAPACITY_P50_US]
    return {
        "steps": steps,
        "capacity_mbps": max(ok) if ok else 0.0,
        "p50_limit_us": CAPACITY_P50_US,
        "body": BYTES_256K,
        "trace": trace,
    }
