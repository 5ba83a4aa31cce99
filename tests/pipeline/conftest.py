"""The fault tests run once per trace format (a module opts in with ``fault_format``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import outage


@pytest.fixture(params=["jsonl", "raw"])
def fault_format(request: pytest.FixtureRequest) -> Iterator[str]:
    """Sets the format ``support.outage.make_tracer`` writes, for one test."""
    outage.FORMAT = request.param
    try:
        yield request.param
    finally:
        outage.FORMAT = "jsonl"
