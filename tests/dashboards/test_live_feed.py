"""The live page's server pieces: older matching feed rows a page at a time, blocked amounts per currency, and the
feed's ids (cut in the middle, whole in the text and title, card and merchant linked)."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from django.test import Client

from dashboards.feed import matching_page
from scoring.models import Transaction
from tests.dashboards.conftest import HTMX, make_case, make_tx

pytestmark = pytest.mark.django_db

FLAGGED = ["review", "block"]


def ids(rows: list[Transaction]) -> list[int]:
    return [tx.id for tx in rows]


def every_page(**filters: object) -> list[list[int]]:
    """The pages "load older" walks through, until the server says nothing older is left."""
    pages, before = [], None
    while True:
        page = matching_page(before=before, **filters)
        pages.append(ids(page.rows))
        if page.next_before is None:
            return pages
        assert before is None or page.next_before < before  # always further back: the walk ends
        before = page.next_before


# --- matching_page -----------------------------------------------------------------------------


def test_the_feed_page_holds_only_the_chosen_decisions_newest_first():
    review = make_tx(decision="review", score=0.7)
    make_tx(decision="approve", score=0.1)
    block = make_tx(decision="block", score=0.95)

    page = matching_page(decisions=FLAGGED)

    assert ids(page.rows) == [block.id, review.id]
    assert page.next_before is None


def test_a_minimum_score_leaves_out_lower_scores():
    make_tx(decision="review", score=0.55)
    high = make_tx(decision="review", score=0.8)
    exact = make_tx(decision="block", score=0.8)

    page = matching_page(decisions=FLAGGED, min_score=0.8)

    assert ids(page.rows) == [exact.id, high.id]


def test_imported_history_never_appears_in_the_feed_rows():
    make_tx(decision="approve", score=0.0, model_version="imported:bank-a")
    scored = make_tx(decision="approve", score=0.2)

    assert ids(matching_page(decisions=["approve"]).rows) == [scored.id]


def test_a_full_page_says_where_the_next_one_starts_and_the_pages_follow_without_gaps():
    rows = [make_tx(decision="review", score=0.6) for _ in range(7)]
    newest_first = sorted(ids(rows), reverse=True)

    first = matching_page(decisions=FLAGGED, limit=3)
    pages = every_page(decisions=FLAGGED, limit=3)

    assert first.next_before == newest_first[2]
    assert pages == [newest_first[:3], newest_first[3:6], newest_first[6:]]


def test_only_rows_below_before_are_answered():
    older = make_tx(decision="block", score=0.99)
    newer = make_tx(decision="block", score=0.99)

    assert ids(matching_page(decisions=["block"], before=newer.id).rows) == [older.id]


def test_a_filter_that_matches_little_reads_a_bounded_stretch_and_says_where_to_go_on():
    match = make_tx(decision="approve", score=0.4)
    for _ in range(6):  # newer approvals that the minimum score leaves out
        make_tx(decision="approve", score=0.05)

    first = matching_page(decisions=["approve"], min_score=0.3, scan=4)
    after = matching_page(decisions=["approve"], min_score=0.3, scan=4, before=first.next_before)

    assert first.rows == []
    assert first.next_before is not None and first.next_before > match.id  # stopped after 4 rows, not at the end
    assert ids(after.rows) == [match.id]
    assert after.next_before is None


def test_walking_every_page_finds_each_matching_row_once_whatever_the_scan_and_page_size():
    rng = random.Random(7)
    for _ in range(90):
        decision = rng.choice(["approve"] * 6 + ["review"] * 2 + ["block"])
        version = "imported:bank-a" if rng.random() < 0.1 else "test"
        make_tx(decision=decision, score=round(rng.random(), 3), model_version=version)
    wanted = (
        Transaction.objects.scored()
        .filter(decision__in=["approve", "block"], score__gte=0.35)
        .order_by("-id")
        .values_list("id", flat=True)
    )

    for limit, scan in ((5, 3), (4, 11), (50, 2), (7, 1000)):
        pages = every_page(decisions=["approve", "block"], min_score=0.35, limit=limit, scan=scan)
        walked = [tx_id for page in pages for tx_id in page]
        assert walked == list(wanted), (limit, scan)
        assert all(len(page) <= limit for page in pages)


def test_a_page_costs_two_queries_a_decision_however_many_rows_there_are(django_assert_num_queries):
    for i in range(30):
        make_tx(decision=("approve", "review", "block")[i % 3], score=0.6)

    with django_assert_num_queries(6):
        page = matching_page(decisions=["approve", "review", "block"], limit=10)

    assert len(page.rows) == 10


# --- GET /feed/ ----------------------------------------------------------------------------------


def test_the_feed_answers_matching_rows_as_the_feeds_table_rows_with_the_next_page(alice_client: Client):
    review = make_tx(decision="review", score=0.62, external_id="reviewed-one")
    make_tx(decision="approve", score=0.1, external_id="plain")
    block = make_tx(decision="block", score=0.97, external_id="blocked-one")

    response = alice_client.get("/feed/?decision=review&decision=block&min_score=0.5", **HTMX)

    body = response.content.decode()
    assert response.status_code == 200
    assert body.startswith('<tbody data-next-before="">')
    assert body.index(f'id="tx-{block.id}"') < body.index(f'id="tx-{review.id}"')
    assert "plain" not in body


def test_the_feed_pages_back_with_before(alice_client: Client):
    older = make_tx(decision="review", score=0.7)
    newer = make_tx(decision="review", score=0.7)

    body = alice_client.get(f"/feed/?decision=review&before={newer.id}").content.decode()

    assert f'id="tx-{older.id}"' in body
    assert f'id="tx-{newer.id}"' not in body


def test_the_feed_without_a_decision_answers_every_decision(alice_client: Client):
    rows = [make_tx(decision=decision, score=0.5) for decision in ("approve", "review", "block")]

    body = alice_client.get("/feed/").content.decode()

    assert all(f'id="tx-{tx.id}"' in body for tx in rows)


@pytest.mark.parametrize(
    "query", ["min_score=1.5", "min_score=-0.1", "min_score=high", "decision=maybe", "before=0", "before=x"]
)
def test_the_feed_refuses_filters_it_cannot_apply(alice_client: Client, query: str):
    response = alice_client.get(f"/feed/?{query}")

    assert response.status_code == 400


def test_an_ended_session_asking_the_feed_is_sent_to_the_login_page():
    response = Client().get("/feed/?decision=block", **HTMX)

    assert response.status_code == 403
    assert response["HX-Redirect"].startswith("/accounts/login/")


# --- the live page ------------------------------------------------------------------------------


def test_the_live_page_shows_blocked_amounts_per_currency_never_added_together(alice_client: Client):
    for amount, currency in (("100.00", "EUR"), ("250.00", "USD"), ("20.00", "EUR"), ("1200", "JPY")):
        make_tx(decision="block", score=0.97, amount=Decimal(amount), currency=currency)
    make_tx(decision="approve", score=0.1, amount=Decimal("999.00"), currency="GBP")

    response = alice_client.get("/")

    assert response.context["figures"]["blocked_amounts"] == [
        {"currency": "EUR", "count": 2, "amount": "120.00"},
        {"currency": "JPY", "count": 1, "amount": "1200"},
        {"currency": "USD", "count": 1, "amount": "250.00"},
    ]
    top = response.content.decode().split('id="blocked-top"', 1)[1].split("</ul>", 1)[0]
    assert 'data-money="120.00" data-currency="EUR"' in top
    assert 'data-money="250.00" data-currency="USD"' in top
    assert "1570" not in response.content.decode()  # nor any other sum across currencies


def test_currencies_past_the_top_three_wait_behind_more(alice_client: Client):
    for currency in ("EUR", "EUR", "USD", "USD", "GBP", "PLN", "SEK"):
        make_tx(decision="block", score=0.97, currency=currency)

    body = alice_client.get("/").content.decode()

    top = body.split('id="blocked-top"', 1)[1].split("</ul>", 1)[0]
    rest = body.split('id="blocked-rest"', 1)[1].split("</ul>", 1)[0]
    assert [c for c in ("EUR", "USD", "GBP", "PLN", "SEK") if f'data-currency="{c}"' in top] == ["EUR", "USD", "GBP"]
    assert [c for c in ("EUR", "USD", "GBP", "PLN", "SEK") if f'data-currency="{c}"' in rest] == ["PLN", "SEK"]
    assert '<span id="blocked-more-count">2</span>' in body


def test_feed_ids_are_cut_in_the_middle_but_kept_whole_in_the_text_and_title(alice_client: Client):
    make_tx(external_id="tx_8f3a5e7d2b9c4a1f0e6d91c2", card_id="card-000000481516", merchant_id="m 7/2")

    body = alice_client.get("/").content.decode()

    assert (
        '<span class="tx-id mono mid-id" data-field="external_id" title="tx_8f3a5e7d2b9c4a1f0e6d91c2">'
        '<span class="mid-head">tx_8f3a5e7d2b9c4a1f0e</span><span class="mid-tail">6d91c2</span></span>'
    ) in body
    assert 'href="/cards/card-000000481516/" title="Card card-000000481516"' in body
    assert 'href="/merchants/m%207/2/" title="Merchant m 7/2"' in body


def test_the_live_page_gives_the_script_its_feed_and_entity_urls(alice_client: Client):
    body = alice_client.get("/").content.decode()

    assert 'data-feed-url="/feed/"' in body
    assert 'data-card-url="/cards/__id__/"' in body
    assert 'data-merchant-url="/merchants/__id__/"' in body


def test_the_open_cases_panel_cuts_a_cards_id_in_the_middle_too(alice_client: Client):
    make_case(card_id="card-4f1c9e2a7b3d8f60a5c1e9d27b31")

    body = alice_client.get("/cases/top/").content.decode()

    assert (
        '<span class="mono mid-id" title="Card card-4f1c9e2a7b3d8f60a5c1e9d27b31">'
        '<span class="mid-head">card-4f1c9e2a7b3d8f60a5c1e9</span><span class="mid-tail">d27b31</span></span>'
    ) in body
