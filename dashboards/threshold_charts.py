"""The thresholds page's chart and tables, drawn on the server: precision, recall and flag rate against the
threshold as lines in one inline SVG (a 0..1000 by 0..100 plot stretched to any width, its strokes kept thin by
`non-scaling-stroke`), the current thresholds as vertical lines, and the figures in words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dashboards.team_charts import percent
from dashboards.templatetags.amounts import money
from scoring.thresholds import ThresholdFigures

WIDTH = 1000  # the plot's user units across: a threshold t is at x = t * WIDTH
HEIGHT = 100  # ... and up: a share s is at y = HEIGHT * (1 - s)
TABLE_STEP = 5  # the table's rows: every 0.05
SERIES = (
    ("precision", "Precision", "of the labeled flagged transactions, the share that was fraud"),
    ("recall", "Recall", "of the labeled fraud, the share flagged"),
    ("flag_rate", "Flag rate", "of every transaction scored, the share flagged"),
)


@dataclass(frozen=True)
class Line:
    key: str
    label: str
    title: str
    path: str  # SVG path data; a threshold without the figure (no labeled rows there) breaks the line


@dataclass(frozen=True)
class Marker:
    """A vertical line at a threshold: the current review or block threshold."""

    key: str
    label: str
    x: float  # user units
    left: float  # percent of the chart's width, for its label
    anchor: str


def chart(figures: ThresholdFigures, *, review: float, block: float) -> dict[str, Any]:
    """What the template draws: the three lines, the two markers and the axes' ticks."""
    points = figures.points()
    lines = [
        Line(key=key, label=label, title=title, path=_path([(p.threshold, getattr(p, key)) for p in points]))
        for key, label, title in SERIES
    ]
    markers = [_marker("review", "review", review), _marker("block", "block", block)]
    return {
        "lines": lines,
        "markers": markers,
        "x_ticks": [(round(k / 10, 1), k * 10) for k in range(11)],
        "y_ticks": [(f"{s} %", HEIGHT - s) for s in (0, 25, 50, 75, 100)],
        "plot_width": WIDTH,
        "plot_height": HEIGHT,
    }


def table(figures: ThresholdFigures, *, review: float, block: float) -> list[dict[str, Any]]:
    """The table's rows: every 0.05, and the current thresholds' own rows (marked) where they fall between."""
    steps = [k / 100 for k in range(0, 101, TABLE_STEP)]
    wanted = sorted({*steps, review, block})
    return [
        {**words(point), "is_review": point.threshold == review, "is_block": point.threshold == block}
        for point in figures.points(wanted)
    ]


def words(point: Any) -> dict[str, Any]:
    """One threshold's figures as the page shows them."""
    return {
        "threshold": threshold(point.threshold),
        "flag_rate": share(point.flag_rate),
        "flagged_per_day": per_day(point.flagged_per_day),
        "cases_per_day": per_day(point.cases_per_day),
        "precision": percent(point.precision),
        "recall": percent(point.recall),
        "caught": sorted(point.caught.items()),
    }


def comparison(figures: ThresholdFigures, *, current: tuple[float, float], proposed: tuple[float, float]) -> list[dict]:
    """What the proposed thresholds would have done beside the current ones: the flags (review threshold: every
    flagged transaction opens or joins a case) and the blocks (block threshold)."""
    sections = []
    for name, now, then in (("review", current[0], proposed[0]), ("block", current[1], proposed[1])):
        a, b = figures.at(now), figures.at(then)
        rows = [
            ("Flag rate" if name == "review" else "Block rate", share(a.flag_rate), share(b.flag_rate)),
            (
                "Flagged per day" if name == "review" else "Blocked per day",
                per_day(a.flagged_per_day),
                per_day(b.flagged_per_day),
            ),
            ("Cases per day", per_day(a.cases_per_day), per_day(b.cases_per_day)),
            ("Precision", percent(a.precision), percent(b.precision)),
            ("Recall", percent(a.recall), percent(b.recall)),
        ]
        for currency in figures.currencies:
            rows.append(
                (
                    f"Fraud caught, {currency}",
                    money(a.caught.get(currency, 0), currency),
                    money(b.caught.get(currency, 0), currency),
                )
            )
        sections.append(
            {
                "name": name,
                "current": words(a)["threshold"],
                "proposed": words(b)["threshold"],
                "changed": now != then,
                "rows": [{"label": label, "current": x, "proposed": y, "changed": x != y} for label, x, y in rows],
            }
        )
    return sections


# --- words and geometry ------------------------------------------------------------------------------------


def threshold(value: float) -> str:
    """Two decimals, as the thresholds are usually set; more when one was set finer (in the admin)."""
    return f"{value:.2f}" if round(value, 2) == value else f"{value:g}"


def share(value: float | None) -> str:
    """A share to a precision that tells small flag rates apart: "0.42 %", "3.1 %", "27 %"."""
    if value is None:
        return "—"
    pct = value * 100
    if pct == 0 or pct >= 10:
        return f"{pct:.0f} %"
    return f"{pct:.1f} %" if pct >= 1 else f"{pct:.2f} %"


def per_day(value: float) -> str:
    """Per day, to a precision that tells a quiet store's figures apart: "1,204", "3.5", "0.07"."""
    if value >= 10:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def _path(values: list[tuple[float, float | None]]) -> str:
    parts, drawing = [], False
    for t, v in values:
        if v is None:
            drawing = False
            continue
        parts.append(f"{'L' if drawing else 'M'}{t * WIDTH:.1f} {HEIGHT * (1 - v):.2f}")
        drawing = True
    return " ".join(parts)


def _marker(key: str, label: str, value: float) -> Marker:
    # The label sits inside the plot: to the left of a line near the right edge, else to its right.
    return Marker(
        key=key,
        label=f"{label} {threshold(value)}",
        x=round(value * WIDTH, 1),
        left=round(value * 100, 2),
        anchor="end" if value > 0.8 else "start",
    )
