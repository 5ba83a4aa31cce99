"""Redaction (worker side): credential values are replaced before anything is encoded.

A redacted value becomes ``<redacted sha256:XXXXXXXXXXXX>``: an HMAC of the value under a key
drawn at random for each tracer, so two requests in one trace file can be told apart (same
key or not) while the value itself -- even a guessable one such as a Basic password --
cannot be recovered or confirmed from the file. In a URL's query the same digest appears as
``redacted-sha256-XXXXXXXXXXXX`` (URL-safe), so one token sent both ways shows the same digits;
so does the password of a URL's userinfo (``http://user:PASS@host/``), whatever the rules (the
user name stays readable).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from urllib.parse import unquote, unquote_plus


def _matcher(patterns: Sequence[str]) -> re.Pattern[str]:
    return re.compile("|".join(fnmatch.translate(p.lower()) for p in patterns) or r"(?!)")


SECRET, URL = 1, 2

#: Headers whose value is a URL: its query is redacted like the request's (a redirect to a
#: pre-signed URL, an OAuth callback with ``#access_token=``).
_URL_HEADERS = frozenset({"location", "content-location", "referer"})


class Redactor:
    """Replaces the values of headers (and query parameters) whose names match the patterns."""

    def __init__(
        self, patterns: Sequence[str], key: bytes | None = None, query: Sequence[str] = ()
    ) -> None:
        self._match = _matcher(patterns).match
        self._query = _matcher(query).match
        self._key = key if key is not None else os.urandom(16)
        self._names: dict[str, int] = {}
        self._seen: dict[str, str] = {}

    def is_secret(self, name: str) -> bool:
        """Whether a header of this name is redacted."""
        return self.kind(name) == SECRET

    def kind(self, name: str) -> int:
        """How a header's value is written: as is (0), ``SECRET`` (a fingerprint) or ``URL``
        (its query redacted with :meth:`target`)."""
        hit = self._names.get(name)
        if hit is None:
            low = name.strip().lower()
            hit = SECRET if self._match(low) is not None else URL if low in _URL_HEADERS else 0
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

    def target(self, target: str) -> tuple[str, list[tuple[str, str]]]:
        """``target`` (a request target or URL) with the values of secret parameters in its
        query and fragment (``#access_token=`` of OAuth redirects) replaced; and, for
        scrubbing error messages, each replaced value as written and as decoded, paired with
        the decoded value whose digest replaces it (so the digits match the URL's)."""
        secrets: list[tuple[str, str]] = []
        userinfo = _USERINFO.match(target)
        if userinfo is not None:
            password = userinfo.group(3)
            decoded = unquote(password, errors="surrogateescape")
            secrets.append((password, decoded))
            if decoded != password:
                secrets.append((decoded, decoded))
            target = (
                f"{userinfo.group(1)}{userinfo.group(2)}:redacted-sha256-{self._digest(decoded)}@"
                + target[userinfo.end() :]
            )
        start = _PARAMS.search(target)
        if start is None:
            return target, secrets
        parts = _PARAM_SPLIT.split(target[start.start() :])
        for i in range(1, len(parts), 2):  # the text after each ? # & ;
            name, eq, value = parts[i + 1].partition("=")
            if not (eq and value):
                continue
            if self._query(unquote_plus(name, errors="surrogateescape").strip().lower()) is None:
                continue
            decoded = unquote_plus(value, errors="surrogateescape")
            secrets.append((value, decoded))
            if decoded != value:
                secrets.append((decoded, decoded))
            parts[i + 1] = f"{name}=redacted-sha256-{self._digest(decoded)}"
        if not secrets:
            return target, []
        return target[: start.start()] + "".join(parts), secrets


# ``scheme://user:password@``: the authority's userinfo up to its last ``@`` (before any / ? #),
# split at the first ``:``. A password may be empty (then there is nothing to redact).
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@:]*):([^/?#]+)@")

# Where the parameters start (the path before is never touched), and their separators, kept
# by the split: ["", sep, param, sep, param, ...]. ``;`` counts as one, as some servers treat
# it; a stray ``?`` inside the query too (splitting too much only redacts more).
_PARAMS = re.compile(r"[?#]")
_PARAM_SPLIT = re.compile(r"([?#&;])")
