"""Importing transaction history from CSV: streamed, validated like the API, stored idempotently.

The file is streamed, never held in memory. Without `skip_invalid` a first pass validates every row
and one bad row means nothing is stored; the storing pass writes chunks, one database transaction
each, and counts their rows into the merchants' hourly aggregates as ingest does. Imported rows are
history, not traffic: no score, no case, no broadcast; the external_id keeps a second import of the
same file from storing anything again.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson
from django.db import connection, transaction
from django.utils import timezone
from pydantic import ValidationError

from scoring import aggregates
from scoring.models import Decision, MerchantHour, Transaction
from scoring.schemas import TransactionIn

REQUIRED = ("external_id", "card_id", "merchant_id", "amount", "currency", "timestamp")
OPTIONAL = ("country", "channel", "mcc")
LABEL = "is_fraud"
COLUMNS = (*REQUIRED, *OPTIONAL, LABEL)
LABELS = {"": None, "0": False, "1": True, "false": False, "true": True}
MAX_ERRORS_KEPT = 1000
LOOKUP_CHUNK = 900  # ids per existence query: below SQLite's limit on query parameters

Progress = Callable[[str], None]


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
    batch_size: int = 2000,
    progress: Progress | None = None,
) -> ImportReport:
    """Store the transactions of a CSV file as labeled history; raises ImportRefused for bad rows."""
    started = time.monotonic()
    if not skip_invalid:
        checked = ImportReport()
        with _open(path) as f:
            for line, row in _rows(f, report=checked):
                checked.read += 1
                if isinstance(row, str):
                    checked.reject(line, row)
        if checked.invalid:
            checked.seconds = time.monotonic() - started
            raise ImportRefused(checked)
    report = ImportReport(seconds=time.monotonic() - started)
    with _open(path) as f:
        valid = _valid(_rows(f, report=report), report=report)
        return store_history(valid, source=source, batch_size=batch_size, report=report, progress=progress)


def _open(path: str | Path) -> IO[str]:
    return open(path, newline="", encoding="utf-8-sig")


def _rows(f: IO[str], *, report: ImportReport) -> Iterator[tuple[int, tuple[TransactionIn, bool | None] | str]]:
    """(line number, parsed row or the reason it is invalid), in file order."""
    reader = csv.DictReader(f)
    _check_header(reader.fieldnames, report=report)
    for row in reader:
        yield reader.line_num, parse_row(row)


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
    if err["type"] == "missing":
        return f"{where}: is required"
    return f"{where}: {str(err['msg']).removeprefix('Value error, ')}"


def _valid(
    rows: Iterable[tuple[int, tuple[TransactionIn, bool | None] | str]], *, report: ImportReport
) -> Iterator[tuple[TransactionIn, bool | None]]:
    for line, row in rows:
        report.read += 1
        if isinstance(row, str):
            report.reject(line, row)
        else:
            yield row


def store_history(
    rows: Iterable[tuple[TransactionIn, bool | None]],
    *,
    source: str,
    batch_size: int = 2000,
    report: ImportReport | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Store validated transactions (each with its label or None) as history, one transaction per chunk."""
    report = report or ImportReport()
    started = time.monotonic() - report.seconds
    chunk: list[tuple[TransactionIn, bool | None]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= batch_size:
            _store_chunk(chunk, source=source, report=report)
            chunk = []
            if progress:
                elapsed = time.monotonic() - started
                progress(
                    f"{report.read:,} rows read, {report.stored:,} stored, {report.already_present:,} already "
                    f"present ({report.read / elapsed:,.0f} rows/s)"
                )
    if chunk:
        _store_chunk(chunk, source=source, report=report)
    report.seconds = time.monotonic() - started
    return report


def _store_chunk(chunk: list[tuple[TransactionIn, bool | None]], *, source: str, report: ImportReport) -> None:
    """Store the chunk's new rows and count them into their merchants' hours, in one database transaction."""
    unique: dict[str, tuple[TransactionIn, bool | None]] = {}
    for item, label in chunk:
        unique.setdefault(item.external_id, (item, label))
    rows = list(unique.values())
    with transaction.atomic():
        if connection.vendor == "postgresql":  # one statement stores the new rows and counts their hours
            stored = _copy_then_insert(_values(rows, source=source)) if rows else 0
        else:
            present = _present([item.external_id for item, _ in rows])
            rows = [(item, label) for item, label in rows if item.external_id not in present]
            inserted = _insert(rows, source=source) if rows else []
            aggregates.record(inserted)
            stored = len(inserted)
    report.stored += stored
    report.already_present += len(chunk) - stored


def _present(ids: list[str]) -> set[str]:
    present = set()
    for i in range(0, len(ids), LOOKUP_CHUNK):
        stored = Transaction.objects.filter(external_id__in=ids[i : i + LOOKUP_CHUNK])
        present.update(stored.values_list("external_id", flat=True))
    return present


def _insert(rows: list[tuple[TransactionIn, bool | None]], *, source: str) -> list[tuple[str, datetime, bool | None]]:
    """SQLite: INSERT ... ON CONFLICT DO NOTHING, what bulk_create(ignore_conflicts=True) does at 3-4 times
    its speed (the ORM spends ~100 µs a row compiling the statement). Returns (merchant, time, label) of
    the rows inserted.
    """
    with connection.cursor() as cursor:
        cursor.executemany(_insert_sql(NAMES), _values(rows, source=source))
        # The transaction took the write lock before the rows were looked up (IMMEDIATE), so no other
        # writer stored any of them meanwhile.
        if cursor.rowcount not in (-1, len(rows)):
            raise RuntimeError("rows were stored by another writer during the import; run it again")
    return [(item.merchant_id, item.timestamp, label) for item, label in rows]


def _values(rows: list[tuple[TransactionIn, bool | None]], *, source: str) -> list[tuple[Any, ...]]:
    """Database values of the NAMES columns. Imported rows are history, not traffic: score 0, approved,
    no reasons, features or case."""
    ops, now = connection.ops, timezone.now()
    constants = {
        "score": 0.0,
        "decision": Decision.APPROVE.value,
        "reasons": [],
        "features": {},
        "model_version": f"imported:{source}",
        "received_at": now,
    }
    fixed = tuple(_prep(name, value) for name, value in constants.items())
    labeled_at = _prep("labeled_at", now)
    return [
        (
            item.external_id,
            item.card_id,
            item.merchant_id,
            ops.adapt_decimalfield_value(item.amount, 12, 2),
            item.currency,
            ops.adapt_datetimefield_value(item.timestamp),
            item.country or "",
            item.channel or "",
            item.mcc or "",
            label,
            None if label is None else labeled_at,
            *fixed,
        )
        for item, label in rows
    ]


VARYING = ("external_id", "card_id", "merchant_id", "amount", "currency", "timestamp", "country", "channel", "mcc")
VARYING += ("is_fraud", "labeled_at")
CONSTANT = ("score", "decision", "reasons", "features", "model_version", "received_at")
NAMES = (*VARYING, *CONSTANT)


def _prep(name: str, value: Any) -> Any:
    return Transaction._meta.get_field(name).get_db_prep_save(value, connection)


def _insert_sql(names: tuple[str, ...]) -> str:
    placeholders = ", ".join(["%s"] * len(names))
    return f"INSERT INTO {_table()} ({_columns(names)}) VALUES ({placeholders}) {_ON_CONFLICT}"


def _copy_then_insert(values: list[tuple[Any, ...]]) -> int:
    """PostgreSQL: COPY into a temporary table, then one statement inserts the new rows and adds them to
    their merchants' hourly counts (as scoring/aggregates.py does for live traffic). Returns how many
    rows were new."""
    columns = _columns(NAMES)
    hours = connection.ops.quote_name(MerchantHour._meta.db_table)
    with connection.cursor() as cursor:
        # Dropped first as well: inside an outer transaction (tests, `evaluate`) ON COMMIT has not fired yet.
        cursor.execute("DROP TABLE IF EXISTS history_import")
        cursor.execute(
            f"CREATE TEMP TABLE history_import ON COMMIT DROP AS SELECT {columns} FROM {_table()} WITH NO DATA"
        )
        with cursor.cursor.copy(f"COPY history_import ({columns}) FROM STDIN") as copy:
            # The JSON constants as text, encoded once: adapting them per row cost a third of the COPY.
            constants = tuple(_copy_text(v) for v in values[0][len(VARYING) :])
            for row in values:
                copy.write_row(row[: len(VARYING)] + constants)
        cursor.execute(
            f"""WITH inserted AS (
                INSERT INTO {_table()} ({columns}) SELECT {columns} FROM history_import {_ON_CONFLICT}
                RETURNING merchant_id, "timestamp", is_fraud
            ), counted AS (
                INSERT INTO {hours} (merchant_id, hour, count, fraud_count)
                SELECT merchant_id, floor(extract(epoch FROM "timestamp") / 3600)::bigint, count(*),
                       count(*) FILTER (WHERE is_fraud)
                FROM inserted GROUP BY 1, 2 ORDER BY 1, 2
                ON CONFLICT (merchant_id, hour) DO UPDATE SET count = {hours}.count + excluded.count,
                    fraud_count = {hours}.fraud_count + excluded.fraud_count
            )
            SELECT count(*) FROM inserted"""
        )
        return cursor.fetchone()[0]


def _copy_text(value: Any) -> Any:
    """A constant column's value for COPY: JSON wrappers as their text."""
    return orjson.dumps(value.obj).decode() if hasattr(value, "obj") else value


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
