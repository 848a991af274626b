"""Deadlines on the desk: idle claims lapse (audited, pushed), the desk worker's round, and due times on the pages."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from dashboards import broadcast
from dashboards.templatetags.deadlines import duration
from scoring import cases
from scoring.models import Case, CaseEvent
from tests.dashboards.conftest import HTMX, make_case

pytestmark = pytest.mark.django_db

LATER = timedelta(minutes=31)  # past the default CLAIM_TIMEOUT_MINUTES (30)


def claimed_by(user: User) -> Case:
    case = make_case()
    return cases.claim(case.id, user=user)


def lapse_while_listening(capture: Any, *, now: Any) -> tuple[list[int], dict[str, Any]]:
    """Run the lapse with the commit's callbacks, and what a dashboard listening on the group received."""

    def lapse() -> list[int]:
        with capture(execute=True):
            return cases.lapse_idle_claims(now=now)

    async def listening() -> tuple[list[int], dict[str, Any]]:
        # One event loop for the listener: the Redis pub/sub layer's channels belong to the loop they were made in.
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(broadcast.DASHBOARD_GROUP, channel)
        try:
            lapsed = await sync_to_async(lapse)()
            return lapsed, await asyncio.wait_for(layer.receive(channel), 5)
        finally:
            await layer.group_discard(broadcast.DASHBOARD_GROUP, channel)

    return async_to_sync(listening)()


# --- idle claims lapse --------------------------------------------------------------------------


def test_an_idle_claim_lapses_back_to_the_queue_audited_and_pushed(
    alice: User, django_capture_on_commit_callbacks: Any
) -> None:
    case = claimed_by(alice)

    lapsed, message = lapse_while_listening(django_capture_on_commit_callbacks, now=timezone.now() + LATER)

    assert lapsed == [case.id]
    case.refresh_from_db()
    assert case.assignee is None
    assert case.is_open
    event = CaseEvent.objects.filter(case=case).last()
    assert (event.action, event.actor, event.via) == ("lapsed", None, "claim timeout")
    assert event.note == "alice had not acted on it for 30 minutes"
    assert message["type"] == broadcast.CASE_EVENT
    assert (message["case"]["id"], message["case"]["assignee"], message["case"]["status"]) == (case.id, None, "open")


def test_a_claim_within_the_timeout_is_kept(alice: User) -> None:
    case = claimed_by(alice)

    assert cases.lapse_idle_claims(now=timezone.now() + timedelta(minutes=29)) == []
    case.refresh_from_db()
    assert case.assignee == alice


def test_a_note_by_the_holder_keeps_the_claim(alice: User) -> None:
    case = claimed_by(alice)
    Case.objects.filter(pk=case.pk).update(assignee_active_at=timezone.now() - LATER)

    cases.add_note(case.id, user=alice, text="waiting for the issuer")

    assert cases.lapse_idle_claims() == []
    case.refresh_from_db()
    assert case.assignee == alice


def test_a_note_by_someone_else_does_not_keep_the_claim(alice: User, bob: User) -> None:
    case = claimed_by(alice)
    Case.objects.filter(pk=case.pk).update(assignee_active_at=timezone.now() - LATER)

    cases.add_note(case.id, user=bob, text="seen this card before")

    assert cases.lapse_idle_claims() == [case.id]


def test_a_claim_renewed_between_the_query_and_the_lock_is_kept(alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    case = claimed_by(alice)
    Case.objects.filter(pk=case.pk).update(assignee_active_at=timezone.now() - LATER)
    locked = cases._locked

    def note_arrives_first(case_id: int) -> Case:
        Case.objects.filter(pk=case_id).update(assignee_active_at=timezone.now())  # the holder's note won the race
        return locked(case_id)

    monkeypatch.setattr(cases, "_locked", note_arrives_first)

    assert cases.lapse_idle_claims() == []
    case.refresh_from_db()
    assert case.assignee == alice
    assert not CaseEvent.objects.filter(case=case, action="lapsed").exists()


def test_a_resolved_case_is_never_touched(alice: User) -> None:
    case = claimed_by(alice)
    cases.resolve(case.id, user=alice, is_fraud=True)
    before = list(CaseEvent.objects.filter(case=case).values_list("action", flat=True))

    assert cases.lapse_idle_claims(now=timezone.now() + timedelta(days=2)) == []
    case.refresh_from_db()
    assert (case.status, case.assignee) == ("fraud", alice)
    assert list(CaseEvent.objects.filter(case=case).values_list("action", flat=True)) == before


def test_an_unclaimed_case_is_left_alone() -> None:
    case = make_case()

    assert cases.lapse_idle_claims(now=timezone.now() + timedelta(days=2)) == []
    assert not CaseEvent.objects.filter(case=case).exists()


def test_a_claim_without_recorded_activity_counts_from_the_cases_opening(alice: User) -> None:
    old = make_case()
    new = make_case()
    Case.objects.filter(pk=old.pk).update(assignee=alice, opened_at=timezone.now() - LATER)
    Case.objects.filter(pk=new.pk).update(assignee=alice)

    assert cases.lapse_idle_claims() == [old.id]


def test_the_timeout_comes_from_the_settings(alice: User, settings: Any) -> None:
    settings.CLAIM_TIMEOUT_MINUTES = 5
    case = claimed_by(alice)

    assert cases.claim_lapses_at(case) == case.assignee_active_at + timedelta(minutes=5)
    assert cases.lapse_idle_claims(now=timezone.now() + timedelta(minutes=6)) == [case.id]


# --- the worker's round --------------------------------------------------------------------------


# Transactional: the jobs half of the round checks its connection as a worker does, outside any test transaction.
@pytest.mark.django_db(transaction=True)
def test_worker_once_lapses_idle_claims_and_names_them(alice: User) -> None:
    idle, active = claimed_by(alice), claimed_by(alice)
    Case.objects.filter(pk=idle.pk).update(assignee_active_at=timezone.now() - LATER)
    out = StringIO()

    call_command("worker", "--once", stdout=out)

    assert out.getvalue() == f"lapse_idle_claims: {idle.id}\n"
    assert Case.objects.get(pk=idle.pk).assignee is None
    assert Case.objects.get(pk=active.pk).assignee == alice


@pytest.mark.django_db(transaction=True)
def test_worker_once_says_nothing_when_no_claim_is_idle(alice: User) -> None:
    claimed_by(alice)
    out = StringIO()

    call_command("worker", "--once", stdout=out)

    assert out.getvalue() == ""


# --- due times on the pages ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("span", "words"),
    [
        (timedelta(seconds=20), "<1 min"),
        (timedelta(minutes=45), "45 min"),
        (timedelta(hours=3), "3 h"),
        (timedelta(hours=3, minutes=5), "3 h 5 min"),
        (timedelta(days=2, hours=4, minutes=59), "2 d 4 h"),
        (timedelta(days=1), "1 d"),
        (timedelta(minutes=-3), "<1 min"),
    ],
)
def test_durations_read_in_short_words_to_the_minute(span: timedelta, words: str) -> None:
    assert duration(span) == words


def test_the_queue_row_shows_age_and_due_time(alice_client: Client) -> None:
    case = make_case()
    Case.objects.filter(pk=case.pk).update(
        opened_at=timezone.now() - timedelta(hours=1, minutes=10),
        due_at=timezone.now() + timedelta(hours=2, seconds=30),
    )

    body = alice_client.get(f"/cases/{case.id}/row", **HTMX).content.decode()

    assert '<div class="case-age"><dt>Age</dt><dd>1 h 10 min</dd></div>' in body
    assert "in 2 h" in body
    assert "Overdue" not in body


def test_an_overdue_case_is_marked_in_words_in_its_row_and_on_its_page(alice_client: Client) -> None:
    case = make_case()
    Case.objects.filter(pk=case.pk).update(due_at=timezone.now() - timedelta(minutes=90, seconds=30))

    row = alice_client.get(f"/cases/{case.id}/row", **HTMX).content.decode()
    page = alice_client.get(f"/cases/{case.id}/").content.decode()

    assert '<span class="overdue-mark">Overdue</span> by 1 h 30 min' in row
    assert 'class="deadlines is-overdue"' in page
    assert '<span class="overdue-mark">Overdue</span> by 1 h 30 min' in page


def test_a_resolved_case_past_its_due_time_is_not_overdue(alice: User, alice_client: Client) -> None:
    case = make_case()
    cases.resolve(case.id, user=alice, is_fraud=False)
    Case.objects.filter(pk=case.pk).update(due_at=timezone.now() - timedelta(hours=1))

    page = alice_client.get(f"/cases/{case.id}/").content.decode()

    assert "overdue-mark" not in page
    assert "Resolved after" in page


def test_the_holder_is_told_when_the_claim_lapses(alice: User, alice_client: Client) -> None:
    case = claimed_by(alice)
    lapses_at = cases.claim_lapses_at(case)

    page = alice_client.get(f"/cases/{case.id}/").content.decode()

    assert (
        f'Your claim lapses at <time datetime="{lapses_at.isoformat()}">{lapses_at:%H:%M} UTC</time> unless you act'
        in page
    )


def test_others_see_whose_claim_lapses_when(bob: User, alice_client: Client) -> None:
    case = claimed_by(bob)

    page = alice_client.get(f"/cases/{case.id}/").content.decode()

    assert "bob’s claim lapses at" in page
    assert "Your claim" not in page


def test_the_audit_trail_says_a_claim_lapsed_in_words(alice: User, alice_client: Client) -> None:
    case = claimed_by(alice)
    cases.lapse_idle_claims(now=timezone.now() + LATER)

    page = alice_client.get(f"/cases/{case.id}/").content.decode()

    assert (
        "Claim timeout</strong>\n            returned the case to the queue: the claim <strong>lapsed</strong>" in page
    )
    assert "alice had not acted on it for 30 minutes" in page
    assert "lapses at" not in page
