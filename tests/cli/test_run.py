"""``python -m zltrace run``: an unmodified program traced from its first import."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import urllib3
from support.server import ScriptedServer, response

import zltrace

pytest.importorskip("requests", reason="requests is in the test extra")
pytest.importorskip("boto3", reason="boto3 is in the test extra")

APP = """
import os, subprocess, sys
import urllib3, requests, boto3

base = sys.argv[1]
print("stdin:", sys.stdin.read().strip())
print(urllib3.PoolManager().request("GET", base + "/urllib3").data.decode())
print(requests.get(base + "/requests").text)
client = boto3.client("bedrock-runtime", endpoint_url=base, region_name="us-east-1",
                      aws_access_key_id="t", aws_secret_access_key="t")
print(client.invoke_model(modelId="m", body=b"{}")["body"].read().decode())
child = "import sys, urllib3; urllib3.PoolManager().request('GET', sys.argv[1] + '/child')"
subprocess.run([sys.executable, "-c", child, base], check=True)
sys.exit(7)
"""


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["raw", "jsonl"], ids=["default-raw", "jsonl"])
def test_run_traces_unmodified_program_and_its_child(tmp_path: Path, fmt: str) -> None:
    """urllib3, requests, boto3 and a child process recorded; stdin, stdout, exit code kept
    (the default format, and JSON lines through ZLTRACE_FORMAT)."""
    env = {k: v for k, v in os.environ.items() if k != "ZLTRACE_FORMAT"}
    if fmt == "jsonl":
        env["ZLTRACE_FORMAT"] = "jsonl"
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(APP))
    traces = tmp_path / "traces"
    report = tmp_path / "report.html"
    replies = [response(200, b"r%d" % i, [("Content-Type", "application/json")]) for i in range(4)]
    with ScriptedServer(replies) as srv:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "zltrace",
                "run",
                "--dir",
                str(traces),
                "--report",
                str(report),
                "--",
                str(app),
                f"http://{srv.host}:{srv.port}",
            ],
            input=b"hello\n",
            capture_output=True,
            timeout=120,
            env=env,
        )
    assert proc.returncode == 7, proc.stderr.decode()
    assert proc.stdout.decode().split() == ["stdin:", "hello", "r0", "r1", "r2"]
    last = proc.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("zltrace: 4 exchanges in 2 trace file(s)") and str(report) in last
    files = sorted(traces.iterdir())
    assert len(files) == 2 and all(
        p.suffix == (".zlog" if fmt == "raw" else ".jsonl") for p in files
    )
    got = [ex for p in files for ex in zltrace.read(str(p))]
    paths = sorted(ex.request.url.rsplit("/", 1)[-1] for ex in got)
    assert paths == ["child", "invoke", "requests", "urllib3"]
    assert all(ex.outcome == "complete" for ex in got)
    assert report.stat().st_size > 0


def test_run_python_dash_m_and_standard_mode(tmp_path: Path) -> None:
    """``-- python -m module`` runs as given; --no-zero-latency reaches the child."""
    (tmp_path / "zl_probe_mod.py").write_text(
        "import os, sys, zltrace\n"
        "print(os.environ['ZLTRACE_ZERO_LATENCY'], zltrace.default_tracer().config.zero_latency)\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "zltrace",
            "run",
            "--no-zero-latency",
            "--dir",
            str(tmp_path / "t"),
            "--",
            sys.executable,
            "-m",
            "zl_probe_mod",
        ],
        capture_output=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().split() == ["0", "False"]
    assert "zltrace: 0 exchanges" in proc.stderr.decode()


def test_run_without_command_is_usage_error() -> None:
    """``zltrace run`` with no command exits 2 with a usage line."""
    proc = subprocess.run([sys.executable, "-m", "zltrace", "run"], capture_output=True, timeout=60)
    assert proc.returncode == 2 and b"no command" in proc.stderr


SIGNALLED = """
import signal, sys, time
def stop(signum, frame):
    print("got", signum, flush=True)
    sys.exit(3)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(60)
"""


def test_run_forwards_sigterm_to_the_program(tmp_path: Path) -> None:
    """SIGTERM sent to ``zltrace run`` reaches the program, whose exit status comes back."""
    import signal

    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(SIGNALLED))
    proc = subprocess.Popen(
        [sys.executable, "-m", "zltrace", "run", "--dir", str(tmp_path / "t"), "--", str(app)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert out == b"got %d\n" % signal.SIGTERM
    assert proc.returncode == 3


@pytest.mark.parametrize("fmt", ["jsonl", "raw"])
def test_run_counts_an_exchange_in_a_trace_and_its_dead_letters_once(
    tmp_path: Path, fmt: str
) -> None:
    """The closing line counts an exchange found in a trace file and in its dead-letter file
    (a re-drive cut short) once, as ``read()`` yields it."""
    tracer = zltrace.Tracer(zltrace.Config(dir=str(tmp_path / "src"), flush_ms=10, format=fmt))
    with ScriptedServer([response(200, b"ok")]) as srv:
        pool = tracer.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port))
        for name in ("a", "b"):
            assert pool.request("GET", "/" + name).data == b"ok"
        pool.close()
    assert tracer.close(timeout=10)
    trace = Path(tracer.path)
    dead = trace.name.removesuffix(trace.suffix) + ".deadletter" + trace.suffix
    out = tmp_path / "traces"
    # The program leaves the trace and the same records as its dead letters in the directory.
    copy = (
        "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2]); "
        "shutil.copy(sys.argv[1], sys.argv[3])"
    )
    out.mkdir()
    program = [sys.executable, "-c", copy, str(trace), str(out / trace.name), str(out / dead)]
    proc = subprocess.run(
        [sys.executable, "-m", "zltrace", "run", "--dir", str(out), "--", *program],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list(zltrace.read(out))) == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("zltrace: 2 exchanges in 2 trace file(s)"), last
