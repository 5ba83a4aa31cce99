"""The trace format's constants: its version, its file names and its size limits.

A leaf: the writer (pipeline side) and the reader (read side) both take these from here and
import nothing else of each other. The README documents the format; ``trace-line.schema.json``
is its schema.
"""

from __future__ import annotations

#: The ``"v"`` of every trace line; a reader skips lines of another version.
FORMAT_VERSION = 1

#: A trace file: ``zltrace-<UTC stamp>-<pid>-<sequence>.jsonl``.
TRACE_SUFFIX = ".jsonl"
#: Raw bodies too large to inline, appended to ``<stem>.bodies`` beside the trace.
SIDE_SUFFIX = ".bodies"
#: Lines the trace file could not take, in the same format: ``<stem>.deadletter.jsonl``.
DEAD_LETTER_SUFFIX = ".deadletter.jsonl"

#: A raw event log (``Config.format="raw"``, layout in ``_format_raw``): ``zltrace-….zlog``,
#: bodies inside; its dead-letter file ``<stem>.deadletter.zlog`` (no side file).
RAW_SUFFIX = ".zlog"
RAW_DEAD_LETTER_SUFFIX = ".deadletter.zlog"
#: Every name a trace, side or dead-letter file of a stem can have.
ALL_SUFFIXES = (TRACE_SUFFIX, SIDE_SUFFIX, DEAD_LETTER_SUFFIX, RAW_SUFFIX, RAW_DEAD_LETTER_SUFFIX)

#: Bodies up to this many bytes are stored inline in the line; larger ones in the side file.
INLINE_MAX = 4 * 1024
#: Body arrival times up to this many (offset, time) pairs are inline; more go to the side file.
INLINE_READS = 256


def stem_of(trace_path: str) -> str:
    """``dir/zltrace-….jsonl`` -> ``dir/zltrace-…`` (a dead-letter file gives the same stem)."""
    for suffix in (DEAD_LETTER_SUFFIX, TRACE_SUFFIX, RAW_DEAD_LETTER_SUFFIX, RAW_SUFFIX):
        if trace_path.endswith(suffix):
            return trace_path[: -len(suffix)]
    return trace_path


def side_path(trace_path: str) -> str:
    """The side file that holds the large bodies of ``trace_path``'s lines."""
    return stem_of(trace_path) + SIDE_SUFFIX


def dead_letter_path(trace_path: str) -> str:
    """The dead-letter file of ``trace_path`` (a raw log's for a raw log)."""
    if trace_path.endswith(RAW_SUFFIX):
        return stem_of(trace_path) + RAW_DEAD_LETTER_SUFFIX
    return stem_of(trace_path) + DEAD_LETTER_SUFFIX
