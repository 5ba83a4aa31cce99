"""Started by ``python -m zltrace run``: tracing on from the first import of the program.

``zltrace run`` puts this directory first on ``PYTHONPATH``, so every Python process the
program starts (children included) imports this module at start-up, as ``site`` does with
any ``sitecustomize``. It runs the ``sitecustomize`` that would have run without it (the
next one on ``sys.path``), then calls ``zltrace.install()``, configured from the
``ZLTRACE_*`` variables. This file is not part of the package (``site`` imports it by its
top-level name), hence ``zltrace`` is imported by name, through importlib. Nothing here may stop the
program: a failure is one line on stderr.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys


def _chain(here: str) -> None:
    # The sitecustomize this one shadows, if any: found on sys.path without this directory.
    paths = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", paths)
    if spec is None or spec.loader is None or spec.origin == __file__:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


def _start() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        _chain(here)
    except Exception as e:
        print(f"zltrace: the program's own sitecustomize failed: {e!r}", file=sys.stderr)
    home = os.environ.get("ZLTRACE_RUN_HOME")
    if home and home not in sys.path:
        sys.path.append(home)  # last: the program's own packages come first
    try:
        importlib.import_module("zltrace").install()
    except Exception as e:
        print(f"zltrace: tracing is off in this process: {e!r}", file=sys.stderr)


_start()
