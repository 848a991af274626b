"""The hot path's storage: ingest's one-statement save and the `any_of` lookup give what the ORM gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.db import IntegrityError, transaction
from django.forms.models import model_to_dict

from scoring import aggregates
from scoring.ingest import save
from scoring.models import Case, CaseEvent, CaseStatus, MerchantHour, Transaction

AT = datetime(2026, 11, 2, 9, 30, 15, 123456, tzinfo=UTC)


def _tx(external_id: str, **fields) -> Transaction:
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
        "score": 0.123456,
        "decision": "review",
        "reasons": [{"feature": "amount", "contribution": 0.5}, {"feature": 'quote " and \\ back', "contribution": -1}],
        "features": {"amount": 1234.56, "seconds_since_card_prev": None},
        "model_version": "v-1",
    }
    return Transaction(**(values | fields))


@pytest.mark.django_db
def test_save_stores_every_field_as_bulk_create_does_and_sets_ids():
    saved = [_tx("a-1"), _tx("a-2", country="", channel="", mcc="", features={})]
    created = [_tx("b-1"), _tx("b-2", country="", channel="", mcc="", features={})]
    save(saved)
    Transaction.objects.bulk_create(created)

    assert all(tx.pk and not tx._state.adding for tx in saved)
    for ours, django in zip(saved, created, strict=True):
        stored, expected = Transaction.objects.get(pk=ours.pk), Transaction.objects.get(pk=django.pk)
        ignore = {"id", "external_id", "received_at"}
        assert {k: v for k, v in model_to_dict(stored).items() if k not in ignore} == {
            k: v for k, v in model_to_dict(expected).items() if k not in ignore
        }
        assert stored.received_at == ours.received_at
        assert stored.timestamp == AT
        assert stored.external_id == ours.external_id


@pytest.mark.django_db
def test_save_refuses_a_value_it_would_store_as_something_else():
    with pytest.raises(TypeError, match="float32"):
        save([_tx("np-1", features={"amount": np.float32(1.5)})])
    assert not Transaction.objects.exists()


@pytest.mark.django_db
def test_save_ids_follow_the_tables_sequence():
    first = [_tx("s-1")]
    save(first)
    later = Transaction.objects.create(**{k: v for k, v in model_to_dict(_tx("s-2")).items() if k != "id"})
    assert later.pk > first[0].pk


@pytest.mark.django_db
def test_save_gives_ids_in_external_id_order_and_leaves_the_callers_list_as_it_was():
    txs = [_tx("z-last-by-name"), _tx("a-first-by-name"), _tx("m-middle")]
    save(txs)
    assert [tx.external_id for tx in txs] == ["z-last-by-name", "a-first-by-name", "m-middle"]
    assert txs[1].pk < txs[2].pk < txs[0].pk
    assert dict(Transaction.objects.values_list("external_id", "id")) == {tx.external_id: tx.pk for tx in txs}


@pytest.mark.django_db(transaction=True)
def test_save_with_a_stored_external_id_raises_integrity_error_and_stores_none_of_the_batch():
    save([_tx("dup", decision="approve")])
    with pytest.raises(IntegrityError):
        save([_tx("fresh"), _tx("dup")])
    assert list(Transaction.objects.values_list("external_id", flat=True)) == ["dup"]
    assert not Case.objects.exists() and not CaseEvent.objects.exists()
    assert list(MerchantHour.objects.values_list("count", flat=True)) == [1]


@pytest.mark.django_db
def test_a_failed_save_inside_a_transaction_leaves_that_transaction_usable():
    save([_tx("dup", decision="approve")])
    with transaction.atomic():
        with pytest.raises(IntegrityError):
            save([_tx("dup")])
        assert Transaction.objects.count() == 1


@pytest.mark.django_db
def test_save_opens_a_case_and_its_opened_event_per_flagged_transaction_as_the_orm_does():
    txs = [_tx("c-1"), _tx("c-2", decision="block"), _tx("c-3", decision="approve")]
    opened = save(txs)

    by_hand = Case(transaction=txs[0])  # the ORM's defaults

    assert set(opened) == {txs[0].pk, txs[1].pk}
    for tx in txs[:2]:
        case = Case.objects.get(transaction=tx)
        assert opened[tx.pk] == case.pk
        ignore = {"id", "transaction", "opened_at"}
        assert {k: v for k, v in model_to_dict(case).items() if k not in ignore} == {
            k: v for k, v in model_to_dict(by_hand).items() if k not in ignore
        }
        assert case.status == CaseStatus.OPEN and case.opened_at is not None
        (event,) = CaseEvent.objects.filter(case=case)
        assert (event.action, event.actor, event.note, event.at) == ("opened", None, "", case.opened_at)
    assert not Case.objects.filter(transaction=txs[2]).exists()


@pytest.mark.django_db
def test_save_counts_the_batch_into_its_merchants_hours():
    save([_tx("h-1"), _tx("h-2"), _tx("h-3", merchant_id="m-2", timestamp=AT + timedelta(hours=1))])
    save([_tx("h-4")])
    hours = {(h.merchant_id, h.hour, h.count, h.fraud_count) for h in MerchantHour.objects.all()}
    hour = int(AT.timestamp() // 3600)
    assert hours == {("m-1", hour, 3, 0), ("m-2", hour + 1, 1, 0)}


@pytest.mark.django_db
def test_any_of_lookup_finds_what_in_finds():
    save([_tx(f"l-{i}", card_id=f"c-{i % 3}") for i in range(9)])
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
    aggregates.record([("m-1", AT, None), ("m-1", AT, True), ("m-2", AT, False)])
    aggregates.record([("m-1", AT, None)])
    hours = {(h.merchant_id, h.count, h.fraud_count) for h in MerchantHour.objects.all()}
    assert hours == {("m-1", 3, 1), ("m-2", 1, 0)}


@pytest.mark.django_db
def test_a_stored_external_id_is_refused_by_the_database_itself():
    save([_tx("dup-1")])

    with pytest.raises(IntegrityError), transaction.atomic():
        save([_tx("dup-1", card_id="card-2")])
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
