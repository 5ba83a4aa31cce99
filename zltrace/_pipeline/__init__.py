"""The pipeline: the event vocabulary, the worker thread, assembly, redaction, the memory budget,
line encoding and the write policy. It never imports capture, the monitor or the read side.
"""
