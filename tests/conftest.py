"""Shared fixtures: a tracer writing into a temporary directory, and helpers to read it back.

The tracer fixtures run each test twice, once per trace format (``trace_format``: the JSONL
trace and the raw event log), so every read-side feature is checked on traces recorded both
ways.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import zltrace


@pytest.fixture
def trace_dir(tmp_path: Path) -> Path:
    """A fresh directory for trace files."""
    return tmp_path / "traces"


@pytest.fixture(params=["jsonl", "raw"])
def trace_format(request: pytest.FixtureRequest) -> str:
    """The trace format the tracer fixtures write: each test runs with both."""
    fmt: str = request.param
    return fmt


@pytest.fixture
def tracer(trace_dir: Path, trace_format: str) -> Iterator[zltrace.Tracer]:
    """A zero-latency tracer writing into ``trace_dir``; closed after the test."""
    t = zltrace.Tracer(zltrace.Config(dir=str(trace_dir), flush_ms=10, format=trace_format))
    yield t
    t.close(timeout=10)


@pytest.fixture
def std_tracer(trace_dir: Path, trace_format: str) -> Iterator[zltrace.Tracer]:
    """A standard-mode (synchronous) tracer writing into ``trace_dir``."""
    t = zltrace.Tracer(zltrace.Config(dir=str(trace_dir), zero_latency=False, format=trace_format))
    yield t
    t.close(timeout=10)


@pytest.fixture
def open_tracer(trace_dir: Path, trace_format: str) -> Iterator[zltrace.Tracer]:
    """A tracer that redacts nothing, so cookies and other header values reach the trace."""
    t = zltrace.Tracer(
        zltrace.Config(dir=str(trace_dir), flush_ms=10, redact_headers=(), format=trace_format)
    )
    yield t
    t.close(timeout=10)


@pytest.fixture(params=["tracer", "std_tracer"])
def any_tracer(request: pytest.FixtureRequest, trace_format: str) -> zltrace.Tracer:
    """The zero-latency tracer, then the standard-mode tracer (each test runs under both)."""
    t: zltrace.Tracer = request.getfixturevalue(request.param)
    return t


@pytest.fixture(autouse=True)
def _reset_default_tracer() -> Iterator[None]:
    yield
    zltrace.reset_defaults()
