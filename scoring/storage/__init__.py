"""Everything the hot path and the history import read and write, behind one small interface.

- `read_history(items)`: a batch's stored external_ids, its cards' last 30 days and its merchants' window
  counts (through the process's window cache);
- `save(rows, ...)`: a scored batch, its merchant hours and the flagged rows' cases, all or nothing;
- `add_to_hours(deltas)`: counts a label moves; `stored_transactions(ids)`: the stored rows of a retry;
- `history_writer(source)` and `settle()`: the history import's writes.

PostgreSQL's implementation (scoring/storage/postgres.py: hand-written statements with binary arrays, the
reads in one round trip, the write in one statement) and SQLite's (scoring/storage/sqlite.py: the ORM and
plain SQL) sit side by side; the vendor is chosen once, here. The ORM owns the schema and every other query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from django.db import DEFAULT_DB_ALIAS, connections

from scoring import aggregates
from scoring.features import HISTORY_SPAN, CardHistory, MerchantCounts, epoch_hour, label_delay_hours

if TYPE_CHECKING:
    from scoring.classifier import Scored
    from scoring.models import Transaction
    from scoring.schemas import TransactionIn

Pair = tuple[str, int]  # (merchant_id, epoch hour)
HourCounts = dict[Pair, tuple[int, int]]  # {(merchant, hour): (transactions, frauds)}
CardHistories = dict[str, CardHistory]
Windows = dict[Pair, MerchantCounts]
Read = tuple[list[str], CardHistories, Windows]  # a batch's stored ids, card histories, window counts


@dataclass
class History:
    """What a batch's features read from the database, as stored (without the batch's own items): its
    cards' last 30 days, its merchants' counts as of each hour it has transactions in, and which of its
    external_ids are stored already."""

    stored_ids: list[str]
    cards: CardHistories
    merchants: Windows


@dataclass(slots=True)
class NewRow:
    """A new transaction on its way into the database: what was sent and what the model said. `save()`
    sets its id and case id. Not a Transaction: building model instances costs more than the rest of the
    write, and PostgreSQL's path stores these from columns without one."""

    item: TransactionIn
    scored: Scored
    id: int = 0
    case_id: int | None = None
    joined: bool = False  # its case was open before this batch (it joined the card's case)
    challenger_score: float | None = None  # the challenger model's score, when one is marked
    challenger_version: str = ""
    answered: dict[str, Any] | None = None  # the answer given for it, when a request repeats its id


@dataclass(frozen=True, slots=True)
class CaseAlerts:
    """A batch's flagged transactions of one card, as they open the card's case or join its open one."""

    card_id: str
    decision: str  # the strongest of theirs
    count: int
    top_score: float
    total: Decimal | None  # None when they are in more than one currency
    currency: str  # "" then
    due_at: datetime


def case_alerts(rows: list[NewRow], *, now: datetime) -> list[CaseAlerts]:
    """The flagged rows grouped by card, in card order (the order both backends take the cases' rows in, as
    they take merchant hours in one order: two batches never wait on each other in a circle)."""
    from scoring.models import Decision, due_after

    by_card: dict[str, list[NewRow]] = {}
    for row in rows:
        if row.scored.decision != Decision.APPROVE:
            by_card.setdefault(row.item.card_id, []).append(row)
    groups = []
    for card_id in sorted(by_card):
        alerts = by_card[card_id]
        decision = Decision.BLOCK if any(r.scored.decision == Decision.BLOCK for r in alerts) else Decision.REVIEW
        currencies = {r.item.currency for r in alerts}
        one = len(currencies) == 1
        groups.append(
            CaseAlerts(
                card_id=card_id,
                decision=decision,
                count=len(alerts),
                top_score=max(r.scored.score for r in alerts),
                total=sum((r.item.amount for r in alerts), Decimal(0)) if one else None,
                currency=currencies.pop() if one else "",
                due_at=now + due_after(decision),
            )
        )
    return groups


class HistoryWriter(Protocol):
    """Writes chunks of imported rows (see scoring/storage/imported.py) inside the caller's transaction."""

    def add(self, values: list[tuple[Any, ...]]) -> int:
        """Store the rows not stored yet; returns how many were stored."""

    def finish(self) -> None:
        """Count what was stored into the merchants' hours (if not done per chunk)."""


class Backend(Protocol):
    """One database's implementation of the interface above."""

    def read(self, items: list[TransactionIn], *, missing: set[Pair], delay: int) -> Read:
        """The batch's stored ids, its cards' histories and the window counts of the `missing` pairs."""

    def save(self, rows: list[NewRow], *, counts: HourCounts, features: np.ndarray, version: str) -> None: ...

    def add_to_hours(self, deltas: HourCounts) -> None: ...

    def history_writer(self, source: str) -> HistoryWriter: ...

    def settle(self) -> bool:
        """After a bulk import, outside a transaction: what autovacuum would do later, now (if it applies)."""


@cache
def backend() -> Backend:
    """The default database's implementation, chosen once per process."""
    if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
        from scoring.storage.postgres import PostgreSQL

        return PostgreSQL()
    from scoring.storage.sqlite import SQLite

    return SQLite()


def read_history(items: list[TransactionIn]) -> History:
    """The history of the cards and merchants in `items`, and their stored ids. Merchant windows the
    process has read lately are not read again (aggregates.WindowCache)."""
    cache, delay = aggregates.window_cache, label_delay_hours()
    mark = cache.mark()  # before the read: what it returns while an earlier hour is written is not kept
    merchant_hours = {(i.merchant_id, epoch_hour(i.timestamp)) for i in items}
    cached = cache.get(merchant_hours, delay=delay)
    stored_ids, cards, read = backend().read(items, missing=merchant_hours - cached.keys(), delay=delay)
    cache.put(read, delay=delay, mark=mark)
    return History(stored_ids=stored_ids, cards=cards, merchants=cached | read)


def save(rows: list[NewRow], *, features: np.ndarray, version: str) -> None:
    """Store scored transactions (`features`: their values, a row each), count them into their merchants'
    hours and put each flagged one in its card's open case (opening one, with its "opened" audit event, where
    the card has none; an "alert" event where it joins one), all or nothing; sets each row's id and case id.

    A stored `external_id` fails the whole batch with IntegrityError. Rows go in sorted by `external_id`
    (so are their ids), so that two batches racing on the same ids take the unique index's entries in one
    order, as merchant hours are taken in one order: neither can hold one the other needs.
    """
    counts = aggregates.hour_counts((row.item.merchant_id, row.item.timestamp, None) for row in rows)
    backend().save(rows, counts=counts, features=features, version=version)
    aggregates.forget_written(list(counts))


def add_to_hours(deltas: HourCounts) -> None:
    """Add `deltas` to their merchant hours, in their order (hour_counts' order, or a single hour); inside
    the caller's transaction."""
    if deltas:
        backend().add_to_hours(deltas)
        aggregates.forget_written(list(deltas))


def stored_transactions(ids: list[str]) -> dict[str, Transaction]:
    """The stored transactions (with their cases) of `ids`, by external_id: no query for none."""
    from scoring.models import Transaction

    if not ids:
        return {}
    return {tx.external_id: tx for tx in Transaction.objects.filter(external_id__any_of=ids).select_related("case")}


def history_writer(source: str) -> HistoryWriter:
    """A writer of imported history rows from `source`, inside the caller's transaction."""
    return backend().history_writer(source)


def settle() -> bool:
    """After a bulk import: give the database the statistics and visibility its reads need; False where
    there is nothing to do (SQLite, or inside a transaction)."""
    return backend().settle()


def card_range(items: list[TransactionIn]) -> tuple[list[str], datetime, datetime]:
    """The cards of `items` and the 30 days before their earliest up to their latest: what a batch reads."""
    start = min(i.timestamp for i in items) - HISTORY_SPAN
    return list({i.card_id for i in items}), start, max(i.timestamp for i in items)
