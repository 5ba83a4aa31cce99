"""LLM API calls read back from traced bodies: the message, its usage, its model, its view.

One module per provider (``anthropic``, ``openai``) holds what is known of its API: stream
events, usage fields, content shapes. ``message`` detects the API and dispatches;
``usage`` and ``view`` are the provider-neutral results; ``values`` reads JSON of unknown
shape without raising.
"""

from __future__ import annotations

from .message import (
    is_event_stream,
    message_from_body,
    message_view,
    model_of,
    rebuild_stream,
    usage_of,
)
from .usage import HasUsage, Usage, total_usage
from .view import Block, MessageView

__all__ = [
    "Block",
    "HasUsage",
    "MessageView",
    "Usage",
    "is_event_stream",
    "message_from_body",
    "message_view",
    "model_of",
    "rebuild_stream",
    "total_usage",
    "usage_of",
]
