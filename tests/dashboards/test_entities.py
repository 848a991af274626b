"""The card and merchant pages: their transactions (paged, labeled), chart, figures, list entries, cases, links."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from urllib.parse import unquote, urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import resolve, reverse
from django.utils import timezone

from dashboards import entities
from scoring.models import Case, ListEntry, Transaction
from tests.dashboards.conftest import make_tx

pytestmark = pytest.mark.django_db


def card_url(card_id: str, query: str = "") -> str:
    return reverse("dashboards:card", args=[card_id]) + query


def row_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="tx-(\d+)"', html)]


def flagged_case(tx: Transaction, **fields) -> Case:
    """A case with `tx` as its alert, as the ingest write would open it."""
    values = {"card_id": tx.card_id, "decision": tx.decision, "top_score": tx.score} | fields
    case = Case.objects.create(**values)
    tx.case = case
    tx.save(update_fields=["case"])
    return case


def test_card_page_lists_the_cards_transactions_newest_first_scored_and_imported_alike(alice_client: Client):
    now = timezone.now()
    old = make_tx(card_id="c-1", timestamp=now - timedelta(days=40), model_version="imported:history.csv", score=0)
    new = make_tx(card_id="c-1", timestamp=now - timedelta(minutes=5))
    middle = make_tx(card_id="c-1", timestamp=now - timedelta(days=1), decision="review", score=0.6)
    make_tx(card_id="c-2")

    response = alice_client.get(card_url("c-1"))

    assert response.status_code == 200
    assert row_ids(response.content.decode()) == [new.id, middle.id, old.id]
    assert "3 transactions stored" in response.content.decode()


def test_card_page_pages_its_transactions_and_keeps_the_last_page_for_a_page_past_the_end(alice_client: Client):
    now = timezone.now()
    made = [make_tx(card_id="busy", timestamp=now - timedelta(minutes=i)) for i in range(entities.PAGE_SIZE + 7)]

    first = row_ids(alice_client.get(card_url("busy")).content.decode())
    second = alice_client.get(card_url("busy", "?page=2")).content.decode()
    past_the_end = row_ids(alice_client.get(card_url("busy", "?page=99")).content.decode())

    assert first == [tx.id for tx in made[: entities.PAGE_SIZE]]
    assert row_ids(second) == [tx.id for tx in made[entities.PAGE_SIZE :]]
    assert "page 2 of 2" in second and 'id="page-newer"' in second and 'id="page-older"' not in second
    assert past_the_end == row_ids(second)


def test_a_transaction_asked_for_by_id_is_shown_on_the_page_that_holds_it(alice_client: Client):
    now = timezone.now()
    made = [make_tx(card_id="busy", timestamp=now - timedelta(minutes=i)) for i in range(entities.PAGE_SIZE + 3)]
    wanted = made[entities.PAGE_SIZE + 1]

    html = alice_client.get(card_url("busy", f"?tx={wanted.id}")).content.decode()

    assert wanted.id in row_ids(html)
    assert f'<tr id="tx-{wanted.id}"' in html and 'aria-current="true"' in html
    assert entities.page_holding("card", made[0]) == 1 and entities.page_holding("card", wanted) == 2


def test_labels_show_what_is_known_and_where_it_came_from(alice_client: Client):
    analyst = make_tx(card_id="lab", is_fraud=True, label_source="analyst")
    chargeback = make_tx(card_id="lab", is_fraud=False, label_source="chargeback")
    imported = make_tx(card_id="lab", is_fraud=True, model_version="imported:h.csv", score=0)
    unknown = make_tx(card_id="lab")

    html = alice_client.get(card_url("lab")).content.decode()

    def label_cell(tx: Transaction) -> str:
        return re.search(rf'<tr id="tx-{tx.id}".*?<td class="col-label">(.*?)</td>', html, re.S)[1]

    assert "Fraud" in label_cell(analyst) and "analyst" in label_cell(analyst)
    assert "Legitimate" in label_cell(chargeback) and "chargeback" in label_cell(chargeback)
    assert "Fraud" in label_cell(imported) and "import" in label_cell(imported)
    assert "Unknown" in label_cell(unknown) and "label-origin" not in label_cell(unknown)


def test_rows_link_the_other_party_and_the_case(alice_client: Client):
    tx = make_tx(card_id="c-link", merchant_id="m/with slash?", decision="block", score=0.97)
    case = flagged_case(tx)

    card_html = alice_client.get(card_url("c-link")).content.decode()
    merchant_html = alice_client.get(reverse("dashboards:merchant", args=["m/with slash?"])).content.decode()

    assert f'href="{reverse("dashboards:merchant", args=["m/with slash?"])}"' in card_html
    assert f'href="{reverse("dashboards:case", args=[case.id])}"' in card_html
    assert f'href="{card_url("c-link")}"' in merchant_html


@pytest.mark.parametrize("card_id", ["a/b", "x?y=1#z", "50% off", "ключ карты", "..", "slash/at/end/"])
def test_any_id_the_api_accepts_has_a_page_reached_by_its_url(alice_client: Client, card_id: str):
    make_tx(card_id=card_id)
    url = card_url(card_id)

    assert resolve(unquote(urlsplit(url).path)).kwargs == {"card_id": card_id}
    response = alice_client.get(url)

    assert response.status_code == 200
    assert response.context["entity_id"] == card_id


def test_the_chart_marks_flagged_and_fraud_points_and_keeps_currencies_apart(alice_client: Client):
    now = timezone.now()
    make_tx(card_id="ch", amount=Decimal("10.00"), timestamp=now - timedelta(hours=3))
    make_tx(card_id="ch", amount=Decimal("900.00"), decision="block", score=0.95, timestamp=now - timedelta(hours=2))
    make_tx(card_id="ch", amount=Decimal("50.00"), is_fraud=True, label_source="chargeback", timestamp=now)
    make_tx(card_id="ch", amount=Decimal("1200"), currency="JPY", timestamp=now)

    html = alice_client.get(card_url("ch")).content.decode()
    charts, left_out = entities.amount_charts("card", "ch")

    assert [chart.currency for chart in charts] == ["EUR", "JPY"] and left_out == {}
    eur = charts[0]
    assert (eur.flagged, eur.frauds, eur.top) == (1, 1, "1,000")
    assert [p.x for p in eur.points] == [0.0, 33.33, 100.0]
    assert html.count("point-block") == 1 and html.count("point-fraud") == 1
    assert 'data-currency="JPY"' in html


def test_card_figures_are_the_features_computed_for_a_payment_made_now(alice_client: Client):
    now = timezone.now()
    make_tx(card_id="fig", merchant_id="m1", amount=Decimal("10"), timestamp=now - timedelta(minutes=30))
    make_tx(card_id="fig", merchant_id="m2", amount=Decimal("30"), timestamp=now - timedelta(hours=5))
    make_tx(card_id="fig", merchant_id="m1", amount=Decimal("100"), timestamp=now - timedelta(days=10))
    make_tx(card_id="fig", amount=Decimal("7"), timestamp=now - timedelta(days=31))  # outside every window

    figures = entities.card_figures("fig", now=now)

    by_window = {w["window"]: (w["count"], w["sum"], w["average"]) for w in figures["windows"]}
    assert by_window == {
        "1 hour": (1, 10.0, 10.0),
        "1 day": (2, 40.0, 20.0),
        "7 days": (2, 40.0, 20.0),
        "30 days": (3, 140.0, 140 / 3),
    }
    assert figures["merchants_1d"] == "card used at 2 merchants in the last day"
    assert figures["since_previous"] == "30 min since this card's previous transaction"
    assert figures["currencies"] == ["EUR"]


def test_card_figures_show_what_the_model_saw_at_its_latest_scored_transaction(alice_client: Client, model_version):
    values = [0.0] * len(model_version.features)
    values[model_version.features.index("card_count_1h")] = 4.0
    make_tx(card_id="seen", model_version=model_version.version, features=values)

    figures = entities.card_figures("seen", now=timezone.now())
    html = alice_client.get(card_url("seen")).content.decode()

    assert "4 transactions on this card in the last 1h" in figures["latest_seen"]
    assert "What the model saw at its latest scored transaction" in html


def test_merchant_page_shows_its_figures_and_the_cards_with_confirmed_fraud_there(alice_client: Client):
    make_tx(merchant_id="shop", card_id="good")
    make_tx(merchant_id="shop", card_id="bad", is_fraud=True, label_source="analyst")
    make_tx(merchant_id="elsewhere", card_id="other-bad", is_fraud=True, label_source="analyst")

    response = alice_client.get(reverse("dashboards:merchant", args=["shop"]))
    linked = response.content.decode().split('id="entity-linked"')[1]

    assert response.context["figures"]["total"] == 2 and response.context["figures"]["frauds"] == 1
    assert card_url("bad") in linked
    assert card_url("good") not in linked and "other-bad" not in linked


def test_card_page_links_its_merchants_most_used_first(alice_client: Client):
    make_tx(card_id="roams", merchant_id="rare")
    for _ in range(3):
        make_tx(card_id="roams", merchant_id="usual")

    response = alice_client.get(card_url("roams"))

    assert [m["merchant_id"] for m in response.context["linked"]] == ["usual", "rare"]
    linked = response.content.decode().split('id="entity-linked"')[1]
    assert linked.index(reverse("dashboards:merchant", args=["usual"])) < linked.index("/merchants/rare/")


def test_list_entries_of_the_card_are_shown(alice_client: Client, alice: User):
    make_tx(card_id="listed")
    ListEntry.objects.create(kind="block", entity="card", value="listed", reason="stolen wallet", created_by=alice)
    ListEntry.objects.create(kind="allow", entity="merchant", value="listed", reason="not the card's")

    html = alice_client.get(card_url("listed")).content.decode()

    assert "stolen wallet" in html and "Always block" in html
    assert "not the card's" not in html


def test_a_card_only_on_a_list_has_a_page_and_an_unknown_card_has_none(alice_client: Client):
    ListEntry.objects.create(kind="block", entity="card", value="never-used", reason="leaked")

    assert alice_client.get(card_url("never-used")).status_code == 200
    assert alice_client.get(card_url("nobody-knows")).status_code == 404


def test_card_and_merchant_pages_list_their_cases(alice_client: Client):
    first = flagged_case(make_tx(card_id="cased", merchant_id="m-cased", decision="block", score=0.95), status="fraud")
    second = flagged_case(make_tx(card_id="cased", merchant_id="m-other", decision="review", score=0.6))
    flagged_case(make_tx(card_id="someone-else", merchant_id="m-other", decision="review", score=0.6))

    card_cases = alice_client.get(card_url("cased")).context["cases"]
    merchant_cases = alice_client.get(reverse("dashboards:merchant", args=["m-cased"])).context["cases"]

    assert {case.id for case in card_cases} == {first.id, second.id}
    assert [case.id for case in merchant_cases] == [first.id]


def test_the_room_for_block_buttons_is_on_both_pages(alice_client: Client):
    make_tx(card_id="c-room", merchant_id="m-room")

    for url in (card_url("c-room"), reverse("dashboards:merchant", args=["m-room"])):
        assert 'id="entity-actions"' in alice_client.get(url).content.decode()


def test_an_account_without_a_role_sees_no_card_or_merchant(django_user_model: type[User]):
    make_tx(card_id="secret", merchant_id="secret-shop")
    client = Client()
    client.force_login(django_user_model.objects.create_user("norole"))

    for url in (card_url("secret"), reverse("dashboards:merchant", args=["secret-shop"])):
        response = client.get(url)
        assert response.status_code == 403
        assert b"secret" not in response.content


def test_the_case_page_and_the_queue_link_card_and_merchant(alice_client: Client):
    tx = make_tx(card_id="c/q", merchant_id="m?q", decision="block", score=0.95)
    case = flagged_case(tx)
    card, merchant = card_url("c/q"), reverse("dashboards:merchant", args=["m?q"])

    case_html = alice_client.get(reverse("dashboards:case", args=[case.id])).content.decode()
    queue_html = alice_client.get(reverse("dashboards:queue")).content.decode()

    assert f'href="{card}"' in case_html and f'href="{merchant}"' in case_html
    assert f'href="{card}"' in queue_html
