"""Exports of what the read side yields: HAR, claude-trace, summaries and the HTML report."""
