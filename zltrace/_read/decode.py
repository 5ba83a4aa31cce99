"""Content decoding of response bodies (gzip, deflate; br and zstd when installed), bounded.

Rules:

- A body is decoded as urllib3 decodes it for the application: gzip members one after the
  other, and data after a whole member that is not another member (trailing garbage, as some
  servers send) dropped; deflate as zlib or, failing that, raw deflate.
- Decoding never makes more than a limit: :class:`DecodeLimits` caps the decoded size in
  bytes and as a multiple of the encoded size (bodies that decode to at most
  :data:`RATIO_FLOOR` bytes are never refused for their ratio). Each decoder stops as soon as
  its output passes the cap, so a compression bomb costs about the cap (twice it at most,
  while an output buffer grows), not the bomb; the body is then left as received and the
  note says why.
- Nothing raises: a body that cannot be decoded is left as received, with a note.
"""

from __future__ import annotations

import importlib
import zlib
from types import ModuleType
from typing import Callable, Optional

import attrs

from ..exceptions import InvalidArgumentError

__all__ = ["DEFAULT_DECODE_LIMITS", "RATIO_FLOOR", "DecodeLimits", "decode_content"]

#: A body that decodes to at most this many bytes is never refused for its ratio.
RATIO_FLOOR = 1 << 20
#: Input fed at a time to a decoder that cannot bound its output itself (an older brotli):
#: the output then passes the cap by at most what this much input decodes to.
_SLICE = 64


@attrs.frozen
class DecodeLimits:
    """How far :attr:`Response.body` may decode: bytes, and times the encoded size."""

    max_bytes: int = 256 * 1024 * 1024
    max_ratio: int = 1000

    def __attrs_post_init__(self) -> None:
        for name in ("max_bytes", "max_ratio"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")

    def cap(self, encoded_size: int) -> int:
        """The most bytes a body of ``encoded_size`` encoded bytes may decode to."""
        return min(self.max_bytes, max(RATIO_FLOOR, self.max_ratio * encoded_size))


DEFAULT_DECODE_LIMITS = DecodeLimits()


class _TooLarge(Exception):
    """The decoded body passed the cap."""


Decoder = Callable[[bytes, int], bytes]


def _inflate(d: zlib._Decompress, data: bytes, cap: int) -> bytes:
    out = d.decompress(data, cap + 1)
    if len(out) > cap or d.unconsumed_tail:
        raise _TooLarge
    return out


def _gzip(data: bytes, cap: int) -> bytes:
    out: list[bytes] = []
    total = 0
    first = True
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = _inflate(d, data, cap - total)
        except zlib.error:
            if first:
                raise
            break  # trailing garbage after a whole member: dropped, as urllib3 drops it
        out.append(chunk)
        total += len(chunk)
        first = False
        data = d.unused_data  # concatenated gzip members
    return b"".join(out)


def _deflate(data: bytes, cap: int) -> bytes:
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):  # zlib, then raw deflate (some servers)
        d = zlib.decompressobj(wbits)
        try:
            out = _inflate(d, data, cap)
        except zlib.error:
            if wbits < 0:
                raise
            continue
        if not d.eof:
            raise zlib.error("incomplete or truncated stream")
        return out
    raise AssertionError("unreachable")  # pragma: no cover


def _brotli(module: ModuleType) -> Decoder:
    def decode(data: bytes, cap: int) -> bytes:
        d = module.Decompressor()
        chunks: list[bytes] = []
        total = 0
        try:  # Brotli >= 1.2 bounds each call's output itself
            more = data
            while total <= cap:
                chunk = d.process(more, output_buffer_limit=cap + 1 - total)
                chunks.append(chunk)
                total += len(chunk)
                more = b""
                if d.is_finished() or d.can_accept_more_data():
                    break
        except TypeError:  # an older brotli or brotlicffi: feed it a slice at a time
            d = module.Decompressor()
            feed = getattr(d, "process", None) or d.decompress
            chunks, total = [], 0
            for pos in range(0, len(data), _SLICE):
                chunk = feed(data[pos : pos + _SLICE])
                chunks.append(chunk)
                total += len(chunk)
                if total > cap:
                    break
        if total > cap:
            raise _TooLarge
        finished = getattr(d, "is_finished", None)
        if finished is not None and not finished():
            raise ValueError("brotli data is incomplete")
        return b"".join(chunks)

    return decode


def _zstd(module: ModuleType) -> Decoder:
    def decode(data: bytes, cap: int) -> bytes:
        out: list[bytes] = []
        total = 0
        while data:  # one frame at a time (a body may hold several)
            d = module.ZstdDecompressor()
            chunk = d.decompress(data, max_length=cap - total + 1)
            total += len(chunk)
            if total > cap or not (d.eof or d.needs_input):
                raise _TooLarge
            if not d.eof:
                raise ValueError("zstd data is incomplete")
            out.append(chunk)
            data = d.unused_data
        return b"".join(out)

    return decode


def _optional(*names: str) -> Optional[ModuleType]:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _decoders() -> dict[str, Decoder]:
    found: dict[str, Decoder] = {
        "gzip": _gzip,
        "x-gzip": _gzip,
        "deflate": _deflate,
        "identity": lambda b, cap: b,
    }
    br = _optional("brotli", "brotlicffi")
    if br is not None:
        found["br"] = _brotli(br)
    zstd = _optional("compression.zstd", "backports.zstd")  # as urllib3 looks for them
    if zstd is not None:
        found["zstd"] = _zstd(zstd)
    return found


def decode_content(
    raw: bytes, content_encoding: str | None, limits: DecodeLimits = DEFAULT_DECODE_LIMITS
) -> tuple[bytes, str | None]:
    """Undo ``Content-Encoding``; returns the bytes and a note when they were left raw."""
    if not content_encoding:
        return raw, None
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    decoders = _decoders()
    cap = limits.cap(len(raw))
    data = raw
    for coding in reversed(codings):  # the last applied is undone first
        fn = decoders.get(coding)
        if fn is None:
            return raw, f"content-encoding {coding!r} is not decoded here; body left as received"
        try:
            data = fn(data, cap)
        except _TooLarge:
            return raw, (
                f"content-encoding {coding!r} decodes to more than {cap} bytes (the limit for "
                f"{len(raw)} encoded bytes); body left as received"
            )
        except Exception as exc:
            return raw, f"content-encoding {coding!r} could not be decoded ({exc}); body left raw"
    return data, None
