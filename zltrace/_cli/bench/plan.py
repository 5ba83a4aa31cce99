"""What the bench requests, how much of it (:class:`Plan`), and the targets it checks against."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

PARTS = ("latency", "throughput", "memory", "modes", "httpx")

JSON_1K = "/json?size=1024"
BYTES_256K = "/bytes?size=262144"
BYTES_1M = "/bytes?size=1048576"
SSE = "/sse?events=20&size=64&gap_ms=1"
CHUNKED_MANY = "/chunked?size=65536&chunk=64"  # 1024 chunks
CHUNKED_ONE = "/chunked?size=65536&chunk=65536"  # 1 chunk, same payload
CHUNKS_MANY = 1024
STREAM_AMT = 64 * 1024
MB = 1_000_000  # rates are in MB/s = 10**6 bytes/s
MIB = 1024 * 1024

# Where a check's target comes from (the ``source`` of a check in the JSON).
SPEC = "spec"  # the product spec
GOAL = "goal"  # the stricter goals for a 2-core machine

# Targets.
SPEC_P95_MS = 0.1
SPEC_RPS = 1000.0
SPEC_MEMORY_MB = 50.0
P50_1K_US = 10.0
P99_1K_US = 25.0
SSE_TTFB_P50_US = 10.0
PACED_P99_US = 50.0
PACED_RATE_MBPS = 50.0
CAPACITY_P50_US = 25.0
CAPACITY_GOAL_MBPS = 200.0
RATIO_MIN = 0.97
RSS_OVER_MB = 25.0
SLOPE_MAX_MB_PER_MIN = 0.5  # "no upward slope": under 5 MB per 10 minutes
SLOPE_VERDICT_MIN_S = 600.0  # a shorter run's slope is warm-up and noise: INFO only
CALLER_PER_CHUNK_US = 0.5
CALLER_PER_REQUEST_US = 5.0
CAPACITY_STEPS_MBPS: tuple[float | None, ...] = (50, 100, 200, 300, None)  # None: no pacing


class Plan:
    """How much of everything to do; ``--quick`` and the flags scale it."""

    def __init__(self, args: argparse.Namespace, parts: Sequence[str]) -> None:
        quick: bool = args.quick
        self.quick = quick
        n = args.requests or (200 if quick else 2000)
        self.pairs_1k = n
        self.pairs_noise = max(50, n // 2)
        self.pairs_256k = max(30, n // 2)
        self.pairs_sse = max(8, n // 30)
        self.pairs_chunked = max(20, n // 20)
        self.paced_s = 0.3 if quick else 2.5
        self.paced_1m_s = 0.4 if quick else 3.0
        self.capacity_step_s = 0.12 if quick else 0.8
        self.block_rounds = 12 if quick else 60  # back-to-back: rounds of one block per side
        self.block_budget_s = 4.0 if quick else 20.0
        self.tp_run_s = 0.12 if quick else 0.35
        self.tp_rounds = 1 if quick else 2  # of (bare, traced, traced, bare)
        self.tp_max_requests: int | None = args.requests
        self.concurrency: list[int] = args.concurrent or [1, 16, 100]
        if args.duration is not None:
            self.duration = float(args.duration)
        elif quick:
            self.duration = 0.5
        else:
            self.duration = 3.0 if len(parts) > 1 else 30.0
        self.tm_duration = min(self.duration, 0.3 if quick else 1.0)
        self.memory_warm_s = min(1.0, max(0.3, 0.25 * self.duration))
        self.modes_1k = max(50, n // 2)
        self.modes_256k = max(30, n // 5)
        self.modes_sse = max(6, n // 60)

    def as_dict(self) -> dict[str, Any]:
        """The plan as the JSON's ``plan``."""
        return dict(vars(self))
