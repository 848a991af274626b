"""Event-time features: one list and one function, used by training and by live scoring alike.

Every feature of a transaction is computed as of its own timestamp from transactions strictly before
it. Card features come from the card's last 30 days of rows (a short list even for busy cards). Merchant
features come from hourly counts (MerchantBuckets: stored per hour when serving, built from the history
when training) and read whole hours before the transaction's own. Label-based merchant features only
look at hours older than FRAUD_LABEL_DELAY_DAYS, as a real chargeback feed allows.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import accumulate
from typing import TYPE_CHECKING, NamedTuple

from django.conf import settings

if TYPE_CHECKING:
    from scoring.schemas import TransactionIn
    from scoring.storage import History

HOUR = 3600.0
DAY = 24 * HOUR
CARD_WINDOWS = {"1h": HOUR, "1d": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
MERCHANT_WINDOWS = {"1d": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
HISTORY_SPAN = timedelta(days=30)
CHANNEL_CODES = {"": 0, "pos": 1, "ecom": 2, "atm": 3}

FEATURES: list[str] = [
    "amount",
    *[f"card_count_{w}" for w in CARD_WINDOWS],
    *[f"card_sum_{w}" for w in CARD_WINDOWS],
    *[f"card_avg_{w}" for w in CARD_WINDOWS],
    "amount_vs_card_avg_30d",
    "amount_vs_card_median_30d",
    "amount_vs_card_max_30d",
    "amount_zscore_card_30d",
    "seconds_since_card_prev",
    "card_distinct_merchants_1d",
    *[f"merchant_count_{w}" for w in MERCHANT_WINDOWS],
    *[f"merchant_fraud_count_{w}" for w in MERCHANT_WINDOWS],
    *[f"merchant_fraud_share_{w}" for w in MERCHANT_WINDOWS],
    "merchant_hours_since_first_fraud_30d",
    "merchant_hours_since_last_fraud_30d",
    "hour_of_day",
    "is_night",
    "is_weekend",
    "channel",
]
FEATURE_INDEX = {name: i for i, name in enumerate(FEATURES)}
MISSING = math.nan


class TxFacts(NamedTuple):
    """What a transaction itself tells: the inputs to features besides history.

    A NamedTuple, not a frozen dataclass: one is built for every transaction scored, and a frozen
    dataclass's __init__ sets each field through object.__setattr__, which costs about twice as much.
    """

    at: datetime
    amount: float
    merchant_id: str
    channel: str = ""


@dataclass
class CardHistory:
    """A card's earlier transactions, sorted by time (seconds since the epoch).

    Only "distinct merchants in the last day" reads merchants, so a history may hold them for its latest rows
    alone: `merchants[i]` is the merchant of row `merchants_from + i`; the rows before are older than any
    window the merchants are read for (feature_vector() refuses one that is not).
    """

    times: list[float] = field(default_factory=list)
    amounts: list[float] = field(default_factory=list)
    merchants: list[str] = field(default_factory=list)
    merchants_from: int = 0

    @classmethod
    def ordered(
        cls, times: list[float], amounts: list[float], merchants: list[str], *, merchants_since: float | None = None
    ) -> CardHistory:
        """A history from rows that should already be in time order (as a query gives them); sorts if not.

        `merchants_since`: `merchants` are those of the rows at or after that time only, in the rows' order.
        Checking the order costs one pass in C; a history out of order would silently give wrong windows.
        """
        since = -math.inf if merchants_since is None else merchants_since  # None: every row's merchant
        if times != sorted(times):  # give each row its merchant (None before `since`), sort, keep the recent
            if sum(t >= since for t in times) != len(merchants):
                raise ValueError("merchants do not match the rows from merchants_since on")
            given = iter(merchants)
            rows = sorted((t, a, next(given) if t >= since else None) for t, a in zip(times, amounts, strict=True))
            times, amounts = [t for t, _, _ in rows], [a for _, a, _ in rows]
            merchants = [m for t, _, m in rows if t >= since]
        start = len(times) - len(merchants)
        if start < 0 or (start < len(times) and times[start] < since) or (start and times[start - 1] >= since):
            raise ValueError("merchants do not match the rows from merchants_since on")
        return cls(times=times, amounts=amounts, merchants=merchants, merchants_from=start)

    def add(self, *, at: float, amount: float, merchant_id: str) -> None:
        """Insert one transaction, keeping time order (new ones nearly always go last)."""
        i = len(self.times)
        while i and self.times[i - 1] > at:
            i -= 1
        self.times.insert(i, at)
        self.amounts.insert(i, amount)
        if i < self.merchants_from:  # older than the merchants kept: its own is not needed either
            self.merchants_from += 1
        else:
            self.merchants.insert(i - self.merchants_from, merchant_id)


MERCHANT_HOURS = {"1d": 24, "7d": 7 * 24, "30d": 30 * 24}
assert list(MERCHANT_HOURS) == list(MERCHANT_WINDOWS), "merchant_counts() gives its values in FEATURES' order"
MERCHANT_SPAN_HOURS = max(MERCHANT_HOURS.values())


def epoch_hour(at: datetime | float) -> int:
    """Hours since the epoch (UTC) of an instant: the merchant counts' bucket."""
    seconds = at.timestamp() if isinstance(at, datetime) else at
    return int(seconds // HOUR)


def label_delay_hours() -> int:
    return round(settings.FRAUD_LABEL_DELAY_DAYS * 24)


@dataclass
class MerchantBuckets:
    """A merchant's transactions and confirmed frauds per hour, sorted by hour, with running totals.

    The same structure is filled from the stored hourly counts when serving and from the history when
    training, and read by the same function, so both compute the same numbers.
    """

    hours: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    frauds: list[int] = field(default_factory=list)
    _totals: tuple[list[int], list[int]] | None = field(default=None, repr=False)

    @classmethod
    def ordered(cls, hours: list[int], counts: list[int], frauds: list[int]) -> MerchantBuckets:
        """Buckets from rows that should already be in hour order (as a query gives them); sorts if not."""
        if hours != sorted(hours):
            rows = sorted(zip(hours, counts, frauds, strict=True))
            hours, counts, frauds = (list(column) for column in zip(*rows, strict=True))
        return cls(hours=hours, counts=counts, frauds=frauds)

    def add(self, hour: int, *, count: int = 1, frauds: int = 0) -> None:
        i = bisect_left(self.hours, hour)
        if i < len(self.hours) and self.hours[i] == hour:
            self.counts[i] += count
            self.frauds[i] += frauds
        else:
            self.hours.insert(i, hour)
            self.counts.insert(i, count)
            self.frauds.insert(i, frauds)
        self._totals = None

    def between(self, start: int, end: int) -> tuple[int, int]:
        """(transactions, frauds) in hours [start, end)."""
        if self._totals is None:
            self._totals = (_running(self.counts), _running(self.frauds))
        lo, hi = bisect_left(self.hours, start), bisect_left(self.hours, end)
        counts, frauds = self._totals
        return counts[hi] - counts[lo], frauds[hi] - frauds[lo]

    def fraud_hours(self, start: int, end: int) -> tuple[float | None, float | None]:
        """The first and the last hour in [start, end) with a confirmed fraud (None, None when there is none).

        Found in the running fraud totals, which never go down (a label moves a fraud between 0 and 1): the first
        is the hour where they first pass their value at `start`, the last where they reach their value at `end`.
        """
        self.between(start, end)  # builds the running totals
        running = self._totals[1]  # type: ignore[index]
        lo, hi = bisect_left(self.hours, start), bisect_left(self.hours, end)
        if running[hi] <= running[lo]:
            return None, None
        first = bisect_right(running, running[lo], lo, hi + 1) - 1
        last = bisect_left(running, running[hi], lo, hi + 1) - 1
        return float(self.hours[first]), float(self.hours[last])


def _running(values: list[int]) -> list[int]:
    return list(accumulate(values, initial=0))


class MerchantCounts(NamedTuple):
    """A merchant's figures as of one transaction, one value a window of MERCHANT_WINDOWS, in its order; and the
    hours of its first and last confirmed fraud in the longest window before the label delay (None: none)."""

    counts: Sequence[float]  # transactions
    labeled: Sequence[float]  # transactions before the label delay: what fraud shares are of
    frauds: Sequence[float]  # confirmed frauds before the label delay
    first_fraud: float | None = None
    last_fraud: float | None = None


def merchant_counts(buckets: MerchantBuckets, *, at: datetime | int) -> MerchantCounts:
    """The merchant's counts as of `at` (an instant, or its epoch_hour()): whole hours before the
    transaction's own hour only.

    Fraud counts and shares only look at hours older than the label delay, as a chargeback feed allows.
    """
    hour, delay = (at if isinstance(at, int) else epoch_hour(at)), label_delay_hours()
    counts, labeled, frauds = [], [], []
    for span in MERCHANT_HOURS.values():
        counts.append(float(buckets.between(hour - span, hour)[0]))
        total, fraud = buckets.between(hour - delay - span, hour - delay)
        labeled.append(float(total))
        frauds.append(float(fraud))
    first, last = buckets.fraud_hours(hour - delay - MERCHANT_SPAN_HOURS, hour - delay)
    return MerchantCounts(counts=counts, labeled=labeled, frauds=frauds, first_fraud=first, last_fraud=last)


def with_batch(stored: MerchantCounts, batch_hours: list[int], *, hour: int) -> MerchantCounts:
    """A merchant's stored counts as of `hour` plus its transactions of the batch being scored (their
    hours; not yet stored, none labeled): what merchant_counts() gives once they are added to the buckets."""
    delay = label_delay_hours()
    if not batch_hours or min(batch_hours) >= max(hour, hour - delay):  # none in any window: the usual case
        return stored
    counts, labeled = list(stored.counts), list(stored.labeled)
    for i, span in enumerate(MERCHANT_HOURS.values()):
        counts[i] += sum(hour - span <= h < hour for h in batch_hours)
        labeled[i] += sum(hour - delay - span <= h < hour - delay for h in batch_hours)
    return stored._replace(counts=counts, labeled=labeled)


def feature_vector(tx: TxFacts, *, card: CardHistory, merchant: MerchantCounts) -> list[float]:
    """The model's input row for `tx`, in FEATURES order."""
    at = tx.at.timestamp()
    end = bisect_left(card.times, at)  # strictly before this transaction
    row = [tx.amount]
    counts, sums, avgs = [], [], []
    for span in CARD_WINDOWS.values():
        start = bisect_left(card.times, at - span, 0, end)
        n = end - start
        total = math.fsum(card.amounts[start:end])  # exactly rounded: independent of summation order
        counts.append(float(n))
        sums.append(total)
        avgs.append(total / n if n else MISSING)
    row += counts + sums + avgs
    avg_30d = avgs[-1]
    row.append(tx.amount / avg_30d if counts[-1] and avg_30d > 0 else MISSING)
    row += _against_usual_amounts(tx.amount, card.amounts[start:end], mean=avg_30d)  # start: the 30-day window's
    row.append(at - card.times[end - 1] if end else MISSING)
    day_start = bisect_left(card.times, at - DAY, 0, end)
    if day_start < card.merchants_from:
        raise ValueError("the card's history holds merchants only for later rows than this transaction's day")
    row.append(float(len(set(card.merchants[day_start - card.merchants_from : end - card.merchants_from]))))
    row += merchant.counts
    row += merchant.frauds
    row += [
        frauds / labeled if labeled else 0.0 for frauds, labeled in zip(merchant.frauds, merchant.labeled, strict=True)
    ]
    tx_hour = at // HOUR
    row += [MISSING if h is None else tx_hour - h for h in (merchant.first_fraud, merchant.last_fraud)]
    # The UTC hour and weekday from the epoch seconds (as tx.at.astimezone(UTC) gives them, without building a
    # datetime): the epoch began on a Thursday (weekday 3).
    hour, weekday = int(at // HOUR) % 24, (int(at // DAY) + 3) % 7
    row += [float(hour), float(hour < 6), float(weekday >= 5), float(CHANNEL_CODES[tx.channel])]
    return row


def _against_usual_amounts(amount: float, usual: list[float], *, mean: float) -> list[float]:
    """The amount against the card's amounts of the window: over their median and their largest (a stolen card's
    big amounts raise the card's average, hardly its median), and in standard deviations from their mean.

    Each is independent of the amounts' order (a sort, a max, an exactly rounded sum), so serving, which reads them
    in the database's order, and training compute the same bits.
    """
    if not usual:
        return [MISSING, MISSING, MISSING]
    ordered = sorted(usual)
    n, middle = len(ordered), len(ordered) // 2
    median = ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    std = math.sqrt(math.fsum((a - mean) ** 2 for a in ordered) / n) if n > 1 else 0.0
    return [
        amount / median if median > 0 else MISSING,
        amount / ordered[-1] if ordered[-1] > 0 else MISSING,
        (amount - mean) / std if std > 0 else MISSING,
    ]


# --- a batch's feature rows from its stored history -----------------------------------------------


def feature_rows(items: list[TransactionIn], *, history: History | None = None) -> list[list[float]]:
    """Feature rows for new items, each as of its own timestamp; earlier items of the batch count too.

    `history`: storage.read_history() of these items (or of more), read when not given. It is used up: the
    batch's items are added to its cards. Serving, training's checks and evaluation all come through here.
    """
    history = history or _read(items)
    cards = card_histories(items, history=history)
    hours = [epoch_hour(item.timestamp) for item in items]
    batch_hours: dict[str, list[int]] = defaultdict(list)
    if len(items) > 1:  # the batch's own items count for later ones (only hours before theirs are read)
        for item, hour in zip(items, hours, strict=True):
            batch_hours[item.merchant_id].append(hour)
    rows = []
    for item, hour in zip(items, hours, strict=True):
        facts = TxFacts(
            at=item.timestamp, amount=float(item.amount), merchant_id=item.merchant_id, channel=item.channel or ""
        )
        # Both reads answer every (merchant, hour) asked, a merchant without stored hours with zeros.
        counts = with_batch(history.merchants[item.merchant_id, hour], batch_hours.get(item.merchant_id, []), hour=hour)
        rows.append(feature_vector(facts, card=cards[item.card_id], merchant=counts))
    return rows


def card_histories(items: list[TransactionIn], *, history: History | None = None) -> dict[str, CardHistory]:
    """The 30-day history of every card in `items` (storage.read_history()'s, read when not given), plus the
    batch's own items."""
    stored = (history or _read(items)).cards
    histories: dict[str, CardHistory] = defaultdict(CardHistory, stored)
    if len(items) > 1:
        for item in items:
            histories[item.card_id].add(
                at=item.timestamp.timestamp(), amount=float(item.amount), merchant_id=item.merchant_id
            )
    return histories


def _read(items: list[TransactionIn]) -> History:
    from scoring.storage import read_history  # storage builds on this module's types

    return read_history(items)
