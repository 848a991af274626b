"""SQLite's storage (the embedded default): the same reads and writes through the ORM and plain SQL."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from scoring import webhooks
from scoring.aggregates import hour_counts
from scoring.features import MERCHANT_SPAN_HOURS, CardHistory, MerchantBuckets, merchant_counts
from scoring.models import ALERT, OPENED, Case, CaseEvent, Decision, EventType, MerchantHour, Transaction, WebhookEvent
from scoring.schemas import TransactionIn
from scoring.storage import (
    CardHistories,
    CaseAlerts,
    HourCounts,
    NewRow,
    Pair,
    Read,
    Windows,
    card_range,
    case_alerts,
    imported,
)

_UPSERT = (
    "INSERT INTO {table} (merchant_id, hour, count, fraud_count) VALUES {values} ON CONFLICT (merchant_id, hour) "
    "DO UPDATE SET count = {table}.count + excluded.count, fraud_count = {table}.fraud_count + excluded.fraud_count"
)
CHUNK = 500  # rows a statement: below SQLite's limit on query parameters
_HISTORY = ("card_id", "timestamp", "amount", "merchant_id")


class SQLite:
    """The storage interface (scoring/storage/__init__.py) on SQLite."""

    def read(self, items: list[TransactionIn], *, missing: set[Pair], delay: int) -> Read:
        stored = Transaction.objects.filter(external_id__any_of=[i.external_id for i in items])
        return list(stored.values_list("external_id", flat=True)), _card_histories(items), windows(missing, delay=delay)

    def save(self, rows: list[NewRow], *, counts: HourCounts, features: np.ndarray, version: str) -> None:
        now = timezone.now()
        txs = [
            _transaction(row, features=values, version=version, at=now)
            for row, values in zip(rows, features.tolist(), strict=True)
        ]
        order = sorted(range(len(txs)), key=lambda i: txs[i].external_id)
        outbox = webhooks.subscribed(EventType.TRANSACTION_FLAGGED)  # asked before the write lock is taken
        with transaction.atomic():
            cases = _file_alerts(case_alerts(rows, now=now), at=now)
            for tx in txs:
                if tx.decision != Decision.APPROVE:
                    tx.case_id = cases[tx.card_id][0]
            Transaction.objects.bulk_create([txs[i] for i in order])
            self.add_to_hours(counts)
            if outbox:  # the flagged rows' events, whose bodies are rendered from the stored rows at fan-out
                flagged = [txs[i] for i in order if txs[i].case_id is not None]
                WebhookEvent.objects.bulk_create(
                    [WebhookEvent(type=EventType.TRANSACTION_FLAGGED, transaction=tx, created_at=now) for tx in flagged]
                )
        for row, tx in zip(rows, txs, strict=True):
            row.id, row.case_id = tx.pk, tx.case_id
            row.joined = tx.case_id is not None and cases[tx.card_id][1]

    def add_to_hours(self, deltas: HourCounts) -> None:
        keys, table = list(deltas), MerchantHour._meta.db_table
        with connection.cursor() as cursor:
            for i in range(0, len(keys), CHUNK):
                chunk = keys[i : i + CHUNK]
                values = ", ".join(["(%s, %s, %s, %s)"] * len(chunk))
                cursor.execute(_UPSERT.format(table=table, values=values), [p for k in chunk for p in (*k, *deltas[k])])

    def history_writer(self, source: str) -> InsertWriter:
        return InsertWriter(source, add_to_hours=self.add_to_hours)

    def settle(self) -> bool:
        return False  # SQLite keeps no visibility map, and plans these reads well without statistics


def windows(pairs: set[Pair], *, delay: int) -> Windows:
    """The stored counts of each (merchant, hour) as merchant_counts() gives them, from one ORM query."""
    if not pairs:
        return {}
    merchants = {m for m, _ in pairs}
    buckets = merchant_buckets(merchants, first=min(h for _, h in pairs), last=max(h for _, h in pairs), delay=delay)
    return {(m, h): merchant_counts(buckets[m], at=h) for m, h in pairs}


def merchant_buckets(merchant_ids: set[str], *, first: int, last: int, delay: int) -> dict[str, MerchantBuckets]:
    """Every hour that merchant counts as of hours `first` to `last` can look at."""
    start, end = first - max(delay, 0) - MERCHANT_SPAN_HOURS, last - min(delay, 0)
    rows = (
        MerchantHour.objects.filter(merchant_id__in=merchant_ids, hour__gte=start, hour__lt=end)
        .order_by("merchant_id", "hour")
        .values_list("merchant_id", "hour", "count", "fraud_count")
    )
    buckets: dict[str, MerchantBuckets] = defaultdict(MerchantBuckets)
    for merchant_id, merchant_rows in groupby(rows, key=itemgetter(0)):
        _, hours, counts, frauds = zip(*merchant_rows, strict=True)
        buckets[merchant_id] = MerchantBuckets(hours=list(hours), counts=list(counts), frauds=list(frauds))
    return buckets


def _card_histories(items: list[TransactionIn]) -> CardHistories:
    cards, start, end = card_range(items)
    stored = Transaction.objects.filter(card_id__in=cards, timestamp__gte=start, timestamp__lt=end)
    histories = {}
    for card_id, rows in groupby(stored.order_by("card_id", "timestamp").values_list(*_HISTORY), key=itemgetter(0)):
        _, times, amounts, merchants = zip(*rows, strict=True)
        histories[card_id] = CardHistory(
            times=[at.timestamp() for at in times], amounts=[float(a) for a in amounts], merchants=list(merchants)
        )
    return histories


def _file_alerts(groups: list[CaseAlerts], *, at: datetime) -> dict[str, tuple[int, bool]]:
    """Put each card's alerts in its open case, opening one where it has none; {card_id: (case id, joined)}.

    A case another process opens for one of these cards between the read and the insert fails the insert (the
    one-open-case-per-card constraint) and the whole batch is tried again, as for a repeated external_id.
    """
    if not groups:
        return {}
    open_cases = {c.card_id: c for c in Case.objects.open().filter(card_id__in=[g.card_id for g in groups])}
    new, joined = [], []
    for group in groups:
        case = open_cases.get(group.card_id)
        if case is None:
            new.append(_new_case(group, at=at))
            continue
        case.alert_count += group.count
        case.top_score = max(case.top_score, group.top_score)
        case.decision = Decision.BLOCK if group.decision == Decision.BLOCK else case.decision
        same = bool(case.currency) and case.currency == group.currency
        case.total_amount = case.total_amount + group.total if same else None
        case.currency = case.currency if same else ""
        case.last_alert_at, case.due_at = at, min(case.due_at, group.due_at)
        joined.append(case)
    Case.objects.bulk_update(
        joined, ["alert_count", "top_score", "decision", "total_amount", "currency", "last_alert_at", "due_at"]
    )
    Case.objects.bulk_create(new)
    events = [CaseEvent(case=c, action=OPENED, at=at) for c in new] + [
        CaseEvent(case=c, action=ALERT, at=at) for c in joined
    ]
    CaseEvent.objects.bulk_create(events)
    return {c.card_id: (c.id, False) for c in new} | {c.card_id: (c.id, True) for c in joined}


def _new_case(group: CaseAlerts, *, at: datetime) -> Case:
    return Case(
        card_id=group.card_id,
        decision=group.decision,
        alert_count=group.count,
        top_score=group.top_score,
        total_amount=group.total,
        currency=group.currency,
        opened_at=at,
        last_alert_at=at,
        due_at=group.due_at,
    )


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
        rules=scored.rules,
        shadow_rules=scored.shadow_rules,
        challenger_score=row.challenger_score,
        challenger_version=row.challenger_version,
    )


class InsertWriter:
    """Imported history on SQLite: INSERT ... ON CONFLICT DO NOTHING of the rows not yet stored (what
    bulk_create(ignore_conflicts=True) does, without the ORM compiling a statement for every row), counted
    into their merchant hours chunk by chunk."""

    def __init__(self, source: str, *, add_to_hours: Callable[[HourCounts], None]) -> None:
        self.constants, self.labeled_at = imported.constants(source), imported.labeled_now()
        self.add_to_hours = add_to_hours
        placeholders = ", ".join(["%s"] * len(imported.NAMES))
        self.sql = (
            f"INSERT INTO {imported.table()} ({imported.columns(imported.NAMES)}) VALUES ({placeholders}) "
            + imported.ON_CONFLICT
        )

    def add(self, values: list[tuple[Any, ...]]) -> int:
        present = _present([row[imported.EXTERNAL_ID] for row in values])
        new = [row for row in values if row[imported.EXTERNAL_ID] not in present]
        if not new:
            return 0
        with connection.cursor() as cursor:
            cursor.executemany(self.sql, [self._row(row) for row in new])
            # The transaction took the write lock before the rows were looked up (IMMEDIATE), so no other
            # writer stored any of them meanwhile.
            if cursor.rowcount not in (-1, len(new)):
                raise RuntimeError("rows were stored by another writer during the import; run it again")
        counted = ((r[imported.MERCHANT_ID], _aware(r[imported.TIMESTAMP]), r[imported.IS_FRAUD]) for r in new)
        self.add_to_hours(hour_counts(counted))
        return len(new)

    def _row(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        labeled_at = None if row[imported.IS_FRAUD] is None else self.labeled_at
        return (*row, labeled_at, *self.constants, row[imported.TIMESTAMP])

    def finish(self) -> None:
        pass  # every chunk counted its hours as it went


def _present(ids: list[str]) -> set[str]:
    present = set()
    for i in range(0, len(ids), CHUNK):
        present.update(
            Transaction.objects.filter(external_id__in=ids[i : i + CHUNK]).values_list("external_id", flat=True)
        )
    return present


def _aware(value: str) -> datetime:
    """A timestamp as Django stores it in SQLite (naive UTC text) back as an aware datetime."""
    return datetime.fromisoformat(value).replace(tzinfo=UTC)
