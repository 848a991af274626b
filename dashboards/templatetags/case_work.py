"""What the resolve form and the list controls read for themselves, wherever they are included: the reason codes
in use, grouped by the verdict they go with, and the list entry in force for a card or merchant."""

from __future__ import annotations

from typing import Any

from django import template

from dashboards.forms import EXPIRY_DAYS
from scoring.lists import ANALYST_MAX_DAYS, in_force_for
from scoring.models import ListEntry, ReasonCode

register = template.Library()

VERDICT_GROUPS = [("fraud", "Fraud"), ("legitimate", "Legitimate"), ("", "Either verdict")]


@register.simple_tag(takes_context=True)
def reason_groups(context: template.Context) -> list[tuple[str, list[ReasonCode]]]:
    """[(group label, reasons)] for the verdicts; read once per request, however many queue rows ask."""
    request = context.get("request")
    groups = getattr(request, "_reason_groups", None)
    if groups is None:
        active = list(ReasonCode.objects.filter(is_active=True))
        groups = [(label, [r for r in active if r.verdict == verdict]) for verdict, label in VERDICT_GROUPS]
        groups = [(label, reasons) for label, reasons in groups if reasons]
        if request is not None:
            request._reason_groups = groups
    return groups


@register.simple_tag
def list_entry(entity: str, value: Any) -> ListEntry | None:
    """The allow or block entry in force for this card or merchant, if any."""
    return in_force_for(entity=entity, value=str(value)) if entity and value else None


@register.simple_tag
def expiry_choices() -> list[tuple[str, str]]:
    """The list form's expiries, in days: [("1", "1 day"), ...]."""
    return [(str(days), f"{days} day{'s' if days > 1 else ''}") for days in EXPIRY_DAYS]


@register.simple_tag
def analyst_max_days() -> int:
    return ANALYST_MAX_DAYS
