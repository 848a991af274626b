"""The hot path's storage: ingest's one-statement save and the `any_of` lookup give what the ORM gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.db import IntegrityError, transaction
from django.forms.models import model_to_dict
from django.utils import timezone

from scoring import aggregates, ingest, storage
from scoring.classifier import Scored
from scoring.features import FEATURE_INDEX, FEATURES, label_delay_hours
from scoring.models import Case, CaseEvent, MerchantHour, Transaction
from scoring.schemas import TransactionIn
from scoring.storage import NewRow, sqlite

AT = datetime(2026, 11, 2, 9, 30, 15, 123456, tzinfo=UTC)


def _row(external_id: str, *, score: float = 0.123456, decision: str = "review", **fields) -> NewRow:
    values = {
        "external_id": external_id,
        "card_id": "card-1",
        "merchant_id": "m-1",
        "amount": Decimal("1234.56"),
        "currency": "EUR",
        "timestamp": AT,
        "country": "NL",
        "channel": "ecom",
        "mcc": "5411",
    }
    reasons = [{"feature": "amount", "contribution": 0.5}, {"feature": 'quote " and \\ back', "contribution": -1}]
    return NewRow(TransactionIn(**(values | fields)), Scored(score=score, decision=decision, reasons=reasons))


def _features(count: int) -> np.ndarray:
    """Feature rows as the model reads them: float32, NaN where a value is missing."""
    x = np.arange(count * len(FEATURES), dtype=np.float32).reshape(count, len(FEATURES)) / 7
    x[:, FEATURE_INDEX["seconds_since_card_prev"]] = np.nan
    return x


def save(rows: list[NewRow], *, version: str = "v-1") -> dict[int, int]:
    """storage.save() with feature rows; returns {transaction id: case id} of the flagged."""
    storage.save(rows, features=_features(len(rows)), version=version)
    return {row.id: row.case_id for row in rows if row.case_id is not None}


@pytest.mark.django_db
def test_save_stores_every_field_as_the_orm_does_and_sets_ids():
    saved = [_row("a-1"), _row("a-2", country=None, channel=None, mcc=None, amount=Decimal("0.5"))]
    created = [_row("b-1"), _row("b-2", country=None, channel=None, mcc=None, amount=Decimal("0.5"))]
    features = _features(2)
    storage.save(saved, features=features, version="v-1")
    at = timezone.now()
    by_orm = [
        sqlite._transaction(r, features=f, version="v-1", at=at)
        for r, f in zip(created, features.tolist(), strict=True)
    ]
    Transaction.objects.bulk_create(by_orm)

    assert all(row.id for row in saved)
    for ours, django in zip(saved, by_orm, strict=True):
        stored, expected = Transaction.objects.get(pk=ours.id), Transaction.objects.get(pk=django.pk)
        ignore = {"id", "external_id", "received_at", "features", "case"}  # the ORM's rows were never filed
        assert {k: v for k, v in model_to_dict(stored).items() if k not in ignore} == {
            k: v for k, v in model_to_dict(expected).items() if k not in ignore
        }
        np.testing.assert_array_equal(stored.features, expected.features)  # NaN where NaN
        assert stored.timestamp == AT
        assert stored.external_id == ours.item.external_id


@pytest.mark.django_db
def test_stored_features_are_the_float32_values_the_model_read_with_nan_kept():
    rows = [_row("f-1"), _row("f-2")]
    features = _features(2)
    storage.save(rows, features=features, version="v-1")

    for row, expected in zip(rows, features, strict=True):
        stored = Transaction.objects.get(pk=row.id).features
        assert len(stored) == len(FEATURES)
        np.testing.assert_array_equal(np.asarray(stored, dtype=np.float32), expected)


def test_features_given_as_an_object_are_refused_not_stored_as_its_keys():
    from django.db import connection

    field = Transaction._meta.get_field("features")
    with pytest.raises(TypeError, match="list of values"):
        field.get_db_prep_value({"amount": 1.0}, connection)
    # A list goes as it is to PostgreSQL's real[], as JSON (missing values as null) elsewhere.
    expected = [1.5, 2.0] if connection.vendor == "postgresql" else "[1.5, null]"
    values = [1.5, 2.0] if connection.vendor == "postgresql" else [1.5, float("nan")]
    assert field.get_db_prep_value(values, connection) == expected


@pytest.mark.django_db
def test_a_float32_matrix_goes_to_postgresql_as_one_flat_real_array_exactly():
    from django.db import connection

    from scoring.storage.binary import Float4Array, binary_cursor

    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL wire format")
    x = np.array([[1.5, np.nan, -0.1], [1e9, 0.0, 3.4e38]], dtype=np.float32)
    with binary_cursor() as cursor:
        cursor.execute("SELECT %b::real[], pg_typeof(%b)::text", [Float4Array(x), Float4Array(x)])
        ((values, kind),) = cursor.fetchall()
    assert kind == "real[]"
    np.testing.assert_array_equal(np.asarray(values, dtype=np.float32), x.ravel())


@pytest.mark.django_db
def test_reads_sent_together_come_back_in_order_and_fail_as_djangos_errors():
    from django.db import ProgrammingError, connection

    from scoring.storage.binary import read_together

    if connection.vendor != "postgresql":
        pytest.skip("psycopg's pipeline mode")
    one, two = read_together([("SELECT 1", []), ("SELECT %b::int + 1", [41])])
    assert (one, two) == ([(1,)], [(42,)])
    with pytest.raises(ProgrammingError), transaction.atomic():
        read_together([("SELECT 1", []), ("SELECT * FROM no_such_table", [])])
    assert Transaction.objects.count() == 0  # the connection is still usable


@pytest.mark.django_db
def test_the_batch_write_is_prepared_once_per_connection_and_the_reads_are_not(model_version):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's prepared statements")
    ingest.store([_row("p-1").item])
    ingest.store([_row("p-2").item, _row("p-3").item])  # another size: the same statement

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [statement for (statement,) in cursor.fetchall()]
    # Only the write: a read's generic plan, made once while a table is small, could keep a sequential scan.
    assert len(prepared) == 1
    assert "INSERT INTO scoring_transaction" in prepared[0]
    assert Transaction.objects.count() == 3


@pytest.mark.django_db
def test_save_ids_follow_the_tables_sequence():
    first = [_row("s-1")]
    save(first)
    later = sqlite._transaction(_row("s-2"), features=[], version="v-1", at=timezone.now())
    later.save()
    assert later.pk > first[0].id


@pytest.mark.django_db
def test_save_gives_ids_in_external_id_order_and_leaves_the_callers_list_as_it_was():
    rows = [_row("z-last-by-name"), _row("a-first-by-name"), _row("m-middle"), _row("B-capital-first")]
    save(rows)
    names = [row.item.external_id for row in rows]
    assert names == ["z-last-by-name", "a-first-by-name", "m-middle", "B-capital-first"]
    assert rows[3].id < rows[1].id < rows[2].id < rows[0].id  # code-point order, whatever the collation
    assert dict(Transaction.objects.values_list("external_id", "id")) == {
        n: row.id for n, row in zip(names, rows, strict=True)
    }
    # Each row's features are its own, whatever order the rows went in.
    for row, expected in zip(rows, _features(len(rows)), strict=True):
        stored = Transaction.objects.get(pk=row.id).features
        np.testing.assert_array_equal(np.asarray(stored, dtype=np.float32), expected)


@pytest.mark.django_db(transaction=True)
def test_save_with_a_stored_external_id_raises_integrity_error_and_stores_none_of_the_batch():
    save([_row("dup", decision="approve")])
    with pytest.raises(IntegrityError):
        save([_row("fresh"), _row("dup")])
    assert list(Transaction.objects.values_list("external_id", flat=True)) == ["dup"]
    assert not Case.objects.exists() and not CaseEvent.objects.exists()
    assert list(MerchantHour.objects.values_list("count", flat=True)) == [1]


@pytest.mark.django_db
def test_a_failed_save_inside_a_transaction_leaves_that_transaction_usable():
    save([_row("dup", decision="approve")])
    with transaction.atomic():
        with pytest.raises(IntegrityError):
            save([_row("dup")])
        assert Transaction.objects.count() == 1


@pytest.mark.django_db
def test_save_counts_the_batch_into_its_merchants_hours():
    save([_row("h-1"), _row("h-2"), _row("h-3", merchant_id="m-2", timestamp=AT + timedelta(hours=1))])
    save([_row("h-4")])
    hours = {(h.merchant_id, h.hour, h.count, h.fraud_count) for h in MerchantHour.objects.all()}
    hour = int(AT.timestamp() // 3600)
    assert hours == {("m-1", hour, 3, 0), ("m-2", hour + 1, 1, 0)}


@pytest.mark.django_db
def test_any_of_lookup_finds_what_in_finds():
    save([_row(f"l-{i}", card_id=f"c-{i % 3}") for i in range(9)])
    cards = ["c-0", "c-2", "nobody", None]
    assert set(Transaction.objects.filter(card_id__any_of=cards)) == set(Transaction.objects.filter(card_id__in=cards))
    ids = list(Transaction.objects.values_list("id", flat=True)[:4])
    assert set(Transaction.objects.filter(id__any_of=ids).values_list("id", flat=True)) == set(ids)
    assert not Transaction.objects.filter(card_id__any_of=[])


def test_hour_counts_come_in_the_one_order_every_writer_locks_hours_in():
    later = AT + timedelta(hours=1)
    rows = [("m-2", AT, None), ("m-1", later, True), ("m-2", AT, True), ("m-1", AT, None)]

    counts = aggregates.hour_counts(rows)

    hour = int(AT.timestamp() // 3600)
    assert list(counts.items()) == [
        (("m-1", hour), (1, 0)),
        (("m-1", hour + 1), (1, 1)),
        (("m-2", hour), (2, 1)),
    ]


@pytest.mark.django_db
def test_merchant_hours_add_up_across_upserts():
    storage.add_to_hours(aggregates.hour_counts([("m-1", AT, None), ("m-1", AT, True), ("m-2", AT, False)]))
    storage.add_to_hours(aggregates.hour_counts([("m-1", AT, None)]))
    hours = {(h.merchant_id, h.count, h.fraud_count) for h in MerchantHour.objects.all()}
    assert hours == {("m-1", 3, 1), ("m-2", 1, 0)}


@pytest.mark.django_db
def test_a_stored_external_id_is_refused_by_the_database_itself():
    save([_row("dup-1")])

    with pytest.raises(IntegrityError), transaction.atomic():
        save([_row("dup-1", card_id="card-2")])
    assert Transaction.objects.filter(external_id="dup-1").count() == 1


@pytest.mark.django_db
def test_transactions_carry_no_index_that_nothing_queries():
    """unique=True on a CharField gives PostgreSQL a second, LIKE-prefix index on it that every insert pays
    for; no query here filters by prefix (the admin's search is a contains)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the LIKE-prefix index is PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", [Transaction._meta.db_table])
        definitions = [row[0] for row in cursor.fetchall()]
    assert not [d for d in definitions if "pattern_ops" in d]
    assert any("UNIQUE" in d and "(external_id)" in d for d in definitions)


@pytest.mark.django_db
def test_transactions_are_vacuumed_after_a_fixed_number_of_inserts_on_postgresql():
    """Card histories are index-only scans: rows a vacuum has not marked all-visible cost a heap visit each,
    and autovacuum's default waits for 20 % of the table to be new."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL storage parameter")
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [Transaction._meta.db_table])
        options = cursor.fetchone()[0] or []
    assert "autovacuum_vacuum_insert_threshold=20000" in options
    assert "autovacuum_vacuum_insert_scale_factor=0" in options


@pytest.mark.django_db
def test_merchant_windows_are_summed_from_the_merchant_hours_index_alone_on_postgresql():
    """A merchant's windows sum up to 888 of its hours, which live on as many heap pages (every merchant's
    current hour is written together): the unique index carries the counts, so the read visits none of them."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("an index-only scan is PostgreSQL's; SQLite sums the hours in Python")
    from scoring.storage.postgres import windows_query

    storage.add_to_hours(aggregates.hour_counts([("m-1", AT - timedelta(hours=h), h % 5 == 0) for h in range(50)]))
    sql, params = windows_query({("m-1", int(AT.timestamp() // 3600))}, delay=label_delay_hours())
    with connection.cursor() as cursor:
        # Forced onto an index: on a table this small the planner would rather read the heap.
        cursor.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        cursor.cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Index Only Scan using one_row_per_merchant_hour" in plan, plan
