"""One open case per card: the ingest write files a card's flagged transactions in its open case, on both backends,
and two batches racing on one card still leave one open case."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.db import connection, connections
from django.forms.models import model_to_dict
from django.utils import timezone

from scoring import cases, storage
from scoring.classifier import Scored
from scoring.features import FEATURES
from scoring.models import Case, CaseEvent, CaseStatus, LabelSource, ReasonCode, Transaction
from scoring.schemas import TransactionIn
from scoring.storage import NewRow

AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def row(external_id: str, *, card: str = "card-1", decision: str = "review", score: float = 0.7, **fields) -> NewRow:
    values = {
        "external_id": external_id,
        "card_id": card,
        "merchant_id": "m-1",
        "amount": Decimal("10.00"),
        "currency": "EUR",
        "timestamp": AT,
    }
    return NewRow(TransactionIn(**(values | fields)), Scored(score=score, decision=decision, reasons=[]))


def save(*rows: NewRow) -> list[NewRow]:
    storage.save(list(rows), features=np.zeros((len(rows), len(FEATURES)), dtype=np.float32), version="v-1")
    return list(rows)


@pytest.mark.django_db
def test_flagged_transactions_of_different_cards_open_a_case_each_with_its_opened_event():
    first, second, approved = save(
        row("a", card="c-a"), row("b", card="c-b", decision="block"), row("c", card="c-c", decision="approve")
    )

    by_hand = Case()  # the ORM's defaults, for what the write does not set from the rows
    assert first.case_id != second.case_id and approved.case_id is None
    assert not Case.objects.filter(card_id="c-c").exists()
    for saved in (first, second):
        case = Case.objects.get(pk=saved.case_id)
        assert (case.card_id, case.alert_count, case.status) == (saved.item.card_id, 1, CaseStatus.OPEN)
        assert (case.decision, case.top_score, case.total_amount, case.currency) == (
            saved.scored.decision,
            saved.scored.score,
            Decimal("10.00"),
            "EUR",
        )
        assert Transaction.objects.get(pk=saved.id).case_id == case.id and not saved.joined
        same = {"assignee", "note", "resolved_by", "resolved_at", "resolved_via", "overturned", "reason"}
        assert {k: v for k, v in model_to_dict(case).items() if k in same} == {
            k: v for k, v in model_to_dict(by_hand).items() if k in same
        }
        (event,) = CaseEvent.objects.filter(case=case)
        assert (event.action, event.actor, event.note, event.via) == ("opened", None, "", "")


@pytest.mark.django_db
def test_a_flagged_transaction_of_a_card_with_an_open_case_joins_it():
    (opener,) = save(row("a", score=0.6, amount=Decimal("10.00")))
    before = Case.objects.get(pk=opener.case_id)
    joined, also = save(row("b", score=0.95, decision="block", amount=Decimal("5.50")), row("c", score=0.55))

    case = Case.objects.get(pk=opener.case_id)
    assert joined.case_id == also.case_id == case.id and joined.joined and also.joined
    assert (case.alert_count, case.top_score, case.decision) == (3, 0.95, "block")
    assert (case.total_amount, case.currency) == (Decimal("25.50"), "EUR")
    assert case.due_at < before.due_at  # a block is due sooner than a review
    assert Case.objects.count() == 1
    assert list(case.events.values_list("action", flat=True)) == ["opened", "alert"]
    assert sorted(case.alerts.values_list("external_id", flat=True)) == ["a", "b", "c"]


@pytest.mark.django_db
def test_alerts_in_several_currencies_are_never_added_up():
    save(row("a", currency="EUR"))
    (joined,) = save(row("b", currency="PLN"))

    case = Case.objects.get(pk=joined.case_id)
    assert (case.total_amount, case.currency, case.amount_text) == (None, "", "several currencies")


@pytest.mark.django_db
def test_a_card_whose_case_is_resolved_opens_a_new_one(django_user_model):
    from scoring.roles import ensure_roles, make_lead

    ensure_roles()
    lead = django_user_model.objects.create_user("lead")
    make_lead(lead)
    (first,) = save(row("a"))
    cases.resolve(first.case_id, user=lead, is_fraud=True)
    (second,) = save(row("b"))

    assert second.case_id != first.case_id and not second.joined
    assert Case.objects.get(pk=second.case_id).is_open


@pytest.mark.django_db
def test_resolving_a_case_labels_every_alert_except_those_labeled_otherwise(django_user_model):
    from scoring.roles import ensure_roles, make_analyst

    ensure_roles()
    analyst = django_user_model.objects.create_user("ann")
    make_analyst(analyst)
    a, _, c = save(row("a"), row("b"), row("c"))

    case = cases.resolve(a.case_id, user=analyst, is_fraud=True, reason="card-testing", labels_by_id={c.id: False})

    labels = dict(Transaction.objects.values_list("external_id", "is_fraud"))
    assert labels == {"a": True, "b": True, "c": False}
    assert set(Transaction.objects.values_list("label_source", flat=True)) == {LabelSource.ANALYST}
    assert case.reason == ReasonCode.objects.get(code="card-testing")
    assert case.events.last().note == "reason: Card testing; c labeled legitimate"


@pytest.mark.django_db
def test_a_reason_for_the_other_verdict_or_an_unknown_one_is_refused(django_user_model):
    from scoring.roles import ensure_roles, make_analyst

    ensure_roles()
    analyst = django_user_model.objects.create_user("ann")
    make_analyst(analyst)
    (a,) = save(row("a"))

    with pytest.raises(ValueError, match="False positive"):
        cases.resolve(a.case_id, user=analyst, is_fraud=True, reason="false-positive")
    with pytest.raises(ValueError, match="not a reason code"):
        cases.resolve(a.case_id, user=analyst, is_fraud=True, reason="no-such-reason")
    assert Case.objects.get(pk=a.case_id).is_open


@pytest.mark.django_db(transaction=True)
def test_racing_batches_of_one_card_open_one_case_between_them():
    """Batches on their own connections, released together, again and again: each time the card ends with one
    open case holding every alert. On SQLite one waits for the other's write; on PostgreSQL they meet on the
    one-open-case index entry."""
    batches, rounds = 4, 5
    for n in range(rounds):
        card = f"race-{n}"
        start = threading.Barrier(batches)
        errors: list[BaseException] = []

        def store(
            b: int, card: str = card, start: threading.Barrier = start, errors: list[BaseException] = errors
        ) -> None:
            try:
                start.wait()
                rows = [row(f"{card}-{b}-{i}", card=card, merchant_id=f"m-{b}") for i in range(3)]
                for attempt in range(20):  # SQLite: "database is locked" while another writes
                    try:
                        save(*rows)
                        return
                    except Exception as exc:
                        if connection.vendor != "sqlite" or "locked" not in str(exc):
                            raise
                        threading.Event().wait(0.05 * (attempt + 1))
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=store, args=(b,)) for b in range(batches)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        (case,) = Case.objects.filter(card_id=card)
        assert case.is_open and case.alert_count == batches * 3
        assert Transaction.objects.filter(card_id=card, case=case).count() == batches * 3
        assert list(case.events.values_list("action", flat=True)).count("opened") == 1


def test_due_times_follow_the_decision(settings):
    settings.CASE_DUE_HOURS = {"block": 2, "review": 10}
    now = timezone.now()

    groups = storage.case_alerts([row("a", card="x"), row("b", card="y", decision="block")], now=now)

    assert [(g.card_id, g.due_at - now) for g in groups] == [("x", timedelta(hours=10)), ("y", timedelta(hours=2))]
