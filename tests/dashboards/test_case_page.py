"""One case: its page, and the htmx actions analysts take on it."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from dashboards import broadcast
from scoring.features import FEATURES
from scoring.models import CaseEvent, CaseStatus, ModelVersion
from tests.dashboards.conftest import HTMX, make_case, make_tx

pytestmark = pytest.mark.django_db


# --- case actions ---------------------------------------------------------------------------------


def test_claim_returns_the_updated_row(alice_client: Client) -> None:
    case = make_case()

    response = alice_client.post(f"/cases/{case.id}/claim", **HTMX)

    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith(f'<article id="case-{case.id}"')
    assert "claimed by alice (you)" in body
    assert ">Release<" in body
    case.refresh_from_db()
    assert case.assignee.username == "alice"


def test_claim_of_a_case_held_by_someone_else_is_refused(alice_client: Client, bob: User) -> None:
    case = make_case()
    case.assignee = bob
    case.save()

    response = alice_client.post(f"/cases/{case.id}/claim", **HTMX)

    assert response.status_code == 409
    body = response.content.decode()
    assert f"case {case.id} is claimed by bob" in body
    assert 'role="alert"' in body
    case.refresh_from_db()
    assert case.assignee == bob


def test_release_gives_the_case_back(alice_client: Client, alice: User) -> None:
    case = make_case()
    case.assignee = alice
    case.save()

    response = alice_client.post(f"/cases/{case.id}/release", **HTMX)

    assert response.status_code == 200
    assert "unclaimed" in response.content.decode()
    case.refresh_from_db()
    assert case.assignee is None


def test_resolve_labels_the_transaction(alice_client: Client) -> None:
    case = make_case()

    response = alice_client.post(f"/cases/{case.id}/resolve", {"verdict": "fraud", "note": "card reported"}, **HTMX)

    assert response.status_code == 200
    assert "Confirmed fraud" in response.content.decode()
    case.refresh_from_db()
    assert case.status == CaseStatus.FRAUD
    assert case.note == "card reported"
    assert case.alerts.get().is_fraud is True
    assert case.alerts.get().labeled_at is not None


def test_resolve_as_legitimate_labels_the_transaction_legitimate(alice_client: Client) -> None:
    case = make_case()

    alice_client.post(f"/cases/{case.id}/resolve", {"verdict": "legitimate"}, **HTMX)

    case.refresh_from_db()
    assert case.status == CaseStatus.LEGITIMATE
    assert case.alerts.get().is_fraud is False


def test_resolve_without_a_verdict_is_refused(alice_client: Client) -> None:
    case = make_case()

    response = alice_client.post(f"/cases/{case.id}/resolve", {"verdict": "maybe"}, **HTMX)

    assert response.status_code == 422
    assert "choose fraud or legitimate" in response.content.decode()
    case.refresh_from_db()
    assert case.is_open


def test_resolve_of_a_resolved_case_is_refused(alice_client: Client) -> None:
    case = make_case()
    alice_client.post(f"/cases/{case.id}/resolve", {"verdict": "fraud"}, **HTMX)

    response = alice_client.post(f"/cases/{case.id}/resolve", {"verdict": "legitimate"}, **HTMX)

    assert response.status_code == 409
    assert "already resolved" in response.content.decode()


def test_plain_form_post_redirects_back(alice_client: Client) -> None:
    case = make_case()

    response = alice_client.post(f"/cases/{case.id}/claim", HTTP_REFERER=f"http://testserver/cases/{case.id}/")

    assert response.status_code == 302
    assert response["Location"] == f"http://testserver/cases/{case.id}/"


def test_plain_form_post_without_a_safe_referer_goes_to_the_queue(alice_client: Client) -> None:
    case = make_case()

    response = alice_client.post(f"/cases/{case.id}/claim", HTTP_REFERER="https://evil.example/")

    assert response["Location"] == "/cases/"


def test_refused_plain_form_post_shows_the_reason_on_the_next_page(alice_client: Client, bob: User) -> None:
    case = make_case()
    case.assignee = bob
    case.save()

    response = alice_client.post(f"/cases/{case.id}/claim", follow=True)

    assert f"case {case.id} is claimed by bob" in response.content.decode()


def test_actions_on_an_unknown_case_are_not_found(alice_client: Client) -> None:
    response = alice_client.post("/cases/999999/claim", **HTMX)

    assert response.status_code == 404


def test_actions_refuse_get(alice_client: Client) -> None:
    case = make_case()

    assert alice_client.get(f"/cases/{case.id}/claim").status_code == 405


def test_claim_tells_every_dashboard_after_the_commit(
    alice_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    case = make_case()

    def claim() -> None:
        with django_capture_on_commit_callbacks(execute=True):
            alice_client.post(f"/cases/{case.id}/claim", **HTMX)

    async def claim_while_listening() -> dict[str, Any]:
        # One event loop for the listener: the Redis pub/sub layer's channels belong to the loop they were made in.
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(broadcast.DASHBOARD_GROUP, channel)
        try:
            await sync_to_async(claim)()
            return await asyncio.wait_for(layer.receive(channel), 5)
        finally:
            await layer.group_discard(broadcast.DASHBOARD_GROUP, channel)

    message = async_to_sync(claim_while_listening)()
    assert message["type"] == broadcast.CASE_EVENT
    assert message["case"]["id"] == case.id
    assert message["case"]["assignee"] == "alice"


def test_case_row_endpoint_renders_the_row_for_the_asking_analyst(alice_client: Client, bob: User) -> None:
    case = make_case()
    case.assignee = bob
    case.save()

    body = alice_client.get(f"/cases/{case.id}/row", **HTMX).content.decode()

    assert body.lstrip().startswith(f'<article id="case-{case.id}"')
    assert "claimed by bob" in body
    assert ">Claim<" not in body
    assert ">Fraud<" not in body


# --- case page ----------------------------------------------------------------------------------


def feature_values(**named: float) -> list[float]:
    """A stored feature row in FEATURES order: the named values, NaN (missing) elsewhere."""
    values = [math.nan] * len(FEATURES)
    for name, value in named.items():
        values[FEATURES.index(name)] = value
    return values


def test_case_page_shows_reasons_in_words(alice_client: Client) -> None:
    ModelVersion.objects.create(version="v-words", artifact=b"", features=FEATURES)
    case = make_case(
        reasons=[
            {"feature": "amount_vs_card_avg_30d", "contribution": 1.84},
            {"feature": "seconds_since_card_prev", "contribution": 0.4},
            {"feature": "is_night", "contribution": -0.2},
        ],
        features=feature_values(amount_vs_card_avg_30d=7.5, is_night=0.0, card_count_1d=3.0),
        model_version="v-words",
    )

    response = alice_client.get(f"/cases/{case.id}/")
    body = response.content.decode()

    assert "Amount is 7.5× this card&#x27;s 30-day average" in body
    assert "No earlier transaction of this card in 30 days" in body
    assert "Made during the day" in body
    assert "+1.84 towards fraud" in body
    # Every value the model saw, by name, missing ones as missing.
    assert response.context["features"]["card_count_1d"] == 3.0
    assert response.context["features"]["seconds_since_card_prev"] is None
    assert list(response.context["features"]) == FEATURES


def test_case_page_shows_the_float32_values_the_model_saw_as_their_shortest_decimals(alice_client: Client) -> None:
    ModelVersion.objects.create(version="v-f32", artifact=b"", features=FEATURES)
    saw = float(np.float32(354.02))  # what a float32 feature widens to: 354.0199890136719
    case = make_case(features=feature_values(amount=saw, card_sum_1d=float(np.float32(1444.69))), model_version="v-f32")

    response = alice_client.get(f"/cases/{case.id}/")
    body = response.content.decode()

    assert response.context["features"]["amount"] == 354.02
    assert np.float32(response.context["features"]["amount"]) == np.float32(saw)  # the same float32
    assert ">354.02<" in body and ">1444.69<" in body
    assert "354.0200" not in body and "1444.6899" not in body


def test_case_page_shows_imported_history_of_the_card_as_history_not_as_approved(alice_client: Client) -> None:
    case = make_case(card_id="card-h")
    make_tx(card_id="card-h", external_id="bank-a-1", model_version="imported:bank-a", score=0.0, reasons=[])

    body = alice_client.get(f"/cases/{case.id}/").content.decode()
    row = body.split('data-field="external_id" title="bank-a-1"', 1)
    head, tail = row[0].rsplit("<tr ", 1)[1], row[1].split("</tr>", 1)[0]

    assert "tx-imported" in head
    assert ">History<" in tail and ">Approve<" not in tail and "0.000" not in tail


def test_case_page_of_a_transaction_whose_model_version_is_gone_shows_reasons_without_values(
    alice_client: Client,
) -> None:
    case = make_case(
        reasons=[{"feature": "amount_vs_card_avg_30d", "contribution": 1.84}],
        features=feature_values(amount_vs_card_avg_30d=7.5),
        model_version="v-deleted",
    )

    response = alice_client.get(f"/cases/{case.id}/")

    assert response.status_code == 200
    assert "Amount vs card avg 30d" in response.content.decode()
    assert response.context["features"] == {}


def test_case_page_says_list_reasons_in_words(alice_client: Client) -> None:
    case = make_case(reasons=[{"feature": "block_list_card", "contribution": 0.0}])

    body = alice_client.get(f"/cases/{case.id}/").content.decode()

    assert "Card is on the block list" in body


def test_case_page_names_the_rules_that_hit_before_the_models_reasons(alice_client: Client) -> None:
    case = make_case(rules=[{"name": "night_atm", "action": "block"}], shadow_rules=["watch_new_cards"])

    body = alice_client.get(f"/cases/{case.id}/").content.decode()

    rules = body[body.index('id="rules-hit"') : body.index("</ol>", body.index('id="rules-hit"'))]
    assert 'data-rule="night_atm"' in rules and "badge-block" in rules
    assert 'data-rule="watch_new_cards"' in rules and "changed nothing" in rules
    assert 'href="/rules/night_atm/"' in rules and 'href="/rules/watch_new_cards/"' in rules  # each to its page
    assert body.index('id="rules-hit"') < body.index('data-feature="amount"')


def test_case_page_without_rule_hits_has_no_rules_list(alice_client: Client) -> None:
    case = make_case()

    body = alice_client.get(f"/cases/{case.id}/").content.decode()

    assert 'id="rules-hit"' not in body


def test_case_page_shows_every_field_of_the_transaction(alice_client: Client) -> None:
    case = make_case(country="DE", channel="ecom", mcc="5411", external_id="order-777", card_id="card-1")

    body = alice_client.get(f"/cases/{case.id}/").content.decode()

    for text in ("order-777", "DE", "E-commerce", "5411", "0.9500", "card-1", "shop-1"):
        assert text in body


def test_case_page_shows_the_cards_twenty_latest_transactions(alice_client: Client) -> None:
    now = timezone.now()
    older = [make_tx(card_id="card-9", timestamp=now - timedelta(minutes=30 - i)) for i in range(25)]
    other = make_tx(card_id="card-other")
    case = make_case(card_id="card-9", timestamp=now)

    response = alice_client.get(f"/cases/{case.id}/")

    shown = [item["id"] for item in response.context["history"]]
    assert shown[0] == case.alerts.get().id
    assert shown[1:] == [tx.id for tx in reversed(older)][:19]
    assert other.id not in shown


def test_case_page_shows_the_merchants_figures(alice_client: Client) -> None:
    now = timezone.now()
    make_tx(merchant_id="shop-7", timestamp=now - timedelta(hours=2))
    make_tx(merchant_id="shop-7", timestamp=now - timedelta(days=3), decision="review", score=0.7)
    make_tx(merchant_id="shop-7", timestamp=now - timedelta(days=30), is_fraud=True)
    case = make_case(merchant_id="shop-7", timestamp=now)

    merchant = alice_client.get(f"/cases/{case.id}/").context["merchant"]

    assert merchant["count_24h"] == 2
    assert merchant["count_7d"] == 3
    assert merchant["flagged_share_7d"] == pytest.approx(2 / 3)
    assert merchant["frauds"] == 1
    assert merchant["total"] == 4


def test_case_page_shows_the_audit_trail(alice_client: Client, bob: User) -> None:
    case = make_case()
    CaseEvent.objects.create(case=case, actor=None, action="opened")
    CaseEvent.objects.create(case=case, actor=bob, action="claimed")
    CaseEvent.objects.create(case=case, actor=bob, action="fraud", note="customer confirmed")

    body = alice_client.get(f"/cases/{case.id}/").content.decode()

    audit = body.split('id="audit"', 1)[1]
    assert audit.index("opened the case") < audit.index("claimed the case") < audit.index("resolved it as")
    assert "customer confirmed" in audit
    assert "Scoring service" in audit


def test_case_page_has_the_action_buttons(alice_client: Client) -> None:
    case = make_case()

    body = alice_client.get(f"/cases/{case.id}/").content.decode()

    assert f'id="case-{case.id}"' in body
    for label in (">Claim<", ">Fraud<", ">Legitimate<"):
        assert label in body


def test_unknown_case_page_is_not_found(alice_client: Client) -> None:
    response = alice_client.get("/cases/424242/")

    assert response.status_code == 404
    assert "Nothing here" in response.content.decode()
