"""POSTing OTLP/HTTP export requests: retries, backoff, splitting, dead letters.

Rules (the OTLP/HTTP specification's, and this shipper's where it leaves a choice):

- 200 is success; a partial success names spans the backend rejected for good: counted,
  never sent again.
- 429, 502, 503, 504 and connection errors are transient: the same request is sent again
  after an exponential backoff with jitter, or after ``Retry-After`` (seconds or an HTTP
  date) when the server gives one, capped at ``max_backoff``. Until ``give_up_after``
  seconds have passed without success (0: never give up), then :class:`GaveUp`.
- 400 and 413 mean this request cannot be taken: it is split in halves, each sent on its
  own; a single span still refused is dead-lettered (written to the dead-letter file with
  the answer) and never sent again. Nothing is retried forever.
- Any other status (401, 403, 404, 500, ...) says the endpoint or its configuration is
  wrong, not the data: :class:`Refused`, and the caller stops without acknowledging.
- One request in flight at a time; the payload is built from already-encoded spans, gzip
  compressed.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import logging
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import attrs
import urllib3

from ..exceptions import ZltraceError
from . import otlp_json, otlp_proto
from .otlp_span import Attributes

log = logging.getLogger(__name__)

__all__ = ["GaveUp", "Refused", "SendResult", "Sender", "Stopped"]

RETRYABLE = frozenset({429, 502, 503, 504})
SPLITTABLE = frozenset({400, 413})
_BODY_SHOWN = 500


class GaveUp(ZltraceError, ConnectionError):
    """The backend stayed unreachable (or busy) for longer than allowed."""


class Refused(ZltraceError, ConnectionError):
    """The backend refused the export for a reason no resend can fix (401, 403, 404, ...)."""


class Stopped(ZltraceError, InterruptedError):
    """Asked to stop while waiting to send again."""


@attrs.define
class SendResult:
    """What became of one batch: accepted, rejected by a partial success, dead-lettered."""

    accepted: int = 0
    rejected: int = 0
    dead: int = 0


@attrs.define
class Counters:
    """Running totals, for ``--stats``."""

    requests: int = 0
    retries: int = 0
    splits: int = 0
    bytes_sent: int = 0
    last_status: str = ""


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


class Sender:
    """Sends batches of encoded spans to one OTLP/HTTP traces endpoint."""

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        encoding: str = "protobuf",
        resource: Attributes,
        scope: tuple[str, str],
        compress: bool = True,
        timeout: float = 10.0,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        give_up_after: float = 0.0,
        dead_letter: str | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if encoding not in ("protobuf", "json"):
            raise ValueError(f"encoding must be 'protobuf' or 'json', got {encoding!r}")
        self.url = url
        self.codec: Any = otlp_proto if encoding == "protobuf" else otlp_json
        content_type = "application/x-protobuf" if encoding == "protobuf" else "application/json"
        self.headers = {**(headers or {}), "Content-Type": content_type}
        if compress:
            self.headers["Content-Encoding"] = "gzip"
        self.compress = compress
        self.resource = resource
        self.scope = scope
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.give_up_after = give_up_after
        self.dead_letter = dead_letter
        self.stop = stop or threading.Event()
        self.clock = clock
        self.counters = Counters()
        self._http = urllib3.PoolManager(num_pools=1, maxsize=1, retries=False)

    def encode_span(self, span: Any) -> bytes:
        """A span in this sender's encoding."""
        return bytes(self.codec.encode_span(span))

    def close(self) -> None:
        """Close the connection."""
        self._http.clear()

    def send(self, spans: Sequence[bytes]) -> SendResult:
        """Deliver ``spans`` (encoded); returns once each is accepted, rejected or
        dead-lettered. Raises :class:`GaveUp`, :class:`Refused` or :class:`Stopped`."""
        result = SendResult()
        if spans:
            self._send(list(spans), result)
        return result

    def _send(self, spans: list[bytes], result: SendResult) -> None:
        status, body = self._post(spans)
        if status is None:  # accepted (body is the response)
            rejected, message = self._partial(body)
            if rejected:
                log.warning("backend rejected %d span(s): %s", rejected, message)
            result.rejected += min(rejected, len(spans))
            result.accepted += len(spans) - min(rejected, len(spans))
            return
        if len(spans) > 1:
            self.counters.splits += 1
            half = len(spans) // 2
            self._send(spans[:half], result)
            self._send(spans[half:], result)
            return
        self._dead(spans[0], status, body)
        result.dead += 1

    def _partial(self, body: bytes) -> tuple[int, str]:
        try:
            return tuple(self.codec.parse_response(body))  # type: ignore[return-value]
        except (ValueError, UnicodeDecodeError):
            return 0, ""

    def _post(self, spans: list[bytes]) -> tuple[int | None, bytes]:
        """POST until accepted (None, response body) or refused for splitting (status, body)."""
        payload = self.codec.encode_request(self.resource, self.scope, spans)
        if self.compress:
            payload = gzip.compress(payload, compresslevel=6)
        started = self.clock()
        attempt = 0
        while True:
            if self.stop.is_set():
                raise Stopped("stopped before the batch was acknowledged")
            wait: float | None = None
            try:
                self.counters.requests += 1
                self.counters.bytes_sent += len(payload)
                rs = self._http.request(
                    "POST",
                    self.url,
                    body=payload,
                    headers=self.headers,
                    timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
                    retries=False,
                    redirect=False,
                    preload_content=True,
                )
            except urllib3.exceptions.HTTPError as exc:
                self.counters.last_status = type(exc).__name__
                log.info("export failed (%s); will retry", exc)
            else:
                status, data = rs.status, rs.data or b""
                self.counters.last_status = str(status)
                if 200 <= status < 300:
                    return None, data
                if status in SPLITTABLE:
                    return status, data
                if status not in RETRYABLE:
                    raise Refused(
                        f"{self.url} answered {status}: {_shown(data)} (not retried: "
                        "check the endpoint, headers and credentials)"
                    )
                wait = retry_after(rs.headers.get("Retry-After"), time.time())
                log.info("export answered %d; will retry", status)
            attempt += 1
            self.counters.retries += 1
            delay = min(self.backoff * 2 ** min(attempt - 1, 30), self.max_backoff)
            delay = random.uniform(delay / 2, delay)
            if wait is not None:
                delay = min(wait, max(self.max_backoff, 300.0))
            if self.give_up_after and self.clock() + delay - started > self.give_up_after:
                raise GaveUp(
                    f"{self.url}: no success for {self.give_up_after:g} s "
                    f"(last: {self.counters.last_status})"
                )
            if self.stop.wait(delay):
                raise Stopped("stopped before the batch was acknowledged")

    def _dead(self, span: bytes, status: int, body: bytes) -> None:
        log.warning("span dead-lettered: %s answered %d: %s", self.url, status, _shown(body))
        if self.dead_letter is None:
            return
        doc = {
            "status": status,
            "response": _shown(body),
            "encoding": "json" if self.codec is otlp_json else "protobuf",
            "span": span.decode("utf-8") if self.codec is otlp_json else span.hex(),
        }
        line = json.dumps(doc, ensure_ascii=False).encode() + b"\n"
        fd = os.open(self.dead_letter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def _shown(data: bytes) -> str:
    text = data[:_BODY_SHOWN].decode("utf-8", "replace")
    return text + ("..." if len(data) > _BODY_SHOWN else "")
