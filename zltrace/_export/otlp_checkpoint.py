"""The shipper's checkpoint: how far each trace file has been acknowledged by the backend.

Rules: the file is replaced atomically (written beside it at a fresh name, 0600, fsynced,
renamed over it, the directory fsynced), so a kill at any moment leaves the old checkpoint
or the new one, never half of one. It is written only after the backend acknowledged
every span up to the positions it records.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .._read.follow import Position
from ..exceptions import ZltraceError

__all__ = ["CheckpointError", "load", "save"]

VERSION = 1


class CheckpointError(ZltraceError, ValueError):
    """The checkpoint file cannot be used (not ours, or not a checkpoint)."""


def load(path: str) -> tuple[dict[str, Position], dict[str, int]]:
    """(positions by trace file, counters) from the checkpoint at ``path``; empty if none."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return {}, {}
    try:
        doc: Any = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise ValueError(f"version {doc.get('version') if isinstance(doc, dict) else None!r}")
        files = doc.get("files")
        if not isinstance(files, dict):
            raise ValueError("no files object")
        positions = {str(k): Position.from_json(v) for k, v in files.items()}
        counters = doc.get("counters", {})
        if not isinstance(counters, dict):
            raise ValueError("counters is no object")
        return positions, {str(k): int(v) for k, v in counters.items()}
    except (ValueError, TypeError) as exc:
        raise CheckpointError(
            f"{path}: not a zltrace ship checkpoint ({exc}); move it away to ship from the start"
        ) from exc


def save(path: str, positions: dict[str, Position], counters: dict[str, int]) -> None:
    """Atomically replace the checkpoint at ``path``."""
    doc = {
        "version": VERSION,
        "files": {k: v.as_json() for k, v in sorted(positions.items())},
        "counters": counters,
    }
    data = json.dumps(doc, indent=0, sort_keys=True).encode() + b"\n"
    directory = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.unlink(tmp)  # left by a killed run of the same pid
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
