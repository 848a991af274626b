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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from django.db import transaction
from pydantic import ValidationError

from scoring import aggregates, storage
from scoring.schemas import TransactionIn, error_message
from scoring.storage.imported import RowValues, row_values

REQUIRED = ("external_id", "card_id", "merchant_id", "amount", "currency", "timestamp")
OPTIONAL = ("country", "channel", "mcc")
LABEL = "is_fraud"
COLUMNS = (*REQUIRED, *OPTIONAL, LABEL)
LABELS = {"": None, "0": False, "1": True, "false": False, "true": True}
MAX_ERRORS_KEPT = 1000

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
        values = row_values()  # here: it reads this thread's connection
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
    """After a bulk load: what autovacuum would do some time later, now (scoring/storage: settle())."""
    started = time.monotonic()
    if storage.settle() and progress:
        progress(f"VACUUM (ANALYZE) of the imported tables: {time.monotonic() - started:.1f} s")


def _open(path: str | Path) -> IO[str]:
    return open(path, newline="", encoding="utf-8-sig")


def _chunks(
    reader: csv.DictReader[str], *, values: RowValues, size: int, report: ImportReport
) -> Iterator[list[tuple[Any, ...]]]:
    """Database rows (scoring/storage/imported.py) of the file's valid rows, `size` at a time; records the bad ones."""
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
    """Hand the interpreter between threads every `seconds` instead of Python's default interval.

    The storing thread gives up the GIL at every round trip to the database and then waits the whole
    default interval for the busy reader thread to hand it back; a shorter one keeps the database busy.
    """
    before = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _check_header(names: list[str] | None, *, report: ImportReport) -> None:
    if problems := header_problems(names):
        report.reject(1, f"header: {problems}")
        raise ImportRefused(report)


def header_problems(names: Sequence[str] | None) -> str:
    """What is wrong with a CSV header, in words ("" when nothing is): the command and the import job say it."""
    names = names or []
    unknown = [n for n in names if n not in COLUMNS]
    missing = [n for n in REQUIRED if n not in names]
    problems = ([f"unknown column(s) {', '.join(unknown)}"] if unknown else []) + (
        [f"missing column(s) {', '.join(missing)}"] if missing else []
    )
    return f"{'; '.join(problems)} (columns are {', '.join(COLUMNS)})" if problems else ""


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
    values_of = row_values()
    values = [values_of(item, label) for item, label in rows]
    with transaction.atomic():
        store = _Store(source)
        for i in range(0, len(values), batch_size):
            report.read += len(values[i : i + batch_size])
            store.add(values[i : i + batch_size], report=report)
        store.finish()
    return report


class _Store:
    """An import's writes inside its database transaction: the rows not yet stored (scoring/storage's
    history writer), the report's counts, and the window cache forgetting what the import changed."""

    def __init__(self, source: str) -> None:
        self.writer = storage.history_writer(source)

    def add(self, values: list[tuple[Any, ...]], *, report: ImportReport) -> None:
        unique: dict[str, tuple[Any, ...]] = {}
        for row in values:  # a file may repeat an external_id: the first one counts, as across chunks
            unique.setdefault(row[0], row)
        stored = self.writer.add(list(unique.values()))
        report.stored += stored
        report.already_present += len(values) - stored

    def finish(self) -> None:
        """Count the imported rows into their merchants' hours (where not done per chunk). The process's cache
        of merchant windows forgets everything, now and at the commit: a past hour of any merchant may change."""
        aggregates.window_cache.clear()
        transaction.on_commit(aggregates.window_cache.clear)
        self.writer.finish()


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
