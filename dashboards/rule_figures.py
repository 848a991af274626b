"""What the rules pages show besides the rules themselves: each rule's live hits of the last day, its version
history as changes from one version to the next, and a refused condition with a caret under the mistake."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q

from scoring.models import Rule, RuleStatus, RuleVersion, Transaction

LIVE_WINDOW = timedelta(hours=24)
COMPARED = ("name", "status", "action", "priority", "description")  # the condition gets a diff of its own
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]+")


def live_hits(rules: Sequence[Rule], *, now: datetime) -> dict[int, int]:
    """How many transactions received in the last day each rule hit: active rules by the hits the callers were told
    (Transaction.rules), shadow rules by their recorded hits (Transaction.shadow_rules). A rule that is neither
    now still shows what it hit in the day, whichever way it ran.

    A textual match on the stored JSON: `"name": "X"` in the hits told, `"X"` in the shadow names. Both backends
    store those lists with the same spacing (PostgreSQL's jsonb prints it so, SQLite's ORM write dumps it so), and
    a name can hold no quote. One pass over the day's rows, a count for every rule. The match ignores case (what
    LIKE does on SQLite): rules whose names differ only in case would count each other's hits."""
    if not rules:
        return {}
    counts = {
        f"r{rule.pk}": Count(
            "id", filter=Q(rules__icontains=f'"name": "{rule.name}"') | Q(shadow_rules__icontains=f'"{rule.name}"')
        )
        for rule in rules
    }
    day = Transaction.objects.filter(received_at__gt=now - LIVE_WINDOW, received_at__lte=now)
    # Most rows hit no rule: a cheap test of that first spares them the textual match per rule.
    day = day.exclude(rules=[], shadow_rules=[])
    found = day.aggregate(**counts)
    return {rule.pk: found[f"r{rule.pk}"] for rule in rules}


def status_counts() -> dict[str, int]:
    """How many rules there are in each status, every status named (for the filter's figures)."""
    found = dict(Rule.objects.order_by().values_list("status").annotate(n=Count("id")))
    return {status: found.get(status, 0) for status in RuleStatus.values}


# --- the version history ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """A run of a condition's text in a diff: kept, removed ("del") or added ("ins")."""

    kind: str
    text: str


@dataclass(frozen=True)
class Change:
    """One version of a rule beside the one before it: which fields changed (from, to), and the condition's
    diff when it changed."""

    version: RuleVersion
    fields: tuple[tuple[str, str, str], ...]
    condition: tuple[Piece, ...]


def history(rule: Rule) -> list[Change]:
    """The rule's versions, newest first, each with what it changed from the previous one (the first: nothing)."""
    versions = list(RuleVersion.objects.filter(rule=rule).select_related("actor").order_by("version"))
    changes = []
    for before, after in zip([None, *versions], versions, strict=False):
        fields = tuple(
            (field, str(getattr(before, field)), str(getattr(after, field)))
            for field in COMPARED
            if before is not None and getattr(before, field) != getattr(after, field)
        )
        condition = (
            condition_diff(before.condition, after.condition)
            if before is not None and before.condition != after.condition
            else ()
        )
        changes.append(Change(version=after, fields=fields, condition=condition))
    return changes[::-1]


def condition_diff(before: str, after: str) -> tuple[Piece, ...]:
    """The two conditions as one text, word by word: what stayed, what went, what came."""
    old, new = _TOKEN.findall(before), _TOKEN.findall(after)
    pieces: list[Piece] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op == "equal":
            pieces.append(Piece("same", "".join(old[i1:i2])))
            continue
        if i2 > i1:
            pieces.append(Piece("del", "".join(old[i1:i2])))
        if j2 > j1:
            pieces.append(Piece("ins", "".join(new[j1:j2])))
    return tuple(pieces)


# --- a refused condition ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pointer:
    """The refused condition's line, and a caret under the column the refusal names."""

    line: int
    column: int
    text: str
    caret: str


def pointer(condition: str, *, line: int | None, column: int | None) -> Pointer | None:
    """The line of `condition` that `line`/`column` (1-based) point into, with a caret under the column; None
    when the refusal has no position. Positions count in the condition as the checker saw it (stripped)."""
    if line is None or column is None:
        return None
    lines = condition.strip().splitlines() or [""]
    text = lines[min(max(line, 1), len(lines)) - 1]
    column = min(max(column, 1), len(text) + 1)
    # Tabs stay tabs under the caret, so it lands under the same character however the browser draws them.
    lead = "".join(ch if ch == "\t" else " " for ch in text[: column - 1])
    return Pointer(line=line, column=column, text=text, caret=lead + "^")
