"""Per-merchant hourly counts: which hours a batch counts into (in the one order every writer locks them in),
and the process's cache of the window counts it read (WindowCache). scoring/storage reads and writes them."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction

from scoring.features import MerchantCounts, epoch_hour

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


def forget_written(pairs: list[Pair]) -> None:
    """After writing counts of `pairs`: the cache forgets what they change at once (this connection sees
    them) and again once they are committed (a read by another thread in between saw the old counts)."""
    window_cache.written(pairs)
    if connection.in_atomic_block:
        transaction.on_commit(lambda: window_cache.written(pairs))
