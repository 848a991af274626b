"""Labels after the fact: POST /api/v1/labels (chargebacks, confirmations) and their effect on features."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from channels.db import database_sync_to_async

from scoring import cases
from scoring.models import Case, CaseEvent, MerchantHour, Transaction
from tests.conftest import tx_body

pytestmark = pytest.mark.django_db(transaction=True)
PAID_AT = "2026-11-02T12:00:00Z"  # before the report times these tests send


async def test_a_chargeback_labels_the_transaction_as_fraud(api, model_version):
    await api.post("/api/v1/transactions", tx_body(external_id="cb-1", timestamp=PAID_AT))

    response = await api.post(
        "/api/v1/labels", {"external_id": "cb-1", "is_fraud": True, "reported_at": "2026-11-20T10:00:00Z"}
    )

    assert response.status_code == 200
    assert response.json()["is_fraud"] is True
    tx = await Transaction.objects.aget(external_id="cb-1")
    assert tx.is_fraud is True
    assert tx.labeled_at.isoformat().startswith("2026-11-20T10:00:00")


async def test_a_report_time_with_any_offset_iso_8601_allows_is_stored_as_its_instant(api, model_version):
    await api.post("/api/v1/transactions", tx_body(external_id="cb-tz", timestamp=PAID_AT))

    response = await api.post(
        "/api/v1/labels", {"external_id": "cb-tz", "is_fraud": True, "reported_at": "2026-11-20T10:00:00+18:19"}
    )

    assert response.status_code == 200
    tx = await Transaction.objects.aget(external_id="cb-tz")
    assert tx.labeled_at == datetime(2026, 11, 19, 15, 41, tzinfo=UTC)


async def test_a_report_time_in_the_future_is_422_and_labels_nothing(api, model_version):
    await api.post("/api/v1/transactions", tx_body(external_id="cb-future"))
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()

    response = await api.post("/api/v1/labels", {"external_id": "cb-future", "is_fraud": True, "reported_at": later})

    assert response.status_code == 422
    assert response.json()["fields"]["reported_at"] == ["is more than 5 minutes in the future"]
    assert (await Transaction.objects.aget(external_id="cb-future")).is_fraud is None


async def test_a_report_time_before_1970_is_422(api, model_version):
    await api.post("/api/v1/transactions", tx_body(external_id="cb-past"))

    response = await api.post(
        "/api/v1/labels", {"external_id": "cb-past", "is_fraud": True, "reported_at": "0001-01-01T00:00:00+03:04"}
    )

    assert response.status_code == 422
    assert response.json()["fields"]["reported_at"] == ["is before 1970-01-01"]


async def test_the_same_label_twice_changes_nothing(api, model_version):
    await api.post("/api/v1/transactions", tx_body(external_id="cb-2"))

    first = await api.post("/api/v1/labels", {"external_id": "cb-2", "is_fraud": True})
    again = await api.post("/api/v1/labels", {"external_id": "cb-2", "is_fraud": True})

    assert first.json() == again.json()
    assert (await MerchantHour.objects.aget()).fraud_count == 1


async def test_a_label_for_an_unknown_transaction_is_404(api, model_version):
    response = await api.post("/api/v1/labels", {"external_id": "nobody", "is_fraud": True})

    assert response.status_code == 404
    assert "nobody" in response.json()["error"]


async def test_labels_need_an_api_key(api, model_version):
    response = await api.post("/api/v1/labels", {"external_id": "x", "is_fraud": True}, headers={})

    assert response.status_code == 401


async def test_an_invalid_label_is_422(api, model_version):
    response = await api.post("/api/v1/labels", {"external_id": "x", "is_fraud": "maybe"})

    assert response.status_code == 422
    assert "is_fraud" in response.json()["fields"]


# --- labels and cases agree ----------------------------------------------------------------------------


async def flagged(api, external_id: str) -> int:
    """A transaction the model flags, stored through the API; its case's id."""
    created = await api.post("/api/v1/transactions", tx_body(external_id=external_id, amount="9000.00"))
    assert created.json()["case_id"], created.json()
    return created.json()["case_id"]


async def trail(case_id: int) -> list[tuple[str | None, str, str]]:
    events = CaseEvent.objects.filter(case_id=case_id).select_related("actor")
    return [(e.actor.username if e.actor else None, e.action, e.via) async for e in events]


@pytest.fixture
def listening(monkeypatch):
    """The case events pushed to the dashboards after each commit."""
    pushed: list[dict] = []
    monkeypatch.setattr("dashboards.broadcast.case_changed_on_commit", lambda event: pushed.append(event))
    return pushed


@pytest.mark.parametrize(("is_fraud", "status"), [(True, "fraud"), (False, "legitimate")])
async def test_a_label_on_an_open_case_resolves_it_by_the_chargeback_feed(
    api, model_version, listening, is_fraud, status
):
    case_id = await flagged(api, "cb-open")

    response = await api.post("/api/v1/labels", {"external_id": "cb-open", "is_fraud": is_fraud})

    assert response.status_code == 200
    case = await Case.objects.aget(pk=case_id)
    assert (case.status, case.resolved_by_id, case.resolved_via) == (status, None, "chargeback feed")
    assert case.resolved_at is not None
    assert (await trail(case_id))[-1] == (None, status, "chargeback feed")
    assert [(event["id"], event["status"]) for event in listening] == [(case_id, status)]


async def test_the_same_label_again_leaves_the_case_and_its_trail_alone(api, model_version, listening):
    case_id = await flagged(api, "cb-twice")
    await api.post("/api/v1/labels", {"external_id": "cb-twice", "is_fraud": True})

    await api.post("/api/v1/labels", {"external_id": "cb-twice", "is_fraud": True})

    assert [action for _, action, _ in await trail(case_id)] == ["opened", "fraud"]
    assert len(listening) == 1


async def test_a_fraud_label_overturns_an_analysts_legitimate_verdict_without_erasing_it(
    api, model_version, analyst, listening
):
    case_id = await flagged(api, "cb-over")
    await database_sync_to_async(cases.resolve)(case_id, user=analyst, is_fraud=False, note="known customer")

    response = await api.post("/api/v1/labels", {"external_id": "cb-over", "is_fraud": True})

    assert response.status_code == 200
    case = await Case.objects.aget(pk=case_id)
    assert case.overturned is True
    assert (case.status, case.resolved_by_id, case.note) == ("legitimate", analyst.pk, "known customer")
    assert (await case.alerts.aget()).is_fraud is True
    assert (await trail(case_id))[-2:] == [("alice", "legitimate", ""), (None, "overturned", "chargeback feed")]
    assert [event["id"] for event in listening] == [case_id, case_id]


async def test_a_legitimate_label_does_not_overturn_a_legitimate_verdict(api, model_version, analyst):
    case_id = await flagged(api, "cb-agree")
    await database_sync_to_async(cases.resolve)(case_id, user=analyst, is_fraud=False)

    await api.post("/api/v1/labels", {"external_id": "cb-agree", "is_fraud": False})

    assert (await Case.objects.aget(pk=case_id)).overturned is False


async def test_a_report_time_before_the_transaction_is_422_naming_reported_at(api, model_version):
    case_id = await flagged(api, "cb-early")
    paid = (await Transaction.objects.aget(external_id="cb-early")).timestamp
    early = (paid - timedelta(seconds=1)).isoformat()

    response = await api.post("/api/v1/labels", {"external_id": "cb-early", "is_fraud": True, "reported_at": early})

    assert response.status_code == 422
    assert response.json()["fields"] == {"reported_at": ["is before the transaction's timestamp"]}
    assert (await Transaction.objects.aget(external_id="cb-early")).is_fraud is None
    assert (await Case.objects.aget(pk=case_id)).is_open


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, None])
async def test_is_fraud_must_be_a_json_boolean(api, model_version, value):
    await api.post("/api/v1/transactions", tx_body(external_id="cb-bool"))

    response = await api.post("/api/v1/labels", {"external_id": "cb-bool", "is_fraud": value})

    assert response.status_code == 422
    assert "is_fraud" in response.json()["fields"]
    assert (await Transaction.objects.aget(external_id="cb-bool")).is_fraud is None
