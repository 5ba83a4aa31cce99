"""File-opener seams for write faults: ``Tracer(opener=...)`` with these sends chosen trace
files to ``/dev/full`` (every write fails with ENOSPC) -- a real fault, no mock."""

from __future__ import annotations

import os


class Faults:
    """An opener (``os.open``'s signature) that sends chosen trace files to ``/dev/full``."""

    def __init__(self) -> None:
        self.full: set[str] = set()  # suffixes of paths whose writes fail with ENOSPC
        self.dirs: set[str] = set()  # directories whose files' writes fail with ENOSPC
        self.opens: list[str] = []

    def __call__(self, path: str, flags: int, mode: int = 0o777) -> int:
        self.opens.append(path)
        if any(path.endswith(s) for s in self.full) or os.path.dirname(path) in self.dirs:
            return os.open("/dev/full", os.O_WRONLY)
        return os.open(path, flags, mode)


class MainOnly(Faults):
    """Faults that spare the dead-letter file: only the trace itself is broken."""

    def __call__(self, path: str, flags: int, mode: int = 0o777) -> int:
        if path.endswith((".deadletter.jsonl", ".deadletter.zlog")):
            return os.open(path, flags, mode)
        return super().__call__(path, flags, mode)
