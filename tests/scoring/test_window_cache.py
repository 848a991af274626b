"""The process's cache of merchant windows (aggregates.WindowCache): reused, and forgotten when it must be."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from scoring import aggregates, ingest, labels
from scoring.aggregates import WindowCache
from scoring.features import MerchantCounts, epoch_hour
from scoring.models import MerchantHour
from tests.scoring.conftest import T0, features_of, item, stored

pytestmark = pytest.mark.django_db


def reads(items: list) -> int:
    """The SELECTs store(items) sends."""
    seen: list[str] = []

    def count(execute, sql, params, many, context):
        seen.append(sql.split(None, 1)[0].upper())
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        ingest.store(items)
    return seen.count("SELECT")


def test_merchant_windows_read_in_the_last_minute_are_not_read_again(model_version):
    stored("old", at=T0 - timedelta(hours=2), card="card-0", merchant="merch-9")
    ingest.store([item(external_id="warm", merchant_id="merch-7")])  # loads the model and the lists

    first = reads([item(external_id="w-1", merchant_id="merch-9")])
    second = reads([item(external_id="w-2", merchant_id="merch-9", timestamp=(T0 + timedelta(minutes=5)).isoformat())])
    other_merchant = reads([item(external_id="w-3", merchant_id="merch-8")])

    assert (first, second, other_merchant) == (3, 2, 3)  # stored ids, cards, merchant windows; no windows the 2nd time
    assert features_of(item(external_id="w-4", merchant_id="merch-9"))["merchant_count_1d"] == 1  # from the cache


def test_a_late_transaction_reaches_its_merchants_windows_at_once_in_its_process(model_version):
    ingest.store([item(external_id="now-1", merchant_id="merch-9")])  # its windows are kept now

    ingest.store([item(external_id="late", merchant_id="merch-9", timestamp=(T0 - timedelta(hours=3)).isoformat())])

    f = features_of(item(external_id="now-2", merchant_id="merch-9", timestamp=(T0 + timedelta(minutes=1)).isoformat()))
    assert f["merchant_count_1d"] == 1  # the late one; now-1 is in the transaction's own hour


def test_a_label_reaches_its_merchants_fraud_counts_at_once_in_its_process(model_version, settings):
    settings.FRAUD_LABEL_DELAY_DAYS = 7
    ingest.store([item(external_id="old", merchant_id="merch-9", timestamp=(T0 - timedelta(days=10)).isoformat())])
    assert features_of(item(external_id="probe-1", merchant_id="merch-9"))["merchant_fraud_count_30d"] == 0

    labels.record(external_id="old", is_fraud=True)

    assert features_of(item(external_id="probe-2", merchant_id="merch-9"))["merchant_fraud_count_30d"] == 1


def test_an_import_reaches_every_merchants_windows_at_once_in_its_process(model_version):
    from scoring.history import store_history

    assert features_of(item(external_id="probe-1", merchant_id="merch-9"))["merchant_count_1d"] == 0

    store_history(
        [(item(external_id="imp", merchant_id="merch-9", timestamp=(T0 - timedelta(hours=5)).isoformat()), None)],
        source="test",
    )

    assert features_of(item(external_id="probe-2", merchant_id="merch-9"))["merchant_count_1d"] == 1


def test_other_processes_counts_arrive_when_the_kept_windows_expire(model_version, settings, monkeypatch):
    settings.MERCHANT_WINDOWS_CACHE_SECONDS = 60
    hour = epoch_hour(T0)
    assert features_of(item(external_id="p-1", merchant_id="merch-9"))["merchant_count_1d"] == 0
    # Another process stores a late transaction: this process is not told.
    MerchantHour.objects.create(merchant_id="merch-9", hour=hour - 2, count=4, fraud_count=0)
    now = aggregates.time.monotonic()

    assert features_of(item(external_id="p-2", merchant_id="merch-9"))["merchant_count_1d"] == 0  # kept a minute
    monkeypatch.setattr(aggregates.time, "monotonic", lambda: now + 61)
    assert features_of(item(external_id="p-3", merchant_id="merch-9"))["merchant_count_1d"] == 4


def test_with_the_cache_off_every_batch_reads_the_windows(model_version, settings):
    settings.MERCHANT_WINDOWS_CACHE_SECONDS = 0
    features_of(item(external_id="p-1", merchant_id="merch-9"))
    MerchantHour.objects.create(merchant_id="merch-9", hour=epoch_hour(T0) - 2, count=4, fraud_count=0)

    assert features_of(item(external_id="p-2", merchant_id="merch-9"))["merchant_count_1d"] == 4


COUNTS = MerchantCounts(counts=(1.0, 2.0, 3.0), labeled=(0.0, 0.0, 0.0), frauds=(0.0, 0.0, 0.0))


def test_a_read_begun_before_an_earlier_hour_was_written_is_not_kept():
    cache, hour = WindowCache(), epoch_hour(datetime.now(UTC))
    mark = cache.mark()  # a batch starts reading

    cache.written([("m", hour - 1)])  # meanwhile another thread commits a late transaction
    cache.put({("m", hour): COUNTS}, delay=168, mark=mark)

    assert cache.get([("m", hour)], delay=168) == {}


def test_writes_to_the_current_hour_keep_the_windows_and_later_hours_are_never_kept():
    cache, hour = WindowCache(), epoch_hour(datetime.now(UTC))
    cache.put({("m", hour): COUNTS, ("m", hour + 1): COUNTS}, delay=168, mark=cache.mark())

    cache.written([("m", hour), ("m", hour + 1)])  # live traffic: counted into hours no kept window reads

    assert cache.get([("m", hour), ("m", hour + 1)], delay=168) == {("m", hour): COUNTS}
    assert cache.get([("m", hour)], delay=12) == {}  # another label delay: other windows


def test_a_write_to_an_earlier_hour_forgets_only_its_merchants_later_windows():
    cache, hour = WindowCache(), epoch_hour(datetime.now(UTC))
    kept = {("m", hour): COUNTS, ("m", hour - 5): COUNTS, ("n", hour): COUNTS}
    cache.put(kept, delay=168, mark=cache.mark())

    cache.written([("m", hour - 3)])

    assert cache.get(kept, delay=168) == {("m", hour - 5): COUNTS, ("n", hour): COUNTS}


def test_a_merchants_expired_windows_go_when_it_gets_new_ones(settings, monkeypatch):
    settings.MERCHANT_WINDOWS_CACHE_SECONDS = 60
    cache, hour, now = WindowCache(), epoch_hour(datetime.now(UTC)), aggregates.time.monotonic()
    cache.put({("m", hour - 1): COUNTS, ("n", hour - 1): COUNTS}, delay=168, mark=cache.mark())

    monkeypatch.setattr(aggregates.time, "monotonic", lambda: now + 61)
    cache.put({("m", hour): COUNTS}, delay=168, mark=cache.mark())

    assert len(cache) == 2  # m's new one, and n's until n gets a new one
    assert cache.get([("m", hour - 1), ("m", hour), ("n", hour - 1)], delay=168) == {("m", hour): COUNTS}


def test_a_read_begun_in_the_hour_before_keeps_nothing_of_the_new_hour(monkeypatch):
    """A read that began at 10:59:59 may miss a transaction of 10:59 committed just after it: the windows of
    11:00, which count it, are not kept (those of 10:00 do not count it)."""
    cache, hour = WindowCache(), epoch_hour(datetime.now(UTC))
    monkeypatch.setattr(aggregates.time, "time", lambda: (hour - 1) * 3600 + 3599.9)
    mark = cache.mark()
    monkeypatch.setattr(aggregates.time, "time", lambda: hour * 3600 + 0.1)

    cache.put({("m", hour): COUNTS, ("m", hour - 1): COUNTS}, delay=168, mark=mark)

    assert cache.get([("m", hour), ("m", hour - 1)], delay=168) == {("m", hour - 1): COUNTS}
