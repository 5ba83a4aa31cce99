"""``python -m zltrace ship`` against a loopback OTLP receiver that decodes every payload with
the official definitions: delivery, encodings, retries, splits, dead letters, refusals,
checkpoints, the OTEL_* variables, and that the shipper's own traffic is never traced."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import urllib3
from support.llm_fake import FakeLLM
from support.trace import records

import zltrace
from zltrace._cli.commands import main
from zltrace._cli.ship import endpoint, otel_headers
from zltrace._export.otlp_span import span_ids, trace_identity

pytest.importorskip(
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
    reason="opentelemetry-proto is not installed (pip install -e '.[test]')",
)
from support.otlp import OTLPReceiver, Received, attributes


def make_trace(trace_dir: Path, n_llm: int = 2, n_plain: int = 2) -> list[zltrace.Exchange]:
    """A closed trace of LLM calls (Anthropic, Chat Completions) and plain GETs."""
    tracer = zltrace.Tracer(zltrace.Config(dir=str(trace_dir), flush_ms=10))
    with FakeLLM() as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        for i in range(n_llm):
            path = "/v1/messages" if i % 2 == 0 else "/v1/chat/completions"
            body = json.dumps({"model": f"m{i}", "stream": i % 4 < 2, "messages": []})
            pool.request("POST", path, body=body.encode())
        for i in range(n_plain):
            pool.request("GET", f"/plain/{i}")
    return records(tracer)


def expected_ids(exchanges: list[zltrace.Exchange]) -> set[bytes]:
    """The span ids the shipper must deliver for ``exchanges``."""
    return {span_ids(trace_identity(ex.source[0]), ex.id, ex.logical_id)[1] for ex in exchanges}


def ship(*args: str) -> int:
    """Run the CLI in-process."""
    return main(["ship", *args])


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_ship_delivers_every_exchange_once(tmp_path: Path, encoding: str) -> None:
    """Each exchange arrives as one valid span, gzip-compressed, in either encoding."""
    exchanges = make_trace(tmp_path / "t")
    with OTLPReceiver() as rx:
        assert ship(str(tmp_path / "t"), "--otlp", rx.url, "--encoding", encoding) == 0
    assert rx.problems == []
    assert sorted(s.span_id for s in rx.spans) == sorted(expected_ids(exchanges))
    assert {r.headers["content-encoding"] for r in rx.requests} == {"gzip"}
    models = {attributes(s).get("gen_ai.request.model") for s in rx.spans}
    assert models == {"m0", "m1", None}


def test_no_gzip_and_small_batches(tmp_path: Path) -> None:
    """--no-gzip sends plain bodies; --batch bounds the spans per request."""
    exchanges = make_trace(tmp_path / "t", n_llm=3, n_plain=4)
    with OTLPReceiver() as rx:
        assert ship(str(tmp_path / "t"), "--otlp", rx.url, "--no-gzip", "--batch", "3") == 0
    assert "content-encoding" not in rx.requests[0].headers
    assert [len(r.spans) for r in rx.requests] == [3, 3, 1]
    assert len(rx.spans) == len(exchanges)


def test_transient_answers_are_retried_honouring_retry_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """503 and 429 (with Retry-After) are sent again until accepted; nothing lost or doubled;
    --stats counts it on stderr."""
    exchanges = make_trace(tmp_path / "t")
    answers = [(503, {"Retry-After": "0"}, b""), (429, {"Retry-After": "0"}, b"")]

    def script(r: Received) -> Any:
        return answers.pop(0) if answers else None

    with OTLPReceiver(script) as rx:
        assert ship(str(tmp_path / "t"), "--otlp", rx.url, "--stats") == 0
    assert rx.attempts == 3
    assert sorted(s.span_id for s in rx.spans) == sorted(expected_ids(exchanges))
    err = capsys.readouterr().err
    assert f"ship: done read {len(exchanges)}, accepted {len(exchanges)}," in err
    assert "requests 3, retries 2," in err


def test_400_splits_then_dead_letters_only_the_bad_span(tmp_path: Path) -> None:
    """A 400 batch is halved until the one span refused alone is dead-lettered; exit 5."""
    exchanges = make_trace(tmp_path / "t", n_plain=5)

    def script(r: Received) -> Any:
        if any(attributes(s)["url.full"].endswith("/plain/3") for s in r.spans):
            return (400, {}, b"bad span")
        return None

    dead = tmp_path / "dead.jsonl"
    with OTLPReceiver(script) as rx:
        code = ship(str(tmp_path / "t"), "--otlp", rx.url, "--dead-letter", str(dead))
    assert code == 5
    assert len(rx.spans) == len(exchanges) - 1
    lines = [json.loads(x) for x in dead.read_text().splitlines()]
    assert [(x["status"], x["response"]) for x in lines] == [(400, "bad span")]
    assert stat.S_IMODE(dead.stat().st_mode) == 0o600


def test_413_splits_until_accepted(tmp_path: Path) -> None:
    """413 for more than two spans: the batch is split and every span still arrives."""
    exchanges = make_trace(tmp_path / "t", n_plain=5)

    def script(r: Received) -> Any:
        return (413, {}, b"too large") if len(r.spans) > 2 else None

    with OTLPReceiver(script) as rx:
        assert ship(str(tmp_path / "t"), "--otlp", rx.url) == 0
    assert sorted(s.span_id for s in rx.spans) == sorted(expected_ids(exchanges))
    assert max(len(r.spans) for r in rx.requests) <= 2


def test_refusal_stops_without_acknowledging(tmp_path: Path) -> None:
    """401 is no data problem: exit 4, checkpoint not moved, the next run sends it all."""
    exchanges = make_trace(tmp_path / "t")
    cp = tmp_path / "cp.json"
    with OTLPReceiver(lambda r: (401, {}, b"who are you")) as rx:
        assert ship(str(tmp_path / "t"), "--otlp", rx.url, "--checkpoint", str(cp)) == 4
    with OTLPReceiver() as rx:
        assert ship(str(tmp_path / "t"), "--otlp", rx.url, "--checkpoint", str(cp)) == 0
    assert len(rx.spans) == len(exchanges)


def test_unreachable_backend_gives_up_after_the_limit(tmp_path: Path) -> None:
    """Connection refused, retried until --give-up-after: exit 3, nothing acknowledged."""
    make_trace(tmp_path / "t", n_llm=0, n_plain=1)
    with OTLPReceiver() as rx:
        url = rx.url  # a port that is closed once the receiver is gone
    cp = tmp_path / "cp.json"
    args = ["--otlp", url, "--checkpoint", str(cp), "--give-up-after", "0.3"]
    assert ship(str(tmp_path / "t"), *args) == 3
    assert not cp.exists() or json.loads(cp.read_text())["files"] == {}


def test_checkpoint_resumes_where_acknowledged(tmp_path: Path) -> None:
    """A second run sends nothing; a new trace file is all a third run sends; 0600."""
    first = make_trace(tmp_path / "t")
    cp = tmp_path / "cp.json"
    with OTLPReceiver() as rx:
        assert ship(str(tmp_path / "t"), "--otlp", rx.url, "--checkpoint", str(cp)) == 0
        assert ship(str(tmp_path / "t"), "--otlp", rx.url, "--checkpoint", str(cp)) == 0
        assert len(rx.spans) == len(first)
        second = make_trace(tmp_path / "t", n_llm=1, n_plain=1)
        assert ship(str(tmp_path / "t"), "--otlp", rx.url, "--checkpoint", str(cp)) == 0
    assert sorted(s.span_id for s in rx.spans) == sorted(expected_ids(first + second))
    assert stat.S_IMODE(cp.stat().st_mode) == 0o600
    assert json.loads(cp.read_text())["counters"]["accepted"] == len(first) + len(second)


def test_endpoint_and_header_variables() -> None:
    """--otlp and the generic variable get /v1/traces; the traces variable is used as is."""
    assert endpoint("http://h:4318", {}) == "http://h:4318/v1/traces"
    assert endpoint("http://h:4318/v1/traces", {}) == "http://h:4318/v1/traces"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://g:1/base/"}
    assert endpoint(None, env) == "http://g:1/base/v1/traces"
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "http://t:2/custom"
    assert endpoint(None, env) == "http://t:2/custom"
    assert endpoint(None, {}) == "http://localhost:4318/v1/traces"
    assert otel_headers("a=1, api-key=x%3Dy", "X") == {"a": "1", "api-key": "x=y"}
    with pytest.raises(ValueError, match="key=value"):
        otel_headers("novalue", "X")


def test_variables_reach_the_request_and_own_traffic_is_not_traced(tmp_path: Path) -> None:
    """Under ``zltrace run``, OTEL_* set endpoint, headers and service name, and the
    shipper's POSTs are not in the run's trace."""
    make_trace(tmp_path / "t", n_llm=1, n_plain=0)
    own = tmp_path / "own"
    with OTLPReceiver() as rx:
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": rx.url + "/v1/traces",
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20tok,x-team=obs",
            "OTEL_SERVICE_NAME": "checkout",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        }
        cmd = [sys.executable, "-m", "zltrace", "run", "--dir", str(own), "--"]
        cmd += [sys.executable, "-m", "zltrace", "ship", str(tmp_path / "t")]
        proc = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (req,) = rx.requests
    assert req.headers["authorization"] == "Bearer tok" and req.headers["x-team"] == "obs"
    assert req.headers["content-type"] == "application/json"
    resource = req.message.resource_spans[0].resource
    res = {kv.key: kv.value.string_value for kv in resource.attributes}
    assert res["service.name"] == "checkout"
    traced = list(zltrace.read(own)) if own.exists() else []
    assert [ex.request.url for ex in traced if "/v1/traces" in ex.request.url] == []


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    """A path that does not exist: exit 2."""
    assert ship(str(tmp_path / "nope"), "--otlp", "http://127.0.0.1:9") == 2


def test_tail_prints_one_line_per_exchange(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tail --once: a line per exchange; --jsonl: one JSON object each, with model and tokens."""
    exchanges = make_trace(tmp_path / "t", n_llm=2, n_plain=1)
    assert main(["tail", "--once", str(tmp_path / "t")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(exchanges)
    assert " POST " in lines[0] and " 200 complete " in lines[0] and "in=" in lines[0]
    assert main(["tail", "--once", "--jsonl", str(tmp_path / "t")]) == 0
    docs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [d["id"] for d in docs] == [ex.id for ex in exchanges]
    assert docs[0]["model"] and docs[0]["output_tokens"] > 0 and docs[2]["model"] is None
