"""Live figures: seeded from the stored last 15 minutes by one aggregate query, then fed by the stream."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from dashboards import broadcast
from dashboards.stats import Bucket, LiveStats, recent_stats
from scoring.models import Transaction

pytestmark = pytest.mark.django_db


def stored(
    external_id: str,
    *,
    score: float,
    decision: str,
    amount: str = "10.00",
    currency: str = "EUR",
    model_version: str = "t",
) -> None:
    Transaction.objects.create(
        external_id=external_id,
        card_id="c",
        merchant_id="m",
        amount=Decimal(amount),
        currency=currency,
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
    assert figures["blocked_amounts"] == [{"currency": "EUR", "count": 1, "amount": "250.00"}]
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

    stats.add([(0.95, "block", "12.50", "EUR"), (0.1, "approve", "3.00", "EUR")], now=1020.0)
    figures = stats.snapshot(now=1020.0)

    assert figures["count_15m"] == 2
    assert figures["flagged_share"] == 0.5
    assert figures["blocked_amounts"] == [{"currency": "EUR", "count": 1, "amount": "12.50"}]
    assert figures["rate"] == 0.2


def test_the_rate_counts_what_arrived_since_counting_began_not_the_seeded_minutes():
    stats = LiveStats(now=1000.0)
    stats.seed([Bucket(second=960, count=600)])  # a stored minute, seeded at start

    stats.add([(0.1, "approve", "1.00", "EUR")] * 6, now=1002.0)
    figures = stats.snapshot(now=1003.0)

    assert figures["rate"] == 2.0  # 6 in the 3 s since counting began: not 606 / 10, nor 6 / 10
    assert figures["count_15m"] == 606


def test_blocked_amounts_are_kept_per_currency_and_never_added_together():
    stats = LiveStats(now=1000.0)

    blocked = [("12.50", "EUR"), ("30.00", "USD"), ("7.50", "EUR"), ("1200", "JPY"), ("0.10", "EUR")]
    stats.add([(0.97, "block", amount, currency) for amount, currency in blocked], now=1001.0)
    stats.add([(0.2, "approve", "999.00", "USD"), (0.7, "review", "500.00", "GBP")], now=1002.0)
    figures = stats.snapshot(now=1002.0)

    assert figures["blocked_count"] == 5
    assert figures["blocked_amounts"] == [  # the most often blocked currency first, each in its own decimals
        {"currency": "EUR", "count": 3, "amount": "20.10"},
        {"currency": "JPY", "count": 1, "amount": "1200"},
        {"currency": "USD", "count": 1, "amount": "30.00"},
    ]
    assert "blocked_amount" not in figures


def test_the_stored_minutes_keep_blocked_amounts_per_currency_and_count_each_transaction_once():
    stored("eur-1", score=0.97, decision="block", amount="100.00", currency="EUR")
    stored("eur-2", score=0.95, decision="block", amount="0.05", currency="EUR")
    stored("sek", score=0.99, decision="block", amount="2500.00", currency="SEK")
    stored("gbp", score=0.10, decision="approve", amount="40.00", currency="GBP")

    stats = LiveStats()
    stats.seed(recent_stats())
    stats.add([(0.96, "block", "50.00", "SEK")])
    figures = stats.snapshot()

    assert figures["count_15m"] == 5
    assert figures["blocked_count"] == 4
    assert figures["blocked_amounts"] == [
        {"currency": "EUR", "count": 2, "amount": "100.05"},
        {"currency": "SEK", "count": 2, "amount": "2550.00"},
    ]
    assert sum(figures["histogram"]) == 5
    assert sum(m["count"] for m in figures["volume"]) == 5


def test_seeding_copies_the_stored_buckets_so_live_counts_never_change_the_shared_seed():
    seed = [Bucket(second=1000, count=1, blocked=1, blocked_counts={"EUR": 1}, blocked_amounts={"EUR": Decimal(5)})]
    stats = LiveStats(now=1000.0)
    stats.seed(seed)

    stats.add([(0.99, "block", "1.00", "EUR")], now=1000.0)  # the same second: counted into the seeded bucket

    assert stats.snapshot(now=1000.0)["blocked_amounts"] == [{"currency": "EUR", "count": 2, "amount": "6.00"}]
    assert seed[0].blocked_amounts == {"EUR": Decimal(5)}
    assert seed[0].blocked_counts == {"EUR": 1}


def test_the_pushed_stream_carries_each_blocked_amount_with_its_currency():
    events = [
        {"id": 1, "score": 0.98, "decision": "block", "amount": "1500", "currency": "JPY"},
        {"id": 2, "score": 0.97, "decision": "block", "amount": "20.00", "currency": "PLN"},
        {"id": 3, "score": 0.99, "decision": "block", "amount": "5.00", "currency": "PLN"},
    ]
    stats = LiveStats(now=1000.0)

    stats.add(broadcast.packed_figures([broadcast.pack(event) for event in events]), now=1000.0)

    assert stats.snapshot(now=1000.0)["blocked_amounts"] == [
        {"currency": "PLN", "count": 2, "amount": "25.00"},
        {"currency": "JPY", "count": 1, "amount": "1500"},
    ]
