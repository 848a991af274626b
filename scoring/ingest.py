"""The ingest pipeline: validated transactions → features → score → one database transaction → broadcast.

`ingest()` is the one entry point for the API (single and batch alike). The database work of a batch
happens in one thread hop: two or three reads (`read_history()`: on PostgreSQL one round trip), then one
all-or-nothing write (`save()`: on PostgreSQL a single statement). The broadcast happens only after the
commit, and a channel layer that is down never costs the caller its stored row.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from itertools import groupby
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from scoring import aggregates
from scoring.batcher import batcher_for_loop
from scoring.classifier import Scored, Scorer, active_model
from scoring.features import (
    DAY,
    FEATURES,
    HISTORY_SPAN,
    CardHistory,
    MerchantCounts,
    TxFacts,
    epoch_hour,
    feature_vector,
    label_delay_hours,
    with_batch,
)
from scoring.lists import apply_lists
from scoring.models import (
    Case,
    CaseEvent,
    CaseStatus,
    Decision,
    MerchantHour,
    Transaction,
)
from scoring.results import answer, feed_event
from scoring.schemas import TransactionIn
from scoring.sql import Float4Array, binary_cursor, read_together

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 4  # each after the first follows an insert that met an id stored meanwhile


@dataclass(frozen=True)
class Outcome:
    """One item's answer: the stored result and whether this request created it."""

    result: dict[str, Any]
    created: bool


async def ingest(items: list[TransactionIn]) -> list[Outcome]:
    """Score and store `items` (one request) with whatever else is queued; answers after the commit.

    The new transactions are broadcast to the dashboards after the commit (see scoring/batcher.py).
    """
    return await batcher_for_loop(store).submit(items)


def store(items: list[TransactionIn]) -> tuple[list[Outcome], list[dict[str, Any]]]:
    """Score and store the items that are new; answer the others with what is stored.

    Stored external_ids are looked for first, with the batch's feature reads (read_history): a retry in a
    batch that did not look cost the whole batch its scoring twice, since the insert fails on it and rolls
    back (in-process, 200-transaction batches with one retry each: 108-112 against 56-57 µs of CPU a
    transaction here, PostgreSQL 61-62.5 against 39-40). A concurrent request can still store one of the ids
    between the look and the insert: the insert then fails (IntegrityError) and the batch is tried again.
    """
    scorer = active_model.get()
    ids = [item.external_id for item in items]
    for _ in range(MAX_ATTEMPTS):
        history = read_history(items)
        stored = _stored(history.stored_ids)
        new = list({i.external_id: i for i in reversed(items) if i.external_id not in stored}.values())[::-1]
        if not new:
            return [Outcome(stored[i].result(case_id=stored[i].case_id), created=False) for i in ids], []
        try:
            created = {row.item.external_id: row for row in _score_and_save(new, scorer=scorer, history=history)}
            break
        except IntegrityError:
            # A concurrent request stored some of these external_ids after the look: answer with theirs.
            log.info("external_id already stored while storing a batch; retrying with the stored rows")
    else:
        raise IntegrityError("could not store the batch after repeated external_id conflicts")
    outcomes, events = [], []
    for ext in ids:
        row = created.get(ext)
        if row is None:
            tx = stored[ext]
            outcomes.append(Outcome(tx.result(case_id=tx.case_id), created=False))
        elif row.answered:  # the same external_id again in one request: one row, one broadcast
            outcomes.append(Outcome(row.answered, created=False))
        else:
            row.answered = row.result(scorer.version)
            outcomes.append(Outcome(row.answered, created=True))
            events.append(row.event())
    events.sort(key=lambda e: e["id"])
    return outcomes, events


def _stored(ids: list[str]) -> dict[str, Transaction]:
    """The stored transactions (with their cases) of `ids` that read_history() found stored: none, and no
    query, unless the batch holds a retry."""
    if not ids:
        return {}
    known = Transaction.objects.filter(external_id__any_of=ids).select_related("case")
    return {tx.external_id: tx for tx in known}


@dataclass(slots=True)
class NewRow:
    """A new transaction on its way into the database: what was sent, what the model said and saw.

    Not a Transaction: building a Django model instance cost ~7.5 µs a transaction (in-process, batches
    of 200), and PostgreSQL's path stores these from columns without one.
    """

    item: TransactionIn
    scored: Scored
    id: int = 0
    case_id: int | None = None
    answered: dict[str, Any] | None = None

    def result(self, version: str) -> dict[str, Any]:
        return answer(self.item, self.scored, id=self.id, model_version=version, case_id=self.case_id)

    def event(self) -> dict[str, Any]:
        return feed_event(self.item, self.scored, id=self.id, case_id=self.case_id)


def _score_and_save(items: list[TransactionIn], *, scorer: Scorer, history: History) -> list[NewRow]:
    """Score the new items and store them with their features; each comes back with its id and case id."""
    x = np.asarray(feature_rows(items, history=history), dtype=np.float32)  # what the model reads and is stored
    rows = [NewRow(item, scored) for item, scored in zip(items, apply_lists(items, scorer.score(x)), strict=True)]
    save(rows, features=x, version=scorer.version)
    return rows


# --- one write per batch ----------------------------------------------------------------------------


def save(rows: list[NewRow], *, features: np.ndarray, version: str) -> None:
    """Store scored transactions (`features`: their values, a row each), count them into their merchants'
    hours and open a case (with its "opened" audit event) for each flagged one, all or nothing; sets each
    row's id and case id.

    A stored `external_id` fails the whole batch with IntegrityError. Rows go in sorted by `external_id`
    (so are their ids), so that two batches racing on the same ids take the unique index's entries in one
    order, as merchant hours are taken in one order: neither can hold one the other needs.
    """
    if connection.vendor != "postgresql":
        _save_with_orm(rows, features=features, version=version)
        return
    # One statement is a transaction of its own; inside a caller's (a test's), a savepoint keeps a failed
    # one from breaking it. Prepared: planning it cost PostgreSQL ~290 µs a batch, as much as storing 8 rows
    # (in-process, batches of 1 and 8: 300-319 against 597-601 µs, 74-75 against 110-115 µs a transaction).
    # Its plan does not depend on the data: it reads no table but through unique indexes. Not behind a pooler
    # that lends server connections a transaction at a time (DB_TRANSACTION_POOLING): the next batch's may not have it.
    saving = binary_cursor(prepared=not settings.DB_TRANSACTION_POOLING)
    counts = aggregates.hour_counts((row.item.merchant_id, row.item.timestamp, None) for row in rows)  # lock order
    with transaction.atomic() if connection.in_atomic_block else nullcontext(), saving as cursor:
        cursor.execute(_save_statement(), _save_params(rows, counts=counts, features=features, version=version))
        stored = cursor.fetchall()
    aggregates.forget_written(list(counts))
    by_id = {row.item.external_id: row for row in rows}
    for pk, external_id, case_id in stored:
        row = by_id[external_id]
        row.id, row.case_id = pk, case_id


def _save_with_orm(rows: list[NewRow], *, features: np.ndarray, version: str) -> None:
    """SQLite: the same through the ORM, in one database transaction."""
    now = timezone.now()
    txs = [
        _transaction(row, features=values, version=version, at=now)
        for row, values in zip(rows, features.tolist(), strict=True)
    ]
    order = sorted(range(len(txs)), key=lambda i: txs[i].external_id)
    with transaction.atomic():
        Transaction.objects.bulk_create([txs[i] for i in order])
        aggregates.record((tx.merchant_id, tx.timestamp, None) for tx in txs)
        cases = Case.objects.open_for([tx for tx in txs if tx.decision != Decision.APPROVE])
    for row, tx in zip(rows, txs, strict=True):
        row.id, row.case_id = tx.pk, cases.get(tx.pk)


def _transaction(row: NewRow, *, features: list[float], version: str, at: datetime) -> Transaction:
    item, scored = row.item, row.scored
    return Transaction(
        external_id=item.external_id,
        card_id=item.card_id,
        merchant_id=item.merchant_id,
        amount=item.amount,
        currency=item.currency,
        timestamp=item.timestamp,
        country=item.country or "",
        channel=item.channel or "",
        mcc=item.mcc or "",
        score=scored.score,
        decision=scored.decision,
        reasons=scored.reasons,
        features=features,
        model_version=version,
        received_at=at,
    )


# PostgreSQL: the batch's rows, their merchant hours, and the flagged ones' cases and audit events, in one statement (a
# transaction by itself: no BEGIN and COMMIT round trips). The rows arrive as one binary array a column (psycopg writes
# those in C) and the features as one flat array (a row's values are its slice): PostgreSQL parses nothing but the
# reasons' JSON. In-process, 200-transaction batches, a prototype of this statement against the same rows as one JSON
# document with the features as JSON objects: 23-24 against 38-40 µs of PostgreSQL CPU a transaction, 10 against 16 µs
# here (two pairs); store() as a whole, with this statement (281631a): PostgreSQL 39-42.5 against 55-58 µs, here
# 56-58 against 62-63 (three pairs). The rows are inserted in external_id order, compared as Python compares them
# (COLLATE "C"), the order hour_counts() gives the merchant hours too.
_SAVE = """
WITH new AS (
    INSERT INTO {transaction} (external_id, card_id, merchant_id, amount, currency, "timestamp", country, channel,
        mcc, score, decision, reasons, features, model_version, received_at)
    SELECT external_id, card_id, merchant_id, amount::numeric, currency, at, country, channel, mcc, score, decision,
        reasons::jsonb, (%b::real[])[(n - 1) * {width} + 1 : n * {width}], %b, %b
    FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[], %b::text[],
        %b::text[], %b::text[], %b::float8[], %b::text[], %b::text[])
        WITH ORDINALITY AS r(external_id, card_id, merchant_id, amount, currency, at, country, channel, mcc, score,
            decision, reasons, n)
    ORDER BY external_id COLLATE "C"
    RETURNING id, external_id, decision
), hours AS (
    INSERT INTO {hour} (merchant_id, hour, count, fraud_count)
    SELECT * FROM unnest(%b::text[], %b::bigint[], %b::bigint[], %b::bigint[])
    {add_to_hour}
), opened AS (
    INSERT INTO {case} (transaction_id, status, note, opened_at)
    SELECT id, %b, '', %b FROM new WHERE decision <> %b
    RETURNING id, transaction_id, opened_at
), audit AS (
    INSERT INTO {event} (case_id, action, note, at) SELECT id, %b, '', opened_at FROM opened
)
SELECT new.id, new.external_id, opened.id FROM new LEFT JOIN opened ON opened.transaction_id = new.id
"""


@cache
def _save_statement() -> str:
    return _SAVE.format(
        transaction=Transaction._meta.db_table,
        width=len(FEATURES),
        hour=MerchantHour._meta.db_table,
        add_to_hour=aggregates.ADD_TO_HOUR.format(table=MerchantHour._meta.db_table),
        case=Case._meta.db_table,
        event=CaseEvent._meta.db_table,
    )


def _save_params(
    rows: list[NewRow], *, counts: dict[tuple[str, int], tuple[int, int]], features: np.ndarray, version: str
) -> list[Any]:
    """_SAVE's parameters: the features, then a list per column in the order its unnest() takes them (the
    merchant hours' `counts` from aggregates.hour_counts)."""
    items, said = [row.item for row in rows], [row.scored for row in rows]
    columns = [
        [i.external_id for i in items],
        [i.card_id for i in items],
        [i.merchant_id for i in items],
        [str(i.amount) for i in items],  # exact: numeric parses the decimal string
        [i.currency for i in items],
        [i.timestamp for i in items],
        [i.country or "" for i in items],
        [i.channel or "" for i in items],
        [i.mcc or "" for i in items],
        [s.score for s in said],
        [s.decision for s in said],
        [orjson.dumps(s.reasons).decode() for s in said],
    ]
    hours = [
        [merchant_id for merchant_id, _ in counts],
        [hour for _, hour in counts],
        [count for count, _ in counts.values()],
        [frauds for _, frauds in counts.values()],
    ]
    now = timezone.now()
    return [Float4Array(features), version, now, *columns, *hours, CaseStatus.OPEN, now, Decision.APPROVE, "opened"]


# --- features from the stored history ------------------------------------------------------------


@dataclass
class History:
    """What a batch's features read from the database, as stored (without the batch's own items): its
    cards' last 30 days, its merchants' counts as of each hour it has transactions in, and which of its
    external_ids are stored already."""

    stored_ids: list[str]
    cards: dict[str, CardHistory]
    merchants: dict[tuple[str, int], MerchantCounts]


_STORED_IDS = "SELECT external_id FROM {table} WHERE external_id = ANY(%b)"


def read_history(items: list[TransactionIn]) -> History:
    """The history of the cards and merchants in `items`, and their stored ids: three reads, on PostgreSQL
    in one round trip (scoring/sql.py, read_together). Merchant windows the process has read in the last
    minute are not read again (aggregates.WindowCache): when none is missing, two reads."""
    cache, delay = aggregates.window_cache, label_delay_hours()
    mark = cache.mark()  # before the read: what it returns while an earlier hour is written is not kept
    merchant_hours = {(i.merchant_id, epoch_hour(i.timestamp)) for i in items}
    cached = cache.get(merchant_hours, delay=delay)
    missing = merchant_hours - cached.keys()
    if connection.vendor != "postgresql":
        stored = Transaction.objects.filter(external_id__any_of=[i.external_id for i in items])
        stored_ids, cards = list(stored.values_list("external_id", flat=True)), _card_histories_with_orm(items)
        read = aggregates.windows_with_orm(missing)
    else:
        table = Transaction._meta.db_table
        cards_read, start, end = _card_range(items)
        since = min(i.timestamp for i in items).timestamp() - DAY  # what feature_vector() reads merchants from
        ids, rows, *windows = read_together(
            [
                (_STORED_IDS.format(table=table), [[i.external_id for i in items]]),
                (_CARD_HISTORIES.format(table=table), [cards_read, since, start, end]),
                *([aggregates.windows_query(missing)] if missing else []),
            ]
        )
        stored_ids = [external_id for (external_id,) in ids]
        cards = {
            card_id: CardHistory.ordered(times, amounts, ms or [], merchants_since=since)
            for card_id, times, amounts, ms in rows
        }
        read = aggregates.windows_from(windows[0]) if windows else {}
    cache.put(read, delay=delay, mark=mark)
    return History(stored_ids=stored_ids, cards=cards, merchants=cached | read)


def feature_rows(items: list[TransactionIn], *, history: History | None = None) -> list[list[float]]:
    """Feature rows for new items, each as of its own timestamp; earlier items of the batch count too.

    `history`: read_history() of these items (or of more), read here when not given. It is used up: the
    batch's items are added to its cards.
    """
    history = history or read_history(items)
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


_HISTORY = ("card_id", "timestamp", "amount", "merchant_id")
# PostgreSQL: the query of card_histories() written out (built by the ORM for each batch it cost ~620 µs of
# CPU; as this string ~90 µs). One row per card, its history as three arrays: psycopg decodes a binary array
# in C, where a row per history entry cost a Python tuple and more. In-process, 200-transaction batches over
# ~21 history rows a card: 4.0 against 8.5 µs of CPU a transaction here, PostgreSQL the same (10 µs). An
# ORDER BY inside array_agg made PostgreSQL sort each card's rows again (16 µs); the subquery's order (the
# covering index's, so no sort) is the order the arrays are built in, and CardHistory.ordered() checks it.
# Seconds and amounts come back as floats: a datetime and a Decimal for every history row cost more than
# the rest of the features. Both round exactly as datetime.timestamp() and float(Decimal) do (date_part is
# float8 division of the exact microseconds; EXTRACT would compute a numeric first; amount_float is the
# amount converted once, when stored: `amount::float8` here went through the numeric's text, and cost
# PostgreSQL ~5 of the read's ~36 µs a transaction). Each card is read by
# its own index scan (LATERAL), not as `card_id = ANY(array)`, for which PostgreSQL weighs every element
# of the array when it plans: in-process, 200-transaction batches, PostgreSQL 29.2-30.2 against 32.2-33.6
# µs of CPU a transaction on an empty store, 73.8-77.5 against 78.2-81.2 over the bench's month; 8-transaction
# batches 158.6-164.9 against 175.3-181.6 (two or three pairs each).
# Merchants only for the rows of the day before the batch's earliest item on: only "distinct merchants in
# the last day" reads them, and every row's merchant text was a fifth of the card read's PostgreSQL CPU.
# In-process over the bench's month (half its rows from the same day), three pairs: the reads' PostgreSQL
# CPU 58.1-61.4 against 64.4-65.6 µs a transaction, the server's 14.8-16.9 against 16.8-17.8; served,
# 8,380-8,620 against 8,280-8,450 tx/s (two pairs). In a month of real traffic, where a day is a thirtieth
# of a card's rows, it should save more (not measured).
_CARD_HISTORIES = """
SELECT c.card_id, h.seconds, h.amounts, h.merchants FROM unnest(%b::text[]) AS c(card_id)
CROSS JOIN LATERAL (
    SELECT array_agg(seconds) AS seconds, array_agg(amount) AS amounts,
        array_agg(merchant_id) FILTER (WHERE seconds >= %b) AS merchants FROM (
        SELECT date_part('epoch', "timestamp") AS seconds, amount_float AS amount, merchant_id FROM {table} t
        WHERE t.card_id = c.card_id AND "timestamp" >= %b AND "timestamp" < %b ORDER BY "timestamp"
    ) AS rows
) AS h WHERE h.seconds IS NOT NULL
"""


def card_histories(items: list[TransactionIn], *, history: History | None = None) -> dict[str, CardHistory]:
    """The 30-day history of every card in `items` (read_history()'s, read here when not given), plus the
    batch's own items."""
    stored = (history or read_history(items)).cards
    histories: dict[str, CardHistory] = defaultdict(CardHistory, stored)
    if len(items) > 1:
        for item in items:
            histories[item.card_id].add(
                at=item.timestamp.timestamp(), amount=float(item.amount), merchant_id=item.merchant_id
            )
    return histories


def _card_range(items: list[TransactionIn]) -> list[Any]:
    """The cards of `items` and the 30 days before their earliest up to their latest."""
    start = min(i.timestamp for i in items) - HISTORY_SPAN
    return [list({i.card_id for i in items}), start, max(i.timestamp for i in items)]


def _card_histories_with_orm(items: list[TransactionIn]) -> dict[str, CardHistory]:
    cards, start, end = _card_range(items)
    stored = Transaction.objects.filter(card_id__in=cards, timestamp__gte=start, timestamp__lt=end)
    ordered = stored.order_by("card_id", "timestamp").values_list(*_HISTORY)
    histories = {}
    for card_id, rows in groupby(ordered, key=itemgetter(0)):
        _, times, amounts, merchants = zip(*rows, strict=True)
        histories[card_id] = CardHistory(
            times=[at.timestamp() for at in times], amounts=[float(a) for a in amounts], merchants=list(merchants)
        )
    return histories
