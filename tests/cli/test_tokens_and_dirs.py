"""`stats` tokens per model and per host; directories of trace directories; no trace found.

LLM exchanges of four APIs (Bedrock Converse and ConverseStream, Anthropic Messages, OpenAI
Chat Completions) are traced from loopback servers on two ports, so the per-host split shows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import urllib3
from support import bedrock as B
from support.llm_fixtures import ANTHROPIC_TEXT, CHAT_TEXT
from support.server import ScriptedServer, response, sse_response

import zltrace
from zltrace._cli import main


def llm_trace(tracer: zltrace.Tracer) -> tuple[str, str, str]:
    """Trace Bedrock on one server and Anthropic + OpenAI streams on another; return
    (trace path, Bedrock host, other host)."""
    with (
        ScriptedServer(B.reply) as bedrock,
        ScriptedServer(
            [
                sse_response(ANTHROPIC_TEXT.events),
                sse_response(CHAT_TEXT.events),
                response(404, b""),
            ]
        ) as other,
    ):
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(bedrock.host, bedrock.port), tracer=tracer)
        model = "anthropic.claude-3-5-sonnet-20240620-v1%3A0"
        pool.request("POST", f"/model/{model}/converse", body=b"{}")
        pool.request("POST", f"/model/{model}/converse", body=b"{}")
        pool.request("POST", f"/model/{model}/converse-stream", body=b"{}")
        pool2 = zltrace.wrap(urllib3.HTTPConnectionPool(other.host, other.port), tracer=tracer)
        pool2.request("POST", "/v1/messages", body=b"{}")
        pool2.request("POST", "/v1/chat/completions", body=b"{}")
        pool2.request("GET", "/nothing")
    assert tracer.close(timeout=10)
    return tracer.path, f"127.0.0.1:{bedrock.port}", f"127.0.0.1:{other.port}"


def test_stats_json_tokens_per_model_and_host(
    tracer: zltrace.Tracer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stats --json`: token sums in all, per model (from the URL path too) and per host."""
    path, bedrock, other = llm_trace(tracer)
    assert main(["stats", "--json", path]) == 0
    tokens = json.loads(capsys.readouterr().out)["tokens"]
    converse = {"calls": 2, "input": 28, "output": 18, "cache_read": 0, "cache_write": 0}
    stream = {"calls": 1, "input": 412, "output": 87, "cache_read": 1000, "cache_write": 0}
    assert tokens["by_model"]["anthropic.claude-3-5-sonnet-20240620-v1:0"] == {
        "calls": 3,
        **{k: converse[k] + stream[k] for k in ("input", "output", "cache_read", "cache_write")},
    }
    anthropic_usage = ANTHROPIC_TEXT.usage
    chat_usage = CHAT_TEXT.usage
    assert anthropic_usage is not None and chat_usage is not None
    assert tokens["by_model"][ANTHROPIC_TEXT.model]["input"] == anthropic_usage.input_tokens
    assert tokens["by_model"][CHAT_TEXT.model]["cache_read"] == chat_usage.cache_read_tokens
    assert tokens["by_host"][bedrock]["calls"] == 3
    assert tokens["by_host"][other]["calls"] == 2  # the 404 reported no usage
    assert tokens["calls"] == 5
    assert tokens["output"] == 18 + 87 + anthropic_usage.output_tokens + chat_usage.output_tokens
    # Largest first: the cached ConverseStream makes the Bedrock model and host lead.
    assert next(iter(tokens["by_model"])) == "anthropic.claude-3-5-sonnet-20240620-v1:0"
    assert next(iter(tokens["by_host"])) == bedrock


def test_stats_table_shows_tokens(
    tracer: zltrace.Tracer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stats` prints a tokens block: all, by model, by host."""
    path, bedrock, _ = llm_trace(tracer)
    assert main(["stats", path]) == 0
    out = capsys.readouterr().out
    assert "cache_read" in out and "by model:" in out and "by host:" in out
    assert "  anthropic.claude-3-5-sonnet-20240620-v1:0" in out and f"  {bedrock}" in out
    assert "1,000" in out  # the ConverseStream's cache reads


def test_stats_without_llm_usage_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trace without LLM calls: the tokens block says no exchange reported usage."""
    doc = zltrace.summarize([])
    assert doc["tokens"] == {
        "calls": 0,
        "input": 0,
        "output": 0,
        "cache_read": 0,
        "cache_write": 0,
        "by_model": {},
        "by_host": {},
    }
    from zltrace._export.stats import format_stats

    assert "no exchange reported LLM usage" in format_stats(doc)


def test_directories_of_trace_directories_are_read(
    tracer: zltrace.Tracer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory holding trace directories (nested) is read through, by every command."""
    path, _, _ = llm_trace(tracer)
    root = tmp_path / "runs"
    for sub in ("a", "b/c"):
        (root / sub).mkdir(parents=True)
        for f in Path(path).parent.iterdir():
            shutil.copy(f, root / sub / f.name)
    assert len(list(zltrace.read(root))) == 12
    assert main(["stats", "--json", str(root)]) == 0
    assert json.loads(capsys.readouterr().out)["exchanges"] == 12
    assert main(["export", "--har", str(root), "-o", str(tmp_path / "out.har")]) == 0
    har = json.loads((tmp_path / "out.har").read_text())
    assert len(har["log"]["entries"]) == 12
    assert main(["report", str(root), "-o", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").read_text().count('class="zl-s"') == 12


@pytest.mark.parametrize(
    "command",
    [["stats"], ["stats", "--json"], ["export", "--har"], ["export", "--claude-trace"], ["report"]],
)
def test_no_trace_file_is_an_error_for_every_command(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory with no trace file in it or below: an error naming it, exit 2, no output."""
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("x")
    out = tmp_path / "out"
    assert (
        main(
            [*command, str(empty), "-o", str(out)]
            if command[0] != "stats"
            else [
                *command,
                str(empty),
            ]
        )
        == 2
    )
    captured = capsys.readouterr()
    assert "no trace files" in captured.err and str(empty) in captured.err
    assert captured.out == "" and not out.exists()
