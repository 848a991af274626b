"""One path for every case change (scoring/cases.py): takeovers, closed cases, reopening, notes, the no-role user."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied

from scoring import cases
from scoring.models import Case, CaseEvent, CaseStatus
from scoring.roles import ensure_roles, make_analyst, make_lead
from tests.dashboards.conftest import HTMX, logged_in
from tests.dashboards.conftest import make_case as flagged_case

pytestmark = pytest.mark.django_db


def make_case(**fields: Any) -> Case:
    """A block case with `fields` set on the case itself (the shared helper's transaction)."""
    case = flagged_case()
    for name, value in fields.items():
        setattr(case, name, value)
    case.save()
    return case


def person(django_user_model: type[User], username: str, *, role: str | None) -> User:
    ensure_roles()
    user = django_user_model.objects.create_user(username=username)
    {"analyst": make_analyst, "lead": make_lead, None: lambda _: None}[role](user)
    return user


@pytest.fixture
def alice(django_user_model: type[User]) -> User:
    return person(django_user_model, "alice", role="analyst")


@pytest.fixture
def bob(django_user_model: type[User]) -> User:
    return person(django_user_model, "bob", role="analyst")


@pytest.fixture
def lena(django_user_model: type[User]) -> User:
    """A lead by group (not a superuser)."""
    return person(django_user_model, "lena", role="lead")


@pytest.fixture
def nobody(django_user_model: type[User]) -> User:
    """Logged in, but neither an analyst nor a lead."""
    return person(django_user_model, "nobody", role=None)


def actions(case: Case) -> list[tuple[str | None, str, str]]:
    return [(e.actor.username if e.actor else None, e.action, e.note) for e in CaseEvent.objects.filter(case=case)]


def resolved(by: User, *, is_fraud: bool = False) -> Case:
    case = make_case()
    cases.resolve(case.id, user=by, is_fraud=is_fraud)
    return case


# --- takeovers -------------------------------------------------------------------------------------


def test_an_analyst_cannot_take_a_case_another_analyst_holds(alice: User, bob: User) -> None:
    case = make_case(assignee=bob)

    for attempt in (cases.claim, cases.release):
        with pytest.raises(cases.CaseConflict, match="claimed by bob"):
            attempt(case.id, user=alice)
    with pytest.raises(cases.CaseConflict):
        cases.resolve(case.id, user=alice, is_fraud=True)

    case.refresh_from_db()
    assert case.assignee == bob and case.is_open
    assert actions(case) == []


def test_a_lead_takes_over_a_held_case_on_the_record(lena: User, bob: User) -> None:
    case = make_case(assignee=bob)

    cases.claim(case.id, user=lena)

    case.refresh_from_db()
    assert case.assignee == lena
    assert actions(case) == [("lena", "takeover", "from bob"), ("lena", "claimed", "")]


def test_a_lead_resolving_a_held_case_takes_it_over_first(lena: User, bob: User) -> None:
    case = make_case(assignee=bob)

    cases.resolve(case.id, user=lena, is_fraud=True, note="card reported stolen")

    case.refresh_from_db()
    assert (case.status, case.assignee, case.resolved_by) == (CaseStatus.FRAUD, lena, lena)
    assert actions(case) == [("lena", "takeover", "from bob"), ("lena", "fraud", "card reported stolen")]


def test_a_lead_sees_a_take_over_button_on_a_case_someone_else_holds(lena: User, bob: User) -> None:
    case = make_case(assignee=bob)

    body = logged_in(lena).get(f"/cases/{case.id}/row").content.decode()

    assert f'id="case-{case.id}-takeover"' in body


# --- resolved cases are closed -----------------------------------------------------------------------


def test_a_resolved_case_cannot_be_claimed_released_or_resolved_again(alice: User, lena: User) -> None:
    case = resolved(alice)

    for user in (alice, lena):
        for attempt in (cases.claim, cases.release):
            with pytest.raises(cases.CaseConflict, match="already resolved"):
                attempt(case.id, user=user)
        with pytest.raises(cases.CaseConflict, match="already resolved"):
            cases.resolve(case.id, user=user, is_fraud=True)

    case.refresh_from_db()
    assert (case.status, case.assignee) == (CaseStatus.LEGITIMATE, alice)


# --- reopening --------------------------------------------------------------------------------------


def test_a_lead_reopens_a_resolved_case_with_a_reason_and_it_goes_back_to_the_queue(alice: User, lena: User) -> None:
    case = resolved(alice)

    response = logged_in(lena).post(f"/cases/{case.id}/reopen", {"reason": "customer called back"})

    assert response.status_code == 302
    case.refresh_from_db()
    assert case.is_open
    assert (case.assignee, case.resolved_by, case.resolved_at) == (None, None, None)
    assert actions(case)[-1] == ("lena", "reopened", "customer called back")
    assert case.alerts.get().is_fraud is False  # the label stays until the case is resolved again


def test_an_analyst_cannot_reopen_a_case(alice: User) -> None:
    case = resolved(alice)

    response = logged_in(alice).post(f"/cases/{case.id}/reopen", {"reason": "I changed my mind"})

    assert response.status_code == 403
    case.refresh_from_db()
    assert case.status == CaseStatus.LEGITIMATE
    with pytest.raises(PermissionDenied):
        cases.reopen(case.id, user=alice, reason="I changed my mind")


def test_reopening_needs_a_reason(alice: User, lena: User) -> None:
    case = resolved(alice)

    response = logged_in(lena).post(f"/cases/{case.id}/reopen", {"reason": "   "}, **HTMX)

    assert response.status_code == 422
    assert "say why the case is reopened" in response.content.decode()
    case.refresh_from_db()
    assert not case.is_open


def test_an_open_case_cannot_be_reopened(lena: User) -> None:
    case = make_case()

    with pytest.raises(cases.CaseConflict, match="is open"):
        cases.reopen(case.id, user=lena, reason="again")


def test_the_case_page_offers_reopening_to_leads_only(alice: User, lena: User) -> None:
    case = resolved(alice)

    assert 'id="reopen-form"' in logged_in(lena).get(f"/cases/{case.id}/").content.decode()
    assert 'id="reopen-form"' not in logged_in(alice).get(f"/cases/{case.id}/").content.decode()


# --- notes ------------------------------------------------------------------------------------------


def test_an_analyst_adds_a_note_and_gets_the_audit_trail_back_with_it(alice: User) -> None:
    case = make_case()

    response = logged_in(alice).post(f"/cases/{case.id}/notes", {"text": "  called the cardholder  "}, **HTMX)

    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<section class="card" aria-labelledby="audit-title" id="case-audit">')
    assert "called the cardholder" in body
    assert actions(case) == [("alice", "note", "called the cardholder")]


def test_notes_can_be_added_to_a_resolved_case_without_touching_its_verdict(alice: User, bob: User) -> None:
    case = resolved(alice)
    case.refresh_from_db()
    verdict = (case.status, case.note, case.resolved_by, case.resolved_at)

    cases.add_note(case.id, user=bob, text="merchant confirmed the refund")

    case.refresh_from_db()
    assert (case.status, case.note, case.resolved_by, case.resolved_at) == verdict
    assert actions(case)[-1] == ("bob", "note", "merchant confirmed the refund")


def test_an_empty_note_is_refused_and_nothing_is_recorded(alice: User) -> None:
    case = make_case()

    response = logged_in(alice).post(f"/cases/{case.id}/notes", {"text": "   "}, **HTMX)

    assert response.status_code == 422
    assert "write the note before adding it" in response.content.decode()
    assert actions(case) == []


def test_a_plain_form_note_goes_back_to_the_case_page(alice: User) -> None:
    case = make_case()
    page = f"http://testserver/cases/{case.id}/"

    response = logged_in(alice).post(f"/cases/{case.id}/notes", {"text": "seen"}, HTTP_REFERER=page)

    assert response.status_code == 302
    assert response["Location"] == page


def test_notes_are_shown_on_the_case_page_with_their_author(alice: User, bob: User) -> None:
    case = make_case()
    cases.add_note(case.id, user=bob, text="second opinion: looks like a test charge")

    body = logged_in(alice).get(f"/cases/{case.id}/").content.decode()

    assert "second opinion: looks like a test charge" in body
    assert "<strong>bob</strong>\n            added a note" in body


def test_a_note_tells_every_dashboard_after_the_commit(
    alice: User, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = make_case()
    pushed: list[dict[str, Any]] = []
    monkeypatch.setattr("dashboards.broadcast.case_changed_on_commit", lambda event: pushed.append(event))

    with django_capture_on_commit_callbacks(execute=True):
        cases.add_note(case.id, user=alice, text="pushed")

    assert [event["id"] for event in pushed] == [case.id]


# --- accounts without a role -----------------------------------------------------------------------


def test_an_account_without_a_role_changes_nothing_through_the_case_functions(nobody: User) -> None:
    case = make_case()

    for change in (
        lambda: cases.claim(case.id, user=nobody),
        lambda: cases.release(case.id, user=nobody),
        lambda: cases.resolve(case.id, user=nobody, is_fraud=True),
        lambda: cases.add_note(case.id, user=nobody, text="hello"),
        lambda: cases.reopen(case.id, user=nobody, reason="hello"),
    ):
        with pytest.raises(PermissionDenied):
            change()
    assert actions(case) == []


@pytest.mark.parametrize("path", ["/", "/cases/", "/cases/?overturned=1", "/cases/{id}/", "/cases/{id}/row"])
def test_an_account_without_a_role_sees_only_the_no_access_page(nobody: User, path: str) -> None:
    case = make_case()

    response = logged_in(nobody).get(path.format(id=case.id))

    assert response.status_code == 403
    body = response.content.decode()
    assert "Your account has no role on Fraud Desk" in body
    assert "ask a lead" in body
    assert case.alerts.get().external_id not in body
    assert 'class="nav-links"' not in body


@pytest.mark.parametrize("action", ["claim", "release", "resolve", "notes", "reopen"])
def test_an_account_without_a_role_cannot_post_case_actions(nobody: User, action: str) -> None:
    case = make_case()

    response = logged_in(nobody).post(f"/cases/{case.id}/{action}", {"verdict": "fraud", "text": "x", "reason": "x"})

    assert response.status_code == 403
    case.refresh_from_db()
    assert case.is_open and case.assignee is None
    assert actions(case) == []


# --- overturned verdicts ----------------------------------------------------------------------------


def test_the_queue_filters_overturned_verdicts_and_the_case_page_says_so(alice: User, bob: User) -> None:
    overturned, kept, still_open = resolved(alice), resolved(bob), make_case()
    cases.follow_label(overturned.id, is_fraud=True, external_id="x")
    cases.follow_label(kept.id, is_fraud=False, external_id="x")
    client = logged_in(bob)

    filtered = client.get("/cases/?overturned=1").content.decode()
    unfiltered = client.get("/cases/").content.decode()
    page = client.get(f"/cases/{overturned.id}/").content.decode()

    assert f'id="case-{overturned.id}"' in filtered
    assert f'id="case-{kept.id}"' not in filtered and f'id="case-{still_open.id}"' not in filtered
    assert f'id="case-{overturned.id}"' not in unfiltered and f'id="case-{still_open.id}"' in unfiltered
    assert "after alice resolved the case as legitimate" in page
    assert "Chargeback feed</strong>\n            reported it as fraud" in page


def test_a_case_settled_by_the_chargeback_feed_says_so_in_its_row(bob: User) -> None:
    case = make_case()
    cases.follow_label(case.id, is_fraud=True, external_id="x")

    row = logged_in(bob).get(f"/cases/{case.id}/row").content.decode()

    assert "by chargeback feed" in row
