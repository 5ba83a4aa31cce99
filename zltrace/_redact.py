"""Header redaction (worker side): credential values are replaced before anything is encoded.

A redacted value becomes ``<redacted sha256:XXXXXXXXXXXX>``: an HMAC of the value under a key
drawn at random for each tracer, so two requests in one trace file can be told apart (same
key or not) while the value itself -- even a guessable one such as a Basic password --
cannot be recovered or confirmed from the file.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import os
import re
from collections.abc import Sequence


class Redactor:
    """Replaces the values of headers whose names match any of the patterns."""

    def __init__(self, patterns: Sequence[str], key: bytes | None = None) -> None:
        regex = "|".join(fnmatch.translate(p.lower()) for p in patterns) or r"(?!)"
        self._match = re.compile(regex).match
        self._key = key if key is not None else os.urandom(16)
        self._names: dict[str, bool] = {}
        self._seen: dict[str, str] = {}

    def is_secret(self, name: str) -> bool:
        """Whether a header of this name is redacted."""
        hit = self._names.get(name)
        if hit is None:
            hit = self._match(name.strip().lower()) is not None
            if len(self._names) < 4096:
                self._names[name] = hit
        return hit

    def fingerprint(self, value: str) -> str:
        """The replacement for a secret value."""
        fp = self._seen.get(value)
        if fp is None:
            digest = hmac.new(self._key, value.encode("utf-8", "surrogatepass"), hashlib.sha256)
            fp = f"<redacted sha256:{digest.hexdigest()[:12]}>"
            if len(self._seen) < 1024:
                self._seen[value] = fp
        return fp
