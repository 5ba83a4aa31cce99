"""Helpers shared by the tests: loopback servers, fault seams, LLM fixtures, trace read-back.

Importable as ``support`` because ``pyproject.toml`` puts ``tests/`` on pytest's path.
"""

from __future__ import annotations

from pathlib import Path

#: The tests folder (child processes put it on ``sys.path`` to import ``support``).
TESTS = Path(__file__).resolve().parent.parent
#: The project's root (the folder holding ``zltrace/``).
ROOT = TESTS.parent
