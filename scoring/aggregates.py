"""Per-merchant hourly counts: read for features in one query per batch, written with the rows they count."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

from django.db import connection

from scoring.features import MERCHANT_SPAN_HOURS, MerchantBuckets, epoch_hour, label_delay_hours
from scoring.models import MerchantHour

# Counts that arrive for an hour already counted are added to it (live ingest and history import).
ADD_TO_HOUR = (
    "ON CONFLICT (merchant_id, hour) DO UPDATE SET count = {table}.count + excluded.count, "
    "fraud_count = {table}.fraud_count + excluded.fraud_count"
)
_UPSERT = "INSERT INTO {table} (merchant_id, hour, count, fraud_count) VALUES {values} " + ADD_TO_HOUR
# PostgreSQL: the same with four array parameters, a statement psycopg parses once (see models.AnyOf).
_UPSERT_ARRAYS = (
    "INSERT INTO {table} (merchant_id, hour, count, fraud_count) "
    "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::bigint[]) " + ADD_TO_HOUR
)
CHUNK = 500


# PostgreSQL: the query of buckets_with_orm() written out (building it with the ORM cost ~230 µs a batch). One row
# per merchant, its hours as three arrays, which psycopg decodes in C: with a month of history (192,000
# imported rows, ~126 merchant hours a transaction), a row per hour cost 49-50 µs of CPU a transaction here
# to read, one bisect and insert each. The subquery's order (the unique index's) is the arrays' order, and
# MerchantBuckets.ordered() checks it.
_BUCKETS = """
SELECT merchant_id, array_agg(hour), array_agg(count), array_agg(fraud_count) FROM (
    SELECT merchant_id, hour, count, fraud_count FROM {table}
    WHERE merchant_id = ANY(%b) AND hour >= %b AND hour < %b ORDER BY merchant_id, hour
) AS hours GROUP BY merchant_id
"""


def buckets_with_orm(merchant_ids: Iterable[str], *, first: datetime, last: datetime) -> dict[str, MerchantBuckets]:
    """Every hour that features of transactions between `first` and `last` can look at, in one ORM query
    (SQLite; on PostgreSQL ingest sends buckets_query() with its other reads)."""
    merchants, start, end = _bucket_range(merchant_ids, first=first, last=last)
    rows = (
        MerchantHour.objects.filter(merchant_id__in=merchants, hour__gte=start, hour__lt=end)
        .order_by("merchant_id", "hour")
        .values_list("merchant_id", "hour", "count", "fraud_count")
    )
    buckets: dict[str, MerchantBuckets] = defaultdict(MerchantBuckets)
    for merchant_id, merchant_rows in groupby(rows, key=itemgetter(0)):
        _, hours, counts, frauds = zip(*merchant_rows, strict=True)
        buckets[merchant_id] = MerchantBuckets(hours=list(hours), counts=list(counts), frauds=list(frauds))
    return buckets


def buckets_query(merchant_ids: Iterable[str], *, first: datetime, last: datetime) -> tuple[str, list[Any]]:
    """PostgreSQL: the statement and parameters that read the same hours as buckets_with_orm()."""
    merchants, start, end = _bucket_range(merchant_ids, first=first, last=last)
    return _BUCKETS.format(table=MerchantHour._meta.db_table), [merchants, start, end]


def buckets_from(rows: Iterable[tuple[str, list[int], list[int], list[int]]]) -> dict[str, MerchantBuckets]:
    """PostgreSQL: buckets_with_orm()'s result from the rows of buckets_query()'s statement."""
    buckets: dict[str, MerchantBuckets] = defaultdict(MerchantBuckets)
    for merchant_id, hours, counts, frauds in rows:
        buckets[merchant_id] = MerchantBuckets.ordered(hours, counts, frauds)
    return buckets


def _bucket_range(merchant_ids: Iterable[str], *, first: datetime, last: datetime) -> tuple[list[str], int, int]:
    return list(set(merchant_ids)), epoch_hour(first) - label_delay_hours() - MERCHANT_SPAN_HOURS, epoch_hour(last)


def record(rows: Iterable[tuple[str, datetime, bool | None]]) -> None:
    """Count new transactions (merchant, timestamp, is_fraud) into their hours; call inside their transaction."""
    _upsert(hour_counts(rows))


def hour_counts(rows: Iterable[tuple[str, datetime, bool | None]]) -> dict[tuple[str, int], tuple[int, int]]:
    """{(merchant, hour): (transactions, frauds)} of transactions (merchant, timestamp, is_fraud).

    Sorted by (merchant, hour), the order every writer takes the rows in, so that concurrent writers
    cannot each hold a row the other waits for (no deadlocks).
    """
    counts: Counter[tuple[str, int]] = Counter()
    frauds: Counter[tuple[str, int]] = Counter()
    for merchant_id, at, is_fraud in rows:
        key = (merchant_id, epoch_hour(at))
        counts[key] += 1
        frauds[key] += bool(is_fraud)
    return {key: (counts[key], frauds[key]) for key in sorted(counts)}


def label_changed(*, merchant_id: str, at: datetime, was: bool | None, now: bool | None) -> None:
    """Move a transaction's fraud label in or out of its hour's fraud count."""
    delta = int(now is True) - int(was is True)
    if delta:
        _upsert({(merchant_id, epoch_hour(at)): (0, delta)})


def _upsert(deltas: dict[tuple[str, int], tuple[int, int]]) -> None:
    """Add `deltas` to their hours, in their order (hour_counts' order, or a single hour)."""
    keys = list(deltas)
    if not keys:
        return
    table = MerchantHour._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            columns = list(zip(*((*key, *deltas[key]) for key in keys), strict=True))
            cursor.execute(_UPSERT_ARRAYS.format(table=table), [list(column) for column in columns])
            return
        for i in range(0, len(keys), CHUNK):
            chunk = keys[i : i + CHUNK]
            values = ", ".join(["(%s, %s, %s, %s)"] * len(chunk))
            params = [p for key in chunk for p in (*key, *deltas[key])]
            cursor.execute(_UPSERT.format(table=table, values=values), params)
