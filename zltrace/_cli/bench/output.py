"""The bench's output: a check line per target on stdout, progress on stderr, figures for JSON."""

from __future__ import annotations

import time
from typing import Any, TextIO

_INFO = "\u2139\ufe0f"  # information source emoji


class Output:
    """Check lines to stdout (one per check), progress to stderr, every figure to JSON."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self.t0 = time.monotonic()
        self.checks: list[dict[str, Any]] = []
        encoding = getattr(out, "encoding", None) or "ascii"
        try:
            f"✅❌{_INFO}≤≥µ".encode(encoding)
            self.fancy = True
        except (UnicodeEncodeError, LookupError):
            self.fancy = False

    def _text(self, s: str) -> str:
        if self.fancy:
            return s
        for a, b in (("≤", "<="), ("≥", ">="), ("µs", "us"), ("µ", "u")):
            s = s.replace(a, b)
        return s.encode("ascii", "replace").decode("ascii")

    def progress(self, msg: str) -> None:
        """A progress line on stderr, stamped with the time since the start."""
        self.err.write(self._text(f"[bench {time.monotonic() - self.t0:5.1f}s] {msg}\n"))
        self.err.flush()

    def check(
        self, name: str, passed: bool, target: str, actual: str, source: str, value: float | None
    ) -> None:
        """A PASS/FAIL line on stdout; the check is kept for the JSON."""
        self.checks.append(
            {
                "name": name,
                "passed": passed,
                "target": target,
                "actual": actual,
                "source": source,
                "value": value,
            }
        )
        mark = "PASS" if passed else "FAIL"
        if self.fancy:
            mark = ("✅ " if passed else "❌ ") + mark
        self.line(f"{mark} {name}: {target} target, {actual} actual")

    def info(self, text: str) -> None:
        """A figure without a target, on stdout."""
        self.line((f"{_INFO}  INFO " if self.fancy else "INFO ") + text)

    def line(self, text: str) -> None:
        """One line on stdout (ASCII stand-ins where the stream cannot encode the signs)."""
        self.out.write(self._text(text) + "\n")
        self.out.flush()


def fmt_us(v: float) -> str:
    """Microseconds for a check line: µs below a millisecond, ms above."""
    return f"{v:.1f}µs" if abs(v) < 1000 else f"{v / 1000:.2f}ms"
