"""Holds the sitecustomize that ``zltrace run`` puts first on PYTHONPATH (not imported)."""
