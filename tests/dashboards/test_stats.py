"""Live figures: seeded from the stored last 15 minutes by one aggregate query, then fed by the stream."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from dashboards.stats import Bucket, LiveStats, recent_stats
from scoring.models import Transaction

pytestmark = pytest.mark.django_db


def stored(external_id: str, *, score: float, decision: str, amount: str = "10.00", model_version: str = "t") -> None:
    Transaction.objects.create(
        external_id=external_id,
        card_id="c",
        merchant_id="m",
        amount=Decimal(amount),
        currency="EUR",
        timestamp=timezone.now(),
        score=score,
        decision=decision,
        model_version=model_version,
    )


def test_a_new_dashboard_starts_from_the_stored_last_15_minutes():
    stored("a", score=0.05, decision="approve")
    stored("b", score=0.62, decision="review")
    stored("c", score=0.97, decision="block", amount="250.00")
    old = Transaction.objects.get(external_id="a")
    Transaction.objects.filter(pk=old.pk).update(received_at=timezone.now() - timezone.timedelta(minutes=20))

    stats = LiveStats()
    stats.seed(recent_stats())
    figures = stats.snapshot()

    assert figures["count_15m"] == 2
    assert figures["flagged_share"] == 1.0
    assert figures["blocked_count"] == 1
    assert figures["blocked_amount"] == 250.0
    assert figures["histogram"][6] == 1
    assert figures["histogram"][9] == 1
    assert sum(m["count"] for m in figures["volume"]) == 2


def test_imported_history_of_the_last_15_minutes_is_not_counted_as_traffic():
    stored("live", score=0.62, decision="review")
    for i in range(3):  # history whose event time (its received_at) falls in the last 15 minutes
        stored(f"old-{i}", score=0.0, decision="approve", model_version="imported:bank-a")

    stats = LiveStats()
    stats.seed(recent_stats())
    figures = stats.snapshot()

    assert figures["count_15m"] == 1
    assert figures["flagged_share"] == 1.0
    assert figures["histogram"][0] == 0


def test_live_items_add_to_the_figures():
    stats = LiveStats(now=1000.0)

    stats.add([(0.95, "block", "12.50"), (0.1, "approve", "3.00")], now=1020.0)
    figures = stats.snapshot(now=1020.0)

    assert figures["count_15m"] == 2
    assert figures["flagged_share"] == 0.5
    assert figures["blocked_amount"] == 12.5
    assert figures["rate"] == 0.2


def test_the_rate_counts_what_arrived_since_counting_began_not_the_seeded_minutes():
    stats = LiveStats(now=1000.0)
    stats.seed([Bucket(second=960, count=600)])  # a stored minute, seeded at start

    stats.add([(0.1, "approve", "1.00")] * 6, now=1002.0)
    figures = stats.snapshot(now=1003.0)

    assert figures["rate"] == 2.0  # 6 in the 3 s since counting began: not 606 / 10, nor 6 / 10
    assert figures["count_15m"] == 606
