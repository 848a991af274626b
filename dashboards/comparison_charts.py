"""The comparison page's histogram, drawn on the server as team_charts draws the team's: positions as percentages
of the chart, so one inline SVG fits any width without a script.

The counts are on a logarithmic scale: most transactions score near zero, and on a linear one the flagged tail,
where the two models differ in what they decide, would be a row of invisible bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dashboards.comparison import BINS, Comparison

GAP = 0.2  # the share of each band's slot left empty between bands


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    height: float
    tone: str  # champion or challenger
    title: str

    @property
    def top(self) -> float:
        return round(100 - self.height, 2)


@dataclass(frozen=True)
class Line:
    """A horizontal grid line (a count) or a vertical marker (a threshold), at a percentage of the chart."""

    at: float
    label: str
    tone: str = ""
    title: str = ""


def charts(comparison: Comparison) -> dict[str, Any]:
    """The histogram's bars, its count grid lines, its threshold markers and its score ticks."""
    champion, shadow = comparison.champion.histogram, comparison.shadow.histogram
    top = max((*champion, *shadow), default=0)
    return {
        "bars": [
            *_bars(champion, top=top, tone="champion", offset=0),
            *_bars(shadow, top=top, tone="challenger", offset=1),
        ],
        "grid": [Line(at=round(100 - log_height(n, top=top), 2), label=_count(n)) for n in _powers(top)],
        "markers": _markers(comparison),
        "ticks": [Line(at=round(100 * s, 2), label=f"{s:g}") for s in (0, 0.25, 0.5, 0.75, 1)],
    }


def log_height(count: int, *, top: int) -> float:
    """A count's height as a percentage of the plot: log(1 + count) against log(1 + the largest count)."""
    if count <= 0 or top <= 0:
        return 0.0
    return round(100 * math.log10(1 + count) / math.log10(1 + top), 2)


def _bars(counts: tuple[int, ...], *, top: int, tone: str, offset: int) -> list[Bar]:
    """Each band's bar for one model: the champion's left half of the band's slot, the challenger's the right."""
    slot = 100 / BINS
    width = slot * (1 - GAP) / 2
    who = "active model" if tone == "champion" else "challenger"
    return [
        Bar(
            x=round(slot * i + slot * GAP / 2 + width * offset, 3),
            width=round(width, 3),
            height=log_height(n, top=top),
            tone=tone,
            title=f"{who}: {n:,} scored {i / BINS:.2f}–{(i + 1) / BINS:.2f}",
        )
        for i, n in enumerate(counts)
        if n
    ]


def _markers(comparison: Comparison) -> list[Line]:
    lines = []
    for side, tone, who in (
        (comparison.champion, "champion", "active model"),
        (comparison.shadow, "challenger", "challenger"),
    ):
        for name, value in (("review", side.review_threshold), ("block", side.block_threshold)):
            lines.append(
                Line(at=round(100 * value, 2), label=name, tone=tone, title=f"{who}'s {name} threshold {value:.2f}")
            )
    return lines


def _powers(top: int) -> list[int]:
    """1, 10, 100, ... up to the largest count, and the largest count itself unless a power lies close below it:
    the grid lines of a logarithmic scale, its top labeled."""
    if top < 1:
        return []
    powers = [10**k for k in range(int(math.log10(top)) + 1)]
    return powers if top < 2 * powers[-1] else [*powers, top]


def _count(n: int) -> str:
    if n >= 1_000_000:
        return f"{round(n / 1_000_000, 1):g}M"
    return f"{round(n / 1000, 1):g}k" if n >= 1000 else str(n)
