"""``wrap()`` for httpx / httpx2 clients and the anthropic / openai SDK clients (in place).

Rules:
- A client is traced in place: each of its transports' httpcore(2) pools gets a network
  backend that taps every stream it opens (:mod:`.httpcore_tap`), and the connection classes get
  their hooks (:mod:`.httpcore_patch`). The client keeps its own transport, proxies, timeouts,
  limits and connection pool; connections it opened before ``wrap()`` stay untraced.
- An SDK client (``anthropic.Anthropic``, ``openai.AsyncOpenAI``, ...) holds its httpx(2)
  client in ``_client``: that client is wrapped and the SDK object returned.
- Only libraries the app has imported are looked at; wrapping twice is harmless.
"""

from __future__ import annotations

import sys
from typing import Any

from ..exceptions import UnsupportedTargetError
from .httpcore_patch import library
from .httpcore_tap import AsyncBackend, Backend, Owner
from .tee import Sink

_HTTPX = ("httpx", "httpx2")
_HTTPCORE = ("httpcore", "httpcore2")
_SDKS = ("anthropic", "openai")


def _httpx_client(target: Any) -> bool:
    for name in _HTTPX:
        mod = sys.modules.get(name)
        if mod is not None and isinstance(target, (mod.Client, mod.AsyncClient)):
            return True
    return False


def accepts(target: Any) -> bool:
    """Whether ``target`` is an httpx(2) client, or an anthropic/openai client object."""
    return _httpx_client(target) or type(target).__module__.partition(".")[0] in _SDKS


def wrap_target(target: Any, sink: Sink) -> Any:
    """Trace an httpx(2) client, or the one inside an anthropic/openai client, in place."""
    if _httpx_client(target):
        _wrap_client(target, sink)
        return target
    client = getattr(target, "_client", None)
    if _httpx_client(client):
        _wrap_client(client, sink)
        return target
    raise UnsupportedTargetError(
        f"zltrace.wrap() found no httpx or httpx2 client in {type(target).__name__}"
        f"._client (got {client!r})"
    )


def _wrap_client(client: Any, sink: Sink) -> None:
    transports = [client._transport, *client._mounts.values()]
    traced = 0
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        if pool is not None and _wrap_pool(pool, sink):
            traced += 1
    if not traced:
        raise UnsupportedTargetError(
            "zltrace.wrap() traces httpx clients through their httpcore connection pool; "
            f"{client!r} has none (transports: {transports!r})"
        )


def _wrap_pool(pool: Any, sink: Sink) -> bool:
    root = type(pool).__module__.partition(".")[0]
    if root not in _HTTPCORE or not hasattr(pool, "_network_backend"):
        return False
    backend = pool._network_backend
    if isinstance(backend, Backend):
        return True  # wrapped already
    lib = library(root, sys.modules[root])
    lib.wrapped = True
    is_async = type(pool).__name__.startswith("Async")
    owner = Owner(sink)
    pool._network_backend = (AsyncBackend if is_async else Backend)(backend, owner)
    return True
