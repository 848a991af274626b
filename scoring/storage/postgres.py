"""PostgreSQL's storage: a batch's reads in one round trip, its write in one statement, imports by COPY.

Every statement here is written out rather than built by the ORM for each batch, whose compilation cost
more than the database's work; values go as binary arrays (scoring/storage/binary.py), one per column.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime
from functools import cache
from typing import Any

import numpy as np
import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from scoring import webhooks
from scoring.features import DAY, FEATURES, MERCHANT_HOURS, MERCHANT_SPAN_HOURS, CardHistory, MerchantCounts
from scoring.models import (
    ALERT,
    OPENED,
    Case,
    CaseEvent,
    CaseStatus,
    Decision,
    EventType,
    MerchantHour,
    Transaction,
    WebhookEvent,
)
from scoring.schemas import TransactionIn
from scoring.storage import HourCounts, NewRow, Pair, Read, Windows, card_range, case_alerts, imported
from scoring.storage.binary import Float4Array, binary_cursor, read_together

# Counts that arrive for an hour already counted are added to it (live ingest, labels and history import).
ADD_TO_HOUR = (
    "ON CONFLICT (merchant_id, hour) DO UPDATE SET count = {table}.count + excluded.count, "
    "fraud_count = {table}.fraud_count + excluded.fraud_count"
)
_UPSERT_ARRAYS = (
    "INSERT INTO {table} (merchant_id, hour, count, fraud_count) "
    "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::bigint[]) " + ADD_TO_HOUR
)

_STORED_IDS = "SELECT external_id FROM {table} WHERE external_id = ANY(%b)"

# One row per card, its history as three arrays, which psycopg decodes in C (a row per history entry costs a
# Python tuple each). The subquery's order (the covering index's, so no sort) is the order the arrays are built
# in; CardHistory.ordered() checks it. Seconds and amounts come back as floats: a datetime and a Decimal for every
# history row would cost more than the rest of the features; both round exactly as datetime.timestamp() and
# float(Decimal) do (date_part divides the exact microseconds; amount_float is converted once, when stored).
# Each card is read by its own index scan (LATERAL): `card_id = ANY(array)` makes the planner weigh every element.
# Merchants only for the rows of the day before the batch's earliest item on: only "distinct merchants in the
# last day" reads them, and every row's merchant text is a good share of the read.
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

# The window counts of each (merchant, hour) a batch has transactions in, summed by the database: one row a pair,
# its nine counts and its first and last fraud hour in MerchantCounts' order, as floats. The hours summed are those
# merchant_counts() looks at: [hour - span, hour) for the counts, the same shifted back by the label delay
# (k.delayed = hour - delay) for the labeled ones and the frauds; tests compare the two at every window's edge. Each
# window's first hour is computed once a pair (b, kept apart from the sums by OFFSET 0, which stops the planner from
# folding it back into them).
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

# The batch's rows, their merchant hours, and its flagged rows filed in their cards' cases with audit events, in one
# statement (a transaction by itself: no BEGIN and COMMIT round trips). The rows arrive as one binary array a column
# and the features as one flat array (a row's values are its slice): PostgreSQL parses nothing but the reasons' JSON.
# Cases, rows and merchant hours are each taken in one order (card, external_id compared as Python compares them:
# COLLATE "C", and hour_counts()' order), so two batches never wait on each other in a circle.
# A card's open case is found by the upsert on the one-open-case-per-card index: two batches racing on one card
# meet on that index entry, and the second joins the case the first opened (xmax = 0 tells an inserted row).
# While some endpoint wants `transaction.flagged`, the statement also puts each flagged row's event in the webhook
# outbox ({outbox}: _OUTBOX), committed with it; the event's body is rendered from the stored row when the worker
# fans it out.
_SAVE = """
WITH cases AS (
    INSERT INTO {case} AS c (card_id, status, decision, alert_count, top_score, total_amount, currency, opened_at,
        last_alert_at, due_at, note, resolved_via, overturned)
    SELECT card_id, %b, decision, n, top, total::numeric, currency, %b, %b, due, '', '', false
    FROM unnest(%b::text[], %b::text[], %b::int8[], %b::float8[], %b::text[], %b::text[], %b::timestamptz[])
        AS g(card_id, decision, n, top, total, currency, due)
    ORDER BY card_id COLLATE "C"
    ON CONFLICT (card_id) WHERE status = '{open}' DO UPDATE SET
        alert_count = c.alert_count + EXCLUDED.alert_count,
        top_score = greatest(c.top_score, EXCLUDED.top_score),
        decision = CASE WHEN EXCLUDED.decision = %b THEN EXCLUDED.decision ELSE c.decision END,
        total_amount = CASE WHEN c.currency = EXCLUDED.currency THEN c.total_amount + EXCLUDED.total_amount END,
        currency = CASE WHEN c.currency = EXCLUDED.currency THEN c.currency ELSE '' END,
        last_alert_at = EXCLUDED.last_alert_at,
        due_at = least(c.due_at, EXCLUDED.due_at)
    RETURNING id, card_id, xmax <> 0 AS joined
), new AS (
    INSERT INTO {transaction} (external_id, card_id, merchant_id, amount, currency, "timestamp", country, channel,
        mcc, score, decision, reasons, features, model_version, received_at, case_id, rules, shadow_rules,
        challenger_score, challenger_version)
    SELECT external_id, r.card_id, merchant_id, amount::numeric, currency, at, country, channel, mcc, score, decision,
        reasons::jsonb, (%b::real[])[(n - 1) * {width} + 1 : n * {width}], %b, %b, cases.id,
        coalesce(rules::jsonb, '[]'), coalesce(shadow_rules::jsonb, '[]'), challenger_score,
        coalesce(challenger_version, '')
    FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[], %b::text[],
        %b::text[], %b::text[], %b::float8[], %b::text[], %b::text[], %b::text[], %b::text[], %b::float8[], %b::text[])
        WITH ORDINALITY AS r(external_id, card_id, merchant_id, amount, currency, at, country, channel, mcc, score,
            decision, reasons, rules, shadow_rules, challenger_score, challenger_version, n)
    LEFT JOIN cases ON r.decision <> %b AND cases.card_id = r.card_id
    ORDER BY external_id COLLATE "C"
    RETURNING id, external_id, case_id
), hours AS (
    INSERT INTO {hour} (merchant_id, hour, count, fraud_count)
    SELECT * FROM unnest(%b::text[], %b::bigint[], %b::bigint[], %b::bigint[])
    {add_to_hour}
), audit AS (
    INSERT INTO {event} (case_id, action, note, via, at)
    SELECT id, CASE WHEN joined THEN %b ELSE %b END, '', '', %b FROM cases
){outbox}
SELECT new.id, new.external_id, new.case_id, coalesce(cases.joined, false)
FROM new LEFT JOIN cases ON cases.id = new.case_id
"""
_OUTBOX = """, outbox AS (
    INSERT INTO {event} (id, type, transaction_id, created_at)
    SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), %b, id, %b FROM new WHERE case_id IS NOT NULL
)"""


class PostgreSQL:
    """The storage interface (scoring/storage/__init__.py) on PostgreSQL."""

    def read(self, items: list[TransactionIn], *, missing: set[Pair], delay: int) -> Read:
        table = Transaction._meta.db_table
        cards, start, end = card_range(items)
        since = min(i.timestamp for i in items).timestamp() - DAY  # what feature_vector() reads merchants from
        ids, rows, *windows = read_together(
            [
                (_STORED_IDS.format(table=table), [[i.external_id for i in items]]),
                (_CARD_HISTORIES.format(table=table), [cards, since, start, end]),
                *([windows_query(missing, delay=delay)] if missing else []),
            ]
        )
        histories = {
            card_id: CardHistory.ordered(times, amounts, merchants or [], merchants_since=since)
            for card_id, times, amounts, merchants in rows
        }
        return [external_id for (external_id,) in ids], histories, windows_from(windows[0]) if windows else {}

    def save(self, rows: list[NewRow], *, counts: HourCounts, features: np.ndarray, version: str) -> None:
        # A statement is a transaction of its own; inside a caller's (a test's), a savepoint keeps a failed one from
        # breaking it. Prepared, since its plan depends on no data (it reads no table but through unique indexes),
        # except behind a pooler that lends server connections a transaction at a time (DB_TRANSACTION_POOLING),
        # where the next batch's connection may not have it.
        saving = binary_cursor(prepared=not settings.DB_TRANSACTION_POOLING)
        now = timezone.now()
        params = _save_params(rows, counts=counts, features=features, version=version, now=now)
        outbox = webhooks.subscribed(EventType.TRANSACTION_FLAGGED)
        if outbox:
            params += [EventType.TRANSACTION_FLAGGED, now]
        with transaction.atomic() if connection.in_atomic_block else nullcontext(), saving as cursor:
            cursor.execute(_save_statement(outbox=outbox), params)
            stored = cursor.fetchall()
        by_id = {row.item.external_id: row for row in rows}
        for pk, external_id, case_id, joined in stored:
            row = by_id[external_id]
            row.id, row.case_id, row.joined = pk, case_id, joined

    def add_to_hours(self, deltas: HourCounts) -> None:
        columns = list(zip(*((*key, *value) for key, value in deltas.items()), strict=True))
        with connection.cursor() as cursor:
            cursor.execute(_UPSERT_ARRAYS.format(table=MerchantHour._meta.db_table), [list(c) for c in columns])

    def history_writer(self, source: str) -> CopyWriter:
        return CopyWriter(source)

    def settle(self) -> bool:
        """ANALYZE gives the planner the new rows' statistics; VACUUM marks their pages all-visible, without which
        the card histories' index-only scan visits a heap page for every row (see migration 0006). Outside a
        transaction only (VACUUM cannot run in one); a table autovacuum is already at is skipped, not waited for."""
        if connection.in_atomic_block:
            return False
        tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in (Transaction, MerchantHour))
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM (ANALYZE, SKIP_LOCKED) {tables}")
        return True


def windows_query(pairs: set[Pair], *, delay: int) -> tuple[str, list[Any]]:
    """The statement and parameters giving the window counts of `pairs` (see windows_from())."""
    ordered = sorted(pairs)
    return _windows_statement(), [[m for m, _ in ordered], [h for _, h in ordered], [h - delay for _, h in ordered]]


def windows_from(rows: list[tuple[Any, ...]]) -> Windows:
    """The counts of each (merchant, hour) from the rows of windows_query()'s statement."""
    n = len(MERCHANT_HOURS)
    return {
        (row[0], row[1]): MerchantCounts(
            counts=row[2 : 2 + n],
            labeled=row[2 + n : 2 + 2 * n],
            frauds=row[2 + 2 * n : 2 + 3 * n],
            first_fraud=row[2 + 3 * n],
            last_fraud=row[3 + 3 * n],
        )
        for row in rows
    }


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
    # The first and last hour with a fraud in the longest window before the delay (NULL, read as None: none).
    frauds = f"m.fraud_count > 0 AND m.hour >= b.delayed_{MERCHANT_SPAN_HOURS} AND m.hour < k.delayed"
    sums += [f"{edge}(m.hour) FILTER (WHERE {frauds})::float8" for edge in ("min", "max")]
    return _WINDOWS.format(
        firsts=", ".join(firsts), sums=", ".join(sums), table=MerchantHour._meta.db_table, span=MERCHANT_SPAN_HOURS
    )


@cache
def _save_statement(*, outbox: bool) -> str:
    return _SAVE.format(
        outbox=_OUTBOX.format(event=WebhookEvent._meta.db_table) if outbox else "",
        transaction=Transaction._meta.db_table,
        width=len(FEATURES),
        hour=MerchantHour._meta.db_table,
        add_to_hour=ADD_TO_HOUR.format(table=MerchantHour._meta.db_table),
        case=Case._meta.db_table,
        open=CaseStatus.OPEN,  # a literal: PostgreSQL matches the partial index's condition when it plans
        event=CaseEvent._meta.db_table,
    )


def _save_params(
    rows: list[NewRow], *, counts: HourCounts, features: np.ndarray, version: str, now: datetime
) -> list[Any]:
    """_SAVE's parameters: the features, then a list per column in the order its unnest() takes them."""
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
        # The last four are empty when no row has a value: unnest() pads a shorter array with NULLs, which the
        # statement stores as no rule hit and no challenger, and most batches have neither.
        [orjson.dumps(s.rules).decode() if s.rules else None for s in said] if any(s.rules for s in said) else [],
        [orjson.dumps(s.shadow_rules).decode() if s.shadow_rules else None for s in said]
        if any(s.shadow_rules for s in said)
        else [],
        [row.challenger_score for row in rows] if rows[0].challenger_version else [],
        [row.challenger_version for row in rows] if rows[0].challenger_version else [],
    ]
    hours = [
        [merchant_id for merchant_id, _ in counts],
        [hour for _, hour in counts],
        [count for count, _ in counts.values()],
        [frauds for _, frauds in counts.values()],
    ]
    groups = case_alerts(rows, now=now)
    cases = [
        [g.card_id for g in groups],
        [g.decision for g in groups],
        [g.count for g in groups],
        [g.top_score for g in groups],
        [None if g.total is None else str(g.total) for g in groups],
        [g.currency for g in groups],
        [g.due_at for g in groups],
    ]
    open_ = CaseStatus.OPEN
    return [
        *(open_, now, now, *cases, Decision.BLOCK),
        *(Float4Array(features), version, now, *columns, Decision.APPROVE),
        *hours,
        *(ALERT, OPENED, now),
    ]


_BINARY_TYPES = ("text", "text", "text", "numeric", "text", "timestamptz", "text", "text", "text", "bool")


class CopyWriter:
    """Imported history on PostgreSQL: each chunk is COPYed (binary, only the columns that vary) into a temporary
    table, then one statement inserts its new rows and notes their merchant hours in a second temporary table;
    `finish` adds those up into the merchants' hourly counts in one statement at the end, so live traffic's
    updates of the same hours never wait behind a long import."""

    def __init__(self, source: str) -> None:
        self.constants, self.labeled_at = imported.constants(source), imported.labeled_now()
        with connection.cursor() as cursor:
            # Dropped first: inside an outer transaction (tests, `evaluate`) ON COMMIT has not fired yet.
            cursor.execute("DROP TABLE IF EXISTS history_import, history_hours")
            cursor.execute(
                f"CREATE TEMP TABLE history_import ON COMMIT DROP AS SELECT {imported.columns(imported.VARYING)} "
                f"FROM {imported.table()} WITH NO DATA"
            )
            cursor.execute(
                "CREATE TEMP TABLE history_hours (merchant_id text, hour bigint, count bigint, "
                "fraud_count bigint) ON COMMIT DROP"
            )

    def add(self, values: list[tuple[Any, ...]]) -> int:
        varying = imported.columns(imported.VARYING)
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE history_import")
            # Binary, with the constants left out: the client's cheapest way to send the rows.
            with cursor.cursor.copy(f"COPY history_import ({varying}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_BINARY_TYPES)
                for row in values:
                    copy.write_row(row)
            cursor.execute(self._insert_statement(varying), (self.labeled_at, *self.constants))
            return int(cursor.fetchone()[0])

    @staticmethod
    def _insert_statement(varying: str) -> str:
        constants = ", ".join(["%s"] * len(imported.CONSTANT))
        return f"""WITH inserted AS (
            INSERT INTO {imported.table()} ({imported.columns(imported.NAMES)})
            SELECT {varying}, CASE WHEN is_fraud IS NULL THEN NULL ELSE %s::timestamptz END, {constants},
                   "timestamp"
            FROM history_import {imported.ON_CONFLICT}
            RETURNING merchant_id, "timestamp", is_fraud
        ), counted AS (
            INSERT INTO history_hours
            SELECT merchant_id, floor(extract(epoch FROM "timestamp") / 3600)::bigint, count(*),
                   count(*) FILTER (WHERE is_fraud)
            FROM inserted GROUP BY 1, 2
            RETURNING count
        )
        SELECT coalesce(sum(count), 0) FROM counted"""

    def finish(self) -> None:
        hours = connection.ops.quote_name(MerchantHour._meta.db_table)
        with connection.cursor() as cursor:
            # In the order live ingest takes merchant hours (aggregates.hour_counts: Python's sort, by code point,
            # which is the "C" collation's, whatever the database's), so neither waits on the other holding a row
            # it needs.
            cursor.execute(
                f"""INSERT INTO {hours} (merchant_id, hour, count, fraud_count)
                SELECT merchant_id, hour, sum(count), sum(fraud_count) FROM history_hours
                GROUP BY 1, 2 ORDER BY merchant_id COLLATE "C", hour """
                + ADD_TO_HOUR.format(table=hours)
            )
