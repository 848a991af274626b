"""Blocking a card or merchant while working a case: who may put what on the lists, for how long, the audit record,
and the admin going through the same function (scoring/lists.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.utils import timezone

from scoring import lists
from scoring.lists import ListConflict, add_entry
from scoring.models import CaseEvent, ListEntry
from scoring.models.access import ListEntryEvent
from scoring.roles import ensure_roles, make_analyst
from tests.dashboards.conftest import HTMX, logged_in, make_case

pytestmark = pytest.mark.django_db
IN_30_DAYS = timedelta(days=30)


def block(user: User, value: str = "card-9", **fields: Any) -> ListEntry:
    values = {"kind": "block", "entity": "card", "reason": "stolen", "expires_at": timezone.now() + IN_30_DAYS}
    return add_entry(user=user, value=value, **(values | fields))


def record() -> list[tuple[str, str, str, str, str]]:
    return [(e.actor.username, e.action, e.kind, e.entity, e.value) for e in ListEntryEvent.objects.all()]


def actions() -> list[tuple[str, str]]:
    return [(who, action) for who, action, *_ in record()]


def post_block(client: Client, **fields: Any):
    form = {"entity": "card", "value": "card-9", "kind": "block", "reason": "stolen", "expires_in_days": "30"}
    return client.post("/lists/entries", form | fields, **HTMX)


# --- from the case page --------------------------------------------------------------------------------


def test_an_analyst_blocks_the_card_from_its_case_page_for_thirty_days_by_default(alice_client: Client) -> None:
    case = make_case()

    response = post_block(alice_client, value=case.card_id, reason="issuer confirmed theft", case=case.id)

    assert response.status_code == 200
    entry = ListEntry.objects.get()
    assert (entry.kind, entry.entity, entry.value) == ("block", "card", case.card_id)
    assert entry.created_by.username == "alice"
    assert abs(entry.expires_at - (timezone.now() + IN_30_DAYS)) < timedelta(minutes=1)
    answer = response.content.decode()
    assert 'id="list-card-entry"' in answer and "issuer confirmed theft" in answer
    assert record() == [("alice", "added", "block", "card", case.card_id)]
    assert ListEntryEvent.objects.get().case == case
    note = CaseEvent.objects.get(case=case, action=lists.LISTED).note
    assert note.startswith(f"card {case.card_id} on the block list until ")
    assert note.endswith("(issuer confirmed theft)")


def test_the_case_page_offers_both_blocks_and_then_shows_the_entry_in_force(alice_client: Client, alice: User) -> None:
    case = make_case()
    merchant = case.alerts.get().merchant_id
    page = alice_client.get(f"/cases/{case.id}/").content.decode()
    assert 'id="list-card-open"' in page and 'id="list-merchant-open"' in page
    assert 'name="kind" value="block"' in page and 'value="allow"' not in page and ">No expiry<" not in page

    block(alice, merchant, entity="merchant", reason="collusion ring")
    page = alice_client.get(f"/cases/{case.id}/").content.decode()

    assert 'id="list-merchant-entry"' in page and "collusion ring" in page
    assert 'id="list-merchant-open"' not in page  # an analyst does not change an entry in force


def test_a_listing_from_a_case_page_tells_every_dashboard_after_the_commit(
    alice: User, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = make_case()
    pushed: list[dict[str, Any]] = []
    monkeypatch.setattr("dashboards.broadcast.case_changed_on_commit", pushed.append)

    with django_capture_on_commit_callbacks(execute=True):
        block(alice, case.card_id, case_id=case.id)

    assert [event["id"] for event in pushed] == [case.id]


def test_a_card_or_merchant_that_is_not_the_cases_cannot_be_listed_from_it(alice: User) -> None:
    case = make_case()

    for entity in ("card", "merchant"):
        with pytest.raises(ValueError, match="is not part of case"):
            block(alice, "someone-else", entity=entity, case_id=case.id)
    assert not ListEntry.objects.exists() and not ListEntryEvent.objects.exists()


def test_a_plain_form_post_goes_back_with_what_was_done(alice_client: Client) -> None:
    case = make_case()
    form = {"entity": "card", "value": case.card_id, "reason": "stolen", "expires_in_days": "7", "case": case.id}

    page = f"http://testserver/cases/{case.id}/"

    response = alice_client.post("/lists/entries", form, HTTP_REFERER=page, follow=True)

    assert response.redirect_chain == [(page, 302)]
    assert f"Card {case.card_id} is on the block list until" in response.content.decode()


# --- who may add what, for how long ------------------------------------------------------------------------


def test_an_analyst_cannot_add_an_allow_entry(alice: User, alice_client: Client) -> None:
    with pytest.raises(PermissionDenied, match="Only a lead may add allow entries"):
        block(alice, kind="allow")

    response = post_block(alice_client, kind="allow")

    assert response.status_code == 403
    assert not ListEntry.objects.exists() and not ListEntryEvent.objects.exists()


def test_an_analysts_block_must_run_out_within_ninety_days(alice: User, alice_client: Client) -> None:
    for expires_at in (None, timezone.now() + timedelta(days=90, minutes=1), timezone.now() - timedelta(minutes=1)):
        with pytest.raises(ValueError):
            block(alice, expires_at=expires_at)
    assert post_block(alice_client, expires_in_days="").status_code == 422
    assert post_block(alice_client, expires_in_days="365").status_code == 422  # not one of the offered choices

    entry = block(alice, expires_at=timezone.now() + timedelta(days=90))

    assert entry.expires_at > timezone.now() + timedelta(days=89)


def test_a_lead_adds_an_open_ended_block_or_an_allow_entry(lena: User) -> None:
    open_ended = block(lena, "card-1", expires_at=None)
    allowed = block(lena, "shop-vip", kind="allow", entity="merchant", expires_at=None)

    assert (open_ended.expires_at, allowed.kind) == (None, "allow")
    page = logged_in(lena).get(f"/cases/{make_case().id}/").content.decode()
    assert 'value="allow"' in page and ">No expiry<" in page


def test_an_entry_in_force_is_changed_by_a_lead_only_and_the_record_says_changed(
    alice: User, bob: User, lena: User, alice_client: Client
) -> None:
    block(bob, reason="card testing")

    with pytest.raises(ListConflict, match="only a lead may change that entry"):
        block(alice, reason="mine now")
    assert post_block(alice_client).status_code == 409
    block(lena, kind="allow", reason="the cardholder's own tests", expires_at=None)

    entry = ListEntry.objects.get()
    assert (entry.kind, entry.reason, entry.created_by) == ("allow", "the cardholder's own tests", lena)
    assert actions() == [("bob", "added"), ("lena", "changed")]


def test_an_expired_entry_gives_way_to_a_new_block(alice: User, bob: User) -> None:
    block(bob)
    ListEntry.objects.update(expires_at=timezone.now() - timedelta(days=1))

    block(alice, reason="again")

    assert ListEntry.objects.get().reason == "again"
    assert actions() == [("bob", "added"), ("alice", "added")]


def test_an_account_without_a_role_changes_no_list(django_user_model: type[User]) -> None:
    nobody = django_user_model.objects.create_user("nobody")

    with pytest.raises(PermissionDenied):
        block(nobody)


def test_a_new_entry_is_used_by_this_process_at_once_after_the_commit(
    alice: User, django_capture_on_commit_callbacks: Any
) -> None:
    assert lists.lists.entries() == {}  # loaded, and held for the TTL

    with django_capture_on_commit_callbacks(execute=True):
        block(alice)

    assert lists.lists.entries()[("card", "card-9")].reason == "stolen"


def test_only_a_lead_ends_or_removes_an_entry_and_both_are_recorded(alice: User, lena: User) -> None:
    entry = block(alice)
    for change in (lists.end_entry, lists.remove_entry):
        with pytest.raises(PermissionDenied):
            change(entry.id, user=alice)

    lists.end_entry(entry.id, user=lena)
    assert not ListEntry.objects.get().is_in_force
    lists.remove_entry(entry.id, user=lena)

    assert not ListEntry.objects.exists()
    assert actions() == [("alice", "added"), ("lena", "ended"), ("lena", "removed")]


# --- the admin goes through the same function -----------------------------------------------------------------


def admin_form(**fields: Any) -> dict[str, Any]:
    return {"kind": "block", "entity": "card", "value": "card-9", "reason": "stolen"} | fields


def test_the_admin_adds_through_the_audited_function(lena: User) -> None:
    logged_in(lena).post("/admin/scoring/listentry/add/", admin_form())

    assert ListEntry.objects.get().created_by == lena
    assert record() == [("lena", "added", "block", "card", "card-9")]


def test_the_admin_refuses_allow_entries_to_an_analyst_given_the_permission(django_user_model: type[User]) -> None:
    ensure_roles()
    analyst = django_user_model.objects.create_user("ana")
    make_analyst(analyst)
    analyst.user_permissions.add(*Permission.objects.filter(codename__in=["add_listentry", "view_listentry"]))
    soon = (timezone.now() + IN_30_DAYS).strftime("%Y-%m-%d")

    refused = logged_in(analyst).post("/admin/scoring/listentry/add/", admin_form(kind="allow"))
    open_ended = logged_in(analyst).post("/admin/scoring/listentry/add/", admin_form(value="card-2"))
    logged_in(analyst).post(
        "/admin/scoring/listentry/add/", admin_form(value="card-3", expires_at_0=soon, expires_at_1="12:00:00")
    )

    assert "Only a lead may add allow entries" in refused.content.decode()
    assert "must run out within 90 days" in open_ended.content.decode()
    assert list(ListEntry.objects.values_list("value", "kind")) == [("card-3", "block")]


def test_the_admins_change_end_and_delete_are_recorded(lena: User) -> None:
    client = logged_in(lena)
    entry = block(lena)

    client.post(f"/admin/scoring/listentry/{entry.pk}/change/", admin_form(reason="stolen, confirmed"))
    client.post("/admin/scoring/listentry/", {"action": "end_now", "_selected_action": [entry.pk]})
    client.post(f"/admin/scoring/listentry/{entry.pk}/delete/", {"post": "yes"})

    assert [action for _, action, *_ in record()] == ["added", "changed", "ended", "removed"]
    assert ListEntryEvent.objects.get(action="changed").reason == "stolen, confirmed"
    assert not ListEntry.objects.exists()


def test_the_admins_bulk_delete_is_recorded_entry_by_entry(lena: User) -> None:
    ids = [block(lena, value).pk for value in ("card-1", "card-2")]

    bulk_delete = {"action": "delete_selected", "_selected_action": ids, "post": "yes"}
    logged_in(lena).post("/admin/scoring/listentry/", bulk_delete)

    assert sorted((action, value) for _, action, _, _, value in record()[2:]) == [
        ("removed", "card-1"),
        ("removed", "card-2"),
    ]


def test_the_admins_entry_page_shows_its_record(lena: User, alice: User) -> None:
    entry = block(alice, reason="card testing")

    body = logged_in(lena).get(f"/admin/scoring/listentry/{entry.pk}/change/").content.decode()

    assert "alice added" in body and "block list until" in body and "(card testing)" in body
