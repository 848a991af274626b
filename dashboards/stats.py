"""Live figures for a dashboard: per-second buckets over the last 15 minutes, fed by the pushed stream.

Blocked amounts are kept per currency: amounts in different currencies are never added together.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncMinute
from django.utils import timezone

from scoring.models import Case, Decision, Transaction
from scoring.results import money

ZERO = Decimal(0)
SPAN_SECONDS = 15 * 60
RATE_SECONDS = 10
BINS = 10


@dataclass
class Bucket:
    second: int
    count: int = 0
    flagged: int = 0
    blocked: int = 0
    blocked_counts: dict[str, int] = field(default_factory=dict)  # by currency
    blocked_amounts: dict[str, Decimal] = field(default_factory=dict)  # by currency
    histogram: list[int] = field(default_factory=lambda: [0] * BINS)

    def count_blocked(self, currency: str, *, count: int, amount: Decimal) -> None:
        self.blocked += count
        self.blocked_counts[currency] = self.blocked_counts.get(currency, 0) + count
        self.blocked_amounts[currency] = self.blocked_amounts.get(currency, ZERO) + amount


class LiveStats:
    """Counts by arrival second; old seconds fall off, so memory stays bounded at any rate."""

    def __init__(self, *, now: float | None = None) -> None:
        self.buckets: deque[Bucket] = deque()
        # The rate is measured on what arrived since counting began: the seeded minutes would make it
        # jump, and a full window before enough seconds had passed would make it creep up from zero.
        self.counting_since = int(now if now is not None else time.time())

    def seed(self, buckets: list[Bucket]) -> None:
        """Start from the stored last 15 minutes (minute buckets, oldest first)."""
        self.buckets.extend(
            replace(
                b,
                histogram=list(b.histogram),
                blocked_counts=dict(b.blocked_counts),
                blocked_amounts=dict(b.blocked_amounts),
            )
            for b in buckets
        )

    def add(self, items: Iterable[tuple[float, str, str, str]], *, now: float | None = None) -> None:
        """Count pushed transactions, each as (score, decision, amount, currency)."""
        second = int(now if now is not None else time.time())
        for score, decision, amount, currency in items:
            self._add_one(second, score, decision, amount, currency)

    def _add_one(self, second: int, score: float, decision: str, amount: str, currency: str) -> None:
        if not self.buckets or self.buckets[-1].second < second:
            self.buckets.append(Bucket(second))
        bucket = self.buckets[-1]  # a late arrival counts in the newest second
        bucket.count += 1
        bucket.flagged += decision != Decision.APPROVE
        if decision == Decision.BLOCK:  # the few blocked rows are the only ones whose amount is parsed
            bucket.count_blocked(currency, count=1, amount=Decimal(amount))
        bucket.histogram[min(int(score * BINS), BINS - 1)] += 1

    def snapshot(self, *, now: float | None = None) -> dict[str, Any]:
        """The figures of the `stats` message."""
        now_s = int(now if now is not None else time.time())
        while self.buckets and self.buckets[0].second <= now_s - SPAN_SECONDS:
            self.buckets.popleft()
        window = max(1, min(RATE_SECONDS, now_s - self.counting_since))
        recent = [b for b in self.buckets if b.second > now_s - window and b.second >= self.counting_since]
        total = sum(b.count for b in self.buckets)
        flagged = sum(b.flagged for b in self.buckets)
        minutes = [{"count": 0, "flagged": 0} for _ in range(15)]
        for b in self.buckets:
            index = 14 - (now_s - b.second) // 60
            if 0 <= index < 15:
                minutes[index]["count"] += b.count
                minutes[index]["flagged"] += b.flagged
        return {
            "rate": round(sum(b.count for b in recent) / window, 1),
            "count_15m": total,
            "flagged_share": round(flagged / total, 4) if total else 0.0,
            "blocked_count": sum(b.blocked for b in self.buckets),
            "blocked_amounts": blocked_by_currency(self.buckets),
            "histogram": [sum(b.histogram[i] for b in self.buckets) for i in range(BINS)],
            "volume": minutes,
        }


def blocked_by_currency(buckets: Iterable[Bucket]) -> list[dict[str, Any]]:
    """What was blocked, per currency: the most often blocked currencies first (amounts in different currencies
    cannot be compared), each total with its currency's decimals."""
    counts: dict[str, int] = {}
    amounts: dict[str, Decimal] = {}
    for b in buckets:
        for currency, count in b.blocked_counts.items():
            counts[currency] = counts.get(currency, 0) + count
            amounts[currency] = amounts.get(currency, ZERO) + b.blocked_amounts[currency]
    order = sorted(counts, key=lambda currency: (-counts[currency], currency))
    return [{"currency": c, "count": counts[c], "amount": money(amounts[c], c)} for c in order]


def recent_stats() -> list[Bucket]:
    """The stored last 15 minutes as minute buckets, from one aggregate query (a new socket's first figures)."""
    now = time.time()
    if _seed_cache and now - _seed_cache[0] < SEED_CACHE_SECONDS:
        return _seed_cache[1]  # sockets that connect together (a reconnect wave) share one query
    buckets = _buckets(_per_minute(since=timezone.now() - timedelta(seconds=SPAN_SECONDS)))
    _seed_cache[:] = [now, buckets]
    return buckets


def _per_minute(*, since: datetime) -> QuerySet[Transaction, dict[str, Any]]:
    """Counts, flagged, blocked and the score histogram of the scored transactions since `since`, by minute and
    currency (a few currencies: a few rows a minute)."""
    flagged, blocked = ~Q(decision=Decision.APPROVE), Q(decision=Decision.BLOCK)
    bins = {f"bin{i}": Count("id", filter=Q(score__gte=i / BINS) & _below(i)) for i in range(BINS)}
    return (
        Transaction.objects.scored()
        .filter(received_at__gte=since)
        .annotate(minute=TruncMinute("received_at"))
        .values("minute", "currency")
        .annotate(
            count=Count("id"),
            flagged=Count("id", filter=flagged),
            blocked=Count("id", filter=blocked),
            blocked_amount=Sum("amount", filter=blocked),
            **bins,
        )
        .order_by("minute", "currency")
    )


def _buckets(rows: Iterable[dict[str, Any]]) -> list[Bucket]:
    """One bucket a minute from the rows of its currencies, oldest first."""
    buckets: dict[int, Bucket] = {}
    for row in rows:
        second = int(row["minute"].timestamp())
        bucket = buckets.setdefault(second, Bucket(second))
        bucket.count += row["count"]
        bucket.flagged += row["flagged"]
        if row["blocked"]:
            bucket.count_blocked(row["currency"], count=row["blocked"], amount=row["blocked_amount"])
        for i in range(BINS):
            bucket.histogram[i] += row[f"bin{i}"]
    return [buckets[second] for second in sorted(buckets)]


def _below(i: int) -> Q:
    return Q(score__lt=(i + 1) / BINS) if i < BINS - 1 else Q()


SEED_CACHE_SECONDS = 2.0
_seed_cache: list[Any] = []


def forget_recent() -> None:
    """Drop the cached last-15-minutes figures (tests)."""
    _seed_cache.clear()


def open_cases() -> int:
    return Case.objects.open().count()
