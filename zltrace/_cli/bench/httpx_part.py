"""The bench's ``httpx`` part: what tracing costs an httpx / httpx2 client, A/B against a bare one.

Each library the app could use (httpx, httpx2) is measured when importable, else skipped with
an info line; so is the whole part when this zltrace's ``Tracer.wrap`` does not take httpx
clients. A client is driven through the same interleave as the urllib3 parts by an adapter
that gives it the few pool methods the A/B calls (``urlopen``, ``stream``, ``release_conn``),
reading each body as a stream of the chunks as they arrive.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterator
from typing import Any

from ...exceptions import UnsupportedTargetError
from .ab import interleave, summarise, warm
from .output import fmt_us
from .plan import JSON_1K, SSE
from .sides import Run, Side, TracedSide


class _Response:
    def __init__(self, response: Any) -> None:
        self._response = response
        self.status: int = response.status_code

    def stream(self, amt: int) -> Iterator[bytes]:
        return self._response.iter_raw()  # type: ignore[no-any-return]

    def release_conn(self) -> None:
        self._response.close()


class ClientPool:
    """An httpx(2) client seen through the pool methods the A/B uses."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def urlopen(self, method: str, path: str, **_: Any) -> _Response:
        request = self.client.build_request(method, path)
        return _Response(self.client.send(request, stream=True))

    def close(self) -> None:
        self.client.close()


def part_httpx(run: Run) -> None:
    """Bare vs traced httpx(2) client, zero-latency, per library and scenario."""
    p = run.plan
    res: dict[str, Any] = {}
    run.results["httpx"] = res
    for name in ("httpx", "httpx2"):
        try:
            hx = importlib.import_module(name)
        except ImportError:
            run.out.info(f"httpx: {name} is not installed, skipped")
            continue
        for key, label, path, pairs, warmup in (
            ("json_1k", "1 KB JSON", JSON_1K, max(50, p.pairs_1k // 2), 100),
            ("sse", "SSE", SSE, p.pairs_sse, 2),
        ):
            run.out.progress(f"httpx: {name} {label}, bare vs traced, {pairs} pairs")
            traced = TracedSide(run, f"{name} {label}")
            traced.pool.close()
            try:
                traced.pool = ClientPool(traced.tracer.wrap(hx.Client(base_url=run.server.url)))
            except UnsupportedTargetError:
                traced.tracer.close(timeout=10)
                run.out.info("httpx: this zltrace's wrap() does not take httpx clients, skipped")
                return
            bare = Side(ClientPool(hx.Client(base_url=run.server.url)), "bare")
            warm([bare, traced], path, warmup)
            traced.tracer.flush(timeout=60)
            gc.collect()
            s = interleave([bare, traced], path, pairs=pairs)
            row = summarise(s, 1)
            row["trace"] = traced.finish()
            bare.pool.close()
            res[f"{name} {hx.__version__} {key}"] = row
            which = "added_ttfb_us" if key == "sse" else "added_ttlb_us"
            run.out.info(
                f"httpx: {name} {hx.__version__} {label} "
                f"{'time-to-first-byte delta' if key == 'sse' else 'added latency'} p50/p99: "
                f"{fmt_us(row[which]['p50'])}/{fmt_us(row[which]['p99'])}"
            )
