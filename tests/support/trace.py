"""Reading a tracer's output back, and a traced pool on a loopback server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import urllib3

import zltrace
from zltrace._read.rawscan import RecordScanner


def records(tracer: zltrace.Tracer) -> list[zltrace.Exchange]:
    """Close ``tracer`` (writing everything) and read its trace file back."""
    assert tracer.close(timeout=10)
    return list(zltrace.read(tracer.path))


def flushed(tracer: zltrace.Tracer) -> list[zltrace.Exchange]:
    """Flush ``tracer`` and read what is on disk so far."""
    assert tracer.flush(timeout=10)
    try:
        return list(zltrace.read(tracer.path))
    except FileNotFoundError:
        return []


def records_on_disk(path: str) -> int:
    """The records in a trace file: its lines (JSON lines), or its records after the FILE
    record (raw log) -- what ``stats()["records_written"]`` counts once all is flushed."""
    if not path.endswith(".zlog"):
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    scanner = RecordScanner(path, lambda offset, what: None)
    with open(path, "rb") as f:
        return sum(1 for _ in scanner.records(f, final=True))


def pool_for(srv: Any, tracer: zltrace.Tracer) -> Any:
    """A traced pool on the loopback server ``srv`` that does not retry."""
    return zltrace.wrap(
        urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False, timeout=30), tracer=tracer
    )


@contextmanager
def traced_pool(srv_or_port: Any, tracer: zltrace.Tracer | None, **kw: Any) -> Iterator[Any]:
    """A pool to a loopback server (or port), traced unless ``tracer`` is None; closed after."""
    port = srv_or_port if isinstance(srv_or_port, int) else srv_or_port.port
    pool = urllib3.HTTPConnectionPool("127.0.0.1", port, **kw)
    traced = zltrace.wrap(pool, tracer=tracer) if tracer is not None else pool
    try:
        yield traced
    finally:
        traced.close()
        pool.close()
