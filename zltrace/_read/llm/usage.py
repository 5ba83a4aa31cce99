"""Token counts in one provider-neutral shape (:class:`Usage`) and their sum over exchanges."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import attrs

__all__ = ["HasUsage", "Usage", "total_usage"]

_NON_NEGATIVE_INT = attrs.validators.and_(attrs.validators.instance_of(int), attrs.validators.ge(0))


@attrs.frozen
class Usage:
    """Token counts of one call, or a total; the four counts do not overlap.

    ``input_tokens`` counts the input tokens that were neither read from nor written to a
    prompt cache, so ``input_tokens + cache_read_tokens + cache_write_tokens`` is the whole
    prompt for every provider. Anthropic reports it that way; OpenAI's ``prompt_tokens`` /
    ``input_tokens`` include the cached tokens, which are subtracted here.
    """

    input_tokens: int = attrs.field(default=0, validator=_NON_NEGATIVE_INT)
    output_tokens: int = attrs.field(default=0, validator=_NON_NEGATIVE_INT)
    cache_read_tokens: int = attrs.field(default=0, validator=_NON_NEGATIVE_INT)
    cache_write_tokens: int = attrs.field(default=0, validator=_NON_NEGATIVE_INT)

    @property
    def total_input_tokens(self) -> int:
        """The whole prompt: uncached input plus cache reads plus cache writes."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    def __add__(self, other: object) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )

    def __radd__(self, other: object) -> Usage:
        # sum(usages) starts from 0.
        if other == 0:
            return self
        return NotImplemented


class HasUsage(Protocol):
    """Anything that knows the token counts of its call (an :class:`~zltrace.Exchange`)."""

    def usage(self) -> Usage | None: ...


def total_usage(exchanges: Iterable[HasUsage]) -> Usage:
    """The sum of :meth:`Exchange.usage` over ``exchanges`` (those without usage add nothing)."""
    total = Usage()
    for exchange in exchanges:
        usage = exchange.usage()
        if usage is not None:
            total = total + usage
    return total
