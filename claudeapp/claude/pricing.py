"""Cost of one call, from the usage the API returned (reference section J).

- Thinking tokens are inside `output_tokens`: never added on top.
- The batch multiplier applies to every part (input, output, cache writes, cache reads).
- The long-prompt tier: when the gross prompt (input + cache writes + cache reads) is over the
  threshold, every token of the request, output included, is billed at the long-prompt rates.
- `cache_creation_input_tokens` is the total of the 5m and 1h writes; when the API gives the
  split, the split is used and the remainder (if any) is a 5m write. Nothing is counted twice.
- Decimal throughout; stored with 12 decimal places (per-token prices reach $5e-8).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

__all__ = ["PriceBook", "Rates", "Tokens", "compute_cost", "usage_tokens"]

MILLION = Decimal(1_000_000)
COST_QUANTUM = Decimal("0.000000000001")  # 12 decimal places


@dataclass(frozen=True, slots=True)
class Tokens:
    """Billable token counts of one request, each counted once."""

    input: int = 0  # uncached input after the last breakpoint
    output: int = 0  # includes thinking
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    thinking: int = 0  # informational: already inside `output`

    @property
    def prompt(self) -> int:
        return self.input + self.cache_write_5m + self.cache_write_1h + self.cache_read


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per million tokens for one model from one date (a `ModelPrice` row, detached)."""

    model_id: str
    effective_from: dt.datetime
    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal
    batch_multiplier: Decimal = Decimal("0.5")
    long_prompt_threshold: int | None = None
    long_input: Decimal | None = None
    long_output: Decimal | None = None
    long_cache_write_5m: Decimal | None = None
    long_cache_write_1h: Decimal | None = None
    long_cache_read: Decimal | None = None
    price_pk: int | None = None

    @classmethod
    def from_row(cls, row: Any) -> Rates:
        return cls(
            model_id=row.model_id,
            effective_from=row.effective_from,
            input=row.input_per_mtok,
            output=row.output_per_mtok,
            cache_write_5m=row.cache_write_5m_per_mtok,
            cache_write_1h=row.cache_write_1h_per_mtok,
            cache_read=row.cache_read_per_mtok,
            batch_multiplier=row.batch_multiplier,
            long_prompt_threshold=row.long_prompt_threshold,
            long_input=row.long_input_per_mtok,
            long_output=row.long_output_per_mtok,
            long_cache_write_5m=row.long_cache_write_5m_per_mtok,
            long_cache_write_1h=row.long_cache_write_1h_per_mtok,
            long_cache_read=row.long_cache_read_per_mtok,
            price_pk=row.pk,
        )

    def tier_for(self, prompt_tokens: int) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
        """(input, output, 5m write, 1h write, read) rates for a request of this prompt size."""
        if (
            self.long_prompt_threshold is not None
            and prompt_tokens > self.long_prompt_threshold
            and self.long_input is not None
        ):
            return (
                self.long_input,
                self.long_output,  # type: ignore[return-value]
                self.long_cache_write_5m,  # type: ignore[return-value]
                self.long_cache_write_1h,  # type: ignore[return-value]
                self.long_cache_read,  # type: ignore[return-value]
            )
        return (self.input, self.output, self.cache_write_5m, self.cache_write_1h, self.cache_read)


def compute_cost(tokens: Tokens, rates: Rates, *, batch: bool = False) -> Decimal:
    """USD for one request, quantized to 12 decimal places."""
    r_in, r_out, r_5m, r_1h, r_read = rates.tier_for(tokens.prompt)
    total = (
        tokens.input * r_in
        + tokens.output * r_out
        + tokens.cache_write_5m * r_5m
        + tokens.cache_write_1h * r_1h
        + tokens.cache_read * r_read
    ) / MILLION
    if batch:
        total *= rates.batch_multiplier
    return total.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def usage_tokens(usage: Any) -> Tokens:
    """`Tokens` from an SDK `Usage` (or its dict form), each token counted once."""
    cache_total = _get(usage, "cache_creation_input_tokens") or 0
    split = _get(usage, "cache_creation")
    w5 = _get(split, "ephemeral_5m_input_tokens") or 0
    w1 = _get(split, "ephemeral_1h_input_tokens") or 0
    if split is None or w5 + w1 == 0:
        w5, w1 = cache_total, 0
    elif cache_total > w5 + w1:
        w5 += cache_total - (w5 + w1)
    details = _get(usage, "output_tokens_details")
    output = _get(usage, "output_tokens") or 0
    thinking = min(_get(details, "thinking_tokens") or 0, output)
    return Tokens(
        input=_get(usage, "input_tokens") or 0,
        output=output,
        cache_write_5m=w5,
        cache_write_1h=w1,
        cache_read=_get(usage, "cache_read_input_tokens") or 0,
        thinking=thinking,
    )


class PriceBook:
    """All price rows, by model, sorted by `effective_from`: the rate in force at a moment."""

    def __init__(self, rows: list[Rates]) -> None:
        self._by_model: dict[str, list[Rates]] = {}
        for rates in sorted(rows, key=lambda r: r.effective_from):
            self._by_model.setdefault(rates.model_id, []).append(rates)
        self._starts = {m: [r.effective_from for r in rs] for m, rs in self._by_model.items()}

    def rates_at(self, model_id: str, when: dt.datetime) -> Rates | None:
        rows = self._by_model.get(model_id)
        if not rows:
            return None
        i = bisect.bisect_right(self._starts[model_id], when)
        return rows[i - 1] if i else None

    def models(self) -> list[str]:
        return list(self._by_model)
