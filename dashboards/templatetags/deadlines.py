"""How the desk shows a case's deadlines: how old it is, when it is due, whether it is overdue, when a claim lapses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django import template
from django.utils import timezone

from scoring import cases
from scoring.models import Case

register = template.Library()


@dataclass(frozen=True)
class Deadlines:
    age: str  # how long it has been open; once resolved, how long it was open
    due_in: str  # the time left before its due time ("" when overdue or resolved)
    overdue_by: str  # how far past its due time an open case is ("" when it is not)
    claim_lapses_at: datetime | None  # when its claim returns it to the queue unless the holder acts


@register.simple_tag
def deadlines(case: Case) -> Deadlines:
    """`{% deadlines case as due %}`: the case's deadlines in words, as of now."""
    now = timezone.now()
    end = now if case.is_open or case.resolved_at is None else case.resolved_at
    overdue = case.is_open and case.due_at < now
    return Deadlines(
        age=duration(end - case.opened_at),
        due_in=duration(case.due_at - now) if case.is_open and not overdue else "",
        overdue_by=duration(now - case.due_at) if overdue else "",
        claim_lapses_at=cases.claim_lapses_at(case),
    )


def duration(span: timedelta) -> str:
    """A span in the desk's short words, to the minute: "<1 min", "45 min", "3 h 5 min", "2 d 4 h"."""
    minutes = max(int(span.total_seconds() // 60), 0)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else "<1 min"
