"""What the card and merchant pages show about one card or merchant: its transactions (paged), a chart of its
amounts, the figures the model uses about it, its list entries, its cases and the cards or merchants linked to it.
The views (dashboards/entity_pages.py) only choose which of these to ask for."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from django.core.paginator import Page, Paginator
from django.db.models import Count, Max, Q, QuerySet

from scoring.features import (
    CARD_WINDOWS,
    FEATURE_INDEX,
    HISTORY_SPAN,
    MERCHANT_WINDOWS,
    CardHistory,
    MerchantCounts,
    TxFacts,
    feature_vector,
)
from scoring.models import IMPORTED, Case, ListEntry, Transaction
from scoring.results import describe, money

Kind = Literal["card", "merchant"]
FIELD: dict[str, str] = {"card": "card_id", "merchant": "merchant_id"}
PAGE_SIZE = 50
LINKED = 20  # merchants of a card, fraud cards of a merchant
CASES_SHOWN = 20
CHART_POINTS = 400  # the newest transactions the chart draws
CHART_CURRENCIES = 3  # one chart per currency: amounts in different currencies share no axis
WINDOW_NAMES = {"1h": "1 hour", "1d": "1 day", "7d": "7 days", "30d": "30 days"}
CARD_MODEL_FEATURES = [name for name in FEATURE_INDEX if "card" in name]  # what the model knows about the card


def transactions(kind: Kind, entity_id: str) -> QuerySet[Transaction]:
    """Every stored transaction of a card or merchant, scored and imported alike, newest first (served by the
    (card_id, timestamp) and (merchant_id, timestamp) indexes)."""
    rows = Transaction.objects.filter(**{FIELD[kind]: entity_id})
    return rows.select_related("case").order_by("-timestamp", "-id")


def is_known(kind: Kind, entity_id: str) -> bool:
    """A card or merchant with a stored transaction or a list entry: one the pages can say something about."""
    listed = ListEntry.objects.filter(entity=kind, value=entity_id)
    return transactions(kind, entity_id).exists() or listed.exists()


def transaction_page(kind: Kind, entity_id: str, *, number: Any) -> Page:
    """One page of its transactions (a page number out of range gives the last page, a malformed one the first)."""
    return Paginator(transactions(kind, entity_id), PAGE_SIZE).get_page(number)


def page_holding(kind: Kind, tx: Transaction) -> int:
    """The page of its card's (or merchant's) transactions that `tx` stands on."""
    same_time_newer = Q(timestamp=tx.timestamp, id__gt=tx.id)
    newer = transactions(kind, getattr(tx, FIELD[kind])).filter(Q(timestamp__gt=tx.timestamp) | same_time_newer)
    return newer.count() // PAGE_SIZE + 1


def label(tx: Transaction) -> str:
    """fraud, legitimate or unknown."""
    if tx.is_fraud is None:
        return "unknown"
    return "fraud" if tx.is_fraud else "legitimate"


def rows(page: Page) -> list[dict[str, Any]]:
    """A page's transactions as the entity tables show them."""
    return [
        {
            "tx": tx,
            "amount": money(tx.amount, tx.currency),
            "label": label(tx),
            "origin": tx.label_origin,
            "case": tx.case,
        }
        for tx in page.object_list
    ]


# --- the chart of amounts ----------------------------------------------------------------------------------


@dataclass
class Point:
    x: float  # percent of the plot's width, oldest on the left
    y: float  # percent of its height from the top
    kind: str  # approve, review, block or history (imported, never scored here)
    fraud: bool
    title: str


@dataclass
class AmountChart:
    """The newest transactions of one currency as points: amount against event time."""

    currency: str
    top: str  # the amount at the top of the axis, in words
    middle: str
    first: datetime
    last: datetime
    points: list[Point] = field(default_factory=list)
    flagged: int = 0
    frauds: int = 0


def amount_charts(kind: Kind, entity_id: str) -> tuple[list[AmountChart], dict[str, int]]:
    """Charts of its newest CHART_POINTS transactions, one per currency (the CHART_CURRENCIES most used), and how
    many of those transactions are in currencies left out, by currency."""
    fields = ("timestamp", "amount", "currency", "decision", "is_fraud", "external_id", "model_version")
    newest = list(transactions(kind, entity_id).values_list(*fields)[:CHART_POINTS])
    used = Counter(row[2] for row in newest)
    shown = [currency for currency, _ in used.most_common(CHART_CURRENCIES)]
    left_out = {currency: n for currency, n in used.items() if currency not in shown}
    return [_chart(currency, [row for row in newest if row[2] == currency]) for currency in shown], left_out


def _chart(currency: str, rows: list[tuple[Any, ...]]) -> AmountChart:
    first, last = min(row[0] for row in rows), max(row[0] for row in rows)
    span = (last - first).total_seconds()
    top = _axis_top(float(max(row[1] for row in rows)))
    chart = AmountChart(currency=currency, top=_axis_label(top), middle=_axis_label(top / 2), first=first, last=last)
    for at, amount, _, decision, is_fraud, external_id, version in reversed(rows):
        imported = version.startswith(IMPORTED)
        point_kind = "history" if imported else decision
        x = 50.0 if span == 0 else 100 * (at - first).total_seconds() / span
        y = 100 - 100 * float(amount) / top
        said = "imported history" if imported else decision
        fraud_words = {True: ", fraud", False: ", legitimate", None: ""}[is_fraud]
        title = f"{external_id}: {money(amount, currency)} {currency}, {said}{fraud_words}, {at:%Y-%m-%d %H:%M} UTC"
        chart.points.append(Point(x=round(x, 2), y=round(y, 2), kind=point_kind, fraud=bool(is_fraud), title=title))
        chart.flagged += point_kind in ("review", "block")
        chart.frauds += bool(is_fraud)
    return chart


def _axis_top(largest: float) -> float:
    """A round number at or above the largest amount (1, 2 or 5 times a power of ten), so the ticks read easily."""
    if largest <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(largest))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= largest)


def _axis_label(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:,.2g}"


# --- the figures the model uses ----------------------------------------------------------------------------


_ZEROS = [0.0] * len(MERCHANT_WINDOWS)
NO_MERCHANT = MerchantCounts(counts=_ZEROS, labeled=_ZEROS, frauds=_ZEROS)  # card figures need no merchant


def card_figures(card_id: str, *, now: datetime) -> dict[str, Any]:
    """The card's recent counts and amounts as the model's features compute them for a transaction made now
    (scoring/features.py, over the card's last 30 days), and what the model saw at its latest scored transaction.

    The features add amounts up as plain numbers, whatever their currency: `currencies` says which they were."""
    recent = Transaction.objects.filter(card_id=card_id, timestamp__gte=now - HISTORY_SPAN, timestamp__lt=now)
    history = list(
        recent.order_by("timestamp", "id").values_list("timestamp", "amount_float", "merchant_id", "currency")
    )
    card = CardHistory.ordered(
        [row[0].timestamp() for row in history], [row[1] for row in history], [row[2] for row in history]
    )
    values = feature_vector(TxFacts(at=now, amount=0.0, merchant_id=""), card=card, merchant=NO_MERCHANT)
    windows = [
        {
            "window": WINDOW_NAMES[w],
            "count": int(values[FEATURE_INDEX[f"card_count_{w}"]]),
            "sum": values[FEATURE_INDEX[f"card_sum_{w}"]],
            "average": _number(values[FEATURE_INDEX[f"card_avg_{w}"]]),
        }
        for w in CARD_WINDOWS
    ]
    latest = transactions("card", card_id).scored().first()
    seen = latest.feature_values() if latest else {}
    return {
        "windows": windows,
        "since_previous": describe("seconds_since_card_prev", values[FEATURE_INDEX["seconds_since_card_prev"]]),
        "merchants_1d": describe("card_distinct_merchants_1d", values[FEATURE_INDEX["card_distinct_merchants_1d"]]),
        "currencies": sorted({row[3] for row in history}),
        "latest": latest,
        "latest_seen": [
            describe(name, math.nan if seen[name] is None else seen[name])
            for name in CARD_MODEL_FEATURES
            if name in seen
        ],
    }


def _number(value: float) -> float | None:
    return None if value != value else value


def merchant_figures(merchant_id: str, *, now: datetime) -> dict[str, Any]:
    """The merchant's activity as the case page shows it (counts by event time, flagged share, confirmed frauds)."""
    return Transaction.objects.merchant_figures(merchant_id, now=now)


# --- list entries, cases, linked entities ------------------------------------------------------------------


def list_entries(kind: Kind, entity_id: str) -> list[ListEntry]:
    """Its allow/block list entries, in force or expired."""
    return list(ListEntry.objects.filter(entity=kind, value=entity_id).select_related("created_by"))


def cases_of(kind: Kind, entity_id: str) -> tuple[list[Case], int]:
    """Its newest cases (a card's own; for a merchant, the cases with an alert at it), and how many there are."""
    if kind == "card":
        found = Case.objects.filter(card_id=entity_id)
    else:
        alerts = Transaction.objects.filter(merchant_id=entity_id, case__isnull=False).values("case_id")
        found = Case.objects.filter(id__in=alerts)
    newest = found.select_related("assignee", "resolved_by").order_by("-opened_at", "-id")
    return list(newest[:CASES_SHOWN]), found.count()


def merchants_of_card(card_id: str) -> list[dict[str, Any]]:
    """The merchants a card paid at, most used first, with its transactions and confirmed frauds at each."""
    at_each = Transaction.objects.filter(card_id=card_id).values("merchant_id")
    counted = at_each.annotate(count=Count("id"), frauds=Count("id", filter=Q(is_fraud=True)), last=Max("timestamp"))
    return list(counted.order_by("-count", "merchant_id")[:LINKED])


def fraud_cards_of_merchant(merchant_id: str) -> list[dict[str, Any]]:
    """The cards with a confirmed fraud at a merchant, latest fraud first."""
    frauds = Transaction.objects.filter(merchant_id=merchant_id, is_fraud=True).values("card_id")
    counted = frauds.annotate(frauds=Count("id"), last=Max("timestamp"))
    return list(counted.order_by("-last", "card_id")[:LINKED])
