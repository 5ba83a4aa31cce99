"""When the writer tries a failed write again, and which failures count.

Two questions, two clocks:

- Is the disk back? Asked often and cheaply: while anything waits, a write is tried again
  ``PROBE_NS`` after the last failure, so a disk that comes back is used at once rather than
  after a backoff that can outlast the outage.
- Does this failure count? Only one per backoff step (``first_ns`` doubled per attempt,
  capped at ``MAX_BACKOFF_NS``, +-25% jitter so that many processes on one full disk do not
  retry in step). Counted failures are logged and decide when a batch goes to the
  dead-letter file; the probes in between are not.
"""

from __future__ import annotations

import random
from typing import Callable

import attrs

MAX_BACKOFF_NS = 5_000_000_000
#: While records wait for the disk, a write is tried again this long after the last failure.
PROBE_NS = 50_000_000


@attrs.define
class Schedule:
    """When the next write may be tried (a probe), and which failures count (the backoff)."""

    retries: int
    first_ns: int
    clock: Callable[[], int]
    attempts: int = 0  # counted failures of the current batch
    retry_at: int = 0  # clock time before which a failure does not count
    probe_at: int = 0  # clock time before which no write is tried (0: writes work)

    def may_try(self, force: bool) -> bool:
        return force or self.clock() >= min(self.retry_at, self.probe_at)

    def counts(self, force: bool) -> bool:
        """Whether a failure now counts (logged, retried, towards the dead-letter file)."""
        return force or self.clock() >= self.retry_at

    def failed(self) -> None:
        """Any failed write: the next try is one probe interval away."""
        self.probe_at = self.clock() + PROBE_NS

    def backoff(self) -> bool:
        """A counted failure: schedule the next; False once the retries are used up."""
        self.attempts += 1
        if self.attempts > self.retries:
            return False
        delay = min(self.first_ns << (self.attempts - 1), MAX_BACKOFF_NS)
        self.retry_at = self.clock() + int(delay * (0.75 + random.random() / 2))
        return True

    def pause(self) -> None:
        """A counted re-drive failure: the next counts one first delay later."""
        self.retry_at = self.clock() + self.first_ns

    def reset(self) -> None:
        """Writes work (or the batch was dead-lettered): a fresh start."""
        self.attempts = 0
        self.retry_at = 0
        self.probe_at = 0
