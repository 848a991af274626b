"""Search: an id or case number that exists goes straight to its page; the beginning of ids lists the matches."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from dashboards import search
from scoring.models import Case, ListEntry
from tests.dashboards.conftest import make_tx

pytestmark = pytest.mark.django_db


def searching(client: Client, q: str):
    return client.get(reverse("dashboards:search"), {"q": q})


def group(html: str, name: str) -> list[str]:
    """The link texts of one result group (search-cards, search-merchants, ...)."""
    section = re.search(rf'<section[^>]*id="search-{name}".*?</section>', html, re.S)
    return re.findall(r"<li><a[^>]*>(.*?)</a>", section[0], re.S) if section else []


def a_case(card_id: str = "card-c", **fields) -> Case:
    tx = make_tx(card_id=card_id, decision="block", score=0.95)
    case = Case.objects.create(card_id=card_id, decision="block", top_score=0.95, **fields)
    tx.case = case
    tx.save(update_fields=["case"])
    return case


def test_an_existing_card_id_goes_straight_to_the_card_page(alice_client: Client):
    make_tx(card_id="4000-1234", merchant_id="shop")

    response = searching(alice_client, " 4000-1234 ")

    assert response.status_code == 302
    assert response["Location"] == reverse("dashboards:card", args=["4000-1234"])


def test_an_existing_merchant_id_goes_straight_to_the_merchant_page(alice_client: Client):
    make_tx(card_id="c", merchant_id="acme/berlin")

    response = searching(alice_client, "acme/berlin")

    assert response["Location"] == reverse("dashboards:merchant", args=["acme/berlin"])


def test_an_external_id_goes_to_its_card_page_at_the_row_of_the_transaction(alice_client: Client):
    tx = make_tx(external_id="pay-77", card_id="c-77")

    response = searching(alice_client, "pay-77")

    assert response["Location"] == reverse("dashboards:card", args=["c-77"]) + f"?tx={tx.id}#tx-{tx.id}"


@pytest.mark.parametrize("typed", ["#{}", "{}"])
def test_a_case_number_with_or_without_its_hash_goes_to_the_case(alice_client: Client, typed: str):
    case = a_case()

    response = searching(alice_client, typed.format(case.id))

    assert response["Location"] == reverse("dashboards:case", args=[case.id])


def test_an_id_that_names_two_things_lists_both_instead_of_guessing(alice_client: Client):
    make_tx(card_id="same", merchant_id="same")

    response = searching(alice_client, "same")

    assert response.status_code == 200
    exact = response.content.decode().split('id="search-exact"')[1].split("</section>")[0]
    assert reverse("dashboards:card", args=["same"]) in exact
    assert reverse("dashboards:merchant", args=["same"]) in exact


def test_the_beginning_of_ids_lists_matches_grouped_by_kind(alice_client: Client):
    make_tx(external_id="ab-tx-1", card_id="ab-card-1", merchant_id="ab-shop")
    make_tx(external_id="ab-tx-2", card_id="ab-card-2", merchant_id="zz-shop")
    make_tx(external_id="zz-tx", card_id="zz-ab", merchant_id="zz-ab-shop")  # "ab" inside, not at the start

    html = searching(alice_client, "ab").content.decode()

    assert group(html, "cards") == ["ab-card-1", "ab-card-2"]
    assert group(html, "merchants") == ["ab-shop"]
    assert group(html, "transactions") == ["ab-tx-1", "ab-tx-2"]
    assert reverse("dashboards:card", args=["ab-card-1"]) in html
    assert reverse("dashboards:merchant", args=["ab-shop"]) in html


def test_a_card_with_many_transactions_is_listed_once_and_long_groups_are_cut(alice_client: Client):
    for _ in range(5):
        make_tx(card_id="many-0")
    for n in range(1, search.MATCHES + 3):
        make_tx(card_id=f"many-{n:02}")

    found = search.find("many")
    html = searching(alice_client, "many").content.decode()

    assert found.cards == ["many-0", *[f"many-{n:02}" for n in range(1, search.MATCHES)]]
    assert "cards" in found.more
    assert "type more of the id" in html


def test_matching_is_by_characters_not_patterns_and_respects_capitals(alice_client: Client):
    make_tx(card_id="50%_off")
    make_tx(card_id="50xxoff")
    make_tx(card_id="ABC")

    assert search.find("50%_").cards == ["50%_off"]
    assert search.find("abc").cards == []
    assert search.find("AB").cards == ["ABC"]


def test_case_numbers_beginning_with_the_digits_are_listed_in_order():
    for number in (97, 970, 971, 9700, 98, 197):
        a_case(card_id=f"cn-{number}", id=number, status="fraud")

    assert [case.id for case in search.find("97").cases] == [97, 970, 971, 9700]
    assert [case.id for case in search.find("#9").cases] == [97, 98, 970, 971, 9700]


def test_a_card_known_only_from_a_list_entry_is_found(alice_client: Client):
    ListEntry.objects.create(kind="block", entity="card", value="listed-only", reason="leaked")

    response = searching(alice_client, "listed-only")

    assert response["Location"] == reverse("dashboards:card", args=["listed-only"])


@pytest.mark.parametrize("q", ["nothing-like-this", "a\x00b", "x" * 200, "\U0010ffff"])
def test_a_search_that_matches_nothing_says_so(alice_client: Client, q: str):
    make_tx(card_id="something")

    response = searching(alice_client, q)

    assert response.status_code == 200
    assert response.context["found"].count == 0
    assert b'id="search-nothing"' in response.content


def test_an_empty_search_shows_the_form(alice_client: Client):
    response = searching(alice_client, "")

    assert response.status_code == 200
    assert b'id="search-q"' in response.content and b"search-results" not in response.content


def test_the_top_bar_has_the_search_box(alice_client: Client):
    html = alice_client.get(reverse("dashboards:queue")).content.decode()

    assert f'action="{reverse("dashboards:search")}"' in html and 'id="nav-search-q"' in html


def test_an_account_without_a_role_finds_nothing(django_user_model: type[User]):
    make_tx(card_id="hidden-card")
    client = Client()
    client.force_login(django_user_model.objects.create_user("norole"))

    response = searching(client, "hidden-card")

    assert response.status_code == 403
    assert b"hidden-card" not in response.content and b"nav-search-q" not in response.content


def test_anonymous_searches_go_to_the_login_page():
    response = searching(Client(), "x")

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(
    ("prefix", "bound"),
    [("ab", "ac"), ("a\ud7ff", "a\ue000"), ("a\U0010ffff", "b"), ("\U0010ffff", None)],
)
def test_the_upper_bound_is_the_least_string_above_every_string_with_the_prefix(prefix: str, bound: str | None):
    assert search.upper_bound(prefix) == bound


def test_ids_at_the_edges_of_the_range_are_found_and_their_neighbours_are_not():
    for card_id in ("ab", "ab\ue000", "ab\U0010ffff", "ac", "aa\U0010ffff"):
        make_tx(card_id=card_id)

    assert search.find("ab").cards == ["ab", "ab\ue000", "ab\U0010ffff"]


def test_the_search_page_exports_the_cases_and_transactions_its_id_selects(alice_client: Client):
    a_case("card-export-1"), a_case("other-card")

    body = searching(alice_client, "card-exp").content.decode()
    link = re.search(r'id="export-cases" href="([^"]+)"', body)[1].replace("&amp;", "&")
    exported = b"".join(alice_client.get(link).streaming_content).decode()

    assert "card-export-1" in exported and "other-card" not in exported
    assert len(exported.strip().splitlines()) == 2  # the header and the one case
    assert 'id="export-transactions" href="/cases/export/transactions.csv?status=any&amp;q=card-exp"' in body
