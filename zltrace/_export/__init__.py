"""What a trace becomes: stats, an HTML report, HAR and claude-trace files."""
