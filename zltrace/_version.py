"""The version of zltrace, as a literal (no importlib.metadata: the package must work vendored)."""

__version__ = "0.1.0"
