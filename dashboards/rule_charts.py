"""A backtest as the rule pages draw it: a column per day, its hits stacked fraud / legitimate / unknown, drawn on
the server as percentages of the chart like dashboards/team_charts.py (one inline SVG fits any width, no script),
and the table and figures beside it. Everything reads Backtest.as_dict(), so a backtest run now and one kept on
a version (RuleVersion.backtest) are shown alike."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any

from dashboards.team_charts import GAP, MIN_BAR
from dashboards.templatetags.amounts import money as currency_money

KINDS = (("fraud", "labeled fraud"), ("legit", "labeled legitimate"), ("unknown", "not labeled yet"))
LABELS_SHOWN = 10  # day labels under the chart at most: the others are in the columns' tooltips and the table


@dataclass(frozen=True)
class Block:
    """One kind's part of a day's column, from `y` down `height` (percentages of the plot's height)."""

    kind: str
    y: float
    height: float


@dataclass(frozen=True)
class DayColumn:
    day: date
    label: str  # under the column, or "" where labels are thinned out
    title: str  # the tooltip, in words
    x: float
    width: float
    center: float
    blocks: tuple[Block, ...]
    hits: int


def panel(result: dict[str, Any]) -> dict[str, Any]:
    """Everything the backtest panel shows, from a Backtest.as_dict()."""
    days = [{**d, "day": date.fromisoformat(d["day"])} for d in result["per_day"]]
    return {
        "result": result,
        "per_day": days[::-1],  # the table reads newest first
        "columns": day_columns(days),
        "top": max((d["hits"] for d in days), default=0),
        "kinds": KINDS,
        "fraud_amounts": sorted(result["fraud_amount"].items()),
        "overlaps": sorted(result["overlap_rules"].items(), key=lambda pair: (-pair[1], pair[0])),
        "share_flagged": share(result["overlap_model"], result["hits"]),
        "share_fraud": share(result["fraud"], result["fraud"] + result["legit"]),
    }


def summary(result: dict[str, Any] | None) -> str:
    """A kept backtest in one line, for the version history."""
    if not result:
        return ""
    caught = sorted(result["fraud_amount"].items())
    money = ", ".join(f"{currency_money(amount, currency)} {currency}" for currency, amount in caught)
    said = (
        f"{result['hits']:,} hits in {result['days']} days: {result['fraud']:,} fraud, {result['legit']:,} legitimate, "
        f"{result['unknown']:,} unknown; {result['extra_cases']:,} extra cases; {result['overlap_model']:,} also "
        "flagged by the model"
    )
    return f"{said}; fraud caught {money}" if money else said


def day_columns(days: list[dict[str, Any]]) -> list[DayColumn]:
    """A column per day, oldest on the left, as tall as its hits against the busiest day's."""
    top = max((d["hits"] for d in days), default=0)
    slot = 100 / max(len(days), 1)
    width = slot * (1 - GAP)
    every = max(1, math.ceil(len(days) / LABELS_SHOWN))
    newest = len(days) - 1
    return [
        DayColumn(
            day=d["day"],
            # Counted back from the newest day, so today is always labeled.
            label=str(d["day"].day) if (newest - i) % every == 0 else "",
            title=_title(d),
            x=round(slot * i + (slot - width) / 2, 2),
            width=round(width, 2),
            center=round(slot * (i + 0.5), 2),
            blocks=_blocks(d, top=top),
            hits=d["hits"],
        )
        for i, d in enumerate(days)
    ]


def _blocks(day: dict[str, Any], *, top: int) -> tuple[Block, ...]:
    """The day's kinds stacked from the bottom: fraud first, where the eye starts."""
    if not day["hits"] or not top:
        return ()
    total = max(MIN_BAR, 100 * day["hits"] / top)
    blocks, bottom = [], 100.0
    for kind, _ in KINDS:
        if day[kind]:
            height = total * day[kind] / day["hits"]
            blocks.append(Block(kind=kind, y=round(bottom - height, 2), height=round(height, 2)))
            bottom -= height
    return tuple(blocks)


def _title(day: dict[str, Any]) -> str:
    when = f"{day['day']:%a %d %b}"
    if not day["hits"]:
        return f"no hits on {when}"
    parts = ", ".join(f"{day[kind]} {words}" for kind, words in KINDS if day[kind])
    return f"{day['hits']} {'hit' if day['hits'] == 1 else 'hits'} on {when}: {parts}"


def share(part: int, whole: int) -> str:
    return "—" if not whole else f"{100 * part / whole:.0f} %"
