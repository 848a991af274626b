"""Importing transaction history from CSV: streamed, validated like the API, stored idempotently.

The file is streamed, never held in memory, and read once: chunks of valid rows are stored as they
come, all in one database transaction, so that without `skip_invalid` one bad row anywhere means
nothing is stored. The rows are counted into the merchants' hourly aggregates as ingest does.
Imported rows are history, not traffic: no score, no case, no broadcast; the external_id keeps a
second import of the same file from storing anything again.
"""

from __future__ import annotations

import csv
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from django.db import connection, transaction
from django.utils import timezone
from pydantic import ValidationError

from scoring import aggregates
from scoring.models import IMPORTED, Decision, MerchantHour, Transaction
from scoring.schemas import TransactionIn, error_message

REQUIRED = ("external_id", "card_id", "merchant_id", "amount", "currency", "timestamp")
OPTIONAL = ("country", "channel", "mcc")
LABEL = "is_fraud"
COLUMNS = (*REQUIRED, *OPTIONAL, LABEL)
LABELS = {"": None, "0": False, "1": True, "false": False, "true": True}
MAX_ERRORS_KEPT = 1000
LOOKUP_CHUNK = 900  # ids per existence query: below SQLite's limit on query parameters

Progress = Callable[[str], None]
RowValues = Callable[[TransactionIn, bool | None], tuple[Any, ...]]


class ImportRefused(Exception):
    """The file has bad rows (or a bad header) and nothing was stored."""

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        super().__init__(f"{report.invalid} invalid row(s); nothing was stored")


@dataclass
class ImportReport:
    read: int = 0
    stored: int = 0
    already_present: int = 0
    invalid: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0

    def reject(self, line: int, reason: str) -> None:
        self.invalid += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append((line, reason))

    def summary(self) -> str:
        rate = self.read / self.seconds if self.seconds else 0.0
        return (
            f"{self.read:,} rows read, {self.stored:,} stored, {self.already_present:,} already present, "
            f"{self.invalid:,} invalid ({self.seconds:.1f} s, {rate:,.0f} rows/s)"
        )


def import_csv(
    path: str | Path,
    *,
    source: str,
    skip_invalid: bool = False,
    batch_size: int = 5000,
    progress: Progress | None = None,
) -> ImportReport:
    """Store the transactions of a CSV file as labeled history; raises ImportRefused for bad rows.

    One pass over the file: a reader thread parses and validates the next chunk while this thread
    stores the last one (the database works on the other core). It is all one database transaction,
    so a bad row found late still leaves nothing stored.
    """
    report = ImportReport()
    started = time.monotonic()
    with _open(path) as f:
        reader = csv.DictReader(f)
        _check_header(reader.fieldnames, report=report)
        values = _row_values()  # here: it reads this thread's connection
        chunks = _read_ahead(_chunks(reader, values=values, size=batch_size, report=report))
        with _quick_thread_switches(), transaction.atomic():
            store = _Store(source)
            for chunk in chunks:
                if skip_invalid or not report.invalid:  # else nothing will be stored: read on for the report
                    store.add(chunk, report=report)
                if progress:
                    rate = report.read / (time.monotonic() - started)
                    progress(
                        f"{report.read:,} rows read, {report.stored:,} stored, {report.already_present:,} "
                        f"already present, {report.invalid:,} invalid ({rate:,.0f} rows/s)"
                    )
            report.seconds = time.monotonic() - started
            if report.invalid and not skip_invalid:
                raise ImportRefused(report)  # rolls the transaction back
            store.finish()
    report.seconds = time.monotonic() - started
    if report.stored:
        _settle(progress)
    return report


def _settle(progress: Progress | None) -> None:
    """PostgreSQL, after a bulk load: what autovacuum would do some time later, now. ANALYZE gives the
    planner the new rows' statistics; VACUUM marks their pages all-visible, without which the card
    histories' index-only scan visits a heap page for every row (see migration 0006). Outside a
    transaction only (VACUUM cannot run in one); a table that autovacuum is already at is skipped, not
    waited for."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return
    started = time.monotonic()
    tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in (Transaction, MerchantHour))
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE, SKIP_LOCKED) {tables}")
    if progress:
        progress(f"VACUUM (ANALYZE) of the imported tables: {time.monotonic() - started:.1f} s")


def _open(path: str | Path) -> IO[str]:
    return open(path, newline="", encoding="utf-8-sig")


def _chunks(
    reader: csv.DictReader[str], *, values: RowValues, size: int, report: ImportReport
) -> Iterator[list[tuple[Any, ...]]]:
    """Database rows (see `_row_values`) of the file's valid rows, `size` at a time; records the bad ones."""
    chunk: list[tuple[Any, ...]] = []
    for row in reader:
        report.read += 1
        parsed = parse_row(row)
        if isinstance(parsed, str):
            report.reject(reader.line_num, parsed)
            continue
        chunk.append(values(*parsed))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _read_ahead(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run `items` in a thread, `depth` items ahead of the consumer; its exceptions are raised here."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def offer(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the consumer has gone

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            offer(exc)

    thread = threading.Thread(target=produce, name="import-reader", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


@contextmanager
def _quick_thread_switches(seconds: float = 0.0005) -> Iterator[None]:
    """Hand the interpreter between threads every `seconds` instead of every 5 ms.

    The storing thread gives up the GIL at every round trip to the database and then waited up to the
    default 5 ms for the busy reader thread to hand it back: a shorter interval took the import of
    192,791 rows from 20,500 to 26,000 rows/s here.
    """
    before = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _check_header(names: list[str] | None, *, report: ImportReport) -> None:
    names = names or []
    unknown = [n for n in names if n not in COLUMNS]
    missing = [n for n in REQUIRED if n not in names]
    if unknown or missing:
        problems = ([f"unknown column(s) {', '.join(unknown)}"] if unknown else []) + (
            [f"missing column(s) {', '.join(missing)}"] if missing else []
        )
        report.reject(1, f"header: {'; '.join(problems)} (columns are {', '.join(COLUMNS)})")
        raise ImportRefused(report)


def parse_row(row: dict[str | None, Any]) -> tuple[TransactionIn, bool | None] | str:
    """A CSV row as a validated transaction and its label, or the reason it is invalid."""
    if None in row:
        return "more fields than the header has"
    data = {k: v for k, v in row.items() if v}  # empty cells are absent fields
    label = (data.pop(LABEL, "") or "").strip().lower()
    if label not in LABELS:
        return f"{LABEL}: must be 0 or 1, not {label!r}"
    try:
        return TransactionIn.model_validate(data), LABELS[label]
    except ValidationError as exc:
        return "; ".join(_reason(err) for err in exc.errors())


def _reason(err: Any) -> str:
    where = ".".join(str(part) for part in err["loc"]) or "row"
    return f"{where}: {error_message(err)}"


def store_history(
    rows: Iterable[tuple[TransactionIn, bool | None]], *, source: str, batch_size: int = 5000
) -> ImportReport:
    """Store validated transactions (each with its label or None) as history, in one database transaction."""
    report = ImportReport()
    row_values = _row_values()
    values = [row_values(item, label) for item, label in rows]
    with transaction.atomic():
        store = _Store(source)
        for i in range(0, len(values), batch_size):
            report.read += len(values[i : i + batch_size])
            store.add(values[i : i + batch_size], report=report)
        store.finish()
    return report


class _Store:
    """Writes chunks of history rows (see `_row_values`) inside the caller's database transaction.

    Imported rows are history, not traffic: score 0, approved, no reasons, features or case; those
    columns are the same for every row, so they are adapted once here.

    PostgreSQL: each chunk is COPYed (binary, only the columns that vary) into a temporary table,
    then one statement inserts its new rows and notes their merchant hours in a second temporary
    table; `finish` adds those up into the merchants' hourly counts in one statement at the end, so
    live traffic's updates of the same hours never wait behind a long import. SQLite: plain inserts
    of the rows not yet stored.
    """

    def __init__(self, source: str) -> None:
        self.postgres = connection.vendor == "postgresql"
        now = timezone.now()
        constants = {
            "score": 0.0,
            "decision": Decision.APPROVE.value,
            "reasons": [],
            "features": [],
            "model_version": f"{IMPORTED}{source}",
        }
        self.constants = tuple(_prep(name, value) for name, value in constants.items())
        self.labeled_at = _prep("labeled_at", now)  # when the label came: only for labeled rows
        if self.postgres:
            with connection.cursor() as cursor:
                # Dropped first: inside an outer transaction (tests, `evaluate`) ON COMMIT has not fired yet.
                cursor.execute("DROP TABLE IF EXISTS history_import, history_hours")
                cursor.execute(
                    f"CREATE TEMP TABLE history_import ON COMMIT DROP AS SELECT {_columns(VARYING)} "
                    f"FROM {_table()} WITH NO DATA"
                )
                cursor.execute(
                    "CREATE TEMP TABLE history_hours (merchant_id text, hour bigint, count bigint, "
                    "fraud_count bigint) ON COMMIT DROP"
                )

    def add(self, values: list[tuple[Any, ...]], *, report: ImportReport) -> None:
        unique: dict[str, tuple[Any, ...]] = {}
        for row in values:  # a file may repeat an external_id: the first one counts, as across chunks
            unique.setdefault(row[0], row)
        rows = list(unique.values())
        stored = self._copy_then_insert(rows) if self.postgres else self._insert(rows)
        report.stored += stored
        report.already_present += len(values) - stored

    def finish(self) -> None:
        """PostgreSQL: count the imported rows into their merchants' hours. Either way the process's cache of
        merchant windows forgets everything, now and at the commit (a past hour of any merchant may change)."""
        aggregates.window_cache.clear()
        transaction.on_commit(aggregates.window_cache.clear)
        if not self.postgres:
            return
        hours = connection.ops.quote_name(MerchantHour._meta.db_table)
        with connection.cursor() as cursor:
            # In the order live ingest takes merchant hours (aggregates.hour_counts: Python's sort, by code
            # point, which is the "C" collation's, whatever the database's), so neither waits on the other
            # holding a row it needs.
            cursor.execute(
                f"""INSERT INTO {hours} (merchant_id, hour, count, fraud_count)
                SELECT merchant_id, hour, sum(count), sum(fraud_count) FROM history_hours
                GROUP BY 1, 2 ORDER BY merchant_id COLLATE "C", hour """
                + aggregates.ADD_TO_HOUR.format(table=hours)
            )

    def _copy_then_insert(self, values: list[tuple[Any, ...]]) -> int:
        varying = _columns(VARYING)
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE history_import")
            # Binary, with the constants left out: a third of the client's time of a text COPY of all columns.
            with cursor.cursor.copy(f"COPY history_import ({varying}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_BINARY_TYPES)
                for row in values:
                    copy.write_row(row)
            constants = ", ".join(["%s"] * len(CONSTANT))
            cursor.execute(
                f"""WITH inserted AS (
                    INSERT INTO {_table()} ({_columns(NAMES)})
                    SELECT {varying}, CASE WHEN is_fraud IS NULL THEN NULL ELSE %s::timestamptz END, {constants},
                           "timestamp"
                    FROM history_import {_ON_CONFLICT}
                    RETURNING merchant_id, "timestamp", is_fraud
                ), counted AS (
                    INSERT INTO history_hours
                    SELECT merchant_id, floor(extract(epoch FROM "timestamp") / 3600)::bigint, count(*),
                           count(*) FILTER (WHERE is_fraud)
                    FROM inserted GROUP BY 1, 2
                    RETURNING count
                )
                SELECT coalesce(sum(count), 0) FROM counted""",
                (self.labeled_at, *self.constants),
            )
            return int(cursor.fetchone()[0])

    def _insert(self, values: list[tuple[Any, ...]]) -> int:
        """SQLite: INSERT ... ON CONFLICT DO NOTHING of the rows not yet stored, what
        bulk_create(ignore_conflicts=True) does at 3-4 times its speed (the ORM spends ~100 µs a row
        compiling the statement)."""
        present = _present([row[0] for row in values])
        new = [row for row in values if row[0] not in present]
        if not new:
            return 0
        with connection.cursor() as cursor:
            rows = [(*row, None if row[9] is None else self.labeled_at, *self.constants, row[5]) for row in new]
            cursor.executemany(_insert_sql(NAMES), rows)
            # The transaction took the write lock before the rows were looked up (IMMEDIATE), so no other
            # writer stored any of them meanwhile.
            if cursor.rowcount not in (-1, len(new)):
                raise RuntimeError("rows were stored by another writer during the import; run it again")
        aggregates.record((row[2], _sqlite_time(row[5]), row[9]) for row in new)
        return len(new)


def _present(ids: list[str]) -> set[str]:
    present = set()
    for i in range(0, len(ids), LOOKUP_CHUNK):
        stored = Transaction.objects.filter(external_id__in=ids[i : i + LOOKUP_CHUNK])
        present.update(stored.values_list("external_id", flat=True))
    return present


def _sqlite_time(value: str) -> datetime:
    """A timestamp as Django stores it in SQLite (naive UTC text) back as an aware datetime."""
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _row_values() -> RowValues:
    """A function giving the database values of the VARYING columns for a transaction and its label."""
    ops = connection.ops
    decimal, moment = ops.adapt_decimalfield_value, ops.adapt_datetimefield_value

    def values(item: TransactionIn, label: bool | None) -> tuple[Any, ...]:
        return (
            item.external_id,
            item.card_id,
            item.merchant_id,
            decimal(item.amount, 12, 2),
            item.currency,
            moment(item.timestamp),
            item.country or "",
            item.channel or "",
            item.mcc or "",
            label,
        )

    return values


VARYING = ("external_id", "card_id", "merchant_id", "amount", "currency", "timestamp", "country", "channel", "mcc")
VARYING += ("is_fraud",)
_BINARY_TYPES = ("text", "text", "text", "numeric", "text", "timestamptz", "text", "text", "text", "bool")
CONSTANT = ("score", "decision", "reasons", "features", "model_version")
# received_at is the event time: history is past traffic, received when it happened, not now. The live
# dashboards leave imported rows out altogether (TransactionQuerySet.scored()), recent history included.
NAMES = (*VARYING, "labeled_at", *CONSTANT, "received_at")


def _prep(name: str, value: Any) -> Any:
    return Transaction._meta.get_field(name).get_db_prep_save(value, connection)


def _insert_sql(names: tuple[str, ...]) -> str:
    placeholders = ", ".join(["%s"] * len(names))
    return f"INSERT INTO {_table()} ({_columns(names)}) VALUES ({placeholders}) {_ON_CONFLICT}"


_ON_CONFLICT = 'ON CONFLICT ("external_id") DO NOTHING'


def _table() -> str:
    return connection.ops.quote_name(Transaction._meta.db_table)


def _columns(names: tuple[str, ...]) -> str:
    return ", ".join(connection.ops.quote_name(Transaction._meta.get_field(name).column) for name in names)


def write_csv(records: Iterable[dict[str, Any]], f: IO[str]) -> int:
    """Write transactions in the API's shape (with an optional `is_fraud`) as an importable CSV."""
    writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    count = 0
    for record in records:
        label = record.get(LABEL)
        writer.writerow(record | {LABEL: "" if label is None else int(bool(label))})
        count += 1
    return count
