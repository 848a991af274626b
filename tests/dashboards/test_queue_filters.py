"""The review queue filtered, sorted and paged on the server: /cases/?status=&decision=&assignee=&score_min=..."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from dashboards.queue_filters import QueueFilter
from dashboards.views import QUEUE_PAGE
from scoring.models import Case, CaseStatus
from tests.dashboards.conftest import make_case

pytestmark = pytest.mark.django_db


def case(*, score: float = 0.95, decision: str = "block", **fields: Any) -> Case:
    """An open case of its own card, with its figures set as given (status, assignee, amounts, times...)."""
    tx_fields = {key: fields.pop(key) for key in ("amount", "currency") if key in fields}
    made = make_case(score=score, decision=decision, **tx_fields)
    if fields:
        Case.objects.filter(pk=made.pk).update(**fields)
        made.refresh_from_db()
    return made


def shown(client: Client, query: str = "") -> list[int]:
    """The case ids the queue page lists for `query`, in order."""
    response = client.get(f"/cases/?{query}")
    assert response.status_code == 200, response.content.decode()[:500]
    return [int(n) for n in re.findall(r'<article id="case-(\d+)"', response.content.decode())]


# --- filters ---------------------------------------------------------------------------------------


def test_the_queue_without_a_query_is_every_open_case_riskiest_first(alice_client: Client) -> None:
    low, high = case(score=0.6, decision="review"), case(score=0.97)
    case(status=CaseStatus.FRAUD)

    assert shown(alice_client) == [high.id, low.id]


def test_status_shows_the_verdicts_asked_for(alice_client: Client) -> None:
    open_case, fraud, legit = case(), case(status=CaseStatus.FRAUD), case(status=CaseStatus.LEGITIMATE)

    assert shown(alice_client, "status=fraud") == [fraud.id]
    assert shown(alice_client, "status=legitimate") == [legit.id]
    assert sorted(shown(alice_client, "status=any")) == sorted([open_case.id, fraud.id, legit.id])


def test_decision_keeps_review_or_block_cases(alice_client: Client) -> None:
    review, block = case(score=0.6, decision="review"), case(score=0.95, decision="block")

    assert shown(alice_client, "decision=review") == [review.id]
    assert shown(alice_client, "decision=block") == [block.id]


def test_assignee_mine_unclaimed_or_a_name(alice_client: Client, alice: User, bob: User) -> None:
    mine, bobs, free = case(assignee=alice), case(assignee=bob), case()

    assert shown(alice_client, "assignee=mine") == [mine.id]
    assert shown(alice_client, "assignee=unclaimed") == [free.id]
    assert shown(alice_client, "assignee=bob") == [bobs.id]
    assert sorted(shown(alice_client, "assignee=")) == sorted([mine.id, bobs.id, free.id])


def test_an_assignee_nobody_is_named_is_refused_with_a_message(alice_client: Client) -> None:
    case()

    response = alice_client.get("/cases/?assignee=nobody-at-all")

    assert response.status_code == 400
    assert "no account is named “nobody-at-all”" in response.content.decode()
    assert '<article id="case-' not in response.content.decode()


def test_score_range_includes_both_ends(alice_client: Client) -> None:
    low, mid, high = case(score=0.5, decision="review"), case(score=0.8), case(score=0.99)

    assert shown(alice_client, "score_min=0.8&score_max=0.99") == [high.id, mid.id]
    assert shown(alice_client, "score_max=0.5") == [low.id]


def test_amount_range_reads_case_totals_and_leaves_out_cases_in_several_currencies(alice_client: Client) -> None:
    small, big = case(amount=Decimal("20.00")), case(amount=Decimal("5000.00"))
    mixed = case(total_amount=None, currency="")
    yen = case(amount=Decimal("120000"), currency="JPY")

    assert shown(alice_client, "amount_min=1000&currency=eur") == [big.id]
    assert sorted(shown(alice_client, "amount_max=100")) == [small.id]
    assert mixed.id not in shown(alice_client, "amount_min=0")
    assert yen.id in shown(alice_client, "amount_min=1000")  # its own currency's figure, without a currency chosen


def test_currency_alone_keeps_the_cases_in_it(alice_client: Client) -> None:
    case(amount=Decimal("20.00")), case(total_amount=None, currency="")
    yen = case(amount=Decimal("1200"), currency="JPY")

    assert shown(alice_client, "currency=JPY") == [yen.id]


def test_age_bounds_read_when_the_case_was_opened(alice_client: Client) -> None:
    now = timezone.now()
    fresh = case(opened_at=now - timedelta(minutes=30))
    day_old = case(opened_at=now - timedelta(hours=26))
    hours_old = case(opened_at=now - timedelta(hours=5))

    assert sorted(shown(alice_client, "min_age=24")) == [day_old.id]
    assert shown(alice_client, "max_age=1") == [fresh.id]
    assert shown(alice_client, "min_age=2&max_age=24") == [hours_old.id]


def test_overdue_is_an_open_case_past_its_due_time(alice_client: Client) -> None:
    late = case(due_at=timezone.now() - timedelta(minutes=5))
    case(due_at=timezone.now() + timedelta(hours=3))
    case(status=CaseStatus.FRAUD, due_at=timezone.now() - timedelta(hours=5))

    assert shown(alice_client, "overdue=1") == [late.id]
    assert shown(alice_client, "overdue=1&status=any") == [late.id]
    assert shown(alice_client, "overdue=1&status=fraud") == []
    assert len(shown(alice_client, "overdue=0")) == 2  # "0" means off, not on


def test_overturned_url_still_lists_overturned_verdicts_latest_first(alice_client: Client) -> None:
    now = timezone.now()
    older = case(status=CaseStatus.LEGITIMATE, overturned=True, resolved_at=now - timedelta(days=2))
    newer = case(status=CaseStatus.LEGITIMATE, overturned=True, resolved_at=now - timedelta(hours=1))
    case(status=CaseStatus.LEGITIMATE)
    case()

    response = alice_client.get("/cases/?overturned=1")

    assert shown(alice_client, "overturned=1") == [newer.id, older.id]
    assert "<h1>Overturned verdicts</h1>" in response.content.decode()
    assert shown(alice_client, "overturned=1&status=open") == []


def test_q_keeps_the_cards_whose_id_begins_with_it_and_the_case_it_numbers(alice_client: Client) -> None:
    first, second = make_case(card_id="4111-aa"), make_case(card_id="4111-ab")
    make_case(card_id="5500-aa")

    assert sorted(shown(alice_client, "q=4111-a")) == sorted([first.id, second.id])
    assert shown(alice_client, "q=4111-ab") == [second.id]
    assert shown(alice_client, f"q=%23{first.id}") == [first.id]  # "#12", as the search box takes it
    assert shown(alice_client, "q=4112") == []


def test_q_with_a_control_character_is_refused(alice_client: Client) -> None:
    response = alice_client.get("/cases/?q=card%01x")

    assert response.status_code == 400
    assert "ids hold no control characters" in response.content.decode()


# --- sorting ---------------------------------------------------------------------------------------


def test_sort_by_amount_puts_the_largest_first_and_cases_in_several_currencies_last(alice_client: Client) -> None:
    mixed = case(total_amount=None, currency="")
    small, big = case(amount=Decimal("10.00")), case(amount=Decimal("900.00"))

    assert shown(alice_client, "sort=amount") == [big.id, small.id, mixed.id]


def test_sort_by_age_is_oldest_first_and_by_due_time_soonest_first(alice_client: Client) -> None:
    now = timezone.now()
    old = case(opened_at=now - timedelta(hours=9), due_at=now + timedelta(hours=15))
    new = case(opened_at=now - timedelta(hours=1), due_at=now + timedelta(hours=3))

    assert shown(alice_client, "sort=age") == [old.id, new.id]
    assert shown(alice_client, "sort=due") == [new.id, old.id]


# --- paging and the bar ----------------------------------------------------------------------------


def test_pages_hold_a_page_of_cases_and_their_links_keep_the_filters(alice_client: Client) -> None:
    cases = [case(score=0.5 + i / 1000, decision="review") for i in range(QUEUE_PAGE + 3)]
    riskiest = [c.id for c in reversed(cases)]

    first = alice_client.get("/cases/?decision=review&score_min=0.5&page=").content.decode()
    second = shown(alice_client, "decision=review&score_min=0.5&page=2")

    assert shown(alice_client, "decision=review&score_min=0.5") == riskiest[:QUEUE_PAGE]
    assert second == riskiest[QUEUE_PAGE:]
    assert 'href="?decision=review&amp;score_min=0.5&amp;page=2"' in first
    assert 'id="page-next"' in first
    assert shown(alice_client, "decision=review&page=99") == second  # past the end: the last page


def test_the_bar_is_filled_in_from_the_query_string(alice_client: Client, bob: User) -> None:
    body = alice_client.get("/cases/?status=any&decision=block&assignee=bob&score_min=0.7&sort=due&overdue=1").content
    page = body.decode()

    assert '<option value="any" selected>' in page
    assert '<option value="block" selected>' in page
    assert '<option value="bob" selected>bob</option>' in page
    assert '<option value="due" selected>' in page
    assert 'name="score_min" value="0.7"' in page
    assert re.search(r'<input type="checkbox" name="overdue"[^>]*checked', page)
    assert re.search(r"<details[^>]*id=\"filter-more\" open", page)  # a folded filter is set: the fold is open


def test_the_page_head_says_what_is_shown(alice_client: Client) -> None:
    case(score=0.9)

    page = alice_client.get("/cases/?assignee=mine&score_min=0.8&sort=amount").content.decode()

    assert "open, claimed by you, score at least 0.8; largest amount first." in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("score_min=abc", "Enter a number."),
        ("status=closed", "Status</label> (“closed”): choose one of open, fraud, legitimate, any"),
        ("score_min=0.9&score_max=0.2", "the score range ends below where it starts"),
        ("amount_min=-5", "Ensure this value is greater than or equal to 0."),
        ("currency=EURO", "a currency is three letters, like EUR"),
        ("page=0", "Ensure this value is greater than or equal to 1."),
        ("min_age=30&max_age=2", "the age range ends below where it starts"),
        ("sort=cheapest", "choose one of risk, amount, age, due, resolved"),
    ],
)
def test_a_bad_value_gets_the_bar_back_with_what_is_wrong(alice_client: Client, query: str, message: str) -> None:
    case()

    response = alice_client.get(f"/cases/?{query}")

    assert response.status_code == 400
    body = response.content.decode()
    assert message in body
    assert 'id="filter-errors" role="alert"' in body
    assert '<article id="case-' not in body and 'id="export-cases"' not in body


def test_export_links_carry_the_filters_without_the_page_number(alice_client: Client) -> None:
    case()

    page = alice_client.get("/cases/?assignee=mine&score_min=0.8&score_max=&page=1").content.decode()

    assert 'href="/cases/export/cases.csv?assignee=mine&amp;score_min=0.8"' in page
    assert 'href="/cases/export/transactions.csv?assignee=mine&amp;score_min=0.8"' in page


def test_queue_js_may_place_pushed_cases_only_on_the_first_page_of_the_open_queue_by_risk() -> None:
    assert QueueFilter(decision="block", assignee="mine", score_min=0.5).browser_checkable
    assert not QueueFilter(sort="amount").browser_checkable
    assert not QueueFilter(min_age=2).browser_checkable
    assert not QueueFilter(status="fraud").browser_checkable
    assert not QueueFilter(amount_min=Decimal(5)).browser_checkable


def test_a_page_counts_its_queries_not_its_cases(
    alice_client: Client, bob: User, django_assert_max_num_queries: Any
) -> None:
    for _ in range(QUEUE_PAGE):
        case(assignee=bob)

    with django_assert_max_num_queries(12):
        assert len(shown(alice_client, "status=any")) == QUEUE_PAGE
