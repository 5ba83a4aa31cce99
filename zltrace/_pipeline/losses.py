"""Records lost: never silently. Each loss is logged (at most once per ``LOSS_LOG_NS``, with
the count since), and the first of the process is a :class:`ZltraceWarning` -- shown on
stderr by default, so a host that configured no logging still hears of it."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Callable

from ..exceptions import ZltraceWarning

log = logging.getLogger(__name__)

#: Records dropped are logged at most this often (with the count since).
LOSS_LOG_NS = 10_000_000_000


class LossReport:
    """What one writer says about the records it loses (it counts them itself)."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self._log_at = 0  # clock time before which drops are counted, not logged
        self._unlogged = 0

    def dropped(self, n: int, cause: str, total: int) -> None:
        """``n`` records dropped for ``cause``; ``total`` lost so far, these included."""
        self._unlogged += n
        now = self._clock()
        if now >= self._log_at:
            self._log_at = now + LOSS_LOG_NS
            log.critical(
                "zltrace: %d records dropped: %s (%d lost so far)", self._unlogged, cause, total
            )
            self._unlogged = 0
        warn_first_loss(n, cause)

    def closing(self, total: int) -> None:
        """The writer closes: drops not logged yet are logged now."""
        if self._unlogged:
            log.critical(
                "zltrace: %d more records were dropped while the disk was unwritable "
                "(%d lost in all)",
                self._unlogged,
                total,
            )
            self._unlogged = 0

    def lost_at_close(self, n: int, path: str, cause: str | None) -> None:
        """``n`` records no file took when the writer closed."""
        log.error("zltrace: %d records could not be written to %s and are lost: %s", n, path, cause)
        warn_first_loss(n, f"no file could be written at close ({cause})")


_warned = False


def warn_first_loss(n: int, cause: str) -> None:
    """The first lost record of the process: a :class:`ZltraceWarning`."""
    global _warned
    if _warned:
        return
    _warned = True
    try:
        warnings.warn(
            f"zltrace lost {n} trace record(s): {cause}; stats()['records_lost'] counts them",
            ZltraceWarning,
            stacklevel=2,
        )
    except Exception:  # warnings turned into errors must not stop the writer
        log.debug("zltrace: the loss warning was raised as an error", exc_info=True)


def reset_loss_warning() -> None:
    """Warn again at the next loss (tests; a forked child is a new process)."""
    global _warned
    _warned = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reset_loss_warning)
