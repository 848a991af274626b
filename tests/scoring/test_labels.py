"""Labels after the fact: POST /api/v1/labels (chargebacks, confirmations) and their effect on features."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scoring.models import MerchantHour, Transaction
from tests.conftest import tx_body

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_chargeback_labels_the_transaction_as_fraud(api, model_version):
    await api.post("/api/v1/transactions", tx_body(external_id="cb-1"))

    response = await api.post(
        "/api/v1/labels", {"external_id": "cb-1", "is_fraud": True, "reported_at": "2026-11-20T10:00:00Z"}
    )

    assert response.status_code == 200
    assert response.json()["is_fraud"] is True
    tx = await Transaction.objects.aget(external_id="cb-1")
    assert tx.is_fraud is True
    assert tx.labeled_at.isoformat().startswith("2026-11-20T10:00:00")


async def test_a_report_time_with_any_offset_iso_8601_allows_is_stored_as_its_instant(api, model_version):
    await api.post("/api/v1/transactions", tx_body(external_id="cb-tz"))

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
