"""The package's import rules, checked by parsing every module (no import is executed).

The data flows one way and the imports follow it:

- leaves (``_version``, ``exceptions``, ``_format``, ``_format_raw``, ``_util``, ``config``)
  import only leaves;
- ``_assembly`` (the rules for turning capture events into exchanges that the worker, for
  the JSONL trace, and the reader, for the raw event log, must apply alike: end markers,
  URLs, chunked de-framing) imports leaves and itself, so both may use it without
  importing each other;
- ``_pipeline`` (events, worker, budget, redaction, writer) imports leaves, itself and
  ``_assembly``;
- ``_capture`` (front-ends, tee, probe) imports leaves, itself and ``_pipeline.events``, the
  vocabulary it feeds the pipeline with;
- ``_monitor`` imports leaves, itself and ``_pipeline`` (it observes the worker);
- the composition root (``_tracer``, ``_state``, ``_lifecycle``, ``_pool``) wires capture,
  pipeline and monitor together;
- the read side (``_read``) imports leaves, itself and ``_assembly``, never capture or
  pipeline;
- ``_export`` imports leaves, ``_read`` and itself;
- ``_cli`` imports leaves, the read side, exports, itself and the public face (``zltrace``);
- the public face (``zltrace/__init__.py``) imports anything but the CLI.

No module imports another that imports it back, at any depth: ``TYPE_CHECKING`` imports and
imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import zltrace

PACKAGE = Path(zltrace.__file__).parent
LEAVES = ("_version", "exceptions", "_format", "_format_raw", "_util", "config")
ROOT = ("_tracer", "_state", "_lifecycle", "_pool")

# stage -> prefixes of the modules it may import (besides leaves, always allowed)
ALLOWED: dict[str, tuple[str, ...]] = {
    "leaf": (),
    "_assembly": ("_assembly",),
    "_pipeline": ("_pipeline", "_assembly"),
    "_capture": ("_capture", "_pipeline.events"),
    "_monitor": ("_monitor", "_pipeline"),
    "root": ("_capture", "_pipeline", "_monitor", *ROOT),
    "_read": ("_read", "_assembly"),
    "_export": ("_read", "_export"),
    "_cli": ("_read", "_export", "_cli", ""),
    "": ("_capture", "_pipeline", "_monitor", "_read", "_export", "_assembly", *ROOT),
    "__main__": ("_cli",),
    "_bootstrap": (),  # a sitecustomize, imported by name by site: nothing of ours
}


def _modules() -> dict[str, Path]:
    """Dotted names relative to the package ('' for its ``__init__``) -> file."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _stage(name: str) -> str:
    head = name.split(".")[0]
    if head in LEAVES:
        return "leaf"
    if head in ROOT:
        return "root"
    return head


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ours that ``name`` imports, anywhere in its source."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if name else []
    package = here if is_pkg else here[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert not alias.name.startswith("zltrace"), f"{name}: absolute import {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            if not node.level:
                assert not (node.module or "").startswith("zltrace"), (
                    f"{name}: absolute import from {node.module}"
                )
                continue
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                out.add(sub if sub in modules else target)
    out.discard(name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_import_follows_the_stage_rules() -> None:
    """No module imports a stage its own stage may not (the rules in this module's docstring)."""
    bad = []
    for name, targets in _graph().items():
        stage = _stage(name)
        allowed = ALLOWED[stage]
        for target in sorted(targets):
            if _stage(target) == "leaf":
                continue
            if not any(
                target == p or target.startswith(p + ".") or (p == "" and target == "")
                for p in allowed
            ):
                bad.append(f"{name or 'zltrace'} ({stage}) imports {target or 'zltrace'}")
    assert bad == []


def test_no_import_cycle() -> None:
    """The module graph has no cycle, TYPE_CHECKING and function-level imports included."""
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_rules_see_the_whole_package() -> None:
    """Every module is parsed and has a stage with rules (a new folder needs its rule here)."""
    graph = _graph()
    assert {"", "_capture.pool", "_pipeline.writer", "_read.reader", "_cli.commands"} <= set(graph)
    assert all(_stage(name) in ALLOWED for name in graph)
    # the parser resolves relative imports: the public face imports the reader and the tracer
    assert {"_read.reader", "_tracer"} <= graph[""]
