"""The team page's charts, drawn on the server: bar positions as percentages of the chart, so one inline SVG
fits any width with crisp text and no script, and the words the charts and figures show."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.urls import reverse

from dashboards.team import AGE_BUCKETS, TeamOverview

GAP = 0.28  # the share of each column's slot left empty between columns
MIN_BAR = 1.5  # percent: a non-zero value stays visible beside a large one


@dataclass(frozen=True)
class Column:
    """One column of a column chart: its left edge, width and centre as percentages of the chart's width,
    its height as a percentage of the plot's."""

    label: str
    weekday: str  # shown before the label where there is room
    text: str  # above the column
    title: str  # the tooltip, in words
    x: float
    width: float
    center: float
    height: float
    tone: str = ""

    @property
    def top(self) -> float:
        return round(100 - self.height, 2)


@dataclass(frozen=True)
class Segment:
    """One part of a horizontal stacked bar, as percentages of the bar's full width."""

    x: float
    width: float
    tone: str
    title: str


@dataclass(frozen=True)
class Row:
    """A named horizontal bar: who, where their name links, the bar's parts and the figure after it."""

    name: str
    href: str
    segments: tuple[Segment, ...]
    text: str
    sub: str = ""
    flag: str = ""  # a warning beside the figure


def charts(overview: TeamOverview) -> dict[str, Any]:
    """Everything the template draws, from the overview's figures."""
    return {
        "age_columns": _age_columns(overview),
        "load_rows": _load_rows(overview),
        "resolved_columns": _resolved_columns(overview),
        "heat_rows": _heat_rows(overview),
        "heat_days": [(f"{day:%a}", str(day.day), _day(day)) for day in overview.days],
        "median_rows": _median_rows(overview),
        "precision_columns": _precision_columns(overview),
        "age_keys": [(label, f"age{i}") for i, (label, _, _) in enumerate(AGE_BUCKETS)],
        "oldest_age": duration(overview.now - overview.oldest_open) if overview.oldest_open else "",
        "median_text": duration(overview.median) if overview.median is not None else "—",
        "precision_text": percent(overview.precision.share),
        # The whole period's precision as a line across the daily columns (their top is 100 %).
        "precision_guide": None if overview.precision.share is None else round(100 - 100 * overview.precision.share, 2),
    }


def queue_url(username: str) -> str:
    """The review queue filtered to one analyst's cases (or to the unclaimed ones, for no one)."""
    return f"{reverse('dashboards:queue')}?assignee={username or 'unclaimed'}"


def columns(
    values: Sequence[float],
    *,
    labels: Sequence[str],
    texts: Sequence[str],
    titles: Sequence[str],
    top: float | None = None,
    weekdays: Sequence[str] | None = None,
    tones: Sequence[str] | None = None,
) -> list[Column]:
    """Columns side by side across the chart, each as tall as its value against `top` (the largest by default)."""
    top = top if top is not None else max(values, default=0)
    slot = 100 / max(len(values), 1)
    width = slot * (1 - GAP)
    return [
        Column(
            label=labels[i],
            weekday=weekdays[i] if weekdays else "",
            text=texts[i],
            title=titles[i],
            x=round(slot * i + (slot - width) / 2, 2),
            width=round(width, 2),
            center=round(slot * (i + 0.5), 2),
            height=_height(value, top),
            tone=tones[i] if tones else "",
        )
        for i, value in enumerate(values)
    ]


def _height(value: float, top: float) -> float:
    if value <= 0 or top <= 0:
        return 0.0
    return round(max(MIN_BAR, 100 * value / top), 2)


def stacked(counts: Sequence[int], *, full: int, tones: Sequence[str], titles: Sequence[str]) -> tuple[Segment, ...]:
    """The non-zero counts laid end to end, `full` being the whole bar."""
    segments, x = [], 0.0
    for count, tone, title in zip(counts, tones, titles, strict=True):
        if count:
            width = 100 * count / full
            segments.append(Segment(x=round(x, 2), width=round(width, 2), tone=tone, title=title))
            x += width
    return tuple(segments)


# --- the charts ----------------------------------------------------------------------------------------


def _age_columns(overview: TeamOverview) -> list[Column]:
    labels = [label for label, _, _ in AGE_BUCKETS]
    return columns(
        overview.by_age,
        labels=labels,
        texts=[str(n) for n in overview.by_age],
        titles=[f"{n} open {_cases(n)} {label} old" for n, label in zip(overview.by_age, labels, strict=True)],
        tones=[f"age{i}" for i in range(len(AGE_BUCKETS))],
    )


def _load_rows(overview: TeamOverview) -> list[Row]:
    full = max((load.total for load in overview.loads), default=0)
    tones = [f"age{i}" for i in range(len(AGE_BUCKETS))]
    rows = []
    for load in overview.loads:
        titles = [f"{n} {label} old" for n, (label, _, _) in zip(load.by_age, AGE_BUCKETS, strict=True)]
        oldest = f"oldest {duration(overview.now - load.oldest)}" if load.oldest else ""
        rows.append(
            Row(
                name=load.username or "Unclaimed",
                href=queue_url(load.username),
                segments=stacked(load.by_age, full=full, tones=tones, titles=titles),
                text=str(load.total),
                sub=oldest,
                flag=f"{load.overdue} overdue" if load.overdue else "",
            )
        )
    return rows


def _resolved_columns(overview: TeamOverview) -> list[Column]:
    per_day = overview.resolved_per_day
    return columns(
        per_day,
        labels=[str(day.day) for day in overview.days],
        weekdays=[f"{day:%a}" for day in overview.days],
        texts=[str(n) if n else "" for n in per_day],
        titles=[f"{n} {_cases(n)} resolved on {_day(day)}" for n, day in zip(per_day, overview.days, strict=True)],
    )


def _heat_rows(overview: TeamOverview) -> list[dict[str, Any]]:
    busiest = max((n for analyst in overview.analysts for n in analyst.per_day), default=0)
    return [
        {
            "name": analyst.username,
            "href": queue_url(analyst.username),
            "cells": [
                {"count": n, "heat": round(n / busiest, 2) if busiest else 0, "title": f"{n} on {_day(day)}"}
                for n, day in zip(analyst.per_day, overview.days, strict=True)
            ],
            "total": analyst.total,
            "median": duration(analyst.median) if analyst.median is not None else "—",
        }
        for analyst in overview.analysts
    ]


def _median_rows(overview: TeamOverview) -> list[Row]:
    timed = sorted(
        ((analyst.median, analyst) for analyst in overview.analysts if analyst.median is not None),
        key=lambda pair: (pair[0], pair[1].username),
    )
    longest = max((median for median, _ in timed), default=timedelta())
    return [
        Row(
            name=analyst.username,
            href=queue_url(analyst.username),
            segments=(
                Segment(
                    x=0,
                    width=round(max(MIN_BAR, 100 * median / longest) if longest else MIN_BAR, 2),
                    tone="median",
                    title=f"half of {analyst.username}'s verdicts took {duration(median)} or less",
                ),
            ),
            text=duration(median),
            sub=f"{analyst.total} {_cases(analyst.total)}",
        )
        for median, analyst in timed
    ]


def _precision_columns(overview: TeamOverview) -> list[Column]:
    days = overview.precision_days
    return columns(
        [p.share or 0 for p in days],
        top=1,
        labels=[str(p.day.day) if p.day else "" for p in days],
        weekdays=[f"{p.day:%a}" for p in days],
        texts=[percent(p.share) for p in days],
        titles=[
            f"{p.fraud} of {p.resolved} {_cases(p.resolved)} resolved on {_day(p.day)} were fraud"
            if p.resolved
            else f"nothing resolved on {_day(p.day)}"
            for p in days
        ],
    )


# --- words ---------------------------------------------------------------------------------------------


def duration(span: timedelta) -> str:
    """A span as a lead reads it at a glance: "45 s", "12 min", "3 h 05 min", "2 d 4 h"."""
    seconds = int(span.total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 1:
        return f"{minutes} min"
    if days < 1:
        return f"{hours} h {minutes % 60:02d} min"
    return f"{days} d {hours % 24} h"


def percent(share: float | None) -> str:
    return "—" if share is None else f"{share * 100:.0f} %"


def _cases(n: int) -> str:
    return "case" if n == 1 else "cases"


def _day(day: date | datetime | None) -> str:
    return f"{day:%a %d %b}" if day else ""
