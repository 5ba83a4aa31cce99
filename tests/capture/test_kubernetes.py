"""The kubernetes client, traced against a loopback fake of the API server.

What is pinned: ``wrap(api_client)`` (or an API object holding one) traces the client in
place; ``install()`` traces it with no code change, pools made later included, and
``uninstall()`` returns it to bare; a list and a streamed watch give the app the same result
traced and untraced; and the trace holds each request and response exactly as on the wire,
the watch's newline-delimited JSON events included.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from support.server import Request, ScriptedServer, Step, chunk_frame, pause, response, send
from support.trace import records

import zltrace

kubernetes = pytest.importorskip("kubernetes", reason="kubernetes is in the test extra")

PODS = "/api/v1/namespaces/default/pods"


def _pod(name: str, phase: str) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
        "status": {"phase": phase},
    }


POD_LIST = {
    "kind": "PodList",
    "apiVersion": "v1",
    "metadata": {"resourceVersion": "100"},
    "items": [_pod("web-1", "Running"), _pod("web-2", "Pending")],
}
EVENTS = [
    {"type": "ADDED", "object": _pod("web-3", "Pending")},
    {"type": "MODIFIED", "object": _pod("web-3", "Running")},
    {"type": "DELETED", "object": _pod("web-1", "Running")},
]
JSON = [("Content-Type", "application/json"), ("Audit-Id", "6f1c")]


def _watch_body() -> list[bytes]:
    """The watch stream's chunks: one event per chunk, the last one split across two."""
    lines = [json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in EVENTS]
    last = lines.pop()
    return [*lines, last[:25], last[25:]]


#: The response body (after chunked de-framing) each request was answered with, by id().
SENT: dict[int, bytes] = {}


def _api(req: Request) -> list[Step]:
    path, _, query = req.target.partition("?")
    if path != PODS:
        steps = response(404, b'{"kind":"Status","code":404}', JSON)
        SENT[id(req)] = b'{"kind":"Status","code":404}'
        return steps
    if "watch=true" not in query.lower():
        body = json.dumps(POD_LIST, separators=(",", ":")).encode()
        SENT[id(req)] = body
        return response(200, body, JSON)
    chunks = _watch_body()
    SENT[id(req)] = b"".join(chunks)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    head += b"Transfer-Encoding: chunked\r\n\r\n"
    steps: list[Step] = [send(head)]
    for chunk in chunks:
        steps += [pause(0.005), send(chunk_frame(chunk))]
    return [*steps, send(chunk_frame(b""))]


@pytest.fixture
def srv() -> Iterator[ScriptedServer]:
    """A loopback Kubernetes API server for pods in the default namespace."""
    with ScriptedServer(_api) as s:
        yield s
    assert not s.errors, s.errors


@pytest.fixture(autouse=True)
def _uninstalled() -> Iterator[None]:
    """Every test starts and ends with tracing uninstalled."""
    zltrace.uninstall()
    yield
    zltrace.uninstall()


def _api_client(srv: ScriptedServer) -> Any:
    cfg = kubernetes.client.Configuration()
    cfg.host = srv.url
    return kubernetes.client.ApiClient(cfg)


def _calls(v1: Any) -> list[Any]:
    """What an app does: list the pods, then watch them until the stream ends."""
    pods = [p.to_dict() for p in v1.list_namespaced_pod("default").items]
    watch = kubernetes.watch.Watch()
    events = [
        (e["type"], e["object"].to_dict())
        for e in watch.stream(v1.list_namespaced_pod, "default", timeout_seconds=5)
    ]
    return [pods, events]


def _assert_on_the_wire(exchanges: list[zltrace.Exchange], received: list[Request]) -> None:
    """One exchange per request received, request and response byte-exact, in order."""
    assert len(exchanges) == len(received)
    for ex, req in zip(exchanges, received):
        assert ex.outcome == "complete"
        assert ex.request.url.endswith(req.target) and ex.request.method == req.method
        assert ex.request.headers == req.headers
        assert (ex.request.body or b"") == req.raw_body
        assert ex.response is not None and ex.response.status == 200
        assert ex.response.raw_body == SENT[id(req)]
    watched = exchanges[-1]
    assert watched.response is not None and watched.response.framing == "chunked"
    lines = watched.response.body.splitlines()
    assert [json.loads(line) for line in lines] == EVENTS


@pytest.mark.parametrize("target", ["api_client", "api_object"])
def test_wrap_traces_client_in_place_byte_exact(
    tracer: zltrace.Tracer, srv: ScriptedServer, target: str
) -> None:
    """``wrap(api_client)`` (or ``wrap(CoreV1Api)``) in place; results as untraced; the trace,
    the streamed watch included, byte-exact."""
    with _api_client(srv) as api:
        bare = _calls(kubernetes.client.CoreV1Api(api))
    untraced = len(srv.requests)
    with _api_client(srv) as api:
        v1 = kubernetes.client.CoreV1Api(api)
        manager = api.rest_client.pool_manager
        wrapped = api if target == "api_client" else v1
        assert zltrace.wrap(wrapped, tracer=tracer) is wrapped
        assert _calls(v1) == bare
        assert api.rest_client.pool_manager is manager
        assert type(manager).__name__ == "PoolManager"
    _assert_on_the_wire(records(tracer), srv.requests[untraced:])


def test_install_traces_without_code_change_and_uninstall_restores(
    tracer: zltrace.Tracer, srv: ScriptedServer
) -> None:
    """Under ``install()`` a client made before (its pools made after) and one made after
    record; after ``uninstall()`` neither does, and results never change."""
    with _api_client(srv) as before:
        zltrace.install(tracer)
        with _api_client(srv) as after:
            results = [_calls(kubernetes.client.CoreV1Api(c)) for c in (before, after)]
            recorded = len(srv.requests)
            zltrace.uninstall()
            results += [_calls(kubernetes.client.CoreV1Api(c)) for c in (before, after)]
    assert all(r == results[0] for r in results)
    exchanges = records(tracer)
    _assert_on_the_wire(exchanges[:2], srv.requests[:2])
    _assert_on_the_wire(exchanges[2:], srv.requests[2:recorded])


def test_watch_abandoned_midstream_is_recorded_partial(
    tracer: zltrace.Tracer, srv: ScriptedServer
) -> None:
    """A watch the app stops after its first event is one exchange with what was read."""
    with _api_client(srv) as api:
        zltrace.wrap(api, tracer=tracer)
        v1 = kubernetes.client.CoreV1Api(api)
        watch = kubernetes.watch.Watch()
        for event in watch.stream(v1.list_namespaced_pod, "default", timeout_seconds=5):
            assert event["type"] == "ADDED"
            watch.stop()
    (ex,) = records(tracer)
    assert ex.outcome == "abandoned" and ex.error is None
    assert ex.response is not None and ex.response.raw_body == _watch_body()[0]
