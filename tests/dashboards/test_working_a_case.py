"""Working a case on the desk: a verdict with a reason code, labels for single transactions, notes at any time, and
the reason codes' admin. Blocking a card or merchant: tests/dashboards/test_working_a_case_lists.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from scoring import cases
from scoring.models import Case, CaseEvent, CaseStatus, ReasonCode, Transaction
from tests.dashboards.conftest import HTMX, logged_in, make_case, make_tx

pytestmark = pytest.mark.django_db


def case_of_two() -> tuple[Case, Transaction, Transaction]:
    """An open case whose card has two flagged transactions: the riskiest, and a smaller one."""
    case = make_case()
    first = case.alerts.get()
    second = make_tx(card_id=case.card_id, score=0.7, decision="review", case=case)
    Case.objects.filter(pk=case.pk).update(alert_count=2)
    case.refresh_from_db()
    return case, first, second


def resolve(client: Client, case: Case, **form: Any):
    return client.post(f"/cases/{case.id}/resolve", form, **HTMX)


def optgroup(body: str, label: str) -> str:
    found = re.search(rf'<optgroup label="{label}">(.*?)</optgroup>', body)
    return found[1] if found else ""


# --- reason codes --------------------------------------------------------------------------------------


def test_the_resolve_form_offers_the_active_reasons_grouped_by_the_verdict_they_go_with(alice_client: Client) -> None:
    case = make_case()
    ReasonCode.objects.filter(code="card-testing").update(is_active=False)
    ReasonCode.objects.create(code="duplicate", label="Duplicate alert", verdict="")

    body = alice_client.get(f"/cases/{case.id}/").content.decode()

    assert 'value="stolen-card" data-verdict="fraud"' in optgroup(body, "Fraud")
    assert "false-positive" in optgroup(body, "Legitimate") and "stolen-card" not in optgroup(body, "Legitimate")
    assert "duplicate" in optgroup(body, "Either verdict")
    assert "card-testing" not in body  # retired: kept for the cases that have it, offered no more


def test_the_queue_reads_the_reason_codes_once_however_many_rows_it_shows(alice_client: Client) -> None:
    for _ in range(8):
        make_case()

    with CaptureQueriesContext(connection) as counted:
        body = alice_client.get("/cases/").content.decode()

    assert body.count('value="stolen-card"') == 8
    assert sum('FROM "scoring_reasoncode"' in query["sql"] for query in counted.captured_queries) == 1


def test_resolving_with_a_reason_keeps_it_on_the_case(alice_client: Client) -> None:
    case = make_case()

    response = resolve(alice_client, case, verdict="fraud", reason="stolen-card", note="issuer confirmed")

    assert response.status_code == 200
    case.refresh_from_db()
    assert (case.status, case.reason.code, case.note) == (CaseStatus.FRAUD, "stolen-card", "issuer confirmed")
    assert (
        f'<span class="case-reason small" id="case-{case.id}-reason-given">Stolen card</span>'
        in response.content.decode()
    )


def test_a_reason_for_the_other_verdict_is_refused_with_a_422_that_says_why(alice_client: Client) -> None:
    case = make_case()

    response = resolve(alice_client, case, verdict="legitimate", reason="stolen-card")

    assert response.status_code == 422
    assert "Not resolved: &#x27;Stolen card&#x27; is a reason for a fraud verdict." in response.content.decode()
    case.refresh_from_db()
    assert case.status == CaseStatus.OPEN and case.alerts.get().is_fraud is None


def test_a_reason_that_goes_with_either_verdict_closes_a_case_as_legitimate(alice_client: Client) -> None:
    ReasonCode.objects.create(code="duplicate", label="Duplicate alert", verdict="")
    case = make_case()

    resolve(alice_client, case, verdict="legitimate", reason="duplicate")

    case.refresh_from_db()
    assert (case.status, case.reason.code) == (CaseStatus.LEGITIMATE, "duplicate")


def test_a_retired_or_unknown_reason_is_refused_before_anything_changes(alice_client: Client) -> None:
    ReasonCode.objects.filter(code="card-testing").update(is_active=False)
    case = make_case()

    for code in ("card-testing", "no-such-reason"):
        response = resolve(alice_client, case, verdict="fraud", reason=code)
        assert response.status_code == 422
        assert "choose a reason from the list" in response.content.decode()
    case.refresh_from_db()
    assert case.status == CaseStatus.OPEN


def test_a_plain_form_post_with_a_mismatched_reason_goes_back_with_the_message(alice_client: Client) -> None:
    case = make_case()

    response = alice_client.post(
        f"/cases/{case.id}/resolve", {"verdict": "fraud", "reason": "false-positive"}, follow=True
    )

    assert "is a reason for a legitimate verdict" in response.content.decode()
    assert Case.objects.get(pk=case.pk).status == CaseStatus.OPEN


# --- a label for one transaction -----------------------------------------------------------------------


def test_the_case_page_offers_a_label_for_each_transaction_of_an_open_case_of_several(alice_client: Client) -> None:
    case, first, second = case_of_two()

    body = alice_client.get(f"/cases/{case.id}/").content.decode()

    assert f'id="case-{case.id}-resolve"' in body
    for tx in (first, second):
        assert f'<select name="label-{tx.id}" id="label-{tx.id}" form="case-{case.id}-resolve"' in body


def test_one_transaction_labeled_otherwise_gets_its_own_label_and_the_record_says_so(alice_client: Client) -> None:
    case, first, second = case_of_two()

    response = resolve(
        alice_client, case, verdict="fraud", reason="stolen-card", **{f"label-{second.id}": "legitimate"}
    )

    assert response.status_code == 200
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.is_fraud, second.is_fraud) == (True, False)
    note = CaseEvent.objects.get(case=case, action="fraud").note
    assert note == f"reason: Stolen card; {second.external_id} labeled legitimate"


def test_a_label_as_the_verdict_changes_nothing_and_is_not_recorded_as_an_exception(alice_client: Client) -> None:
    case, first, second = case_of_two()

    resolve(alice_client, case, verdict="fraud", **{f"label-{first.id}": "fraud", f"label-{second.id}": ""})

    assert list(case.alerts.values_list("is_fraud", flat=True)) == [True, True]
    assert CaseEvent.objects.get(case=case, action="fraud").note == ""


def test_a_label_for_a_transaction_outside_the_case_is_refused_with_a_422(alice_client: Client) -> None:
    case, _, _ = case_of_two()
    elsewhere = make_case().alerts.get()

    response = resolve(alice_client, case, verdict="fraud", **{f"label-{elsewhere.id}": "legitimate"})

    assert response.status_code == 422
    assert "are not alerts of case" in response.content.decode()
    assert Case.objects.get(pk=case.pk).status == CaseStatus.OPEN


def test_a_label_other_than_fraud_or_legitimate_is_refused(alice_client: Client) -> None:
    case, first, _ = case_of_two()

    response = resolve(alice_client, case, verdict="fraud", **{f"label-{first.id}": "maybe"})

    assert response.status_code == 422
    assert Case.objects.get(pk=case.pk).status == CaseStatus.OPEN


def test_a_resolved_cases_page_shows_each_transactions_label_and_no_label_controls(alice_client: Client) -> None:
    case, first, second = case_of_two()
    resolve(alice_client, case, verdict="fraud", **{f"label-{second.id}": "legitimate"})

    body = alice_client.get(f"/cases/{case.id}/").content.decode()

    labels = {tx.id: re.search(rf'id="alert-{tx.id}-label">(.*?)</td>', body)[1] for tx in (first, second)}
    assert "Fraud" in labels[first.id] and "analyst" in labels[first.id]
    assert "Legitimate" in labels[second.id]
    assert 'name="label-' not in body


def test_the_label_controls_are_not_offered_on_a_case_someone_else_holds(alice_client: Client, bob: User) -> None:
    case, _, _ = case_of_two()
    cases.claim(case.id, user=bob)

    body = alice_client.get(f"/cases/{case.id}/").content.decode()

    assert 'name="label-' not in body


# --- notes at any time ---------------------------------------------------------------------------------


def test_a_resolved_cases_page_keeps_the_note_form(alice_client: Client, alice: User) -> None:
    case = make_case()
    cases.resolve(case.id, user=alice, is_fraud=True)

    body = alice_client.get(f"/cases/{case.id}/").content.decode()

    assert 'id="note-form"' in body and f'action="/cases/{case.id}/notes"' in body


def test_a_note_on_a_resolved_case_comes_back_with_its_author_and_time(alice_client: Client, bob: User) -> None:
    case = make_case()
    cases.resolve(case.id, user=bob, is_fraud=False, reason="false-positive")

    response = alice_client.post(f"/cases/{case.id}/notes", {"text": "cardholder called: it was them"}, **HTMX)

    assert response.status_code == 200
    item = re.findall(r'<li class="timeline-item action-note">(.*?)</li>', response.content.decode(), re.S)[-1]
    assert "<strong>alice</strong>" in item and "cardholder called: it was them" in item
    note = CaseEvent.objects.get(case=case, action="note")
    assert f'datetime="{note.at.isoformat()}"' in item
    case.refresh_from_db()
    assert (case.status, case.reason.code, case.resolved_by) == (CaseStatus.LEGITIMATE, "false-positive", bob)


def test_a_note_on_a_resolved_case_tells_every_dashboard_after_the_commit(
    alice: User, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = make_case()
    cases.resolve(case.id, user=alice, is_fraud=True)
    pushed: list[dict[str, Any]] = []
    monkeypatch.setattr("dashboards.broadcast.case_changed_on_commit", pushed.append)

    with django_capture_on_commit_callbacks(execute=True):
        cases.add_note(case.id, user=alice, text="chargeback filed")

    assert [(event["id"], event["status"]) for event in pushed] == [(case.id, "fraud")]


# --- the reason codes' admin, and the admin's verdicts -----------------------------------------------------


def test_a_lead_retires_and_adds_reason_codes_in_the_admin(lena: User) -> None:
    client = logged_in(lena)
    testing = ReasonCode.objects.get(code="card-testing")
    fields = {"code": "card-testing", "label": "Card testing", "verdict": "fraud", "position": testing.position}

    client.post(f"/admin/scoring/reasoncode/{testing.pk}/change/", fields)
    added = {"code": "bust-out", "label": "Bust-out", "verdict": "fraud", "is_active": "on", "position": 9}
    client.post("/admin/scoring/reasoncode/add/", added)

    testing.refresh_from_db()
    assert testing.is_active is False  # an unticked box
    assert ReasonCode.objects.get(code="bust-out").is_active is True


def test_an_analyst_can_neither_see_nor_change_the_reason_codes(alice: User) -> None:
    client = logged_in(alice)
    stolen = ReasonCode.objects.get(code="stolen-card")

    assert client.get("/admin/scoring/reasoncode/").status_code == 403
    changed = client.post(f"/admin/scoring/reasoncode/{stolen.pk}/change/", {"code": "x", "label": "x", "position": 0})
    added = client.post("/admin/scoring/reasoncode/add/", {"code": "mine", "label": "Mine", "position": 0})

    assert (changed.status_code, added.status_code) == (403, 403)
    stolen.refresh_from_db()
    assert (stolen.label, ReasonCode.objects.filter(code="mine").exists()) == ("Stolen card", False)


def test_the_admins_resolve_actions_still_resolve_without_a_reason(alice: User) -> None:
    case = make_case()

    logged_in(alice).post("/admin/scoring/case/", {"action": "confirm_fraud", "_selected_action": [case.pk]})

    case.refresh_from_db()
    assert (case.status, case.reason) == (CaseStatus.FRAUD, None)
