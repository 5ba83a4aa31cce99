"""zltrace: a zero-latency HTTP traffic tracer for urllib3, requests and botocore.

``wrap()`` a pool, a PoolManager or a requests Session; every exchange goes to a JSON Lines
trace file, written by a background thread; ``read()`` gives the exchanges back.
"""

from __future__ import annotations

import logging
from typing import Any

from ._export.claude_trace import export_claude_trace
from ._export.har import export_har
from ._export.report import write_report
from ._export.stats import summarize
from ._monitor.alerts import Alert
from ._monitor.logjson import JsonFormatter
from ._pipeline.writer import Opener
from ._read.eventstream import EventFrame, parse_event_stream
from ._read.llm import Usage, total_usage
from ._read.reader import ErrorInfo, Exchange, Request, Response, SkippedLine, Timing, read
from ._read.sse import SSEEvent, SSEParser, parse_sse
from ._state import default_tracer, install, reset_defaults, uninstall
from ._tracer import Tracer
from ._version import __version__
from .config import DEFAULT_REDACT_HEADERS, DEFAULT_REDACT_QUERY, Config
from .exceptions import (
    ConfigError,
    InvalidArgumentError,
    NotCallableError,
    ParserClosedError,
    UnsupportedTargetError,
    ZltraceError,
    ZltraceWarning,
)

__all__ = [
    "DEFAULT_REDACT_HEADERS",
    "DEFAULT_REDACT_QUERY",
    "Alert",
    "Config",
    "ConfigError",
    "ErrorInfo",
    "EventFrame",
    "Exchange",
    "InvalidArgumentError",
    "JsonFormatter",
    "NotCallableError",
    "Opener",
    "ParserClosedError",
    "Request",
    "Response",
    "SSEEvent",
    "SSEParser",
    "SkippedLine",
    "Timing",
    "Tracer",
    "UnsupportedTargetError",
    "Usage",
    "ZltraceError",
    "ZltraceWarning",
    "__version__",
    "default_tracer",
    "export_claude_trace",
    "export_har",
    "install",
    "parse_event_stream",
    "parse_sse",
    "read",
    "reset_defaults",
    "summarize",
    "total_usage",
    "uninstall",
    "wrap",
    "write_report",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())


def wrap(target: Any, *, tracer: Tracer | None = None) -> Any:
    """Trace ``target``: a urllib3 pool, a PoolManager, a requests.Session, a boto3/botocore
    client, an httpx/httpx2 ``Client``/``AsyncClient``, an anthropic or openai client, a
    kubernetes ``ApiClient`` or API object, or an ``Elasticsearch`` client (or its
    elastic-transport ``Transport``/``NodePool``).

    A pool is returned as a traced copy with the same settings; everything else is traced in
    place and returned. Without ``tracer``, the process-wide default tracer
    (configured from the environment) records.
    """
    return (tracer if tracer is not None else default_tracer()).wrap(target)
