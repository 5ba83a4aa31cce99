"""Kept so that requests Sessions pickled by earlier versions unpickle: they name this path."""

from ._capture.pool import _rebuild_adapter

__all__ = ["_rebuild_adapter"]
