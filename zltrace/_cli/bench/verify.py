"""Reading a trace back after a run: every traced request accounted for, bodies all there."""

from __future__ import annotations

import json
import os
from typing import Any

from .output import Output


def verify_trace(path: str) -> dict[str, Any]:
    """Count the exchanges in a trace file and check their bodies are all there."""
    records = complete = body_bytes = 0
    outcomes: dict[str, int] = {}
    side_ok = True
    side_sizes: dict[str, int] = {}
    directory = os.path.dirname(path)
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return {"records": 0, "complete": 0, "body_bytes": 0, "outcomes": {}, "side_ok": True}
    with f:
        for line in f:
            records += 1
            try:
                rec = json.loads(line)
            except ValueError:
                outcomes["unreadable"] = outcomes.get("unreadable", 0) + 1
                continue
            outcome = str(rec.get("outcome"))
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            response = rec.get("response") or {}
            body = response.get("body") or {}
            size = int(body.get("size", 0))
            if outcome == "complete":
                complete += 1
                body_bytes += size
            if "file" in body:
                name = str(body["file"])
                if name not in side_sizes:
                    try:
                        side_sizes[name] = os.path.getsize(os.path.join(directory, name))
                    except OSError:
                        side_sizes[name] = -1
                if int(body["offset"]) + size > side_sizes[name]:
                    side_ok = False
    return {
        "records": records,
        "complete": complete,
        "body_bytes": body_bytes,
        "outcomes": outcomes,
        "side_ok": side_ok,
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
    out.check("Data loss", not bad and lost == 0, "0%", detail, "spec", pct)
