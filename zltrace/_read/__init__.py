"""The read side: trace files back to exchanges, content decoding, SSE and LLM messages.
It never imports capture or the pipeline: it knows the format only through ``_format``.
"""
