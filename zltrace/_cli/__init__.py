"""The command line: ``python -m zltrace`` and the ``zltrace`` script."""

from .commands import main

__all__ = ["main"]
