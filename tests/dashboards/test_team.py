"""The team page's figures against a small set of cases whose answers were worked out by hand."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboards import team
from scoring.models import Case, CaseStatus
from scoring.roles import ensure_roles, make_lead
from tests.dashboards.conftest import make_case

NOW = datetime(2025, 3, 14, 15, 0, tzinfo=UTC)
_cards = itertools.count(1)


def at(day: int, hour: float) -> datetime:
    """A moment in March 2025, UTC."""
    return datetime(2025, 3, day, tzinfo=UTC) + timedelta(hours=hour)


def case(*, opened: datetime, **fields: Any) -> Case:
    """A flagged case of its own card, with its dates and verdict set as given."""
    made = make_case(card_id=f"team-card-{next(_cards)}")
    Case.objects.filter(pk=made.pk).update(opened_at=opened, **fields)
    return made


def resolved(*, by: User | None, opened: datetime, took: timedelta, fraud: bool, **fields: Any) -> Case:
    status = CaseStatus.FRAUD if fraud else CaseStatus.LEGITIMATE
    return case(opened=opened, status=status, resolved_by=by, assignee=by, resolved_at=opened + took, **fields)


@pytest.fixture
def open_cases(alice: User, bob: User) -> None:
    case(opened=NOW - timedelta(minutes=30), due_at=NOW + timedelta(hours=3))  # unclaimed, <1 h
    case(opened=NOW - timedelta(hours=2), due_at=NOW - timedelta(minutes=1))  # unclaimed, 1 to 4 h, overdue
    case(opened=NOW - timedelta(hours=10), assignee=alice, due_at=NOW + timedelta(hours=14))  # 4 to 24 h
    case(opened=NOW - timedelta(hours=30), assignee=alice, due_at=NOW - timedelta(hours=6))  # >24 h, overdue
    case(opened=NOW - timedelta(hours=1), assignee=bob, due_at=NOW)  # exactly 1 h: the older bucket, 1 to 4 h


@pytest.fixture
def verdicts(alice: User, bob: User) -> None:
    resolved(by=alice, opened=at(14, 10), took=timedelta(hours=1), fraud=True)
    resolved(by=alice, opened=at(13, 9), took=timedelta(hours=3), fraud=False)
    resolved(by=alice, opened=at(12, 8), took=timedelta(minutes=30), fraud=True)
    resolved(by=bob, opened=at(14, 12), took=timedelta(hours=2), fraud=True)
    # A legitimate verdict the payment side's fraud label overturned: the flag was right.
    resolved(by=bob, opened=at(14, 6), took=timedelta(hours=4), fraud=False, overturned=True)
    # Settled by the chargeback feed, not by a person: in the precision, not in anyone's figures.
    resolved(by=None, opened=at(13, 0), took=timedelta(hours=5), fraud=True, resolved_via="chargeback feed")
    # Before the period, and after its last day: counted nowhere.
    resolved(by=alice, opened=datetime(2025, 2, 20, tzinfo=UTC), took=timedelta(hours=100), fraud=False)
    resolved(by=bob, opened=at(15, 1), took=timedelta(hours=9), fraud=False)


def test_open_cases_are_counted_by_age_bucket_with_an_edge_in_the_older_bucket(open_cases: None):
    overview = team.overview(now=NOW, days=7)

    assert overview.by_age == (1, 2, 1, 1)
    assert overview.open_count == 5
    assert overview.unclaimed == 2
    assert overview.oldest_open == NOW - timedelta(hours=30)


def test_open_cases_by_assignee_list_the_unclaimed_first_then_the_most_held(open_cases: None):
    loads = team.overview(now=NOW, days=7).loads

    assert [(load.username, load.by_age) for load in loads] == [
        ("", (1, 1, 0, 0)),
        ("alice", (0, 0, 1, 1)),
        ("bob", (0, 1, 0, 0)),
    ]


def test_open_cases_past_their_due_time_are_counted_overdue_per_assignee(open_cases: None):
    overview = team.overview(now=NOW, days=7)

    # Due exactly now is not overdue yet.
    assert {load.username: load.overdue for load in overview.loads} == {"": 1, "alice": 1, "bob": 0}
    assert overview.overdue == 2


def test_resolved_cases_are_counted_per_analyst_per_day_and_the_feed_is_not_an_analyst(verdicts: None):
    overview = team.overview(now=NOW, days=7)

    assert overview.days == tuple(datetime(2025, 3, d).date() for d in range(8, 15))
    per_day = {analyst.username: analyst.per_day for analyst in overview.analysts}
    assert per_day == {"alice": (0, 0, 0, 0, 1, 1, 1), "bob": (0, 0, 0, 0, 0, 0, 2)}
    assert overview.resolved_per_day == (0, 0, 0, 0, 1, 1, 3)
    assert overview.resolved == 5


def test_team_members_without_verdicts_are_listed_with_zeros(verdicts: None, django_user_model: type[User]):
    ensure_roles()
    make_lead(django_user_model.objects.create_user("carol"))

    carol = {a.username: a for a in team.overview(now=NOW, days=7).analysts}["carol"]

    assert carol.per_day == (0,) * 7
    assert carol.median is None


def test_median_time_to_resolve_is_the_middle_verdict_or_the_mean_of_the_two_middle_ones(verdicts: None):
    overview = team.overview(now=NOW, days=7)

    # The team: 30 min, 1 h, 2 h, 3 h, 4 h. Alice: 30 min, 1 h, 3 h. Bob: 2 h and 4 h.
    assert overview.median == timedelta(hours=2)
    medians = {analyst.username: analyst.median for analyst in overview.analysts}
    assert medians == {"alice": timedelta(hours=1), "bob": timedelta(hours=3)}


def test_median_of_an_even_count_keeps_the_seconds(alice: User):
    resolved(by=alice, opened=at(14, 1), took=timedelta(minutes=10), fraud=True)
    resolved(by=alice, opened=at(14, 2), took=timedelta(minutes=15, seconds=1), fraud=True)

    median = team.median_time_to_resolve(days=team.calendar_days(now=NOW, count=1))

    assert median == timedelta(minutes=12, seconds=30, milliseconds=500)


def test_precision_counts_every_resolved_case_and_overturned_verdicts_as_fraud(verdicts: None):
    overview = team.overview(now=NOW, days=14)

    shares = {p.day.day: (p.resolved, p.fraud) for p in overview.precision_days if p.resolved}
    assert shares == {12: (1, 1), 13: (2, 1), 14: (3, 3)}
    assert len(overview.precision_days) == team.PRECISION_DAYS
    assert (overview.precision.resolved, overview.precision.fraud) == (6, 5)
    assert overview.precision.share == pytest.approx(5 / 6)


def test_a_day_without_verdicts_has_no_precision_rather_than_zero(verdicts: None):
    first = team.overview(now=NOW, days=7).precision_days[0]

    assert (first.resolved, first.share) == (0, None)


def test_a_reopened_case_counts_nowhere_until_it_is_resolved_again(alice: User):
    reopened = resolved(by=alice, opened=at(14, 1), took=timedelta(hours=1), fraud=True)
    Case.objects.filter(pk=reopened.pk).update(
        status=CaseStatus.OPEN, resolved_by=None, resolved_at=None, assignee=None
    )

    overview = team.overview(now=NOW, days=7)

    assert overview.resolved == 0
    assert overview.precision.resolved == 0
    assert overview.median is None


def test_days_are_the_sites_calendar_days(settings, alice: User):
    settings.TIME_ZONE = "Europe/Amsterdam"  # one hour ahead of UTC in March
    resolved(by=alice, opened=at(13, 23), took=timedelta(minutes=30), fraud=True)  # 00:30 on the 14th there

    overview = team.overview(now=NOW, days=7)

    assert overview.days[-1] == datetime(2025, 3, 14).date()
    assert {a.username: a.per_day for a in overview.analysts}["alice"][-2:] == (0, 1)
    assert overview.precision_days[-1].resolved == 1


# --- the page ------------------------------------------------------------------------------------------


@pytest.fixture
def lead_client(django_user_model: type[User]) -> Client:
    ensure_roles()
    lead = django_user_model.objects.create_user("lena")
    make_lead(lead)
    client = Client()
    client.force_login(lead)
    return client


def test_a_lead_sees_the_figures_charts_and_links_to_each_analysts_queue(
    lead_client: Client, open_cases: None, verdicts: None
):
    response = lead_client.get("/team/")

    assert response.status_code == 200
    page = response.content.decode()
    assert page.count("<svg") >= 4
    assert 'href="/cases/?assignee=alice"' in page
    assert 'href="/cases/?assignee=bob"' in page
    assert 'id="nav-team"' in page


def test_an_analyst_is_refused_with_a_page_that_says_the_view_is_for_leads(alice_client: Client, open_cases: None):
    response = alice_client.get("/team/")

    assert response.status_code == 403
    page = response.content.decode()
    assert 'id="leads-only"' in page
    assert "assignee=alice" not in page


def test_the_team_link_is_in_the_navigation_of_leads_only(alice_client: Client, lead_client: Client):
    assert 'id="nav-team"' not in alice_client.get("/cases/").content.decode()
    assert 'id="nav-team"' in lead_client.get("/cases/").content.decode()


def test_the_page_takes_the_same_queries_however_many_cases(lead_client: Client, alice: User, bob: User):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert lead_client.get("/team/").status_code == 200
        return len(captured)

    now = timezone.now()
    resolved(by=alice, opened=now - timedelta(hours=3), took=timedelta(hours=1), fraud=True)
    before = queries()
    for hours in range(1, 30):
        case(opened=now - timedelta(hours=hours), assignee=alice if hours % 2 else bob)
        resolved(by=bob, opened=now - timedelta(hours=hours), took=timedelta(minutes=hours), fraud=hours % 3 == 0)

    assert queries() == before
