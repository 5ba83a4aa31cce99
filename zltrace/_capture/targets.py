"""What ``wrap()`` accepts: a table of target handlers, tried in order.

Each entry is ``(accepts, wrap, label)``: ``accepts(target)`` says whether the entry
handles the target (by type, or by the class names of its MRO for optional libraries,
which are never imported here); ``wrap(target, tracer)`` traces it and returns what
``wrap()`` returns. Another front-end adds one entry with :func:`register_target`.

- urllib3 pool: a traced copy is returned (assign it back); managers, sessions and clients
  are traced in place and returned.
- botocore/boto3 client: its endpoint's pool manager and proxy managers, in place; the
  client keeps botocore's own pool and connection classes.
- kubernetes ``ApiClient`` (or an API object such as ``CoreV1Api``, through its
  ``api_client``): its REST client's pool manager, in place. An API object made without an
  ``api_client`` makes its own ``ApiClient``: wrap the one it holds.
- elasticsearch ``Elasticsearch`` / ``AsyncElasticsearch``, elastic-transport's
  ``Transport`` / ``AsyncTransport`` / ``NodePool``: the node pool is traced in place (its class
  becomes a traced subclass), and every node it hands out is traced before its first request
  through it -- nodes added later (sniffing, ``node_pool.add``) included, so tracing happens
  in ``get()``, where the transport picks the node, not when a node is made. A node's urllib3
  pool is traced in place (its class, as for a node pool: the node keeps its pool object and
  idle connections, which record from their next request); a requests node's session and an
  httpx node's client are wrapped as those libraries are. A node class with none of these
  (aiohttp's) is refused when wrapped, never skipped silently.
"""

from __future__ import annotations

from typing import Any, Callable

from urllib3 import PoolManager
from urllib3.connectionpool import HTTPConnectionPool

from .._pipeline.events import capture_failed
from .._util import ForkSafeLock
from ..exceptions import UnsupportedTargetError
from . import httpx_wrap
from .pool import (
    TracedPoolMixin,
    _is_requests_session,
    _subclass,
    _wrap_manager,
    _wrap_pool,
    _wrap_session,
    traced_pool_class,
)
from .tee import Sink

Target = tuple[Callable[[Any], bool], Callable[[Any, Sink], Any], str]


def _mro_has(target: Any, module_prefix: str, name: str) -> bool:
    return any(
        c.__module__.startswith(module_prefix) and c.__name__ == name for c in type(target).__mro__
    )


def _mro_in(target: Any, package: str, name: str) -> bool:
    """Whether a class named ``name`` from package ``package`` (or its sub-modules) is in the
    MRO of ``target`` (libraries re-export classes with ``__module__`` set to the package)."""
    return any(
        c.__name__ == name and (c.__module__ + ".").startswith(package + ".")
        for c in type(target).__mro__
    )


def _is_botocore_client(target: Any) -> bool:
    return _mro_has(target, "botocore.", "BaseClient")


def _wrap_botocore_client(client: Any, tracer: Sink) -> Any:
    session = client._endpoint.http_session
    _wrap_manager(session._manager, tracer)
    for manager in getattr(session, "_proxy_managers", {}).values():
        _wrap_manager(manager, tracer)
    return client


def _kubernetes_api_client(target: Any) -> Any:
    """The kubernetes ``ApiClient`` that is ``target`` or that API object ``target`` holds
    (``kubernetes_asyncio``, on aiohttp, is another package and not taken), else None."""
    for candidate in (target, getattr(target, "api_client", None)):
        if _mro_in(candidate, "kubernetes", "ApiClient") and isinstance(
            getattr(getattr(candidate, "rest_client", None), "pool_manager", None), PoolManager
        ):
            return candidate
    return None


def _is_kubernetes_client(target: Any) -> bool:
    return _kubernetes_api_client(target) is not None


def _wrap_kubernetes_client(client: Any, tracer: Sink) -> Any:
    _wrap_manager(_kubernetes_api_client(client).rest_client.pool_manager, tracer)
    return client


def _es_node_pool(target: Any) -> Any:
    """elastic-transport's ``NodePool`` behind an elasticsearch client, a transport or itself."""
    for name in ("transport", "node_pool"):
        if not _mro_in(target, "elastic_transport", "NodePool"):
            target = getattr(target, name, target)
    return target if _mro_in(target, "elastic_transport", "NodePool") else None


def _is_elasticsearch(target: Any) -> bool:
    if _mro_in(target, "elastic_transport", "NodePool"):
        return True
    return (
        _mro_in(target, "elasticsearch", "Elasticsearch")
        or _mro_in(target, "elasticsearch", "AsyncElasticsearch")
        or _mro_in(target, "elastic_transport", "Transport")
        or _mro_in(target, "elastic_transport", "AsyncTransport")
    ) and _es_node_pool(target) is not None


def _trace_pool_in_place(pool: HTTPConnectionPool, tracer: Sink) -> None:
    if not isinstance(pool, TracedPoolMixin):
        pool.__class__ = traced_pool_class(type(pool))
    pool._zl_tracer = tracer  # type: ignore[attr-defined]


def _trace_es_node(node: Any, tracer: Sink) -> bool:
    """Trace one elastic-transport node in place; False if it has nothing zltrace traces."""
    if getattr(node, "_zl_tracer", None) is tracer:
        return True
    pool = getattr(node, "pool", None)
    session = getattr(node, "session", None)
    client = getattr(node, "client", None)
    if isinstance(pool, HTTPConnectionPool):
        _trace_pool_in_place(pool, tracer)
    elif _is_requests_session(session):
        _wrap_session(session, tracer)
    elif client is not None and httpx_wrap.accepts(client):
        httpx_wrap.wrap_target(client, tracer)
    else:
        return False
    node._zl_tracer = tracer
    return True


class TracedNodePoolMixin:
    """Mixed in front of elastic-transport's ``NodePool``: each node it hands out is traced."""

    _zl_tracer: Sink | None = None

    def get(self) -> Any:
        node = super().get()  # type: ignore[misc]
        tracer = self._zl_tracer
        if tracer is not None and getattr(node, "_zl_tracer", None) is not tracer:
            try:
                with _node_lock:  # two threads may get a new node at once: traced once
                    _trace_es_node(node, tracer)
            except Exception as e:
                capture_failed("targets.elasticsearch_node", e)
        return node


_node_lock = ForkSafeLock()


_node_pool_classes: dict[type[Any], type[Any]] = {}


def _wrap_elasticsearch(target: Any, tracer: Sink) -> Any:
    node_pool = _es_node_pool(target)
    nodes = node_pool.all()
    for node in nodes:
        if not _trace_es_node(node, tracer):
            raise UnsupportedTargetError(
                "zltrace.wrap() traces elasticsearch through urllib3, requests or httpx nodes; "
                f"{type(node).__module__}.{type(node).__qualname__} is none of these"
            )
    node_pool.__class__ = _subclass(_node_pool_classes, TracedNodePoolMixin, type(node_pool), {})
    node_pool._zl_tracer = tracer
    return target


TARGETS: list[Target] = [
    (lambda t: isinstance(t, HTTPConnectionPool), _wrap_pool, "a urllib3 connection pool"),
    (lambda t: isinstance(t, PoolManager), _wrap_manager, "a PoolManager (or ProxyManager)"),
    (_is_requests_session, _wrap_session, "a requests.Session"),
    (_is_botocore_client, _wrap_botocore_client, "a boto3/botocore client"),
    (_is_kubernetes_client, _wrap_kubernetes_client, "a kubernetes ApiClient (or API object)"),
    (
        _is_elasticsearch,
        _wrap_elasticsearch,
        "an Elasticsearch client (or its elastic-transport Transport or NodePool)",
    ),
    (
        httpx_wrap.accepts,
        httpx_wrap.wrap_target,
        "an httpx/httpx2 Client or AsyncClient, an anthropic or openai client",
    ),
]


def register_target(
    accepts: Callable[[Any], bool], wrap: Callable[[Any, Sink], Any], label: str
) -> None:
    """Add a kind of target to ``wrap()`` (tried after the ones before it)."""
    TARGETS.append((accepts, wrap, label))


def wrap_target(target: Any, tracer: Sink) -> Any:
    """Trace ``target`` with ``tracer``; see the module docstring for what is returned."""
    for accepts, wrap, _ in TARGETS:
        if accepts(target):
            return wrap(target, tracer)
    raise UnsupportedTargetError(
        "zltrace.wrap() takes " + ", ".join(label for _, _, label in TARGETS) + f"; got {target!r}"
    )
