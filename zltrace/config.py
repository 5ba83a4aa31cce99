"""Configuration: the frozen :class:`Config` and its environment variables.

Two doors, two policies (the host application must never crash because of tracing):

- ``Config(...)`` in code validates on construction and raises :class:`ConfigError` naming the
  field, showing the bad value and saying what was expected.
- ``Config.from_env()`` never raises for a bad value: it warns (:class:`ZltraceWarning`) naming
  the variable, its value and the default used instead, and goes on.

Each setting has a ``ZLTRACE_*`` variable; the spec's ``CLAUDE_TRACE_ZERO_LATENCY*`` names are
accepted as aliases, and the ``ZLTRACE_`` name wins when both are set.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import attrs

from .exceptions import ConfigError, ZltraceWarning

__all__ = ["DEFAULT_REDACT_HEADERS", "DEFAULT_REDACT_QUERY", "Config", "Setting", "resolve_env"]

#: Header-name patterns (fnmatch style, case-insensitive) whose values never reach disk:
#: the credential headers of the LLM APIs, AWS, GCP, Azure and common SaaS APIs. Counters stay
#: readable: rate-limit and usage headers name tokens in the middle or as ``-tokens``
#: (``x-ratelimit-remaining-tokens``, ``anthropic-ratelimit-input-tokens-remaining``,
#: ``x-amzn-bedrock-input-token-count``), so only names *ending* in ``token`` are redacted.
DEFAULT_REDACT_HEADERS: tuple[str, ...] = (
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "cookie",
    "set-cookie",
    "*-authorization*",  # x-ms-authorization-auxiliary (Azure)
    "*token",  # x-amz-security-token, X-Auth-Token, X-Vault-Token, PRIVATE-TOKEN
    "*secret*",
    "*password*",
    "*api-key*",  # x-api-key, api-key (Azure OpenAI), x-goog-api-key, DD-API-KEY
    "*apikey*",  # apikey (Supabase)
    "*api_key*",
    "*application-key*",  # DD-APPLICATION-KEY (Datadog)
    "*subscription-key*",  # Ocp-Apim-Subscription-Key (Azure)
    "x-auth-key",  # Cloudflare
    "*service-key*",  # X-Auth-User-Service-Key (Cloudflare)
    "x-functions-key",  # Azure Functions
    "*encryption-key",  # x-goog-encryption-key, x-ms-encryption-key (customer-supplied keys)
    "*customer-key",  # x-amz-server-side-encryption-customer-key (S3 SSE-C)
)

#: Query-parameter name patterns (same rules) whose values never reach disk: ``?key=...`` as
#: Google's APIs take it, OAuth tokens, pre-signed URLs (S3, GCS, Azure SAS). As for headers,
#: only names ending in ``token`` count as tokens (``max_tokens`` stays readable).
DEFAULT_REDACT_QUERY: tuple[str, ...] = (
    "key",
    "*api_key*",
    "*apikey*",
    "*api-key*",
    "*token",
    "*secret*",
    "*password*",
    "*passwd*",
    "pwd",
    "private_key",
    "auth",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-goog-signature",
    "x-goog-credential",
)

_MIB = 1024 * 1024


def _check_bool(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"Config.{attribute.name} must be a bool (True or False), got {value!r}")


def _check_int(lo: int, hi: int) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(
                f"Config.{attribute.name} must be an integer from {lo} to {hi}, got {value!r}"
            )

    return check


def _check_dir(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ConfigError(f"Config.{attribute.name} must be a non-empty path, got {value!r}")


def _to_dir(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _default_fallback_dir() -> str:
    """``<system temp dir>/zltrace-<uid>``: private to this user (checked before each use)."""
    who = os.geteuid() if hasattr(os, "geteuid") else os.getpid()
    return os.path.join(tempfile.gettempdir(), f"zltrace-{who}")


def _to_patterns(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return value


def _check_patterns(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple) or not all(isinstance(p, str) and p for p in value):
        raise ConfigError(
            f"Config.{attribute.name} must be a sequence of non-empty name patterns, got {value!r}"
        )


def _check_port(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(
            f"Config.{attribute.name} must be None (off) or a port from 0 to 65535, got {value!r}"
        )


#: The trace formats a tracer can write (``Config.format``).
FORMATS = ("jsonl", "raw")


def _check_format(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in FORMATS:
        raise ConfigError(
            f"Config.{attribute.name} must be one of {', '.join(FORMATS)}, got {value!r}"
        )


def _check_host(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise ConfigError(f"Config.{attribute.name} must be a host name or address, got {value!r}")


@attrs.frozen
class Config:
    """Everything a :class:`~zltrace.Tracer` needs to know; immutable, validated when built.

    Change a copy with :meth:`evolve`: ``cfg.evolve(flush_ms=10)``.
    """

    #: Master switch; when False, ``wrap()`` returns its target untouched.
    enabled: bool = attrs.field(default=True, validator=_check_bool)
    #: Background thread (True) or synchronous standard mode on the caller thread (False).
    zero_latency: bool = attrs.field(default=True, validator=_check_bool)
    #: Accepted for the spec's sake; zltrace always runs exactly one worker thread per tracer,
    #: because under the GIL a second one only competes with the application.
    workers: int = attrs.field(default=1, validator=_check_int(1, 64))
    #: Flush the record buffer when it holds this many records ...
    buffer_size: int = attrs.field(default=100, validator=_check_int(1, 100_000))
    #: ... or when its oldest record is this old (milliseconds), whichever comes first.
    flush_ms: int = attrs.field(default=100, validator=_check_int(1, 3_600_000))
    #: Accepted for the spec's sake: capture never parses; all parsing happens at read time.
    deferred_parsing: bool = attrs.field(default=True, validator=_check_bool)
    #: Byte budget for everything held on behalf of the trace (queued chunks, open exchanges,
    #: unflushed records).
    memory_pool_size: int = attrs.field(default=10 * _MIB, validator=_check_int(64 * 1024, 1 << 40))
    #: Directory of the trace files (created 0700; files 0600).
    dir: str = attrs.field(default=".zltrace", converter=_to_dir, validator=_check_dir)
    #: Where records go when the memory budget is about to overflow and neither the trace nor
    #: its dead-letter file can be written; re-driven into the trace once it works. Used only
    #: while it is a directory owned by this user and closed to others (created 0700).
    fallback_dir: str = attrs.field(
        factory=_default_fallback_dir, converter=_to_dir, validator=_check_dir
    )
    #: What the trace is: "jsonl" (one JSON line per finished exchange, assembled by the
    #: worker) or "raw" (a binary log of capture events; assembled at read time).
    format: str = attrs.field(default="raw", validator=_check_format)
    #: Header-name patterns (fnmatch, case-insensitive) whose values are replaced by a fingerprint.
    redact_headers: tuple[str, ...] = attrs.field(
        default=DEFAULT_REDACT_HEADERS, converter=_to_patterns, validator=_check_patterns
    )
    #: Query-parameter name patterns (fnmatch, case-insensitive) whose values are replaced by
    #: a fingerprint in every URL written (and in error messages that quote them).
    redact_query: tuple[str, ...] = attrs.field(
        default=DEFAULT_REDACT_QUERY, converter=_to_patterns, validator=_check_patterns
    )
    #: Flush on SIGTERM/SIGINT (chained to the handlers already installed), main thread only.
    handle_signals: bool = attrs.field(default=True, validator=_check_bool)
    #: Attempts of a failed batch write before it goes to the dead-letter file.
    write_retries: int = attrs.field(default=5, validator=_check_int(0, 100))
    #: First retry delay (milliseconds); doubled per attempt (capped at 5 s), jittered +-25%.
    retry_backoff_ms: int = attrs.field(default=100, validator=_check_int(1, 60_000))
    #: Health and metrics endpoints (``/health/zero-latency``, ``/metrics``): off (None) by
    #: default; 0 picks a free port (``Tracer.health_url`` says which).
    health_port: int | None = attrs.field(default=None, validator=_check_port)
    #: Address the endpoints listen on; loopback unless you mean to expose them.
    health_host: str = attrs.field(default="127.0.0.1", validator=_check_host)
    #: Run the alert rules and the periodic report (the worker then wakes once a second).
    alerts: bool = attrs.field(default=True, validator=_check_bool)
    #: The zero-latency target: p95 added time per exchange (microseconds) ...
    target_p95_us: int = attrs.field(default=100, validator=_check_int(1, 10_000_000))
    #: ... and memory held by the tracer (bytes).
    target_memory: int = attrs.field(default=50 * _MIB, validator=_check_int(1, 1 << 40))
    #: Critical: the target not met for this long (seconds).
    alert_target_s: int = attrs.field(default=300, validator=_check_int(0, 86_400))
    #: Critical: memory budget above this percentage for alert_budget_critical_s.
    alert_budget_critical_pct: int = attrs.field(default=90, validator=_check_int(1, 100))
    alert_budget_critical_s: int = attrs.field(default=120, validator=_check_int(0, 86_400))
    #: Warning: mean added time above this (microseconds) for alert_mean_s.
    alert_mean_us: int = attrs.field(default=50, validator=_check_int(1, 10_000_000))
    alert_mean_s: int = attrs.field(default=60, validator=_check_int(0, 86_400))
    #: Warning: memory budget above this percentage for alert_budget_warning_s.
    alert_budget_warning_pct: int = attrs.field(default=75, validator=_check_int(1, 100))
    alert_budget_warning_s: int = attrs.field(default=300, validator=_check_int(0, 86_400))
    #: Warning: more than this many events queued, for alert_queue_s.
    alert_queue: int = attrs.field(default=500, validator=_check_int(1, 10_000_000))
    alert_queue_s: int = attrs.field(default=0, validator=_check_int(0, 86_400))
    #: Info: a performance report logged this often (seconds; 0: never).
    report_s: int = attrs.field(default=60, validator=_check_int(0, 86_400))

    def evolve(self, **changes: Any) -> Config:
        """Return a copy with ``changes`` applied (validated like the constructor)."""
        return attrs.evolve(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Build a Config from environment variables; a bad value warns and keeps the default."""
        settings = resolve_env(environ)
        for s in settings:
            if s.problem is not None:
                warnings.warn(s.problem, ZltraceWarning, stacklevel=2)
        return cls(**{s.field: s.value for s in settings})


@attrs.frozen
class Setting:
    """One resolved setting: its value, where it came from, and what was wrong with the input."""

    field: str
    value: Any
    source: str  # "default" or the environment variable's name
    problem: str | None = None


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("expected true/false, 1/0, yes/no or on/off")


def _parse_int(text: str) -> int:
    return int(text.strip().replace("_", ""))


def _parse_dir(text: str) -> str:
    return text


def _parse_format(text: str) -> str:
    low = text.strip().lower()
    if low not in FORMATS:
        raise ValueError(f"expected one of {', '.join(FORMATS)}")
    return low


def _parse_port(text: str) -> int | None:
    """A port number; ``off``, ``none`` or empty: no endpoints."""
    if text.strip().lower() in ("", "off", "none"):
        return None
    return _parse_int(text)


def _parse_patterns(
    text: str, defaults: tuple[str, ...] = DEFAULT_REDACT_HEADERS
) -> tuple[str, ...]:
    """``a,b,-cookie``: names are added to the defaults; a leading ``-`` removes a default."""
    result = list(defaults)
    for raw in text.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        if item.startswith("-"):
            name = item[1:].strip()
            if name not in result:
                raise ValueError(f"{name!r} is not in the defaults, so it cannot be removed")
            result.remove(name)
        elif item not in result:
            result.append(item)
    return tuple(result)


def _parse_query_patterns(text: str) -> tuple[str, ...]:
    return _parse_patterns(text, DEFAULT_REDACT_QUERY)


_ALIAS = "CLAUDE_TRACE_ZERO_LATENCY"

# field -> (ZLTRACE_ name, spec alias or None, parser, expectation shown in warnings)
_ENV: dict[str, tuple[str, str | None, Callable[[str], Any], str]] = {
    "enabled": ("ZLTRACE_ENABLED", None, _parse_bool, "a boolean"),
    "zero_latency": ("ZLTRACE_ZERO_LATENCY", _ALIAS, _parse_bool, "a boolean"),
    "workers": ("ZLTRACE_WORKERS", _ALIAS + "_WORKERS", _parse_int, "an integer from 1 to 64"),
    "buffer_size": (
        "ZLTRACE_BUFFER_SIZE",
        _ALIAS + "_BUFFER_SIZE",
        _parse_int,
        "an integer from 1 to 100000",
    ),
    "flush_ms": (
        "ZLTRACE_FLUSH_MS",
        _ALIAS + "_FLUSH_MS",
        _parse_int,
        "milliseconds, an integer from 1 to 3600000",
    ),
    "deferred_parsing": (
        "ZLTRACE_DEFERRED_PARSING",
        _ALIAS + "_DEFERRED_PARSING",
        _parse_bool,
        "a boolean",
    ),
    "memory_pool_size": (
        "ZLTRACE_MEMORY_POOL_SIZE",
        _ALIAS + "_MEMORY_POOL_SIZE",
        _parse_int,
        "bytes, an integer of at least 65536",
    ),
    "dir": ("ZLTRACE_DIR", None, _parse_dir, "a non-empty path"),
    "fallback_dir": ("ZLTRACE_FALLBACK_DIR", None, _parse_dir, "a non-empty path"),
    "format": ("ZLTRACE_FORMAT", None, _parse_format, "raw or jsonl"),
    "redact_headers": (
        "ZLTRACE_REDACT_HEADERS",
        None,
        _parse_patterns,
        "comma-separated header names or patterns; -name removes a default",
    ),
    "redact_query": (
        "ZLTRACE_REDACT_QUERY",
        None,
        _parse_query_patterns,
        "comma-separated query-parameter names or patterns; -name removes a default",
    ),
    "handle_signals": ("ZLTRACE_HANDLE_SIGNALS", None, _parse_bool, "a boolean"),
    "write_retries": ("ZLTRACE_WRITE_RETRIES", None, _parse_int, "an integer from 0 to 100"),
    "retry_backoff_ms": (
        "ZLTRACE_RETRY_BACKOFF_MS",
        None,
        _parse_int,
        "milliseconds, an integer from 1 to 60000",
    ),
    "health_port": (
        "ZLTRACE_HEALTH_PORT",
        None,
        _parse_port,
        "a port from 0 to 65535 (0: any free port), or off",
    ),
    "health_host": ("ZLTRACE_HEALTH_HOST", None, _parse_dir, "a host name or address"),
    "alerts": ("ZLTRACE_ALERTS", None, _parse_bool, "a boolean"),
    "target_p95_us": (
        "ZLTRACE_TARGET_P95_US",
        None,
        _parse_int,
        "microseconds, an integer from 1 to 10000000",
    ),
    "target_memory": ("ZLTRACE_TARGET_MEMORY", None, _parse_int, "bytes, a positive integer"),
}
# Alert thresholds and durations: ZLTRACE_ALERT_TARGET_S, ZLTRACE_ALERT_MEAN_US, ...
for _field, _expected in (
    ("alert_target_s", "seconds, an integer from 0 to 86400"),
    ("alert_budget_critical_pct", "a percentage, an integer from 1 to 100"),
    ("alert_budget_critical_s", "seconds, an integer from 0 to 86400"),
    ("alert_mean_us", "microseconds, an integer from 1 to 10000000"),
    ("alert_mean_s", "seconds, an integer from 0 to 86400"),
    ("alert_budget_warning_pct", "a percentage, an integer from 1 to 100"),
    ("alert_budget_warning_s", "seconds, an integer from 0 to 86400"),
    ("alert_queue", "events, an integer from 1 to 10000000"),
    ("alert_queue_s", "seconds, an integer from 0 to 86400"),
    ("report_s", "seconds, an integer from 0 to 86400 (0: no report)"),
):
    _ENV[_field] = (f"ZLTRACE_{_field.upper()}", None, _parse_int, _expected)
del _field, _expected

ENV_NAMES: dict[str, Sequence[str]] = {
    f: tuple(n for n in (spec[0], spec[1]) if n) for f, spec in _ENV.items()
}


def resolve_env(environ: Mapping[str, str] | None = None) -> list[Setting]:
    """Resolve every setting from ``environ`` (default ``os.environ``), never raising."""
    env = os.environ if environ is None else environ
    defaults = Config()
    out: list[Setting] = []
    for field, (name, alias, parse, expected) in _ENV.items():
        default = getattr(defaults, field)
        source = name if name in env else alias if alias and alias in env else None
        if source is None:
            out.append(Setting(field, default, "default"))
            continue
        text = env[source]
        try:
            value = parse(text)
            Config(**{field: value})  # the same validation as in code
        except (ValueError, ConfigError) as exc:
            detail = str(exc) if not isinstance(exc, ConfigError) else ""
            problem = (
                f"{source}={text!r} is not valid (expected {expected}"
                f"{'; ' + detail if detail else ''}); using the default {_show(default)}"
            )
            out.append(Setting(field, default, "default", problem))
            continue
        out.append(Setting(field, value, source))
    return out


def _show(value: Any) -> str:
    if value is None:
        return "off"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)
