"""End to end against a real OpenTelemetry backend: Arize Phoenix from PyPI, started here on
free ports with a temporary working directory. LLM exchanges are recorded with zltrace,
shipped with ``python -m zltrace ship``, and read back over Phoenix's REST API: every
exchange is there with its model and token counts, once, even after a second send.

Phoenix is found through ``ZLTRACE_PHOENIX`` (its ``phoenix`` executable, e.g. in a venv of
its own, as ``.ci/run`` makes; ``none`` skips: that CI leg runs it elsewhere), else beside
this interpreter (``pip install -e '.[e2e]'``). Missing, it is a skip on a workstation and a
failure under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from support.llm_fake import FakeLLM
from support.trace import records

import zltrace
from zltrace._export.otlp_span import span_ids, trace_identity

PROJECT = "zltrace-e2e"


def phoenix_executable() -> str:
    """The ``phoenix`` command, or a skip (a failure under CI=true) saying why not."""
    configured = os.environ.get("ZLTRACE_PHOENIX", "")
    if configured == "none":
        pytest.skip("ZLTRACE_PHOENIX=none: this run leaves the Phoenix test to another leg")
    found = configured or shutil.which("phoenix", path=str(Path(sys.executable).parent))
    if found and os.access(found, os.X_OK):
        return found
    why = f"Phoenix is not installed ({configured or 'phoenix'} not found)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why}; CI=true: the end-to-end test must run")
    pytest.skip(f"{why}: pip install -e '.[e2e]', or set ZLTRACE_PHOENIX to its executable")


def free_port() -> int:
    """A port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(fn: Any, timeout: float, what: str) -> Any:
    """``fn()`` until it returns something truthy, within ``timeout`` seconds (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = fn()
        except (urllib3.exceptions.HTTPError, ValueError):
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Phoenix server on free ports; yields its base URL."""
    exe = phoenix_executable()
    work = tmp_path_factory.mktemp("phoenix")
    port = free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(work),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(free_port()),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = open(work / "server.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([exe, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    http = urllib3.PoolManager(retries=False, timeout=5)
    try:

        def healthy() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"phoenix serve exited {proc.returncode}; see {work}/server.log")
            return http.request("GET", url + "/healthz").status == 200

        poll(healthy, 300, "phoenix serve to answer /healthz")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def project_spans(url: str, project: str) -> dict[str, dict[str, Any]]:
    """Every span of the project, by span id (hex)."""
    http = urllib3.PoolManager(retries=False, timeout=10)
    out: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        q = f"{url}/v1/projects/{project}/spans?limit=100" + (f"&cursor={cursor}" if cursor else "")
        rs = http.request("GET", q)
        if rs.status == 404:
            return out  # the project appears with its first span
        doc = json.loads(rs.data)
        for span in doc["data"]:
            out[span["context"]["span_id"]] = span
        cursor = doc.get("next_cursor")
        if not cursor:
            return out


def ship(trace: Path, url: str, project: str, *extra: str) -> None:
    """Ship ``trace`` to Phoenix (its project chosen by a resource attribute)."""
    env = {
        **os.environ,
        "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}",
        "OTEL_SERVICE_NAME": "zltrace-e2e",
    }
    cmd = [sys.executable, "-m", "zltrace", "ship", str(trace), "--otlp", url, *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_phoenix_holds_every_llm_exchange_with_model_and_tokens(
    phoenix: str, tracer: zltrace.Tracer, tmp_path: Path
) -> None:
    """Recorded, shipped, queried back: each exchange once, model and token counts intact."""
    with FakeLLM() as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        for path in ("/v1/messages", "/v1/chat/completions"):
            for stream in (False, True):
                body = json.dumps({"model": "asked", "stream": stream, "messages": []})
                pool.request("POST", path, body=body.encode())
    exchanges = records(tracer)
    assert len(exchanges) == 4
    trace = Path(tracer.path).parent
    # A project per run: the server is shared by the runs of both trace formats.
    project = f"{PROJECT}-{tracer.config.format}"
    ship(trace, phoenix, project, "--encoding", "protobuf")
    wanted = {
        span_ids(trace_identity(ex.source[0]), ex.id, ex.logical_id)[1].hex(): ex
        for ex in exchanges
    }
    spans = poll(
        lambda: (s := project_spans(phoenix, project)) and set(wanted) <= set(s) and s,
        120,
        "Phoenix to hold every shipped span",
    )
    assert set(spans) == set(wanted)
    for sid, ex in wanted.items():
        a = spans[sid]["attributes"]
        usage = ex.usage()
        assert usage is not None and usage.output_tokens > 0
        assert spans[sid]["span_kind"] == "LLM"
        assert a["gen_ai.response.model"] == a["llm.model_name"] == ex.model()
        assert a["gen_ai.request.model"] == "asked"
        assert a["llm.token_count.prompt"] == usage.total_input_tokens
        assert a["llm.token_count.completion"] == usage.output_tokens
        assert a["gen_ai.usage.output_tokens"] == usage.output_tokens
        assert a["http.response.status_code"] == 200
    # A resend (no checkpoint: everything again) keeps one copy of each: ids are stable.
    # (Phoenix takes OTLP/HTTP in protobuf only: JSON is answered 415.)
    ship(trace, phoenix, project)
    time.sleep(1)  # let Phoenix ingest the resend before counting (not a timing assertion)
    assert set(project_spans(phoenix, project)) == set(wanted)
