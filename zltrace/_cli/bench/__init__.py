"""``python -m zltrace bench``: what tracing costs, measured against a loopback server.

Method (the same in every part):

- A fast asyncio HTTP/1.1 server runs in a child process (:class:`BenchServer`), so it never
  competes with this process for the GIL; the client is this process, one keep-alive pool
  per side.
- Traced and bare requests are interleaved A B A B ... (the order flips on every pair) against
  the same server, so drift of the machine hits both sides alike. A request is timed with
  ``perf_counter_ns`` around the whole ``urlopen`` plus the full body read (``stream(64 KiB)``);
  the first chunk gives the time to first byte. *Added latency* = traced - bare of one pair;
  its p50 is the median of the pairs. The caller thread's CPU time (``thread_time_ns``) is
  taken around the same requests: traced - bare is what capture costs on the caller thread.
- Every traced request is accounted for: after each scenario the tracer is closed and its
  trace is read back with :func:`zltrace.read` (one exchange per request, outcome
  ``complete``, body sizes equal to what the client read, no line skipped). Missing ones are
  data loss.
- Trace files go to a temporary directory that is deleted afterwards. The tracer runs with
  its default settings (not from the environment), signal handlers off.

The bench uses zltrace's documented seams; the two figures that have none yet reach in through
``seams.py`` alone.

Nothing here changes process-wide settings (switch interval, GC thresholds). ``tracemalloc``
is started only for the memory part's own sub-runs and stopped after them.
"""

from __future__ import annotations

from .cli import main

__all__ = ["main"]
