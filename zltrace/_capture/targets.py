"""What ``wrap()`` accepts: a table of target handlers, tried in order.

Each entry is ``(accepts, wrap, label)``: ``accepts(target)`` says whether the entry
handles the target (by type, or by the class names of its MRO for optional libraries,
which are never imported here); ``wrap(target, tracer)`` traces it and returns what
``wrap()`` returns. Another front-end adds one entry with :func:`register_target`.

- urllib3 pool: a traced copy is returned (assign it back); managers, sessions and clients
  are traced in place and returned.
- botocore/boto3 client: its endpoint's pool manager and proxy managers, in place; the
  client keeps botocore's own pool and connection classes.
- kubernetes ``ApiClient``: its REST client's pool manager, in place.
"""

from __future__ import annotations

from typing import Any, Callable

from urllib3 import PoolManager
from urllib3.connectionpool import HTTPConnectionPool

from ..exceptions import UnsupportedTargetError
from . import httpx_wrap
from .pool import _is_requests_session, _wrap_manager, _wrap_pool, _wrap_session
from .tee import Sink

Target = tuple[Callable[[Any], bool], Callable[[Any, Sink], Any], str]


def _mro_has(target: Any, module_prefix: str, name: str) -> bool:
    return any(
        c.__module__.startswith(module_prefix) and c.__name__ == name for c in type(target).__mro__
    )


def _is_botocore_client(target: Any) -> bool:
    return _mro_has(target, "botocore.", "BaseClient")


def _wrap_botocore_client(client: Any, tracer: Sink) -> Any:
    session = client._endpoint.http_session
    _wrap_manager(session._manager, tracer)
    for manager in getattr(session, "_proxy_managers", {}).values():
        _wrap_manager(manager, tracer)
    return client


def _is_kubernetes_client(target: Any) -> bool:
    return _mro_has(target, "kubernetes", "ApiClient") and hasattr(target, "rest_client")


def _wrap_kubernetes_client(client: Any, tracer: Sink) -> Any:
    _wrap_manager(client.rest_client.pool_manager, tracer)
    return client


TARGETS: list[Target] = [
    (lambda t: isinstance(t, HTTPConnectionPool), _wrap_pool, "a urllib3 connection pool"),
    (lambda t: isinstance(t, PoolManager), _wrap_manager, "a PoolManager (or ProxyManager)"),
    (_is_requests_session, _wrap_session, "a requests.Session"),
    (_is_botocore_client, _wrap_botocore_client, "a boto3/botocore client"),
    (_is_kubernetes_client, _wrap_kubernetes_client, "a kubernetes ApiClient"),
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
