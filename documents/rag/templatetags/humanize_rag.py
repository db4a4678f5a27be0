"""Small number formats for RAG pages: token counts, dollars, seconds."""

from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def tokens(value: object) -> str:
    try:
        return f"{int(value):,}"  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return "0"


@register.filter
def usd(value: object) -> str:
    if value is None:
        return "—"
    amount = Decimal(str(value))
    if amount and abs(amount) < Decimal("0.01"):
        return f"${amount:.4f}"
    return f"${amount:,.2f}"


@register.filter
def seconds(value: object) -> str:
    try:
        return f"{int(value) / 1000:.1f} s"  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return ""
