"""Shared fixtures: a tracer writing into a temporary directory, and helpers to read it back."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

sys.path.insert(0, str(Path(__file__).parent))

import zltrace


@pytest.fixture
def trace_dir(tmp_path: Path) -> Path:
    """A fresh directory for trace files."""
    return tmp_path / "traces"


@pytest.fixture
def tracer(trace_dir: Path) -> Iterator[zltrace.Tracer]:
    """A zero-latency tracer writing into ``trace_dir``; closed after the test."""
    t = zltrace.Tracer(zltrace.Config(dir=str(trace_dir), flush_ms=10))
    yield t
    t.close(timeout=10)


@pytest.fixture
def std_tracer(trace_dir: Path) -> Iterator[zltrace.Tracer]:
    """A standard-mode (synchronous) tracer writing into ``trace_dir``."""
    t = zltrace.Tracer(zltrace.Config(dir=str(trace_dir), zero_latency=False))
    yield t
    t.close(timeout=10)


@pytest.fixture
def open_tracer(trace_dir: Path) -> Iterator[zltrace.Tracer]:
    """A tracer that redacts nothing, so cookies and other header values reach the trace."""
    t = zltrace.Tracer(zltrace.Config(dir=str(trace_dir), flush_ms=10, redact_headers=()))
    yield t
    t.close(timeout=10)


@pytest.fixture(autouse=True)
def _reset_default_tracer() -> Iterator[None]:
    yield
    zltrace.reset_defaults()


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


def pool_for(srv: Any, tracer: zltrace.Tracer) -> Any:
    """A traced pool on the loopback server ``srv`` that does not retry."""
    return zltrace.wrap(
        urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False, timeout=30), tracer=tracer
    )
