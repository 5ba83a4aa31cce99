"""Assembly rules shared by the two places that turn capture events into exchanges.

The JSONL writer assembles on the worker (``_pipeline.assembler``); a raw event log is
assembled when it is read (``_read.rawassemble``). What both must decide the same way lives
here, importing nothing but leaves, so that either side may use it without importing the
other: whether a body ends with its stream's own end marker (``endmark``), request URLs
(``urls``), chunked de-framing by offsets (``dechunk``).
"""
