"""CSV import of labeled history: validated like the API, all or nothing, idempotent."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from scoring import history
from scoring.history import ImportRefused, import_csv, write_csv
from scoring.models import Case, MerchantHour, Transaction

HEADER = "external_id,card_id,merchant_id,amount,currency,timestamp,country,channel,mcc,is_fraud\n"


def when(days_ago: float = 1) -> str:
    return (timezone.now() - timedelta(days=days_ago)).isoformat()


def csv_file(tmp_path, *rows: str, header: str = HEADER):
    path = tmp_path / "tx.csv"
    path.write_text(header + "".join(row + "\n" for row in rows))
    return path


def good(n: int, *, fraud: str = "0") -> str:
    return f"t{n},c{n % 3},m{n % 2},{10 + n}.50,EUR,{when()},DE,pos,5411,{fraud}"


@pytest.mark.django_db
def test_import_stores_rows_as_labeled_history_without_cases(tmp_path):
    path = csv_file(tmp_path, good(1), good(2, fraud="1"), f"t3,c1,m1,7,EUR,{when()},,,,")

    report = import_csv(path, source="bank-a")

    assert (report.read, report.stored, report.already_present, report.invalid) == (3, 3, 0, 0)
    rows = {tx.external_id: tx for tx in Transaction.objects.all()}
    assert rows["t1"].is_fraud is False and rows["t1"].labeled_at is not None
    assert rows["t2"].is_fraud is True
    assert rows["t3"].is_fraud is None and rows["t3"].labeled_at is None and rows["t3"].channel == ""
    assert {tx.model_version for tx in rows.values()} == {"imported:bank-a"}
    assert {tx.decision for tx in rows.values()} == {"approve"}
    assert rows["t1"].score == 0 and rows["t1"].reasons == [] and rows["t1"].features == []
    # Past traffic: received "at" its event time, so the dashboards' last 15 minutes do not count it as new.
    assert all(tx.received_at == tx.timestamp for tx in rows.values())
    assert not Case.objects.exists()


@pytest.mark.django_db
def test_import_rejects_a_bad_row_with_its_line_number_and_stores_nothing(tmp_path):
    path = csv_file(tmp_path, good(1), good(2), f"t3,c1,m1,-5,EUR,{when()},DE,pos,5411,0", good(4))

    with pytest.raises(ImportRefused) as refused:
        import_csv(path, source="x", batch_size=1)

    assert refused.value.report.invalid == 1
    ((line, reason),) = refused.value.report.errors
    assert line == 4 and reason.startswith("amount:")
    assert not Transaction.objects.exists()


@pytest.mark.django_db
def test_import_names_a_control_character_in_an_id_as_the_api_does(tmp_path):
    path = csv_file(tmp_path, good(1), f"t2,c\x001,m1,5,EUR,{when()},DE,pos,5411,0")

    with pytest.raises(ImportRefused) as refused:
        import_csv(path, source="x")

    assert refused.value.report.errors == [(3, "card_id: must not contain control characters (NUL, tab, newline, ...)")]


@pytest.mark.django_db
def test_a_bad_row_found_after_rows_were_stored_still_leaves_nothing_stored(tmp_path):
    path = csv_file(tmp_path, *(good(n) for n in range(40)), f"t99,c1,m1,5,EUR,{when()},DE,pos,5411,2")
    stored_before_the_bad_row = []
    original = history._Store.add

    def add(store, values, *, report):
        original(store, values, report=report)
        stored_before_the_bad_row.append(Transaction.objects.count())

    with mock.patch.object(history._Store, "add", add), pytest.raises(ImportRefused) as refused:
        import_csv(path, source="x", batch_size=4)

    assert stored_before_the_bad_row and max(stored_before_the_bad_row) >= 4  # rows were in, then rolled back
    assert refused.value.report.errors == [(42, "is_fraud: must be 0 or 1, not '2'")]
    assert not Transaction.objects.exists() and not MerchantHour.objects.exists()


@pytest.mark.django_db
def test_import_transactions_command_explains_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + good(1) + "\n" + f"t2,caf\xe9,m1,5,EUR,{when()},DE,pos,5411,0\n").encode("latin-1"))

    with pytest.raises(CommandError, match=r"is not UTF-8 text.*nothing was stored"):
        call_command("import_transactions", str(path), stdout=StringIO())

    assert not Transaction.objects.exists()


def test_read_ahead_raises_the_readers_error_in_the_caller():
    def items():
        yield 1
        raise ValueError("broken file")

    with pytest.raises(ValueError, match="broken file"):
        list(history._read_ahead(items()))


def test_read_ahead_stops_its_thread_when_the_caller_stops_early():
    reading = history._read_ahead(iter(range(1_000_000)), depth=2)
    assert next(reading) == 0

    reading.close()

    assert not [t for t in threading.enumerate() if t.name == "import-reader"]


@pytest.mark.django_db
def test_import_refuses_timestamps_more_than_five_minutes_ahead(tmp_path):
    future = (timezone.now() + timedelta(minutes=10)).isoformat()
    path = csv_file(tmp_path, good(1), f"t2,c1,m1,5,EUR,{future},DE,pos,5411,0")

    with pytest.raises(ImportRefused) as refused:
        import_csv(path, source="x")

    assert refused.value.report.errors == [(3, "timestamp: is more than 5 minutes in the future")]


@pytest.mark.django_db
def test_import_with_skip_invalid_stores_the_good_rows(tmp_path):
    path = csv_file(tmp_path, good(1), "t2,c1,m1,5,EUR,yesterday,DE,pos,5411,0", good(3), f"{good(4)[:-1]}maybe")

    report = import_csv(path, source="x", skip_invalid=True)

    assert (report.read, report.stored, report.invalid) == (4, 2, 2)
    assert [line for line, _ in report.errors] == [3, 5]
    assert "is_fraud" in report.errors[1][1]
    assert set(Transaction.objects.values_list("external_id", flat=True)) == {"t1", "t3"}


@pytest.mark.django_db
def test_reimporting_the_same_file_changes_nothing(tmp_path):
    path = csv_file(tmp_path, *(good(n) for n in range(7)))
    import_csv(path, source="x", batch_size=3)
    before = list(Transaction.objects.order_by("id").values())

    report = import_csv(path, source="again", batch_size=3)

    assert (report.stored, report.already_present) == (0, 7)
    assert list(Transaction.objects.order_by("id").values()) == before


@pytest.mark.django_db
def test_import_refuses_unknown_columns(tmp_path):
    path = csv_file(tmp_path, good(1) + ",x", header=HEADER.strip() + ",note\n")

    with pytest.raises(ImportRefused) as refused:
        import_csv(path, source="x", skip_invalid=True)

    ((line, reason),) = refused.value.report.errors
    assert line == 1 and "unknown column(s) note" in reason
    assert not Transaction.objects.exists()


@pytest.mark.django_db
def test_written_csv_imports_back(tmp_path):
    record = {"external_id": "a", "card_id": "c", "merchant_id": "m", "amount": "1.25", "currency": "EUR"}
    record |= {"timestamp": when(), "country": "FR", "channel": "ecom", "mcc": "5816", "is_fraud": True}
    path = tmp_path / "out.csv"
    with open(path, "w", newline="") as f:
        assert write_csv([record], f) == 1

    import_csv(path, source="x")

    tx = Transaction.objects.get()
    assert (tx.amount, tx.channel, tx.is_fraud) == (Decimal("1.25"), "ecom", True)


@pytest.mark.django_db
def test_import_transactions_command_reports_progress_and_a_summary(tmp_path):
    path = csv_file(tmp_path, *(good(n) for n in range(5)))
    out = StringIO()

    call_command("import_transactions", str(path), "--batch-size", "2", "--source", "s", stdout=out)

    text = out.getvalue()
    assert "rows/s" in text
    assert "5 rows read, 5 stored, 0 already present, 0 invalid" in text


@pytest.mark.django_db
def test_import_transactions_command_fails_naming_the_bad_line(tmp_path):
    path = csv_file(tmp_path, good(1), "t2,c1,m1,5,EURO,2026-01-01T00:00:00Z,DE,pos,5411,0")
    err = StringIO()

    with pytest.raises(CommandError, match="nothing was stored"):
        call_command("import_transactions", str(path), stdout=StringIO(), stderr=err)

    assert "line 3: currency:" in err.getvalue()
    assert not Transaction.objects.exists()


@pytest.mark.django_db
def test_import_counts_rows_into_their_merchant_hours_once(tmp_path):
    at = (timezone.now() - timedelta(days=1)).replace(minute=30).isoformat()
    rows = [f"t{n},c1,m{n % 2},5.00,EUR,{at},DE,pos,5411,{int(n == 3)}" for n in (1, 3, 5, 2)]
    path = csv_file(tmp_path, *rows)
    import_csv(path, source="x")
    import_csv(path, source="x")

    hours = MerchantHour.objects.values_list("merchant_id", "count", "fraud_count")
    assert sorted((m, c, f) for m, c, f in hours) == [("m0", 1, 0), ("m1", 3, 1)]


@pytest.mark.django_db
def test_a_repeated_external_id_in_a_file_stores_its_first_row(tmp_path):
    path = csv_file(
        tmp_path, f"dup,c1,m1,5.00,EUR,{when()},DE,pos,5411,0", f"dup,c2,m2,9.00,EUR,{when()},DE,pos,5411,1"
    )

    report = import_csv(path, source="x")

    tx = Transaction.objects.get()
    assert (tx.card_id, tx.amount, tx.is_fraud) == ("c1", Decimal("5.00"), False)
    assert (report.stored, report.already_present) == (1, 1)


@pytest.mark.django_db
def test_import_transactions_command_explains_a_file_it_cannot_read_as_csv(tmp_path):
    path = tmp_path / "huge-field.csv"
    path.write_text(HEADER + "x" * 200_000 + f",c1,m1,5.00,EUR,{when()},DE,pos,5411,0\n")

    with pytest.raises(CommandError, match=r"not a readable CSV file \(field larger than field limit"):
        call_command("import_transactions", str(path), stdout=StringIO())

    assert not Transaction.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_import_leaves_postgresql_the_statistics_and_visibility_its_reads_need(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("VACUUM and ANALYZE are PostgreSQL's")
    lines = []
    report = import_csv(csv_file(tmp_path, good(1), good(2)), source="x", progress=lines.append)

    assert report.stored == 2
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, last_vacuum IS NOT NULL, last_analyze IS NOT NULL FROM pg_stat_user_tables "
            "WHERE relname IN (%s, %s) ORDER BY relname",
            [MerchantHour._meta.db_table, Transaction._meta.db_table],
        )
        assert cursor.fetchall() == [("scoring_merchanthour", True, True), ("scoring_transaction", True, True)]
    assert lines[-1].startswith("VACUUM (ANALYZE) of the imported tables")
