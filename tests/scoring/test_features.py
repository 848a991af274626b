"""Feature semantics shared by training and serving: strictly earlier rows, delayed labels, batches."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from datetime import timezone as tz

import numpy as np
import pytest
from django.utils import timezone

from scoring.features import (
    DAY,
    FEATURE_INDEX,
    CardHistory,
    MerchantBuckets,
    TxFacts,
    epoch_hour,
    feature_vector,
    merchant_counts,
    with_batch,
)
from scoring.history import store_history
from scoring.ingest import feature_rows
from scoring.schemas import TransactionIn
from scoring.simulation import Simulator
from scoring.training import history_features, labeled_frame, records_frame

AT = datetime(2026, 1, 14, 12, tzinfo=UTC)


def features(
    at: datetime, *, card: CardHistory | None = None, merchant: MerchantBuckets | None = None, channel: str = ""
) -> list[float]:
    counts = merchant_counts(merchant or MerchantBuckets(), at=at)
    facts = TxFacts(at=at, amount=20.0, merchant_id="m", channel=channel)
    return feature_vector(facts, card=card or CardHistory(), merchant=counts)


def test_a_card_without_history_has_no_average_and_no_previous_transaction():
    row = features(AT)
    assert math.isnan(row[FEATURE_INDEX["card_avg_30d"]])
    assert math.isnan(row[FEATURE_INDEX["amount_vs_card_avg_30d"]])
    assert math.isnan(row[FEATURE_INDEX["seconds_since_card_prev"]])
    assert row[FEATURE_INDEX["card_count_30d"]] == 0.0


def test_transactions_at_the_same_instant_do_not_see_each_other():
    at = AT.timestamp()
    card = CardHistory(times=[at - 60, at, at], amounts=[10.0, 99.0, 99.0], merchants=["a", "b", "c"])
    row = features(AT, card=card)
    assert row[FEATURE_INDEX["card_count_1h"]] == 1.0
    assert row[FEATURE_INDEX["card_sum_1h"]] == 10.0


def test_a_card_history_given_out_of_order_is_sorted_with_its_columns_kept_together():
    card = CardHistory.ordered([30.0, 10.0, 20.0], [3.0, 1.0, 2.0], ["c", "a", "b"])
    assert (card.times, card.amounts, card.merchants) == ([10.0, 20.0, 30.0], [1.0, 2.0, 3.0], ["a", "b", "c"])


def test_a_card_history_given_in_order_is_kept_as_given():
    times = [1.0, 2.0, 2.0]
    card = CardHistory.ordered(times, [5.0, 7.0, 6.0], ["x", "z", "y"])
    assert card.times is times
    assert (card.amounts, card.merchants) == ([5.0, 7.0, 6.0], ["x", "z", "y"])


def test_merchant_buckets_given_out_of_order_are_sorted_and_count_as_if_added_one_by_one():
    ordered = MerchantBuckets.ordered([7, 3, 5], [70, 30, 50], [1, 0, 2])
    added = MerchantBuckets()
    for hour, count, frauds in ((7, 70, 1), (3, 30, 0), (5, 50, 2)):
        added.add(hour, count=count, frauds=frauds)

    assert (ordered.hours, ordered.counts, ordered.frauds) == ([3, 5, 7], [30, 50, 70], [0, 2, 1])
    assert ordered.between(4, 8) == added.between(4, 8) == (120, 3)
    assert ordered.between(0, 100) == (150, 3) and ordered.between(8, 9) == (0, 0)


def test_merchant_counts_see_whole_hours_before_the_transactions_own_hour():
    hour = epoch_hour(AT)
    merchant = MerchantBuckets()
    merchant.add(hour - 1, count=2)
    merchant.add(hour, count=5)  # the transaction's own hour: not complete yet, not counted
    merchant.add(hour - 25, count=1)
    row = features(AT, merchant=merchant)
    assert row[FEATURE_INDEX["merchant_count_1d"]] == 2.0
    assert row[FEATURE_INDEX["merchant_count_7d"]] == 3.0


def test_merchant_fraud_counts_only_see_labels_older_than_the_delay(settings):
    settings.FRAUD_LABEL_DELAY_DAYS = 7
    hour = epoch_hour(AT)
    merchant = MerchantBuckets()
    merchant.add(hour - 10 * 24, count=1)
    merchant.add(hour - 8 * 24, count=1, frauds=1)
    merchant.add(hour - 24, count=1, frauds=1)  # a day ago: its chargeback may not have come yet
    row = features(AT, merchant=merchant)
    assert row[FEATURE_INDEX["merchant_fraud_count_30d"]] == 1.0
    assert row[FEATURE_INDEX["merchant_fraud_share_30d"]] == 0.5
    assert row[FEATURE_INDEX["merchant_count_30d"]] == 3.0


@pytest.mark.parametrize("delay_days", [7, 0.5, 0])
def test_a_batchs_own_hours_count_as_if_added_to_the_merchants_buckets(settings, delay_days):
    settings.FRAUD_LABEL_DELAY_DAYS = delay_days
    hour, delay = epoch_hour(AT), round(delay_days * 24)
    stored = MerchantBuckets.ordered([hour - 900, hour - 200, hour - 30, hour - 1], [3, 4, 5, 6], [1, 1, 0, 2])
    # every edge of every window, counts' and labeled's: just inside, on the bound, just outside
    edges = [hour - delay * k - span + d for k in (0, 1) for span in (0, 24, 168, 720) for d in (-1, 0, 1)]
    rng = np.random.default_rng(7)
    batches = [[edge, hour] for edge in edges] + [[int(h) for h in rng.choice(edges, size=4)] for _ in range(30)]
    for batch in batches:
        added = MerchantBuckets.ordered(list(stored.hours), list(stored.counts), list(stored.frauds))
        for h in batch:
            added.add(h)
        expected = merchant_counts(added, at=hour)
        got = with_batch(merchant_counts(stored, at=hour), batch, hour=hour)
        assert (list(got.counts), list(got.labeled), list(got.frauds)) == (
            expected.counts,
            expected.labeled,
            expected.frauds,
        ), batch


def test_a_batch_all_in_its_own_hour_adds_nothing():
    stored = merchant_counts(MerchantBuckets.ordered([epoch_hour(AT) - 2], [4], [1]), at=epoch_hour(AT))
    assert with_batch(stored, [epoch_hour(AT)] * 3, hour=epoch_hour(AT)) is stored


def test_channel_and_time_of_day_are_encoded():
    night = datetime(2026, 1, 17, 3, 30, tzinfo=UTC)  # a Saturday
    row = features(night, channel="atm")
    assert [row[FEATURE_INDEX[n]] for n in ("hour_of_day", "is_night", "is_weekend", "channel")] == [3, 1, 1, 3]


def test_hour_and_weekday_are_the_calendars_in_utc_at_every_edge():
    # Computed from epoch seconds: they must agree with the calendar's, a microsecond either side of
    # midnight and of the hour, from the epoch's first day on, whatever offset the time was sent with.
    rng = random.Random(5)
    edges = [datetime(1970, 1, 1, tzinfo=UTC), datetime(2026, 11, 22, 23, 59, 59, 999999, tzinfo=UTC)]
    edges += [datetime(2026, 11, 23, tzinfo=UTC) + timedelta(microseconds=d) for d in (-1, 0, 1)]
    edges += [datetime(2026, 11, 23, 5, 59, 59, 999999, tzinfo=tz(timedelta(hours=-9, minutes=-30)))]
    randoms = [datetime.fromtimestamp(rng.uniform(0, 4e9), UTC) + timedelta(microseconds=rng.randrange(10**6))]
    randoms += [
        datetime.fromtimestamp(rng.uniform(0, 4e9), tz(timedelta(hours=rng.randrange(-23, 24)))) for _ in range(2000)
    ]
    for at in edges + randoms:
        row = features(at)
        utc = at.astimezone(UTC)
        assert row[FEATURE_INDEX["hour_of_day"]] == utc.hour, at
        assert row[FEATURE_INDEX["is_night"]] == (utc.hour < 6), at
        assert row[FEATURE_INDEX["is_weekend"]] == (utc.weekday() >= 5), at


@pytest.mark.django_db
def test_a_batch_scored_online_sees_the_same_features_as_training_on_the_stored_batch():
    end = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    records = list(
        Simulator(seed=8, cards=40, merchants=8, fraud_scale=3).history(start=end - timedelta(days=10), end=end)
    )
    stored, batch = records[:-40], records[-40:]
    store_history([(_item(r), r["is_fraud"]) for r in stored], source="t")

    online = np.array(feature_rows([_item(r) for r in batch]))

    offline = history_features(records_frame(records))[-40:]
    np.testing.assert_array_equal(online, offline)
    np.testing.assert_array_equal(history_features(labeled_frame()), history_features(records_frame(stored)))


def _item(record: dict) -> TransactionIn:
    return TransactionIn.model_validate({k: v for k, v in record.items() if k != "is_fraud"})


def test_a_history_with_merchants_for_its_latest_rows_only_counts_distinct_merchants_as_a_full_one():
    at = AT.timestamp()
    times = [at - 3 * DAY, at - 2 * DAY, at - DAY, at - 3600, at - 60]
    merchants = ["old-1", "old-2", "a", "b", "a"]
    full = CardHistory(times=list(times), amounts=[1.0] * 5, merchants=list(merchants))
    since = at - DAY
    recent = CardHistory.ordered(list(times), [1.0] * 5, merchants[2:], merchants_since=since)
    assert recent.merchants_from == 2
    for card in (full, recent):  # the batch's own items, one older than the kept merchants
        card.add(at=at - 30, amount=1.0, merchant_id="c")
        card.add(at=at - 5 * DAY, amount=1.0, merchant_id="ancient")
    assert recent.merchants_from == 3

    index = FEATURE_INDEX["card_distinct_merchants_1d"]
    for when in (at, at + 10, at + 3600):  # the batch's items: none earlier than the first
        facts = TxFacts(at=datetime.fromtimestamp(when, UTC), amount=5.0, merchant_id="x")
        counts = merchant_counts(MerchantBuckets(), at=facts.at)
        assert feature_vector(facts, card=recent, merchant=counts) == feature_vector(facts, card=full, merchant=counts)
    assert feature_vector(TxFacts(at=AT, amount=5.0, merchant_id="x"), card=recent, merchant=counts)[index] == 3.0


def test_a_history_refuses_a_transaction_whose_day_reaches_before_the_merchants_it_holds():
    at = AT.timestamp()
    card = CardHistory.ordered([at - 2 * DAY, at - 60], [1.0, 1.0], ["m"], merchants_since=at - DAY)
    earlier = TxFacts(at=AT - timedelta(days=1, hours=1), amount=5.0, merchant_id="x")
    with pytest.raises(ValueError, match="merchants only for later rows"):
        feature_vector(earlier, card=card, merchant=merchant_counts(MerchantBuckets(), at=earlier.at))


def test_merchants_for_the_latest_rows_are_matched_to_their_rows_when_the_rows_come_unsorted():
    at = AT.timestamp()
    card = CardHistory.ordered(
        [at - 60, at - 2 * DAY, at - 120], [3.0, 1.0, 2.0], ["late", "early"], merchants_since=at - DAY
    )
    assert (card.times, card.amounts) == ([at - 2 * DAY, at - 120, at - 60], [1.0, 2.0, 3.0])
    assert (card.merchants_from, card.merchants) == (1, ["early", "late"])
    for times in ([at - 2 * DAY, at - 60], [at - 60, at - 2 * DAY]):  # sorted and not: one recent row, two merchants
        with pytest.raises(ValueError, match="do not match"):
            CardHistory.ordered(times, [1.0, 1.0], ["m", "n"], merchants_since=at - DAY)


def test_the_amount_is_measured_against_the_cards_median_largest_and_spread_of_its_30_days():
    at = AT.timestamp()
    amounts = [10.0, 12.0, 14.0, 16.0, 500.0]  # a stolen card's big amount raises the average, not the median
    card = CardHistory(times=[at - 40 * DAY, *(at - d * DAY for d in (4, 3, 2, 1))], amounts=amounts)
    row = feature_vector(
        TxFacts(at=AT, amount=65.0, merchant_id="m"), card=card, merchant=merchant_counts(MerchantBuckets(), at=AT)
    )
    usual = [12.0, 14.0, 16.0, 500.0]  # the 30-day window: the row 40 days back is out
    mean = sum(usual) / 4
    std = math.sqrt(sum((a - mean) ** 2 for a in usual) / 4)
    assert row[FEATURE_INDEX["amount_vs_card_median_30d"]] == 65.0 / 15.0
    assert row[FEATURE_INDEX["amount_vs_card_max_30d"]] == 65.0 / 500.0
    assert row[FEATURE_INDEX["amount_zscore_card_30d"]] == pytest.approx((65.0 - mean) / std)


def test_amount_against_usual_is_missing_without_history_and_the_spread_without_two_different_amounts():
    at = AT.timestamp()
    empty, flat = CardHistory(), CardHistory(times=[at - DAY, at - 60], amounts=[20.0, 20.0])
    names = ("amount_vs_card_median_30d", "amount_vs_card_max_30d", "amount_zscore_card_30d")
    for card, expected in ((empty, [True, True, True]), (flat, [False, False, True])):
        row = features(AT, card=card)
        assert [math.isnan(row[FEATURE_INDEX[name]]) for name in names] == expected


def test_amount_against_usual_does_not_depend_on_the_order_of_rows_at_one_instant():
    at = AT.timestamp()
    amounts = [0.1, 0.2, 0.7, 1e6, 3.3]
    one = CardHistory(times=[at - 60] * 5, amounts=list(amounts))
    other = CardHistory(times=[at - 60] * 5, amounts=list(reversed(amounts)))
    assert features(AT, card=one) == features(AT, card=other)


def test_the_merchants_first_and_last_fraud_hours_are_those_before_the_label_delay_in_the_longest_window(settings):
    settings.FRAUD_LABEL_DELAY_DAYS = 7
    hour, delay = epoch_hour(AT), 7 * 24
    merchant = MerchantBuckets()
    merchant.add(hour - delay - 720, count=2, frauds=1)  # the window's first hour
    merchant.add(hour - delay - 721, count=1, frauds=1)  # before it
    merchant.add(hour - delay - 300, count=5)
    merchant.add(hour - delay - 40, count=3, frauds=2)
    merchant.add(hour - delay - 10, count=4)
    merchant.add(hour - delay, count=1, frauds=1)  # too recent: its label may not have come
    row = features(AT, merchant=merchant)
    assert row[FEATURE_INDEX["merchant_hours_since_first_fraud_30d"]] == delay + 720
    assert row[FEATURE_INDEX["merchant_hours_since_last_fraud_30d"]] == delay + 40
    clean = features(AT, merchant=MerchantBuckets.ordered([hour - delay - 5], [3], [0]))
    assert math.isnan(clean[FEATURE_INDEX["merchant_hours_since_first_fraud_30d"]])


def test_first_and_last_fraud_hours_match_a_scan_of_every_hour():
    rng = np.random.default_rng(3)
    for _ in range(200):
        hours = sorted(rng.choice(60, size=int(rng.integers(0, 20)), replace=False).tolist())
        frauds = [int(f) for f in rng.integers(0, 2, size=len(hours))]
        buckets = MerchantBuckets.ordered(hours, [1] * len(hours), frauds)
        start, end = sorted(int(v) for v in rng.integers(-5, 65, size=2))
        inside = [h for h, f in zip(hours, frauds, strict=True) if f and start <= h < end]
        expected = (float(inside[0]), float(inside[-1])) if inside else (None, None)
        assert buckets.fraud_hours(start, end) == expected, (hours, frauds, start, end)


@pytest.mark.django_db
@pytest.mark.parametrize("delay_days", [7, 0.5])
def test_the_stored_first_and_last_fraud_hours_are_those_merchant_counts_finds(settings, delay_days):
    """PostgreSQL finds them in SQL (scoring/storage/postgres.py), SQLite and training in Python: the same hours at
    every edge of the window."""
    from scoring import storage
    from scoring.features import label_delay_hours
    from scoring.models import MerchantHour
    from scoring.storage.sqlite import merchant_buckets

    settings.FRAUD_LABEL_DELAY_DAYS = delay_days
    hour, delay = epoch_hour(AT), round(delay_days * 24)
    offsets = sorted({delay + span + d for span in (0, 24, 168, 720) for d in (-1, 0, 1)})
    MerchantHour.objects.bulk_create(
        MerchantHour(merchant_id=m, hour=hour - o, count=1 + o % 5, fraud_count=(o + k) % 2)
        for k, m in enumerate(("m-a", "m-b"))
        for o in offsets
    )
    pairs = {(m, hour + d) for m in ("m-a", "m-b", "m-none") for d in (-1, 0, 1, 2)}
    items = [
        TransactionIn.model_validate(
            {"external_id": f"w-{m}-{h}", "card_id": "c", "merchant_id": m, "amount": "1.00", "currency": "EUR"}
            | {"timestamp": datetime.fromtimestamp(h * 3600 + 60, UTC).isoformat()}
        )
        for m, h in pairs
    ]

    read = storage.read_history(items).merchants
    buckets = merchant_buckets({m for m, _ in pairs}, first=hour - 1, last=hour + 2, delay=label_delay_hours())

    for m, h in pairs:
        expected = merchant_counts(buckets[m], at=h)
        assert (read[m, h].first_fraud, read[m, h].last_fraud) == (expected.first_fraud, expected.last_fraud), (m, h)
    assert read["m-a", hour].first_fraud is not None and read["m-none", hour].first_fraud is None
