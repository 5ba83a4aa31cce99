"""A message in provider-neutral pieces for display: text, thinking, tool calls, errors."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["Block", "MessageView"]


@attrs.frozen
class Block:
    """One piece of a message, in the order the message has them."""

    #: "text", "thinking", "tool_use", "error", or "other" (a piece of a kind not known here).
    kind: str
    #: The text of a "text" or "thinking" block; for the other kinds the JSON value (tool
    #: input, arguments as the provider sent them, the error object, the whole unknown piece).
    value: Any
    #: The tool's name ("tool_use"), or the unknown piece's type ("other"); else None.
    name: str | None = None


@attrs.frozen
class MessageView:
    """A rebuilt message as display blocks and why it stopped (None if it does not say)."""

    blocks: list[Block]
    stop: str | None
