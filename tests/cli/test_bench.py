"""The benchmark runs end to end and writes its figures (no performance numbers are asserted)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from zltrace._cli.bench.ab import diff_of_quantiles
from zltrace._cli.bench.blocks import paired_median
from zltrace._cli.bench.memory import _check as memory_check
from zltrace._cli.bench.output import Output


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_bench_runs_and_writes_every_part(tmp_path: Path) -> None:
    """`python -m zltrace bench --quick --json F` prints check lines and writes all parts."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "zltrace", "bench", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    # 0 (all targets met) or 1 (a target missed) are both honest outcomes; 2+ is a crash.
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any("PASS" in line or "FAIL" in line for line in lines)
    assert "target" in proc.stdout and "actual" in proc.stdout
    report = json.loads(out.read_text())
    assert {"machine", "plan", "results", "checks", "passed"} <= report.keys()
    assert {"latency", "throughput", "memory", "modes"} <= report["results"].keys()
    for check in report["checks"]:
        assert {"name", "passed", "target", "actual"} <= check.keys(), check
    # Every latency figure has a bare-vs-bare run of the same scenario to be read against.
    noise = report["results"]["latency"]["noise_floor"]
    assert {"json_1k", "bytes_256k", "sse", "paced_256k", "paced_1m"} <= noise.keys()
    assert all("p99" in noise[k]["added_ttlb_us"] for k in noise), noise
    names = " ".join(c["name"] for c in report["checks"])
    assert "ran to the end" not in names, names  # no part crashed
    loss = [c for c in report["checks"] if "loss" in c["name"].lower()]
    assert loss and all(c["passed"] for c in loss), loss
    latency = report["results"]["latency"]
    # Verdicts: the difference of the two samples' quantiles; per-pair figures stay as INFO.
    assert {"p50", "p95", "p99"} <= latency["json_1k"]["diff_ttlb_us"].keys()
    assert all("diff_ttlb_us" in noise[k] for k in noise), noise
    assert "1 KB added latency p50 (p50 traced - p50 bare)" in names, names
    assert any("INFO" in line and "per pair" in line for line in lines), proc.stdout
    # The back-to-back blocks: their own check against the 1 KB p50 target, A/A beside it.
    b2b = latency["back_to_back"]
    assert {"added_paired_us", "aa_paired_us", "rounds", "block", "skip"} <= b2b.keys(), b2b
    assert b2b["rounds"] >= 6 and b2b["trace"]["ok"], b2b["trace"]
    assert len(b2b["block_medians_us"]["traced"]) == b2b["rounds"]
    assert any(
        c["name"].startswith("1 KB added latency back to back") and "A/A" in c["actual"]
        for c in report["checks"]
    ), names
    # The capture-only ceiling sits beside every throughput ratio.
    for level in report["results"]["throughput"]["levels"].values():
        assert level["capture_only_ratio"] is not None, level
    assert any("capture only" in line for line in lines), proc.stdout
    # A 0.5 s memory run has no slope verdict, only the figure.
    assert "RSS slope while traced (no upward slope)" not in names, names
    assert any("INFO" in line and "RSS slope" in line for line in lines), proc.stdout


def test_bench_rejects_bad_usage() -> None:
    """A bad flag is a usage error (exit 2), not a benchmark failure."""
    proc = subprocess.run(
        [sys.executable, "-m", "zltrace", "bench", "--concurrent", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2


def test_diff_of_quantiles_keeps_what_pairs_cancel() -> None:
    """Work that lands on the bare side of each pair cancels per pair but not between quantiles."""
    bare = [100_000 + (i % 2) * 50_000 for i in range(100)]  # every other bare request pays 50 µs
    traced = [100_000 + ((i + 1) % 2) * 50_000 for i in range(100)]  # and so does every other one
    d = diff_of_quantiles(traced, bare)
    assert d == {"n": 100, "p50": 0.0, "p95": 0.0, "p99": 0.0}
    d = diff_of_quantiles([v + 7_000 for v in bare], bare)
    assert (d["p50"], d["p95"], d["p99"]) == (7.0, 7.0, 7.0)
    assert diff_of_quantiles([], bare) == {"n": 0}


def test_paired_median_of_block_medians() -> None:
    """The back-to-back figure is the median over rounds of block-median differences."""
    assert paired_median([10.0, 30.0, 12.0], [1.0, 2.0, 3.0]) == 9.0


def _memory_report(duration_s: float, slope: float) -> tuple[list[dict[str, Any]], str]:
    out = io.StringIO()
    output = Output(out, io.StringIO())
    run = SimpleNamespace(out=output, plan=SimpleNamespace(tm_duration=0.3))
    res = {
        "duration_s": duration_s,
        "rss_over_baseline_mb": 1.0,
        "traced": {"slope_mb_per_min": slope, "rss_max_mb": 40.0},
        "baseline": {"rss_max_mb": 39.0},
        "tracemalloc": {"traced": {"peak_mb": 1.0}, "bare": {"peak_mb": 0.1}},
    }
    memory_check(run, res)  # type: ignore[arg-type]
    return output.checks, out.getvalue()


def test_rss_slope_is_a_verdict_only_for_a_ten_minute_run() -> None:
    """The RSS slope is a check for a 600 s run and an INFO line for a shorter one."""
    checks, text = _memory_report(600.0, 2.0)
    slope = [c for c in checks if c["name"].startswith("RSS slope")]
    assert len(slope) == 1 and not slope[0]["passed"], checks
    checks, text = _memory_report(0.5, 2.0)
    assert not [c for c in checks if c["name"].startswith("RSS slope")], checks
    assert "INFO" in text and "RSS slope while traced +2.00 MB/min over 0.5s" in text, text
