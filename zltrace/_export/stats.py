"""Trace summaries: counts, bytes, tokens and latency percentiles over exchanges.

One pass, nothing of an exchange kept but a few integers: counters for outcomes, status
classes and hosts, byte totals, token sums per model and per host (from each exchange's
LLM usage, for those that report one), and one int64 per exchange for each latency (in an
``array``, so memory grows by a few machine words per exchange), sorted once at the end for
exact percentiles.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from .._read.exchange import Exchange
from .._read.llm import Usage, model_of, usage_of
from .._util import percentile

__all__ = ["TraceStats", "format_stats", "summarize"]

#: Percentiles reported for each latency, as (label, percent).
PERCENTILES = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0))

_LATENCIES = (
    ("duration_ms", "request start to end of exchange"),
    ("ttfb_ms", "request start to first body byte"),
    ("headers_ms", "request start to response head"),
)


def _host(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if port is not None else (host or "?")


class TraceStats:
    """Accumulates a summary of exchanges; :meth:`add` one at a time, then :meth:`as_dict`."""

    def __init__(self) -> None:
        self.exchanges = 0
        self.outcomes: Counter[str] = Counter()
        self.status_classes: Counter[str] = Counter()
        self.hosts: Counter[str] = Counter()
        self.request_bytes = 0
        self.response_bytes = 0
        self._latencies = {name: array("q") for name, _ in _LATENCIES}
        self.tokens = _Tokens()
        self.tokens_by_model: dict[str, _Tokens] = {}
        self.tokens_by_host: dict[str, _Tokens] = {}

    def add(self, ex: Exchange) -> None:
        """Count one exchange."""
        self.exchanges += 1
        self.outcomes[ex.outcome] += 1
        rs = ex.response
        self.status_classes["none" if rs is None else f"{rs.status // 100}xx"] += 1
        host = _host(ex.request.url)
        self.hosts[host] += 1
        self._add_tokens(ex, host)
        self.request_bytes += len(ex.request.body or b"")
        if rs is not None:
            self.response_bytes += len(rs.raw_body)
        t = ex.timing
        self._latencies["duration_ms"].append(t.end)
        if t.first_byte is not None:
            self._latencies["ttfb_ms"].append(t.first_byte)
        if t.headers_received is not None:
            self._latencies["headers_ms"].append(t.headers_received)

    def _add_tokens(self, ex: Exchange, host: str) -> None:
        if ex.response is None:
            return
        message = ex.message()  # parsed once for both the usage and the model
        usage = usage_of(message, ex.response.headers)
        if usage is None:
            return
        model = model_of(message, ex.request.body, ex.request.url) or "(unknown)"
        for tokens in (
            self.tokens,
            self.tokens_by_model.setdefault(model, _Tokens()),
            self.tokens_by_host.setdefault(host, _Tokens()),
        ):
            tokens.add(usage)

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-able data (latencies in milliseconds)."""
        doc: dict[str, Any] = {
            "exchanges": self.exchanges,
            "outcomes": dict(self.outcomes.most_common()),
            "status_classes": dict(sorted(self.status_classes.items())),
            "hosts": dict(self.hosts.most_common()),
            "request_bytes": self.request_bytes,
            "response_bytes": self.response_bytes,
            "tokens": {
                **self.tokens.as_dict(),
                "by_model": _by_total(self.tokens_by_model),
                "by_host": _by_total(self.tokens_by_host),
            },
        }
        for name, _ in _LATENCIES:
            values = sorted(self._latencies[name])
            dist: dict[str, Any] = {"count": len(values)}
            for label, pct in PERCENTILES:
                dist[label] = round(percentile(values, pct) / 1e6, 3) if values else None
            dist["max"] = round(values[-1] / 1e6, 3) if values else None
            doc[name] = dist
        return doc


class _Tokens:
    """Token sums of the exchanges that reported usage, and how many they were."""

    __slots__ = ("calls", "usage")

    def __init__(self) -> None:
        self.calls = 0
        self.usage = Usage()

    def add(self, usage: Usage) -> None:
        self.calls += 1
        self.usage = self.usage + usage

    def as_dict(self) -> dict[str, int]:
        u = self.usage
        return {
            "calls": self.calls,
            "input": u.input_tokens,
            "output": u.output_tokens,
            "cache_read": u.cache_read_tokens,
            "cache_write": u.cache_write_tokens,
        }


def _by_total(groups: dict[str, _Tokens]) -> dict[str, dict[str, int]]:
    """Groups largest first (by input + output + cache tokens), then by name."""

    def key(item: tuple[str, _Tokens]) -> tuple[int, str]:
        u = item[1].usage
        return (-(u.total_input_tokens + u.output_tokens), item[0])

    return {name: t.as_dict() for name, t in sorted(groups.items(), key=key)}


def summarize(exchanges: Iterable[Exchange]) -> dict[str, Any]:
    """Summarise ``exchanges`` in one pass: counts, bytes, tokens (in all, per model, per
    host) and latency percentiles in ms."""
    stats = TraceStats()
    for ex in exchanges:
        stats.add(ex)
    return stats.as_dict()


def _counts(counter: dict[str, int], limit: int = 10) -> str:
    items = list(counter.items())
    text = ", ".join(f"{k} {v}" for k, v in items[:limit])
    if len(items) > limit:
        text += f", (+{len(items) - limit} more)"
    return text or "-"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


_TOKEN_COLUMNS = ("calls", "input", "output", "cache_read", "cache_write")
_LABEL_MAX = 64


def _token_lines(tokens: Any, limit: int = 20) -> list[str]:
    if not isinstance(tokens, dict) or not tokens.get("calls"):
        return ["", "tokens          - (no exchange reported LLM usage)"]
    groups = {title: list(tokens[title].items()) for title in ("by_model", "by_host")}
    labels = [f"  {name}" for rows in groups.values() for name, _ in rows[:limit]]
    width = min(_LABEL_MAX, max(16, *(len(label) for label in labels))) + 2

    def row(label: str, t: dict[str, int]) -> str:
        if len(label) > _LABEL_MAX:  # keep both ends: an ARN's model name is at its end
            label = label[:24] + "…" + label[-(_LABEL_MAX - 25) :]
        return f"{label:<{width}}" + "".join(f"{t[c]:>12,}" for c in _TOKEN_COLUMNS)

    lines = ["", f"{'tokens':<{width}}" + "".join(f"{c:>12}" for c in _TOKEN_COLUMNS)]
    lines.append(row("all", tokens))
    for title, rows in groups.items():
        lines.append(f"{title.replace('_', ' ')}:")
        lines.extend(row(f"  {name}", t) for name, t in rows[:limit])
        if len(rows) > limit:
            lines.append(f"  (+{len(rows) - limit} more)")
    return lines


def format_stats(doc: dict[str, Any]) -> str:
    """The summary from :func:`summarize` as a human-readable table."""
    rows = [
        ("exchanges", str(doc["exchanges"])),
        ("outcomes", _counts(doc["outcomes"])),
        ("status classes", _counts(doc["status_classes"])),
        ("hosts", _counts(doc["hosts"])),
        ("request bytes", f"{doc['request_bytes']:,}"),
        ("response bytes", f"{doc['response_bytes']:,}"),
    ]
    lines = [f"{label:<16}{value}" for label, value in rows]
    cols = ["count", *(label for label, _ in PERCENTILES), "max"]
    lines.append("")
    lines.append(f"{'latency (ms)':<16}" + "".join(f"{c:>12}" for c in cols))
    for name, what in _LATENCIES:
        dist = doc[name]
        cells = [str(dist["count"])] + [_num(dist[c]) for c in cols[1:]]
        lines.append(f"{name[:-3]:<16}" + "".join(f"{c:>12}" for c in cells) + f"   {what}")
    lines.extend(_token_lines(doc.get("tokens")))
    # A host from a damaged URL may hold a lone surrogate, which no terminal can print.
    return "\n".join(lines).encode("utf-8", "backslashreplace").decode("utf-8")
