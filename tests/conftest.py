"""Shared fixtures: a tracer writing into a temporary directory, and helpers to read it back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture(params=["tracer", "std_tracer"])
def any_tracer(request: pytest.FixtureRequest) -> zltrace.Tracer:
    """The zero-latency tracer, then the standard-mode tracer (each test runs under both)."""
    t: zltrace.Tracer = request.getfixturevalue(request.param)
    return t


@pytest.fixture(autouse=True)
def _reset_default_tracer() -> Iterator[None]:
    yield
    zltrace.reset_defaults()
