"""Per-merchant hourly counts: read for features in one query per batch at most (WindowCache keeps what a
process read), written with the rows they count."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime
from functools import cache
from itertools import groupby
from operator import itemgetter
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from scoring.features import (
    MERCHANT_HOURS,
    MERCHANT_SPAN_HOURS,
    MerchantBuckets,
    MerchantCounts,
    epoch_hour,
    label_delay_hours,
    merchant_counts,
)
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


# PostgreSQL: the window counts of each (merchant, hour) a batch has transactions in, summed by the database: one
# row a pair, its nine counts in MerchantCounts' order, as floats. It replaced a read of every stored hour (three
# arrays a merchant) that the server decoded and summed in Python (MerchantBuckets). The hours summed are those
# merchant_counts() looks at: [hour - span, hour) for the counts, the same shifted back by the label delay
# (k.delayed = hour - delay) for the labeled ones and the frauds; tests compare the two at every window's edge.
# Measured here, batches of 100 (4 connections) served by uvicorn over the month `make bench` imports (3 pairs):
# 6,244-6,705 against 5,740-6,174 tx/s, 88-96 against 99-109 µs of server CPU a transaction, PostgreSQL 132-144
# against 137-146. In-process, 200-transaction batches with all 888 hours of every merchant stored (3 pairs):
# 71-76 against 212-274 µs here, PostgreSQL 662-689 against 1,270-1,353 (no sort, no arrays sent). On an empty
# store, served, no difference showed (4 pairs).
# Each window's first hour is computed once a pair (b, kept apart from the sums by OFFSET 0, which stops the planner
# from folding it back into them), not once an hour summed. With all 888 hours of every merchant stored: the
# statement alone 204-258 against 254-294 µs of PostgreSQL CPU a pair (six rounds of 2,000 pairs); served, batches of
# 100, 4,750-5,070 against 4,520-4,540 tx/s, PostgreSQL 0.29-0.30 against 0.33 ms a transaction (two pairs). On an
# empty store no difference showed (four pairs of batches, two of single POSTs).
_WINDOWS = """
SELECT k.merchant_id, k.hour, w.*
FROM unnest(%b::text[], %b::bigint[], %b::bigint[]) AS k(merchant_id, hour, delayed)
CROSS JOIN LATERAL (SELECT {firsts} OFFSET 0) AS b
CROSS JOIN LATERAL (
    SELECT {sums} FROM {table} m
    WHERE m.merchant_id = k.merchant_id AND m.hour >= least(k.hour, k.delayed) - {span}
        AND m.hour < greatest(k.hour, k.delayed)
) AS w
"""


@cache
def _windows_statement() -> str:
    def first(until: str, span: int) -> str:
        return f"k.{until} - {span} AS {until}_{span}"

    def total(column: str, until: str, span: int) -> str:
        hours = f"m.hour >= b.{until}_{span} AND m.hour < k.{until}"
        return f"coalesce(sum(m.{column}) FILTER (WHERE {hours}), 0)::float8"  # floats, as features are

    spans = MERCHANT_HOURS.values()
    firsts = [first(until, s) for until in ("hour", "delayed") for s in spans]
    sums = [total("count", "hour", s) for s in spans] + [total("count", "delayed", s) for s in spans]
    sums += [total("fraud_count", "delayed", s) for s in spans]
    return _WINDOWS.format(
        firsts=", ".join(firsts), sums=", ".join(sums), table=MerchantHour._meta.db_table, span=MERCHANT_SPAN_HOURS
    )


def windows_query(pairs: Iterable[tuple[str, int]]) -> tuple[str, list[Any]]:
    """PostgreSQL: the statement and parameters giving windows_with_orm()'s counts (see windows_from())."""
    pairs = sorted(set(pairs))
    delay = label_delay_hours()
    return _windows_statement(), [[m for m, _ in pairs], [h for _, h in pairs], [h - delay for _, h in pairs]]


def windows_from(rows: Iterable[tuple[Any, ...]]) -> dict[tuple[str, int], MerchantCounts]:
    """PostgreSQL: the counts of each (merchant, hour) from the rows of windows_query()'s statement."""
    n = len(MERCHANT_HOURS)
    return {
        (row[0], row[1]): MerchantCounts(counts=row[2 : 2 + n], labeled=row[2 + n : 2 + 2 * n], frauds=row[2 + 2 * n :])
        for row in rows
    }


def windows_with_orm(pairs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], MerchantCounts]:
    """The stored counts of each (merchant, hour) as merchant_counts() gives them, from the hours of one ORM
    query (SQLite; on PostgreSQL ingest sends windows_query() with its other reads)."""
    pairs = set(pairs)
    if not pairs:
        return {}
    buckets = buckets_with_orm({m for m, _ in pairs}, first=min(h for _, h in pairs), last=max(h for _, h in pairs))
    return {(m, h): merchant_counts(buckets[m], at=h) for m, h in pairs}


def buckets_with_orm(merchant_ids: Iterable[str], *, first: int, last: int) -> dict[str, MerchantBuckets]:
    """Every hour that merchant counts as of hours `first` to `last` can look at, in one ORM query."""
    merchants = list(set(merchant_ids))
    start, end = first - max(label_delay_hours(), 0) - MERCHANT_SPAN_HOURS, last - min(label_delay_hours(), 0)
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


Pair = tuple[str, int]  # (merchant_id, epoch hour)


class WindowCache:
    """The window counts of (merchant, hour) pairs this process has read, kept for a short while.

    A pair's windows sum whole hours before its hour, so live traffic, which counts into the current hour,
    never changes them; only a write to an earlier hour does (a late or replayed transaction, a label, an
    import). A process forgets the pairs such a write of its own can change, at once and at its commit, and
    does not keep what a read returned while such a write was committed (see mark()). What other processes write
    reaches it when its entries expire: MERCHANT_WINDOWS_CACHE_SECONDS (0 turns the cache off). Pairs of
    hours after the current one (timestamps up to 5 minutes ahead) are not kept: the current hour, still
    being counted, is in their windows. Neither are any with a negative label delay.
    """

    max_merchants = 200_000  # beyond this, everything is dropped: memory stays bounded (a merchant's expired
    # entries go when it gets a new one)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._merchants: dict[str, dict[tuple[int, int], tuple[float, MerchantCounts]]] = {}
        self.generation = 0

    def get(self, pairs: Iterable[Pair], *, delay: int) -> dict[Pair, MerchantCounts]:
        """The fresh entries of `pairs`."""
        found, now = {}, time.monotonic()
        with self._lock:
            for merchant_id, hour in pairs:
                entry = self._merchants.get(merchant_id, {}).get((hour, delay))
                if entry is not None and entry[0] > now:
                    found[merchant_id, hour] = entry[1]
        return found

    def mark(self) -> tuple[int, int]:
        """Taken before a read, given to put(): the writes to earlier hours so far, and the current hour."""
        return self.generation, epoch_hour(time.time())

    def put(self, counts: dict[Pair, MerchantCounts], *, delay: int, mark: tuple[int, int]) -> None:
        """Keep `counts`, read after mark() gave `mark`: unless a write to an earlier hour was committed
        meanwhile, and only pairs of hours up to the one current then (a write to that hour, current when
        made, changes none of them)."""
        ttl = settings.MERCHANT_WINDOWS_CACHE_SECONDS
        generation, current = mark
        if ttl <= 0 or delay < 0 or not counts:
            return
        now = time.monotonic()
        with self._lock:
            if generation != self.generation:
                return
            if len(self._merchants) > self.max_merchants:
                self._merchants.clear()
            for (merchant_id, hour), value in counts.items():
                if hour > current:
                    continue
                kept = self._merchants.setdefault(merchant_id, {})
                for key in [key for key, (expires, _) in kept.items() if expires <= now]:  # earlier hours, mostly
                    del kept[key]
                kept[hour, delay] = (now + ttl, value)

    def __len__(self) -> int:
        """Entries kept, expired or not."""
        with self._lock:
            return sum(len(kept) for kept in self._merchants.values())

    def written(self, pairs: Iterable[Pair]) -> None:
        """Counts written to these (merchant, hour) pairs: forget what they change (hours after theirs). Called
        once the write is visible to this connection, and again at its commit (forget_written)."""
        current = epoch_hour(time.time())
        with self._lock:
            for merchant_id, written in pairs:
                if written >= current:  # the current hour (or later): in no kept pair's windows
                    continue
                self.generation += 1
                kept = self._merchants.get(merchant_id)
                for key in [key for key in kept or () if key[0] > written]:
                    del kept[key]

    def clear(self) -> None:
        """Forget everything (after an import, which writes many hours; and between tests)."""
        with self._lock:
            self.generation += 1
            self._merchants.clear()


window_cache = WindowCache()


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
        else:
            for i in range(0, len(keys), CHUNK):
                chunk = keys[i : i + CHUNK]
                values = ", ".join(["(%s, %s, %s, %s)"] * len(chunk))
                params = [p for key in chunk for p in (*key, *deltas[key])]
                cursor.execute(_UPSERT.format(table=table, values=values), params)
    forget_written(keys)


def forget_written(pairs: list[Pair]) -> None:
    """After writing counts of `pairs`: the cache forgets what they change at once (this connection sees
    them) and again once they are committed (a read by another thread in between saw the old counts)."""
    window_cache.written(pairs)
    if connection.in_atomic_block:
        transaction.on_commit(lambda: window_cache.written(pairs))
