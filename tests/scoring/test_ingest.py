"""The ingest pipeline: event-time features from stored history, lists, reproducible scores."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from scoring import ingest, storage
from scoring.features import (
    FEATURE_INDEX,
    FEATURES,
    card_histories,
    epoch_hour,
    feature_rows,
    label_delay_hours,
    merchant_counts,
)
from scoring.models import ListEntry, MerchantHour, Transaction
from scoring.results import transaction_event
from scoring.schemas import TransactionIn
from scoring.storage.sqlite import merchant_buckets
from tests.scoring.conftest import T0, features_of, item, stored

pytestmark = pytest.mark.django_db


def test_card_windows_count_only_earlier_transactions_inside_each_window():
    stored("h-30m", at=T0 - timedelta(minutes=30), amount="20.00")
    stored("h-5h", at=T0 - timedelta(hours=5), amount="40.00")
    stored("h-3d", at=T0 - timedelta(days=3), amount="60.00")
    stored("h-40d", at=T0 - timedelta(days=40), amount="999.00")  # outside every window
    stored("h-later", at=T0 + timedelta(minutes=1), amount="500.00")  # after: never seen
    stored("h-same", at=T0, amount="700.00")  # same instant: not strictly before
    stored("other-card", at=T0 - timedelta(minutes=5), card="card-2")

    f = features_of(item(amount="120.00"))

    assert (f["card_count_1h"], f["card_count_1d"], f["card_count_7d"], f["card_count_30d"]) == (1, 2, 3, 3)
    assert f["card_sum_1d"] == 60.0
    assert f["card_avg_30d"] == 40.0
    assert f["amount_vs_card_avg_30d"] == 3.0
    assert f["seconds_since_card_prev"] == 30 * 60
    assert f["card_distinct_merchants_1d"] == 1


def test_card_histories_hold_each_cards_stored_rows_in_time_order_with_exact_seconds():
    # Microseconds, so that a conversion through anything but exact arithmetic would show.
    times = [T0 - timedelta(hours=h, microseconds=us) for h, us in ((30, 1), (2, 999_999), (1, 123_457))]
    for n, at in enumerate(times):
        stored(f"a-{n}", at=at, amount=f"{n + 1}.10", merchant=f"m-{n}")
    other = T0 - timedelta(hours=3, microseconds=500_001)
    stored("b-0", at=other, amount="7.77", card="card-2")
    stored("b-old", at=T0 - timedelta(days=31), card="card-2")  # outside the 30 days

    histories = card_histories([item(card_id="card-1"), item(card_id="card-2", amount="5.00")])

    # The batch's own items come last (both at T0): later items of a batch see the earlier ones.
    assert histories["card-1"].times[:3] == [at.timestamp() for at in times]
    assert histories["card-1"].amounts[:3] == [1.1, 2.1, 3.1]
    # Merchants only from a day before the batch's earliest item on (PostgreSQL reads no more): not m-0's.
    card = histories["card-1"]
    held = card.merchants[: 3 - card.merchants_from]
    assert held == ["m-0", "m-1", "m-2"][card.merchants_from :]
    assert card.merchants_from in (0, 1)  # 1 on PostgreSQL; the ORM's read (SQLite) keeps them all
    assert histories["card-2"].times == [other.timestamp(), T0.timestamp()]
    assert histories["card-2"].amounts == [7.77, 5.0]


AWKWARD_AMOUNTS = ["0.01", "0.29", "1.10", "123456.79", "9007199.25", "999999999.99", "1000000000.00"]


def test_card_histories_hold_each_amount_as_float_of_its_decimal():
    # Decimals that no float holds exactly: the stored float (amount_float) must round as float(Decimal) does,
    # as training's features do.
    for n, amount in enumerate(AWKWARD_AMOUNTS):
        stored(f"x-{n}", at=T0 - timedelta(minutes=len(AWKWARD_AMOUNTS) - n), amount=amount)

    (history,) = storage.read_history([item()]).cards.values()

    assert history.amounts == [float(Decimal(a)) for a in AWKWARD_AMOUNTS]
    stored_floats = Transaction.objects.order_by("timestamp").values_list("amount_float", flat=True)
    assert list(stored_floats) == [float(Decimal(a)) for a in AWKWARD_AMOUNTS]


def test_first_transaction_of_a_card_has_missing_history_features():
    f = features_of(item())

    assert f["card_count_30d"] == 0
    assert math.isnan(f["card_avg_30d"])
    assert math.isnan(f["amount_vs_card_avg_30d"])
    assert math.isnan(f["seconds_since_card_prev"])


def test_merchant_counts_and_delayed_fraud_share(settings):
    settings.FRAUD_LABEL_DELAY_DAYS = 7
    stored("m-1h", at=T0 - timedelta(hours=1), card="a")
    stored("m-2d", at=T0 - timedelta(days=2), card="b")
    stored("m-fraud-recent", at=T0 - timedelta(days=3), card="c", is_fraud=True)  # label too recent to use
    stored("m-fraud-old", at=T0 - timedelta(days=10), card="d", is_fraud=True)
    stored("m-legit-old", at=T0 - timedelta(days=9), card="e", is_fraud=False)

    f = features_of(item(card_id="new-card"))

    assert (f["merchant_count_1d"], f["merchant_count_7d"], f["merchant_count_30d"]) == (1, 3, 5)
    assert f["merchant_fraud_count_7d"] == 1  # only the one older than the label delay
    assert f["merchant_fraud_share_7d"] == 0.5
    assert f["merchant_fraud_count_1d"] == 0


@pytest.mark.parametrize("delay_days", [7, 0.5])
def test_merchant_counts_read_for_a_batch_are_those_of_the_merchants_stored_hours(settings, delay_days):
    """On PostgreSQL the database sums each window (scoring/storage/postgres.py); they must be the sums
    merchant_counts() takes of the same hours in Python, at every window's edges."""
    settings.FRAUD_LABEL_DELAY_DAYS = delay_days
    hour, delay = epoch_hour(T0), round(delay_days * 24)
    offsets = {delay * k + span + d for k in (0, 1) for span in (0, 24, 168, 720) for d in (-1, 0, 1)}
    MerchantHour.objects.bulk_create(
        MerchantHour(merchant_id=m, hour=hour - o, count=1 + o % 5, fraud_count=o % 3)
        for m in ("m-a", "m-b")
        for o in sorted(offsets)
        if m == "m-a" or o % 2
    )
    pairs = {(m, hour + d) for m in ("m-a", "m-b", "m-none") for d in (0, 1, 30)}
    items = [
        item(external_id=f"w-{m}-{h}", merchant_id=m, timestamp=datetime.fromtimestamp(h * 3600 + 60, UTC).isoformat())
        for m, h in pairs
    ]

    read = storage.read_history(items).merchants
    buckets = merchant_buckets({m for m, _ in pairs}, first=hour, last=hour + 30, delay=label_delay_hours())

    assert set(read) == pairs  # a merchant without stored hours too: all its counts 0
    for m, h in pairs:
        counts, got = merchant_counts(buckets[m], at=h), read[(m, h)]
        assert (list(got.counts), list(got.labeled), list(got.frauds)) == (
            counts.counts,
            counts.labeled,
            counts.frauds,
        ), (m, h - hour)


def test_time_of_day_and_week_features_use_utc():
    saturday_night = datetime(2026, 11, 7, 23, 30, tzinfo=UTC).astimezone()
    f = features_of(item(timestamp="2026-11-08T01:30:00+02:00"))

    assert saturday_night.weekday() in (5, 6)
    assert f["hour_of_day"] == 23
    assert f["is_night"] == 0
    assert f["is_weekend"] == 1


def test_later_items_of_a_batch_see_the_earlier_ones():
    first = item(external_id="b-1", timestamp=T0.isoformat(), amount="10.00")
    second = item(external_id="b-2", timestamp=(T0 + timedelta(minutes=1)).isoformat(), amount="30.00")
    next_hour = item(external_id="b-3", timestamp=(T0 + timedelta(hours=1)).isoformat(), amount="30.00")

    rows = feature_rows([second, first, next_hour])

    assert rows[0][FEATURE_INDEX["card_count_1h"]] == 1
    assert rows[1][FEATURE_INDEX["card_count_1h"]] == 0
    # merchant counts read whole hours before the transaction's own
    assert rows[0][FEATURE_INDEX["merchant_count_1d"]] == 0
    assert rows[2][FEATURE_INDEX["merchant_count_1d"]] == 2


def test_stored_transactions_count_in_their_merchants_hours(model_version):
    ingest.store([item(external_id="h-1"), item(external_id="h-2", card_id="card-2")])

    (counts,) = MerchantHour.objects.values_list("merchant_id", "count", "fraud_count")
    assert counts == ("merch-1", 2, 0)


def test_a_fraud_label_moves_into_and_out_of_the_merchants_fraud_count(model_version):
    from scoring import labels

    ingest.store([item(external_id="l-1")])

    labels.record(external_id="l-1", is_fraud=True)
    labels.record(external_id="l-1", is_fraud=True)  # the same label again changes nothing
    assert MerchantHour.objects.get().fraud_count == 1
    labels.record(external_id="l-1", is_fraud=False)
    assert MerchantHour.objects.get().fraud_count == 0


def test_scoring_is_reproducible_for_the_same_model_and_history(model_version):
    stored("prior", at=T0 - timedelta(hours=2), amount="15.00")
    tx = item(amount="250.00")

    (first,), _ = ingest.store([tx])
    Transaction.objects.filter(external_id=tx.external_id).delete()
    (second,), _ = ingest.store([tx])

    assert first.result["score"] == second.result["score"]
    assert first.result["reasons"] == second.result["reasons"]
    assert first.result["decision"] == second.result["decision"]


def test_block_list_forces_block_and_names_itself_as_the_reason(model_version):
    ListEntry.objects.create(kind="block", entity="card", value="card-bad", reason="stolen")

    (outcome,), _ = ingest.store([item(card_id="card-bad", amount="5.00")])

    assert outcome.result["decision"] == "block"
    assert outcome.result["reasons"][0]["feature"] == "block_list_card"
    assert outcome.result["case_id"] is not None


def test_allow_list_forces_approve(model_version):
    ListEntry.objects.create(kind="allow", entity="merchant", value="merch-vip", reason="known good")

    (outcome,), _ = ingest.store([item(merchant_id="merch-vip", amount="9000.00")])

    assert outcome.result["decision"] == "approve"
    assert outcome.result["case_id"] is None


def test_expired_list_entry_is_ignored(model_version):
    ListEntry.objects.create(
        kind="block", entity="card", value="card-1", reason="old", expires_at=datetime.now(UTC) - timedelta(days=1)
    )

    (outcome,), _ = ingest.store([item(amount="5.00")])

    assert outcome.result["decision"] == "approve"


def test_thresholds_come_from_the_active_model_version(model_version):
    model_version.review_threshold = 0.0
    model_version.block_threshold = 0.0
    model_version.save()

    (outcome,), _ = ingest.store([item(amount="5.00")])

    assert outcome.result["decision"] == "block"


def test_stored_transaction_keeps_the_features_the_model_saw(model_version):
    (outcome,), _ = ingest.store([item(amount="77.00")])

    tx = Transaction.objects.get(pk=outcome.result["id"])
    assert len(tx.features) == len(FEATURES)
    assert tx.feature_values()["amount"] == 77.0
    assert tx.feature_values()["amount_vs_card_avg_30d"] is None  # no history: missing


def test_a_new_transactions_event_carries_its_time_in_utc_as_a_stored_ones_does(model_version):
    (outcome,), (event,) = ingest.store([item(timestamp="2026-11-02T14:00:00+02:00")])

    assert event["timestamp"] == "2026-11-02T12:00:00Z"
    stored_event = transaction_event(Transaction.objects.get(pk=outcome.result["id"]), case=None)
    assert stored_event["timestamp"] == event["timestamp"]


def test_a_batch_costs_the_same_statements_whatever_its_size(model_version):
    """Feature state, rows, merchant hours and cases: a fixed set of statements per batch, not per item."""

    def statements(items: list[TransactionIn]) -> list[str]:
        seen: list[str] = []

        def count(execute, sql, params, many, context):
            seen.append(sql.split(None, 1)[0].upper())
            return execute(sql, params, many, context)

        with connection.execute_wrapper(count):
            outcomes, _ = ingest.store(items)
        assert all(o.created for o in outcomes)
        assert any(o.result["case_id"] for o in outcomes)  # the case statements run too
        # Savepoints only because the test runs inside a transaction.
        return [s for s in seen if s not in ("SAVEPOINT", "RELEASE")]

    ListEntry.objects.create(kind="block", entity="card", value="card-0", reason="flagged for the test")
    stored("old-1", at=T0 - timedelta(days=2), card="card-0", merchant="merch-0")
    statements([item(external_id="warm", card_id="card-0")])  # fills the caches (model, lists)
    one = statements([item(external_id="one", card_id="card-0", merchant_id="merch-0")])
    many = statements(
        [item(external_id=f"many-{i}", card_id=f"card-{i % 7}", merchant_id=f"merch-{i % 5}") for i in range(40)]
    )

    assert one == many
    if connection.vendor == "postgresql":
        assert one == ["SELECT", "SELECT", "SELECT", "WITH"]  # stored ids, two reads, one write
    else:
        # stored ids, two reads, the cards' open cases; the case joined, its audit event, rows, hours
        assert one == ["SELECT", "SELECT", "SELECT", "SELECT", "UPDATE", "INSERT", "INSERT", "INSERT"]


def test_a_retry_in_a_batch_costs_one_scoring_and_one_write(model_version, monkeypatch):
    """A stored external_id in a batch is found before scoring: the others are scored and written once, not
    scored, refused by the unique index, rolled back and scored again."""
    (first,), _ = ingest.store([item(external_id="r-1")])
    scored_rows = []
    real_score = ingest.Scorer.score
    monkeypatch.setattr(ingest.Scorer, "score", lambda self, x: scored_rows.append(len(x)) or real_score(self, x))
    writes = []

    def count(execute, sql, params, many, context):
        writes.extend(["WITH"] if sql.lstrip().startswith("WITH") else [])
        writes.extend(["INSERT"] if sql.lstrip().upper().startswith('INSERT INTO "SCORING_TRANSACTION') else [])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        outcomes, events = ingest.store([item(external_id="r-2"), item(external_id="r-1"), item(external_id="r-3")])

    assert [o.created for o in outcomes] == [True, False, True]
    assert outcomes[1].result == first.result
    assert scored_rows == [2]  # r-2 and r-3, once
    assert len(writes) == 1
    assert [e["external_id"] for e in events] == ["r-2", "r-3"]
