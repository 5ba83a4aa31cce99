"""Redaction (worker side): credential values are replaced before anything is encoded.

A redacted value becomes ``<redacted sha256:XXXXXXXXXXXX>``: an HMAC of the value under a key
drawn at random for each tracer, so two requests in one trace file can be told apart (same
key or not) while the value itself -- even a guessable one such as a Basic password --
cannot be recovered or confirmed from the file. In a URL's query the same digest appears as
``redacted-sha256-XXXXXXXXXXXX`` (URL-safe), so one token sent both ways shows the same digits.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from urllib.parse import unquote_plus


def _matcher(patterns: Sequence[str]) -> re.Pattern[str]:
    return re.compile("|".join(fnmatch.translate(p.lower()) for p in patterns) or r"(?!)")


class Redactor:
    """Replaces the values of headers (and query parameters) whose names match the patterns."""

    def __init__(
        self, patterns: Sequence[str], key: bytes | None = None, query: Sequence[str] = ()
    ) -> None:
        self._match = _matcher(patterns).match
        self._query = _matcher(query).match
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

    def _digest(self, value: str) -> str:
        fp = self._seen.get(value)
        if fp is None:
            digest = hmac.new(self._key, value.encode("utf-8", "surrogatepass"), hashlib.sha256)
            fp = digest.hexdigest()[:12]
            if len(self._seen) < 1024:
                self._seen[value] = fp
        return fp

    def fingerprint(self, value: str) -> str:
        """The replacement for a secret value."""
        return f"<redacted sha256:{self._digest(value)}>"

    def target(self, target: str) -> tuple[str, list[str]]:
        """``target`` (a request target or URL) with secret query values replaced; and the
        values replaced, raw and percent-decoded, for scrubbing error messages."""
        path, sep, rest = target.partition("?")
        if not sep:
            return target, []
        query, hash_, fragment = rest.partition("#")
        items = query.split("&")
        secrets: list[str] = []
        for i, item in enumerate(items):
            name, eq, value = item.partition("=")
            if not (eq and value):
                continue
            if self._query(unquote_plus(name, errors="surrogateescape").strip().lower()) is None:
                continue
            decoded = unquote_plus(value, errors="surrogateescape")
            secrets.append(value)
            if decoded != value:
                secrets.append(decoded)
            items[i] = f"{name}=redacted-sha256-{self._digest(decoded)}"
        if not secrets:
            return target, []
        return f"{path}?{'&'.join(items)}{hash_}{fragment}", secrets
