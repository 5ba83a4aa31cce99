"""The monitor: the tracer measuring itself (histograms, counters, alerts), its endpoints and the
JSON log formatter. It observes the pipeline; it never imports capture or the read side.
"""
