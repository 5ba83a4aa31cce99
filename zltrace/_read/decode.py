"""Content decoding of response bodies: gzip, deflate, and br/zstd when available."""

from __future__ import annotations

import importlib
import zlib
from typing import Callable, Optional


def _gzip(data: bytes) -> bytes:
    out = []
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out.append(d.decompress(data))
        out.append(d.flush())
        data = d.unused_data  # concatenated gzip members
    return b"".join(out)


def _deflate(data: bytes) -> bytes:
    try:
        return zlib.decompress(data)
    except zlib.error:
        return zlib.decompress(data, -zlib.MAX_WBITS)  # raw deflate, as some servers send


def _optional(module: str, func: str) -> Optional[Callable[[bytes], bytes]]:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    fn: Callable[[bytes], bytes] = getattr(mod, func)
    return fn


def _decoders() -> dict[str, Callable[[bytes], bytes]]:
    found: dict[str, Callable[[bytes], bytes]] = {
        "gzip": _gzip,
        "x-gzip": _gzip,
        "deflate": _deflate,
        "identity": lambda b: b,
    }
    br = _optional("brotli", "decompress") or _optional("brotlicffi", "decompress")
    if br is not None:
        found["br"] = br
    zstd = _optional("compression.zstd", "decompress")
    if zstd is not None:
        found["zstd"] = zstd
    return found


def decode_content(raw: bytes, content_encoding: str | None) -> tuple[bytes, str | None]:
    """Undo ``Content-Encoding``; returns the bytes and a note when they were left raw."""
    if not content_encoding:
        return raw, None
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    decoders = _decoders()
    data = raw
    for coding in reversed(codings):  # the last applied is undone first
        fn = decoders.get(coding)
        if fn is None:
            return raw, f"content-encoding {coding!r} is not decoded here; body left as received"
        try:
            data = fn(data)
        except Exception as exc:
            return raw, f"content-encoding {coding!r} could not be decoded ({exc}); body left raw"
    return data, None
