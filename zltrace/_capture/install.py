"""``install()``: every urllib3 exchange in the process is traced, whoever made the pool.

Rules:

- One hook: urllib3's own ``HTTPConnectionPool._make_request`` is replaced by a function
  that opens the exchange, calls the original, and reports a request error. Every pool
  class urllib3 and its users define (``HTTPSConnectionPool``, botocore's
  ``AWSHTTPConnectionPool``, elastic-transport's and kubernetes' pools, requests' adapters'
  managers) reaches it, whenever and however the pool was made -- so boto3, which replaces
  its manager's ``pool_classes_by_scheme`` after construction, keeps its own pool and
  connection classes. The connection is made to record when it is used (``adopt``).
- Pools traced by ``wrap()`` keep their own tracer: the hook steps aside for them.
- ``uninstall()`` puts the original function back, so every pool -- those made while
  installed too -- stops recording; responses already being read finish recording.
- Other front-ends plug in with :func:`register_frontend`: their installer runs when their
  module is imported (now, if it already is; else through an import hook that is removed
  on uninstall). Nothing here imports a library the application did not import.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Callable

from urllib3.connectionpool import HTTPConnectionPool

from .connection import TracedConnectionMixin
from .httpcore_patch import install_httpcore, install_httpcore2
from .pool import TracedPoolMixin, _request_failed, start_exchange
from .tee import Sink

log = logging.getLogger(__name__)

Installer = Callable[[Sink], Callable[[], None]]

_lock = threading.RLock()
_frontends: dict[str, list[Installer]] = {}


class _Active:
    tracer: Sink | None = None
    original: Any = None
    finder: _Finder | None = None
    undos: list[Callable[[], None]] = []
    done: set[tuple[str, int]] = set()  # (module, installer index) already run


_active = _Active()


def _traced_make_request(self: Any, conn: Any, method: str, url: str, *args: Any, **kw: Any) -> Any:
    original = _active.original
    tracer = _active.tracer
    if tracer is None or isinstance(self, TracedPoolMixin):
        return original(self, conn, method, url, *args, **kw)
    start_exchange(self, tracer, conn, method, url, kw.get("retries"))
    try:
        return original(self, conn, method, url, *args, **kw)
    except BaseException as exc:
        _request_failed(conn, exc)
        raise
    finally:
        # The response holds its own sink; the connection records nothing more until the
        # next exchange opens (nor after uninstall()).
        if isinstance(conn, TracedConnectionMixin):
            conn._zl_sink = None


def installed() -> Sink | None:
    """The tracer ``install()`` installed, or None."""
    return _active.tracer


def install(tracer: Sink) -> None:
    """Trace every urllib3 exchange (and registered front-ends) with ``tracer``; idempotent.

    Called again with another tracer, the new one records from then on."""
    with _lock:
        _active.tracer = tracer
        if _active.original is None:
            _active.original = HTTPConnectionPool.__dict__["_make_request"]
            HTTPConnectionPool._make_request = _traced_make_request  # type: ignore[method-assign]
        if _active.finder is None:
            _active.finder = _Finder()
            sys.meta_path.insert(0, _active.finder)
        for name in list(_frontends):
            module = sys.modules.get(name)
            if module is not None:
                _run_installers(name)


def uninstall() -> None:
    """Undo :func:`install` exactly; a no-op when not installed."""
    with _lock:
        if _active.original is not None:
            HTTPConnectionPool._make_request = _active.original  # type: ignore[method-assign]
            _active.original = None
        finder, _active.finder = _active.finder, None
        if finder is not None and finder in sys.meta_path:
            sys.meta_path.remove(finder)
        undos, _active.undos = _active.undos, []
        _active.done = set()
        _active.tracer = None
    for undo in reversed(undos):
        try:
            undo()
        except Exception:
            log.exception("zltrace: a front-end's undo failed")


def register_frontend(module_name: str, installer: Installer) -> None:
    """Have :func:`install` call ``installer(tracer)`` once ``module_name`` is imported.

    ``installer`` returns the callable that undoes it (called by ``uninstall()``). If
    tracing is installed and the module is already imported, it runs now.
    """
    with _lock:
        _frontends.setdefault(module_name, []).append(installer)
        if _active.tracer is not None and module_name in sys.modules:
            _run_installers(module_name)


def _run_installers(name: str) -> None:
    with _lock:
        tracer = _active.tracer
        if tracer is None:
            return
        for i, installer in enumerate(_frontends.get(name, ())):
            if (name, i) in _active.done:
                continue
            _active.done.add((name, i))
            try:
                _active.undos.append(installer(tracer))
            except Exception:
                log.exception("zltrace: the front-end installer for %s failed", name)


class _Loader(importlib.abc.Loader):
    """Runs the real loader, then the front-end installers of the module."""

    def __init__(self, real: Any, name: str) -> None:
        self._real = real
        self._name = name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        create = getattr(self._real, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        self._real.exec_module(module)
        _run_installers(self._name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands registered front-end modules to a loader that runs
    their installers once the module has executed."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _frontends:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader, fullname)
                return spec
        return None


# httpx and httpx2 (the anthropic and openai SDKs) run on httpcore and httpcore2.
register_frontend("httpcore", install_httpcore)
register_frontend("httpcore2", install_httpcore2)
