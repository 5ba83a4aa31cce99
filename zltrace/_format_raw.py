"""The raw event log: a trace file of capture events, written as they happen, assembled on reading.

A leaf: the pipeline (which writes it) and the read side (which assembles it) both take the
layout from here. Everything is little-endian. ``RECORD_TABLE`` and ``PAYLOAD_TABLE`` below
are the format, byte for byte; the README shows them.

A file is a 16-byte preamble, then records. The first record is always ``FILE`` (who wrote the
file and the clock anchor); a file that gains records after a crash or a re-creation simply
starts with its own preamble again (a new file).

Rules:
- A record is self-delimiting and checked: its ``crc32`` covers everything from ``kind`` to
  the end of the payload, so a torn tail (a process killed mid-write) or damaged bytes are
  detected, and a reader finds the next good record by its ``sync`` bytes and checksum.
- A reader skips a kind it does not know by its length, so new kinds (HTTP/2 frames, another
  front-end) need no version bump; ``FORMAT_VERSION`` changes only when an existing layout does.
- ``seq`` numbers the records of one writer from 1 without gaps in the order the events
  happened; records written out of that order (a batch re-driven from a dead-letter file)
  are put back in order by the reader, and a record found twice (in a dead-letter file and in
  the trace) is used once.
- Credentials never reach the file: request and response heads are written redacted
  (``REQHEAD`` and ``HEAD``); ``SEND`` and ``DATA`` hold body bytes exactly as they crossed the
  socket (chunk framing included).
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Sequence

__all__ = [
    "MAGIC",
    "PAYLOAD_TABLE",
    "PREAMBLE",
    "RAW_VERSION",
    "RECORD",
    "RECORD_TABLE",
]

#: The first 8 bytes of every raw trace file: not text, not JSON (``\x89`` as PNG's), and a
#: CR-LF and a ^Z that a text-mode copy would mangle.
MAGIC = b"\x89ZLR\r\n\x1a\n"
#: Bumped only when a layout below changes (new record kinds need no bump).
RAW_VERSION = 1
#: ``magic, version (u16), flags (u16, 0), reserved (u32, 0)``.
PREAMBLE = struct.Struct("<8sHHI")
#: The record header: ``sync, kind, flags, payload length, seq, exchange, t``.
RECORD = struct.Struct("<2sBBIQQq")
#: The checksum after the payload.
CRC = struct.Struct("<I")
SYNC = b"\xa7\x5a"
#: Payloads larger than this are split over several records of the same kind by the writer;
#: a reader refuses larger ones (``length`` beyond it is damage).
MAX_PAYLOAD = 64 * 1024 * 1024

# Record kinds.
FILE = 0  # the file's header record (first in every file)
START = 1  # an attempt started (urllib3's _make_request, httpcore's handle_request)
REQHEAD = 2  # the request head as sent, redacted
SEND = 3  # request bytes sent after the head (the body, with its chunk framing)
HEAD = 4  # the response head as parsed by the client, redacted
DATA = 5  # response bytes as read from the socket (with chunk framing)
EOF = 6  # the socket reported end of stream
CLOSE = 7  # the response was closed (or garbage-collected)
ERROR = 8  # an exception escaped a read, or the request
STOP = 9  # the tracer closed: exchanges still open are incomplete (exchange = 0)

KIND_NAMES = {
    FILE: "FILE",
    START: "START",
    REQHEAD: "REQHEAD",
    SEND: "SEND",
    HEAD: "HEAD",
    DATA: "DATA",
    EOF: "EOF",
    CLOSE: "CLOSE",
    ERROR: "ERROR",
    STOP: "STOP",
}

#: START's fixed part: ``prev`` (the exchange its connection served before, 0: none),
#: ``logical`` (the first attempt's exchange), ``port`` (-1: none); then strings.
START_FIXED = struct.Struct("<QQi")
#: HEAD's fixed part: ``status, version (10/11), flags (bit 0: chunked), length (-1: none)``.
HEAD_FIXED = struct.Struct("<HBBq")
HEAD_CHUNKED = 1
#: REQHEAD's flag (in the record's flags byte): the head was sent whole (its blank line seen).
REQHEAD_COMPLETE = 1
#: A list of strings ends a payload: their count, each one's length in characters, then
#: their concatenation as UTF-8 (``surrogatepass``: text decoded from latin-1 or with
#: surrogate escapes round-trips). One encode per record, not one per string.
STRLEN = struct.Struct("<I")

RECORD_TABLE: Sequence[tuple[int, int, str, str]] = (
    # (offset, size, field, meaning)
    (0, 2, "sync", "a7 5a: where a record starts (a reader re-finds records by it)"),
    (2, 1, "kind", "record kind (below); unknown kinds are skipped by length"),
    (3, 1, "flags", "per kind (REQHEAD bit 0: the head is complete); else 0"),
    (4, 4, "length", "payload bytes n (u32, at most MAX_PAYLOAD)"),
    (8, 8, "seq", "record number of this writer: 0 for FILE, then from 1 (u64)"),
    (16, 8, "exchange", "exchange number in the process (u64; 0 for FILE and STOP)"),
    (24, 8, "t", "time.perf_counter_ns() of the event (i64); FILE anchors it to wall time"),
    (32, -1, "payload", "n bytes, per kind (below)"),
    (-1, 4, "crc32", "zlib.crc32 of bytes 2 .. 32+n (u32)"),
)

PAYLOAD_TABLE: Sequence[tuple[str, str]] = (
    ("FILE", "UTF-8 JSON object: format, version, run, pid, host, wall_ns, perf_ns, zltrace"),
    ("START", "prev u64, logical u64, port i32 (-1: none); strs: scheme, host, method, target"),
    ("REQHEAD", "request line and headers as sent, CRLF-separated, latin-1, values redacted"),
    ("SEND", "bytes sent after the head (request body, chunk framing included)"),
    (
        "HEAD",
        "status u16, version u8, flags u8, length i64 (-1); strs: method, reason, then name, "
        "value per header (wire order, values redacted)",
    ),
    ("DATA", "bytes read from the response (chunk framing included)"),
    ("EOF", "empty"),
    ("CLOSE", "empty"),
    ("ERROR", "strs: type, message (credentials scrubbed)"),
    ("STOP", "empty"),
    (
        "strs",
        "count u32, count x u32 lengths in characters, then the strings' concatenation as "
        "UTF-8 (surrogatepass) to the end of the payload",
    ),
)


def preamble() -> bytes:
    """The 16 bytes every raw trace file starts with."""
    return PREAMBLE.pack(MAGIC, RAW_VERSION, 0, 0)


def record(kind: int, flags: int, seq: int, ex: int, t: int, payload: bytes) -> bytes:
    """One record, checksum included."""
    head = RECORD.pack(SYNC, kind, flags, len(payload), seq, ex, t)
    crc = zlib.crc32(payload, zlib.crc32(memoryview(head)[2:]))
    return head + payload + CRC.pack(crc)


def pack_strs(strs: list[str]) -> bytes:
    """A list of strings, as it ends a payload."""
    lens = array("I", [len(x) for x in strs])
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        lens.byteswap()
    text = "".join(strs).encode("utf-8", "surrogatepass")
    return STRLEN.pack(len(strs)) + lens.tobytes() + text


def unpack_strs(data: bytes, offset: int, max_count: int = 1 << 20) -> list[str]:
    """The list of strings from ``offset`` to the end of ``data``; ValueError when it does
    not hold together (a count over ``max_count``, lengths that do not add up, bad UTF-8)."""
    if offset + 4 > len(data):
        raise ValueError("the string list runs past the payload")
    (count,) = STRLEN.unpack_from(data, offset)
    start = offset + 4 + 4 * count
    if count > max_count or start > len(data):
        raise ValueError(f"{count} strings do not fit in the payload")
    lens = array("I")
    lens.frombytes(data[offset + 4 : start])
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        lens.byteswap()
    text = data[start:].decode("utf-8", "surrogatepass")
    if sum(lens) != len(text):
        raise ValueError("the string lengths do not add up to the text")
    out = []
    pos = 0
    for n in lens:
        out.append(text[pos : pos + n])
        pos += n
    return out


def whole_records(data: bytes, start: int = 0) -> int:
    """How many bytes from ``start`` are whole records (by their lengths; not checked)."""
    pos = start
    size = RECORD.size + CRC.size
    while len(data) - pos >= size:
        n = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if len(data) - pos < size + n:
            break
        pos += size + n
    return pos - start
