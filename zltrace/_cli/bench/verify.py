"""Reading a trace back after a run: every traced request accounted for, bodies all there."""

from __future__ import annotations

import os
import warnings
from typing import Any

from ... import SkippedLine, ZltraceWarning, read
from ..._format import dead_letter_path
from .output import Output
from .plan import SPEC


def verify_trace(path: str) -> dict[str, Any]:
    """Count the exchanges in a trace file (read back with :func:`zltrace.read`) and their bodies.

    ``records`` counts every line: the exchanges read and the lines the reader had to skip
    (torn, not JSON, a body missing from the side file), which also make ``side_ok`` false and
    show as the outcome ``unreadable``. A trace that was never created holds nothing.
    """
    if not (os.path.exists(path) or os.path.exists(dead_letter_path(path))):
        return {"records": 0, "complete": 0, "body_bytes": 0, "outcomes": {}, "side_ok": True}
    complete = body_bytes = 0
    outcomes: dict[str, int] = {}
    skipped: list[SkippedLine] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZltraceWarning)  # counted in ``skipped`` instead
        for ex in read(path, skipped=skipped):
            outcomes[ex.outcome] = outcomes.get(ex.outcome, 0) + 1
            if ex.outcome == "complete":
                complete += 1
                body_bytes += len(ex.response.raw_body) if ex.response is not None else 0
    if skipped:
        outcomes["unreadable"] = len(skipped)
    return {
        "records": sum(outcomes.values()),
        "complete": complete,
        "body_bytes": body_bytes,
        "outcomes": outcomes,
        "side_ok": not skipped,
    }


def loss_check(out: Output, acc: list[dict[str, Any]]) -> None:
    """The data-loss check over every traced side's accounting."""
    if not acc:
        return
    requests = sum(a["requests"] for a in acc)
    complete = sum(min(a["complete"], a["requests"]) for a in acc)
    lost = sum(a["lost"] for a in acc)
    bad = [a["label"] for a in acc if not a["ok"]]
    pct = 100.0 * lost / requests if requests else 0.0
    detail = f"{pct:.3f}% ({complete}/{requests} exchanges complete on disk"
    detail += f"; mismatch in: {', '.join(bad)})" if bad else ", bodies all there)"
    out.check("Data loss", not bad and lost == 0, "0%", detail, SPEC, pct)
