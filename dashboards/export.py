"""CSV exports of what a queue filter selects (`/cases/export/cases.csv?<the queue's filters>` and
`/cases/export/transactions.csv?...`): for reports and SARs, streamed a chunk of rows at a time.

Memory stays flat however many rows match: the rows come from a database cursor (`iterator(chunk_size=...)`) and go
out as they are written. Under ASGI (the servers this project runs on) Django reads a plain iterator into a list
before sending any of it, so there the rows are handed over as an async iterator, each chunk read in the request's
own database thread. Every amount is written in its own currency's decimals beside its currency, never added up;
every text cell that a spreadsheet would read as a formula is defused.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from dashboards.queue_filters import QueueFilter, QueueFilterForm
from dashboards.views import HtmxHttpRequest, role_required
from scoring.models import Case, Transaction
from scoring.results import iso, money, reason_summary

CHUNK = 2000  # rows read from the cursor at a time, and written out as one piece
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MIXED = "several currencies"

CASE_COLUMNS = [
    "case_id",
    "card_id",
    "status",
    "decision",
    "top_score",
    "transactions",
    "total_amount",
    "currency",
    "opened_at",
    "last_alert_at",
    "due_at",
    "overdue",
    "assignee",
    "resolved_by",
    "resolved_at",
    "reason",
    "overturned",
    "note",
]
TRANSACTION_COLUMNS = [
    "transaction_id",
    "external_id",
    "case_id",
    "case_status",
    "card_id",
    "merchant_id",
    "timestamp",
    "amount",
    "currency",
    "country",
    "channel",
    "mcc",
    "score",
    "decision",
    "label",
    "label_source",
    "labeled_at",
    "reasons",
    "rules",  # the active rules that hit, "name (action)", and the shadow ones, "name (shadow)"
]


@require_GET
@role_required
def export_cases(request: HtmxHttpRequest) -> HttpResponse:
    """The cases the query string's filters select, in the queue's order, as CSV."""
    chosen = _chosen(request)
    if isinstance(chosen, HttpResponse):
        return chosen
    cases = chosen.cases(user=request.user, now=timezone.now())
    return streamed(request, lines=csv_lines(CASE_COLUMNS, cases.iterator(chunk_size=CHUNK), case_row), name="cases")


@require_GET
@role_required
def export_transactions(request: HtmxHttpRequest) -> HttpResponse:
    """The transactions (alerts) of the cases the filters select, case by case in the queue's order, as CSV."""
    chosen = _chosen(request)
    if isinstance(chosen, HttpResponse):
        return chosen
    alerts = chosen.alerts(user=request.user, now=timezone.now()).defer("features")
    rows = alerts.iterator(chunk_size=CHUNK)
    return streamed(request, lines=csv_lines(TRANSACTION_COLUMNS, rows, transaction_row), name="transactions")


def _chosen(request: HttpRequest) -> QueueFilter | HttpResponse:
    """The filter the query string asks for, or a 400 that says which value cannot be used and why."""
    form = QueueFilterForm.from_query(request.GET)
    if form.is_valid():
        return form.queue_filter()
    problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
    return HttpResponse(f"These filters cannot be used: {problems}\n", status=400, content_type="text/plain")


# --- rows --------------------------------------------------------------------------------------


def case_row(case: Case) -> list[Any]:
    """One case as a CSV row (ids as text; its total in its currency's decimals, or none when it has several)."""
    mixed = case.total_amount is None or not case.currency
    resolver = case.resolved_by.get_username() if case.resolved_by else case.resolved_via
    return [
        str(case.pk),
        case.card_id,
        case.status,
        case.decision,
        round(case.top_score, 4),
        case.alert_count,
        "" if mixed else money(case.total_amount, case.currency),
        MIXED if mixed else case.currency,
        iso(case.opened_at),
        iso(case.last_alert_at),
        iso(case.due_at),
        _yes(case.is_overdue),
        case.assignee.get_username() if case.assignee else "",
        resolver,
        iso(case.resolved_at) if case.resolved_at else "",
        case.reason.code if case.reason else "",
        _yes(case.overturned),
        case.note,
    ]


def transaction_row(tx: Transaction) -> list[Any]:
    """One transaction as a CSV row, with its case's number and state and its label and where that came from."""
    label = "" if tx.is_fraud is None else ("fraud" if tx.is_fraud else "legitimate")
    return [
        str(tx.pk),
        tx.external_id,
        str(tx.case_id) if tx.case_id else "",
        tx.case.status if tx.case else "",
        tx.card_id,
        tx.merchant_id,
        iso(tx.timestamp),
        money(tx.amount, tx.currency),
        tx.currency,
        tx.country,
        tx.channel,
        tx.mcc,
        round(tx.score, 4),
        tx.decision,
        label,
        tx.label_origin,
        iso(tx.labeled_at) if tx.labeled_at else "",
        reason_summary(tx.reasons),
        "; ".join(
            [*(f"{hit['name']} ({hit['action']})" for hit in tx.rules), *(f"{n} (shadow)" for n in tx.shadow_rules)]
        ),
    ]


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def defused(cell: Any) -> Any:
    """A text cell a spreadsheet would take for a formula (=, +, -, @, tab, carriage return first) gets a leading
    apostrophe, so it is shown, never run; numbers are left as they are."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


# --- streaming ---------------------------------------------------------------------------------


def csv_lines(header: list[str], rows: Iterable[Any], row: Callable[[Any], list[Any]]) -> Generator[str]:
    """The header, then CHUNK rows a piece, as CSV text: text quoted, numbers bare."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
    writer.writerow(header)
    for written, item in enumerate(rows, start=1):
        writer.writerow([defused(cell) for cell in row(item)])
        if written % CHUNK == 0:
            yield _taken(buffer)
    yield _taken(buffer)


def _taken(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def streamed(request: HttpRequest, *, lines: Generator[str], name: str) -> StreamingHttpResponse:
    """A CSV download of `lines` as they are produced, named `<name>-<time>.csv`."""
    content = _async_pieces(lines) if isinstance(request, ASGIRequest) else lines
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.csv"'
    response["Cache-Control"] = "no-store"  # case data: no copy left in a shared cache
    return response


async def _async_pieces(lines: Generator[str]) -> AsyncIterator[str]:
    """`lines` a piece at a time for ASGI. Each piece is produced in the request's one sync thread (asgiref's
    thread-sensitive mode), where the cursor's database connection lives; closing stops the cursor early when the
    download is abandoned."""
    take = sync_to_async(next)
    try:
        while True:
            piece = await take(lines, None)
            if piece is None:
                return
            yield piece
    finally:
        await sync_to_async(lines.close)()
