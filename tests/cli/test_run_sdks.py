"""``python -m zltrace run`` on an unmodified program that uses httpx, httpx2 and the LLM SDKs.

What is pinned: the program prints the same thing traced and untraced; every exchange it
makes (httpx sync and async, httpx2 where it exists, the anthropic and openai SDKs
streaming) is in the trace, with the body exactly as the server sent it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.llm_fake import FakeLLM
from support.llm_fixtures import ANTHROPIC_TEXT, CHAT_TEXT

import zltrace

pytest.importorskip("httpx", reason="httpx is in the test extra")
pytest.importorskip("anthropic", reason="anthropic is in the test extra")
pytest.importorskip("openai", reason="openai is in the test extra")

APP = """
import asyncio, json, sys
import anthropic, httpx, openai

base = sys.argv[1]
ask = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
out = {}
with httpx.Client() as c:
    with c.stream("POST", base + "/v1/chat/completions", json=ask) as r:
        out["httpx"] = b"".join(r.iter_raw()).decode()

async def main():
    async with httpx.AsyncClient() as c:
        async with c.stream("POST", base + "/v1/messages", json=ask) as r:
            return b"".join([chunk async for chunk in r.aiter_raw()]).decode()
out["httpx_async"] = asyncio.run(main())
try:
    import httpx2
except ImportError:
    pass
else:
    with httpx2.Client() as c:
        out["httpx2"] = c.post(base + "/v1/chat/completions", json=ask).text
a = anthropic.Anthropic(api_key="sk-ant-secret", base_url=base, max_retries=0)
events = a.messages.create(model="m", max_tokens=10, stream=True,
                           messages=[{"role": "user", "content": "Hi"}])
out["anthropic"] = [e.to_dict() for e in events]
o = openai.OpenAI(api_key="sk-secret", base_url=base + "/v1", max_retries=0)
chunks = o.chat.completions.create(model="m", stream=True,
                                   messages=[{"role": "user", "content": "Hi"}])
out["openai"] = [c.to_dict() for c in chunks]
print(json.dumps(out, sort_keys=True))
"""


def _run(argv: list[str], url: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*argv, url], capture_output=True, timeout=120)


@pytest.mark.slow
def test_run_traces_httpx_and_sdks_unchanged(tmp_path: Path) -> None:
    """httpx, httpx2 and both SDKs print the same traced; each exchange is recorded byte-exact."""
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(APP))
    traces = tmp_path / "traces"
    with FakeLLM() as srv:
        bare = _run([sys.executable, str(app)], srv.url)
        bare_sent = len(srv.sent)
        traced = _run(
            [sys.executable, "-m", "zltrace", "run", "--dir", str(traces), "--", str(app)], srv.url
        )
        sent = srv.sent[bare_sent:]
    assert bare.returncode == 0, bare.stderr.decode()
    assert traced.returncode == 0, traced.stderr.decode()
    assert traced.stdout == bare.stdout
    got = [ex for p in sorted(traces.iterdir()) for ex in zltrace.read(str(p))]
    assert len(got) == len(sent) == bare_sent
    assert sorted(ex.response.raw_body for ex in got if ex.response) == sorted(sent)
    assert all(ex.outcome == "complete" for ex in got)
    messages = [ex.message() for ex in got]
    assert messages.count(ANTHROPIC_TEXT.expected()) == 2  # httpx async, the anthropic SDK
    assert CHAT_TEXT.expected() in messages
    # The SDKs' credentials were redacted before the trace reached the disk.
    text = b"".join(p.read_bytes() for p in traces.iterdir())
    assert b"sk-ant-secret" not in text and b"sk-secret" not in text
