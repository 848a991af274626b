"""Amounts as the dashboards write them: with as many decimals as their currency has (scoring/results.money)."""

from __future__ import annotations

from decimal import Decimal

from django import template

from scoring.results import money as currency_money

register = template.Library()


@register.filter
def money(amount: float | Decimal, currency: str) -> str:
    """`amount` in `currency`'s decimals ("1200" yen, "12.50" euros); a float (a figure summed in numpy) is
    taken at its shortest repr, not at its binary value."""
    return currency_money(amount if isinstance(amount, Decimal) else Decimal(repr(float(amount))), currency)
