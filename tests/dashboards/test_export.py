"""CSV exports of what a queue filter selects: its cases or their transactions, streamed in constant memory."""

from __future__ import annotations

import csv
import io
import tracemalloc
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Model
from django.http import StreamingHttpResponse
from django.test import AsyncClient, Client
from django.utils import timezone

from dashboards import export
from scoring.models import Case, CaseStatus, Transaction
from tests.dashboards.conftest import make_case, make_tx

pytestmark = pytest.mark.django_db
BIG = 100_000
TRACED_PIECES = 3


def rows(response: StreamingHttpResponse) -> list[list[str]]:
    assert response.status_code == 200, response
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


def test_cases_csv_has_a_header_and_the_filtered_cases_in_the_queues_order(alice_client: Client, alice: User) -> None:
    low = make_case(score=0.6, decision="review")
    high = make_case(score=0.97)
    Case.objects.filter(pk=high.pk).update(assignee=alice)
    make_case(score=0.99, decision="block")  # not alice's

    response = alice_client.get("/cases/export/cases.csv?assignee=mine")
    everything = rows(alice_client.get("/cases/export/cases.csv"))

    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="cases-')
    table = rows(response)
    assert table[0] == export.CASE_COLUMNS
    assert [row[0] for row in table[1:]] == [str(high.id)]
    assert [row[0] for row in everything[1:]][-1] == str(low.id)  # riskiest first, as the queue
    record = dict(zip(table[0], table[1], strict=True))
    assert record["assignee"] == "alice" and record["status"] == "open" and record["overdue"] == "no"


def test_the_search_boxs_id_narrows_an_export_as_it_narrows_the_queue(alice_client: Client) -> None:
    kept = make_case(card_id="4111-kept")
    make_case(card_id="5500-other")

    cases = rows(alice_client.get("/cases/export/cases.csv?status=any&q=4111"))
    alerts = rows(alice_client.get("/cases/export/transactions.csv?status=any&q=4111"))

    assert [row[0] for row in cases[1:]] == [str(kept.id)]
    assert [row[4] for row in alerts[1:]] == ["4111-kept"]


def test_transactions_csv_lists_the_alerts_of_the_filtered_cases(alice_client: Client) -> None:
    kept = make_case(score=0.95, decision="block", external_id="kept-1")
    make_tx(card_id=kept.card_id, external_id="kept-2", score=0.7, decision="review", case=kept)
    make_case(score=0.6, decision="review", external_id="left-out")
    make_tx(external_id="never-flagged")

    table = rows(alice_client.get("/cases/export/transactions.csv?decision=block"))

    assert table[0] == export.TRANSACTION_COLUMNS
    assert sorted(row[1] for row in table[1:]) == ["kept-1", "kept-2"]
    assert {row[2] for row in table[1:]} == {str(kept.id)}


def test_amounts_keep_each_currencys_decimals_and_are_never_added_across_currencies(alice_client: Client) -> None:
    yen = make_case(amount=Decimal("1200"), currency="JPY")
    dinar = make_case(amount=Decimal("12.5"), currency="BHD")
    mixed = make_case(amount=Decimal("10"), currency="EUR")
    make_tx(card_id=mixed.card_id, amount=Decimal("7"), currency="USD", score=0.8, decision="review", case=mixed)
    Case.objects.filter(pk=mixed.pk).update(total_amount=None, currency="")

    cases = {row[0]: row for row in rows(alice_client.get("/cases/export/cases.csv"))[1:]}
    alerts = rows(alice_client.get("/cases/export/transactions.csv?currency=&sort=risk&score_min=0"))[1:]

    assert cases[str(yen.id)][6:8] == ["1200", "JPY"]
    assert cases[str(dinar.id)][6:8] == ["12.500", "BHD"]
    assert cases[str(mixed.id)][6:8] == ["", "several currencies"]
    assert sorted((row[7], row[8]) for row in alerts if row[2] == str(mixed.id)) == [("10.00", "EUR"), ("7.00", "USD")]


def test_ids_are_written_as_quoted_text_and_scores_as_numbers(alice_client: Client) -> None:
    make_case(card_id="00012345", external_id="0042")

    text = b"".join(alice_client.get("/cases/export/transactions.csv").streaming_content).decode()

    line = text.splitlines()[1]
    assert '"0042"' in line and '"00012345"' in line
    assert ",0.95," in line


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_cell_that_a_spreadsheet_would_run_as_a_formula_is_defused(alice_client: Client, start: str) -> None:
    made = make_case(card_id=f"{start}HYPERLINK(1)", merchant_id=f"{start}cmd|x")
    Case.objects.filter(pk=made.pk).update(note=f"{start}SUM(A1)")

    case_row = rows(alice_client.get("/cases/export/cases.csv"))[1]
    tx_row = rows(alice_client.get("/cases/export/transactions.csv"))[1]

    assert case_row[1] == f"'{start}HYPERLINK(1)"
    assert case_row[-1] == f"'{start}SUM(A1)"
    assert tx_row[5] == f"'{start}cmd|x"


def test_resolved_cases_say_who_settled_them_and_why(alice_client: Client, alice: User) -> None:
    by_alice = make_case()
    Case.objects.filter(pk=by_alice.pk).update(
        status=CaseStatus.FRAUD, resolved_by=alice, resolved_at=timezone.now(), note="called the bank"
    )
    by_feed = make_case()
    Case.objects.filter(pk=by_feed.pk).update(
        status=CaseStatus.FRAUD, resolved_via="chargeback feed", resolved_at=timezone.now()
    )

    table = rows(alice_client.get("/cases/export/cases.csv?status=fraud"))
    records = {row[0]: dict(zip(table[0], row, strict=True)) for row in table[1:]}

    assert records[str(by_alice.id)]["resolved_by"] == "alice"
    assert records[str(by_alice.id)]["note"] == "called the bank"
    assert records[str(by_feed.id)]["resolved_by"] == "chargeback feed"


def test_a_bad_filter_is_a_400_that_says_what_is_wrong(alice_client: Client) -> None:
    response = alice_client.get("/cases/export/cases.csv?score_min=high")

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert "score_min: Enter a number." in response.content.decode()


@pytest.mark.parametrize("path", ["/cases/export/cases.csv", "/cases/export/transactions.csv"])
def test_accounts_without_a_role_get_no_export(path: str, django_user_model: type[User]) -> None:
    make_case(card_id="secret-card")
    client = Client()
    client.force_login(django_user_model.objects.create_user("nobody"))

    response = client.get(path)

    assert response.status_code == 403
    assert b"secret-card" not in response.content


# --- constant memory -------------------------------------------------------------------------------


def copies(model: type[Model], template: Model, n: int, **changed: str) -> None:
    """`n` copies of `template`'s row made by the database itself (SQL expressions of the counter `n.i` for the
    columns `changed`): a Python loop over model instances would take longer than the export it sets up."""
    table = connection.ops.quote_name(model._meta.db_table)
    columns = [f.column for f in model._meta.concrete_fields if not f.primary_key and not f.generated]
    values = [changed.get(column, f"t.{connection.ops.quote_name(column)}") for column in columns]
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s) "
            f"INSERT INTO {table} ({', '.join(map(connection.ops.quote_name, columns))}) "
            f"SELECT {', '.join(values)} FROM n, {table} t WHERE t.id = %s",
            [n, template.pk],
        )


def many_cases(n: int) -> None:
    """`n` open cases (one made as usual, the rest its copies with their own cards and scores)."""
    copies(Case, make_case(), n - 1, card_id="'card-' || n.i", top_score="0.5 + (n.i %% 500) / 1000.0")


def many_alerts(n: int) -> None:
    """One case with `n` alerts."""
    holder = make_case()
    copies(Transaction, holder.alerts.get(), n - 1, external_id="'bulk-' || n.i")


@pytest.mark.parametrize(("kind", "fill"), [("cases", many_cases), ("transactions", many_alerts)])
def test_100k_rows_stream_with_a_handful_of_queries_in_bounded_memory(
    alice_client: Client, django_assert_max_num_queries: Any, kind: str, fill: Any
) -> None:
    fill(BIG)

    # Traced from the request to the first pieces: reading every row up front (a list, a queryset's cache) would
    # happen there. Tracing the whole stream would take many times as long and show no more.
    tracemalloc.start()
    try:
        response = alice_client.get(f"/cases/export/{kind}.csv?status=any")
        stream = iter(response.streaming_content)
        first = [next(stream) for _ in range(TRACED_PIECES)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    with django_assert_max_num_queries(3):  # the rows come from one cursor, not a query a row or a chunk
        rest = [piece.count(b"\r\n") for piece in stream]

    assert response.streaming
    assert sum(piece.count(b"\r\n") for piece in first) + sum(rest) == BIG + 1  # the header and every row, once
    assert len(first) + len(rest) >= BIG // export.CHUNK  # written out as it went, a chunk at a time
    # The whole CSV is over 10 MB and the rows as model instances far more: holding either is far above this.
    assert peak < 16 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_the_rows_go_out_as_an_async_stream_read_chunk_by_chunk(alice: User) -> None:
    await sync_to_async(many_cases)(3 * export.CHUNK)
    client = AsyncClient()
    await client.aforce_login(alice)

    response = await client.get("/cases/export/cases.csv")

    assert response.streaming and response.is_async  # Django would read a plain iterator whole before sending
    stream: AsyncIterator[bytes] = aiter(response.streaming_content)
    first = await anext(stream)
    assert first.count(b"\r\n") == export.CHUNK + 1  # the header and the first chunk, the rest not yet read
    rest = [piece async for piece in stream]
    assert sum(piece.count(b"\r\n") for piece in rest) == 2 * export.CHUNK


def test_transactions_csv_names_the_rules_that_hit_active_and_shadow(alice_client: Client) -> None:
    case = make_case(external_id="ruled", rules=[{"name": "big-abroad", "action": "block"}], shadow_rules=["watch"])

    table = rows(alice_client.get("/cases/export/transactions.csv"))

    (row,) = [r for r in table[1:] if r[2] == str(case.id)]
    assert row[table[0].index("rules")] == "big-abroad (block); watch (shadow)"
