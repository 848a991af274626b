"""Shares as the dashboards write them: 42 %, or a dash when there is nothing to divide by."""

from __future__ import annotations

from django import template

from dashboards.team_charts import percent as percent_words

register = template.Library()


@register.filter
def percent(share: float | None) -> str:
    """A share of 0-1 as a whole percentage ("—" for None); below 1 % with one decimal, so a rare flag shows."""
    if share is not None and 0 < share < 0.01:
        return f"{share * 100:.1f} %"
    return percent_words(share)
