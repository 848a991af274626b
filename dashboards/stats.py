"""Live figures for a dashboard: per-second buckets over the last 15 minutes, fed by the pushed stream."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.utils import timezone

from scoring.models import Case, Decision, Transaction

SPAN_SECONDS = 15 * 60
RATE_SECONDS = 10
BINS = 10


@dataclass
class Bucket:
    second: int
    count: int = 0
    flagged: int = 0
    blocked: int = 0
    blocked_amount: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * BINS)


class LiveStats:
    """Counts by arrival second; old seconds fall off, so memory stays bounded at any rate."""

    def __init__(self) -> None:
        self.buckets: deque[Bucket] = deque()

    def seed(self, rows: list[tuple[float, float, str, float]]) -> None:
        """Start from the stored last 15 minutes: (received epoch seconds, score, decision, amount)."""
        for at, score, decision, amount in sorted(rows):
            self._add_one(int(at), score, decision, amount)

    def add(self, items: list[dict[str, Any]], *, now: float | None = None) -> None:
        second = int(now if now is not None else time.time())
        for item in items:
            self._add_one(second, item["score"], item["decision"], float(item["amount"]))

    def _add_one(self, second: int, score: float, decision: str, amount: float) -> None:
        if not self.buckets or self.buckets[-1].second < second:
            self.buckets.append(Bucket(second))
        bucket = self.buckets[-1]  # a late arrival counts in the newest second
        bucket.count += 1
        bucket.flagged += decision != Decision.APPROVE
        if decision == Decision.BLOCK:
            bucket.blocked += 1
            bucket.blocked_amount += amount
        bucket.histogram[min(int(score * BINS), BINS - 1)] += 1

    def snapshot(self, *, now: float | None = None) -> dict[str, Any]:
        """The figures of the `stats` message."""
        now_s = int(now if now is not None else time.time())
        while self.buckets and self.buckets[0].second <= now_s - SPAN_SECONDS:
            self.buckets.popleft()
        recent = [b for b in self.buckets if b.second > now_s - RATE_SECONDS]
        total = sum(b.count for b in self.buckets)
        flagged = sum(b.flagged for b in self.buckets)
        minutes = [{"count": 0, "flagged": 0} for _ in range(15)]
        for b in self.buckets:
            index = 14 - (now_s - b.second) // 60
            if 0 <= index < 15:
                minutes[index]["count"] += b.count
                minutes[index]["flagged"] += b.flagged
        return {
            "rate": round(sum(b.count for b in recent) / RATE_SECONDS, 1),
            "count_15m": total,
            "flagged_share": round(flagged / total, 4) if total else 0.0,
            "blocked_count": sum(b.blocked for b in self.buckets),
            "blocked_amount": round(sum(b.blocked_amount for b in self.buckets), 2),
            "histogram": [sum(b.histogram[i] for b in self.buckets) for i in range(BINS)],
            "volume": minutes,
        }


def recent_stats(limit: int = 50_000) -> list[tuple[float, float, str, float]]:
    """The stored last 15 minutes, for a new socket's first figures (bounded)."""
    since = timezone.now() - timedelta(seconds=SPAN_SECONDS)
    rows = (
        Transaction.objects.filter(received_at__gte=since)
        .order_by("-id")
        .values_list("received_at", "score", "decision", "amount")[:limit]
    )
    return [(at.timestamp(), score, decision, float(amount)) for at, score, decision, amount in rows]


def open_cases() -> int:
    return Case.objects.open().count()
