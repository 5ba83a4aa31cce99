"""Configuration: validation in code, environment parsing with aliases, warnings, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import warnings

import pytest

import zltrace
from zltrace.config import DEFAULT_REDACT_HEADERS, resolve_env


def test_defaults_match_the_spec() -> None:
    """The defaults are the spec's: zero latency on, 1 worker, 100 records, 100 ms, 10 MB."""
    c = zltrace.Config()
    assert (c.enabled, c.zero_latency, c.workers, c.buffer_size, c.flush_ms) == (
        True,
        True,
        1,
        100,
        100,
    )
    assert c.deferred_parsing is True
    assert c.memory_pool_size == 10 * 1024 * 1024
    assert c.dir == ".zltrace"
    assert c.redact_headers == DEFAULT_REDACT_HEADERS
    assert c.fallback_dir == os.path.join(tempfile.gettempdir(), f"zltrace-{os.geteuid()}")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("buffer_size", 0),
        ("buffer_size", "100"),
        ("flush_ms", -1),
        ("workers", True),
        ("zero_latency", "yes"),
        ("memory_pool_size", 10),
        ("dir", ""),
        ("fallback_dir", ""),
        ("redact_headers", "authorization"),
    ],
)
def test_bad_value_in_code_raises_config_error(field: str, value: object) -> None:
    """Config(...) with a bad value raises ConfigError (a ValueError) naming field and value."""
    with pytest.raises(zltrace.ConfigError) as info:
        zltrace.Config(**{field: value})  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, zltrace.ZltraceError)
    assert field in str(info.value)
    assert repr(value) in str(info.value)


def test_evolve_validates() -> None:
    """evolve() returns a changed copy and validates like the constructor."""
    c = zltrace.Config()
    assert c.evolve(flush_ms=5).flush_ms == 5
    assert c.flush_ms == 100
    with pytest.raises(zltrace.ConfigError):
        c.evolve(flush_ms=0)


def test_env_values_are_parsed() -> None:
    """Every ZLTRACE_ variable is read and converted."""
    env = {
        "ZLTRACE_ENABLED": "false",
        "ZLTRACE_ZERO_LATENCY": "0",
        "ZLTRACE_WORKERS": "2",
        "ZLTRACE_BUFFER_SIZE": "50",
        "ZLTRACE_FLUSH_MS": "20",
        "ZLTRACE_DEFERRED_PARSING": "off",
        "ZLTRACE_MEMORY_POOL_SIZE": "1048576",
        "ZLTRACE_DIR": "/tmp/x",
        "ZLTRACE_FALLBACK_DIR": "/var/tmp/zl",
        "ZLTRACE_REDACT_HEADERS": "x-session,-cookie",
        "ZLTRACE_HANDLE_SIGNALS": "no",
    }
    c = zltrace.Config.from_env(env)
    assert (c.enabled, c.zero_latency, c.workers, c.buffer_size, c.flush_ms) == (
        False,
        False,
        2,
        50,
        20,
    )
    assert (c.deferred_parsing, c.memory_pool_size, c.dir, c.handle_signals) == (
        False,
        1048576,
        "/tmp/x",
        False,
    )
    assert c.fallback_dir == "/var/tmp/zl"
    assert "x-session" in c.redact_headers
    assert "cookie" not in c.redact_headers
    assert "authorization" in c.redact_headers


def test_spec_aliases_are_accepted_and_zltrace_names_win() -> None:
    """CLAUDE_TRACE_ZERO_LATENCY_* names work; the ZLTRACE_ name wins when both are set."""
    c = zltrace.Config.from_env(
        {
            "CLAUDE_TRACE_ZERO_LATENCY_BUFFER_SIZE": "7",
            "CLAUDE_TRACE_ZERO_LATENCY": "false",
            "CLAUDE_TRACE_ZERO_LATENCY_FLUSH_MS": "9",
            "ZLTRACE_FLUSH_MS": "11",
        }
    )
    assert (c.buffer_size, c.zero_latency, c.flush_ms) == (7, False, 11)
    sources = {
        s.field: s.source
        for s in resolve_env({"CLAUDE_TRACE_ZERO_LATENCY_FLUSH_MS": "9", "ZLTRACE_FLUSH_MS": "11"})
    }
    assert sources["flush_ms"] == "ZLTRACE_FLUSH_MS"


@pytest.mark.parametrize(
    ("name", "value", "default"),
    [
        ("ZLTRACE_BUFFER_SIZE", "lots", "100"),
        ("ZLTRACE_FLUSH_MS", "0", "100"),
        ("ZLTRACE_ZERO_LATENCY", "maybe", "true"),
        ("CLAUDE_TRACE_ZERO_LATENCY_MEMORY_POOL_SIZE", "12", "10485760"),
        ("ZLTRACE_REDACT_HEADERS", "-x-not-a-default", "authorization"),
        ("ZLTRACE_FALLBACK_DIR", "", tempfile.gettempdir()),
        ("ZLTRACE_FORMAT", "binary", "jsonl"),
    ],
)
def test_bad_env_value_warns_naming_it(name: str, value: str, default: str) -> None:
    """A bad environment value warns (never raises), naming variable, value and default."""
    with pytest.warns(zltrace.ZltraceWarning) as rec:
        c = zltrace.Config.from_env({name: value})
    message = str(rec[0].message)
    assert name in message
    assert repr(value) in message
    assert default in message
    assert c == zltrace.Config()


@pytest.mark.parametrize(("value", "fmt"), [("raw", "raw"), (" JSONL ", "jsonl")])
def test_the_trace_format_comes_from_zltrace_format(value: str, fmt: str) -> None:
    """ZLTRACE_FORMAT picks the trace format (case and spaces aside); Config checks it."""
    assert zltrace.Config.from_env({"ZLTRACE_FORMAT": value}).format == fmt
    with pytest.raises(zltrace.ConfigError, match=r"Config\.format"):
        zltrace.Config(format="binary")


def test_good_env_gives_no_warning() -> None:
    """A clean environment gives the defaults silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert zltrace.Config.from_env({}) == zltrace.Config()


def _config_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zltrace", "config", "--check"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_config_shows_sources_and_check_fails_on_bad_values() -> None:
    """`python -m zltrace config` lists values and sources; --check exits 2 on a bad value."""
    env = {"ZLTRACE_FLUSH_MS": "25", "PATH": "/usr/bin:/bin"}
    out = _config_check(env)
    assert out.returncode == 0, out.stderr
    assert "flush_ms" in out.stdout
    assert "ZLTRACE_FLUSH_MS" in out.stdout
    env["ZLTRACE_BUFFER_SIZE"] = "-3"
    out = _config_check(env)
    assert out.returncode == 2
    assert "ZLTRACE_BUFFER_SIZE='-3'" in out.stderr


def test_cli_help_lists_subcommands() -> None:
    """`python -m zltrace --help` lists the subcommands."""
    out = subprocess.run(
        [sys.executable, "-m", "zltrace", "--help"], capture_output=True, text=True, check=True
    )
    assert "bench" in out.stdout
    assert "config" in out.stdout


def test_tracer_rejects_a_non_config() -> None:
    """Tracer(config=...) with something else raises ConfigError."""
    with pytest.raises(zltrace.ConfigError):
        zltrace.Tracer({"dir": "x"})  # type: ignore[arg-type]
