"""Encodes request and response heads as JSON fragments of the trace line, credentials redacted.

Rules:
- Header values whose names match the redaction patterns become fingerprints, URL-valued
  headers (``Location``...) get their query redacted, and so does the request's URL.
- Most requests of a client repeat the same head: each distinct head is parsed and encoded
  once and cached (bounded).
- Error messages of an exchange are scrubbed of its credentials (http.client quotes bad
  header values in its exceptions).
"""

from __future__ import annotations

import email.message
import re
from collections.abc import Iterable
from typing import Any, NamedTuple, Optional

from .jsonenc import js as _js
from .redact import SECRET, Redactor

#: Cached parsed heads beyond which the cache starts over.
_CACHE_MAX = 256

#: What a parsed head depends on: head bytes, scheme, host, port, complete, method, target.
_Key = tuple[bytes, str, str, Optional[int], bool, str, str]


class RequestHead(NamedTuple):
    """A request head parsed and encoded: ``{"method":...,"complete":...`` (no brace)."""

    fragment: str
    chunked: bool  # the body is chunk-framed
    has_body: bool  # the head announces a body
    #: Redacted values as they may appear in error messages, with the value to fingerprint.
    secrets: list[tuple[str, str]]


class HeadEncoder:
    """Request and response heads as JSON fragments, redacted with one tracer's redactor."""

    def __init__(self, redactor: Redactor) -> None:
        self._redact = redactor
        self._cache: dict[_Key, RequestHead] = {}

    def request(
        self,
        head: bytes,
        complete: bool,
        scheme: str,
        host: str,
        port: int | None,
        method: str,
        target: str,
    ) -> RequestHead:
        """The request's head as sent (``head``: request line and headers, no blank line).

        Without a request line on the wire (nothing sent yet) the method and target come
        from the call itself, so they are part of the cache key too.
        """
        key: _Key = (head, scheme, host, port, complete, method, target)
        parsed = self._cache.get(key)
        if parsed is None:
            parsed = self._parse(key)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = parsed
        return parsed

    def response(self, status: int, reason: Any, version: int, msg: Any, framing: str) -> str:
        """``{"status":...,"framing":...`` -- the response object without body, reads, brace."""
        return (
            f'{{"status":{int(status)},"reason":{_js(str(reason))},'
            f'"http_version":"{"HTTP/1.0" if version == 10 else "HTTP/1.1"}",'
            f'"headers":{self._headers(_message_pairs(msg))},"framing":"{framing}"'
        )

    def scrub(self, message: str, secrets: list[tuple[str, str]]) -> str:
        """Keep credentials out of error messages (http.client quotes bad header values)."""
        fingerprint = self._redact.fingerprint
        for value, key in secrets:
            quoted = repr(value.encode("latin-1", "replace"))[2:-1]
            for form in (value, repr(value)[1:-1], quoted):
                if form:
                    message = message.replace(form, fingerprint(key))
        return _HEADER_ERROR.sub(r"\1 <redacted>", message)

    def _headers(self, pairs: Iterable[tuple[str, str]]) -> str:
        redact = self._redact
        kind, fp, url = redact.kind, redact.fingerprint, redact.target
        # Plain (0), SECRET (a fingerprint) or a URL (its query redacted), by name, cached.
        return (
            "["
            + ",".join(
                [
                    f"[{_js(n)},"
                    f"{_js(v if not (k := kind(n)) else fp(v) if k == SECRET else url(v)[0])}]"
                    for n, v in pairs
                ]
            )
            + "]"
        )

    def _parse(self, key: _Key) -> RequestHead:
        head, scheme, host, port, complete, method, target = key
        lines = head.split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ", 2) if lines and lines[0] else []
        # Before the header block is complete http.client has sent nothing: fall back to what
        # _make_request() was given.
        method = parts[0] if parts else method
        target = parts[1] if len(parts) > 1 else target
        version = parts[2] if len(parts) > 2 else ""
        headers: list[tuple[str, str]] = []
        for raw in lines[1:] if parts else ():
            text = raw.decode("latin-1")
            if text[:1] in (" ", "\t") and headers:
                # obs-fold: a continuation of the previous header's value (http.client lets
                # it through); it must be redacted with that header, not stand on its own.
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {text.strip()}")
                continue
            name, _, value = text.partition(":")
            headers.append((name, value.strip()))
        lowered = {n.lower(): v for n, v in headers}
        chunked = "chunked" in lowered.get("transfer-encoding", "").lower()
        has_body = chunked or "content-length" in lowered
        secrets = [(v, v) for n, v in headers if v and self._redact.is_secret(n)]
        url, in_query = self._redact.target(_url(scheme, host, port, target))
        secrets += in_query
        fragment = (
            f'{{"method":{_js(method)},"url":{_js(url)},'
            f'"http_version":{_js(version)},"headers":{self._headers(headers)},'
            f'"complete":{"true" if complete else "false"}'
        )
        return RequestHead(fragment, chunked, has_body, secrets)


def _url(scheme: str, host: str, port: int | None, target: str) -> str:
    if target.startswith(("http://", "https://")):
        return target  # absolute form, sent to a forward proxy
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    default = 443 if scheme == "https" else 80
    shown = "" if port in (None, default) else f":{port}"
    return f"{scheme}://{host}{shown}{target}"


# http.client: "Invalid header value b'...'" / "Invalid header name b'...'"; the value may be
# a credential whose header was never sent, so it cannot be matched by name.
_HEADER_ERROR = re.compile(r"(Invalid header (?:value|name)) .*", re.DOTALL)


def _message_pairs(msg: Any) -> Iterable[tuple[str, str]]:
    if isinstance(msg, email.message.Message):
        return [(str(k), str(v)) for k, v in msg.raw_items()]
    if isinstance(msg, list):  # a front-end's header list (events.ResponseHead)
        return [(_text(k), _text(v)) for k, v in msg]
    return []


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)
