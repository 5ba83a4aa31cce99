"""The elasticsearch client (elastic-transport's nodes), traced against a loopback fake.

What is pinned: ``wrap(client)`` traces the client in place -- its node pool and every node
it hands out, nodes added later (``node_pool.add``, sniffing) included; ``install()`` traces it
with no code change and ``uninstall()`` returns it to bare; the client's results are the same
traced and untraced; and the trace holds each request and response exactly as on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
import urllib3
from support.server import Request, ScriptedServer, Step, response
from support.trace import records

import zltrace

elasticsearch = pytest.importorskip("elasticsearch", reason="elasticsearch is in the test extra")
elastic_transport = pytest.importorskip("elastic_transport", reason="it comes with elasticsearch")

MEDIA = "application/vnd.elasticsearch+json;compatible-with=8"
HEADERS = [("X-Elastic-Product", "Elasticsearch"), ("Content-Type", MEDIA)]
INFO = {
    "name": "node-1",
    "cluster_name": "loopback",
    "version": {"number": "8.19.0", "build_flavor": "default"},
    "tagline": "You Know, for Search",
}
HITS = {
    "took": 1,
    "timed_out": False,
    "hits": {"total": {"value": 1, "relation": "eq"}, "hits": [{"_id": "1", "_source": {"a": 1}}]},
}
BULK = {"errors": False, "took": 2, "items": [{"index": {"_id": "1", "status": 201}}]}


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


#: The response body each request was answered with, by the request's id().
SENT: dict[int, bytes] = {}


def _es_api(sniffed: list[int] | None = None) -> Any:
    """A reply function speaking the few Elasticsearch endpoints the tests call."""

    def reply(req: Request) -> list[Step]:
        steps = _answer(req)
        SENT[id(req)] = b"".join(s.data for s in steps).partition(b"\r\n\r\n")[2]
        return steps

    def _answer(req: Request) -> list[Step]:
        path = req.target.partition("?")[0]
        if path == "/":
            body = _json(INFO)
        elif path.endswith("/_search"):
            body = _json(HITS)
        elif path == "/_bulk":
            body = _json(BULK)
        elif path == "/_nodes/_all/http":
            nodes = {
                f"n{port}": {"roles": ["data"], "http": {"publish_address": f"127.0.0.1:{port}"}}
                for port in sniffed or ()
            }
            body = _json({"nodes": nodes})
        else:
            return response(404, b'{"error":"not found"}', HEADERS)
        return response(200, body, HEADERS)

    return reply


@contextmanager
def _servers(n: int = 1, sniffed: bool = False) -> Iterator[list[ScriptedServer]]:
    with ScriptedServer(_es_api()) as extra, ScriptedServer(_es_api()) as second:
        servers = [second, extra][:n]
        with ScriptedServer(_es_api([s.port for s in servers] if sniffed else None)) as first:
            yield [first, *servers]
        for s in (first, *servers):
            assert not s.errors, s.errors


def _calls(es: Any) -> list[Any]:
    """What an app does: the cluster's info, a search (gzip-compressed body) and a bulk
    through ``options()`` (a new client object on the same transport)."""
    return [
        es.info().body,
        es.search(index="docs", query={"match": {"a": 1}}).body,
        es.options(request_timeout=30)
        .bulk(operations=[{"index": {"_index": "docs", "_id": "1"}}, {"a": 1}])
        .body,
    ]


_made: list[Any] = []


def _client(srv: ScriptedServer, **kw: Any) -> Any:
    es = elasticsearch.Elasticsearch(srv.url, http_compress=True, **kw)
    _made.append(es)
    return es


def _assert_on_the_wire(exchanges: list[zltrace.Exchange], servers: list[ScriptedServer]) -> None:
    """Every request each server received is one exchange, request and response byte-exact."""
    received = [(s.port, r) for s in servers for r in s.requests]
    assert len(exchanges) == len(received)
    by_port: dict[int, list[zltrace.Exchange]] = {}
    for ex in exchanges:
        by_port.setdefault(urlsplit(ex.request.url).port or 0, []).append(ex)
    for port, req in received:
        ex = by_port[port].pop(0)
        assert ex.outcome == "complete"
        assert ex.request.url.endswith(req.target) and ex.request.method == req.method
        assert ex.request.headers == req.headers
        assert (ex.request.body or b"") == req.raw_body
        assert ex.response is not None and ex.response.status == 200
        assert ex.response.raw_body == SENT[id(req)]
        assert ("X-Elastic-Product", "Elasticsearch") in ex.response.headers


@pytest.fixture(autouse=True)
def _uninstalled() -> Iterator[None]:
    """Every test starts and ends with tracing uninstalled, its clients closed and urllib3's
    shared pool classes as they were: elastic-transport's requests node writes its own HTTPS
    pool class into the dict every PoolManager of the process shares."""
    shared = urllib3.poolmanager.pool_classes_by_scheme
    saved = dict(shared)
    zltrace.uninstall()
    yield
    zltrace.uninstall()
    while _made:
        _made.pop().close()
    shared.clear()
    shared.update(saved)


def _node_classes() -> list[str]:
    names = elastic_transport._transport.NODE_CLASS_NAMES
    return [n for n in ("urllib3", "requests", "httpx") if n in names]


@pytest.mark.parametrize("node_class", _node_classes())
def test_wrap_traces_client_in_place_byte_exact(tracer: zltrace.Tracer, node_class: str) -> None:
    """``wrap(es)`` traces the client in place; results as untraced; trace byte-exact."""
    with _servers(0) as (srv,):
        bare = _calls(_client(srv, node_class=node_class))
        bare_requests = len(srv.requests)
        es = _client(srv, node_class=node_class)
        (node,) = es.transport.node_pool.all()
        own = getattr(node, "pool", None)
        assert zltrace.wrap(es, tracer=tracer) is es
        assert _calls(es) == bare
        assert type(es.transport.node_pool).__name__ == "NodePool"
        assert getattr(node, "pool", None) is own  # the node keeps its own pool object
        srv.requests[:bare_requests] = []
    _assert_on_the_wire(records(tracer), [srv])


def test_wrap_traces_nodes_added_later(tracer: zltrace.Tracer) -> None:
    """A node added to a wrapped client's pool after ``wrap()`` records too."""
    with _servers(1) as (first, second):
        es = zltrace.wrap(_client(first), tracer=tracer)
        es.transport.node_pool.add(elastic_transport.NodeConfig("http", second.host, second.port))
        for _ in range(10):
            es.info()
        assert first.requests and second.requests
    _assert_on_the_wire(records(tracer), [first, second])


def test_wrap_traces_sniffed_nodes(tracer: zltrace.Tracer) -> None:
    """Nodes found by sniffing after ``wrap()`` record, the sniff request included."""
    with _servers(2, sniffed=True) as servers:
        es = zltrace.wrap(_client(servers[0], sniff_before_requests=True), tracer=tracer)
        for _ in range(12):
            es.info()
        assert all(s.requests for s in servers)
        assert any(r.target == "/_nodes/_all/http" for r in servers[0].requests)
    _assert_on_the_wire(records(tracer), servers)


def test_install_traces_without_code_change_and_uninstall_restores(
    tracer: zltrace.Tracer,
) -> None:
    """Under ``install()`` clients made before and after, and nodes added later, record;
    after ``uninstall()`` none does."""
    with _servers(1) as (first, second):
        before = _client(first)
        zltrace.install(tracer)
        after = _client(first)
        after.transport.node_pool.add(
            elastic_transport.NodeConfig("http", second.host, second.port)
        )
        results = [_calls(before), *(_calls(after) for _ in range(4))]
        assert second.requests
        zltrace.uninstall()
        counted = [len(first.requests), len(second.requests)]
        assert _calls(before) == _calls(after) == results[0]
        assert all(r == results[0] for r in results)
        first.requests[counted[0] :] = []
        second.requests[counted[1] :] = []
    _assert_on_the_wire(records(tracer), [first, second])


def test_wrap_refuses_a_client_it_cannot_trace(tracer: zltrace.Tracer) -> None:
    """An aiohttp node (no urllib3, requests or httpx inside) is refused, not skipped."""
    pytest.importorskip("aiohttp", reason="AsyncElasticsearch's default node needs aiohttp")
    es = elasticsearch.AsyncElasticsearch("http://127.0.0.1:9")
    with pytest.raises(zltrace.UnsupportedTargetError, match="AiohttpHttpNode"):
        zltrace.wrap(es, tracer=tracer)
    assert type(es.transport.node_pool).__name__ == "NodePool"
