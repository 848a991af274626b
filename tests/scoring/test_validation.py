"""The strict contract: what ingest and labels refuse, each with a 422 that names the field and stores nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from scoring.models import Transaction
from tests.conftest import tx_body

pytestmark = pytest.mark.django_db(transaction=True)
SINGLE = "/api/v1/transactions"


async def refused_field(api, **fields) -> list[str]:
    """Post a body with `fields` changed: the names of the fields it was refused for (it must be a 422)."""
    response = await api.post(SINGLE, tx_body(**fields))
    assert response.status_code == 422, response.json()
    return list(response.json()["fields"])


@pytest.mark.parametrize("amount", ["1e2", "1_000", "\u0661\u0662", "+12.50", " 12.50 ", "12.", ".5", "-1", "0", True])
async def test_an_amount_that_is_not_a_plain_positive_decimal_is_refused(api, model_version, amount):
    assert await refused_field(api, amount=amount) == ["amount"]
    assert await Transaction.objects.acount() == 0


@pytest.mark.parametrize(
    ("currency", "amount"), [("JPY", "100.50"), ("JPY", 100.5), ("EUR", "1.234"), ("EUR", 0.125), ("BHD", "1.2345")]
)
async def test_an_amount_with_more_decimals_than_its_currency_has_is_refused(api, model_version, currency, amount):
    assert await refused_field(api, currency=currency, amount=amount) == ["amount"]


@pytest.mark.parametrize(
    ("currency", "amount", "stored"),
    [("JPY", "1200", "1200"), ("JPY", 1200.0, "1200"), ("BHD", "1.234", "1.234"), ("EUR", 0.1, "0.1"), ("EUR", 7, "7")],
)
async def test_an_amount_within_its_currencys_decimals_is_stored_exactly(api, model_version, currency, amount, stored):
    response = await api.post(SINGLE, tx_body(external_id=f"ok-{currency}-{amount}", currency=currency, amount=amount))

    assert response.status_code == 201
    tx = await Transaction.objects.aget(pk=response.json()["id"])
    assert tx.amount == Decimal(stored)


@pytest.mark.parametrize(("field", "value"), [("currency", "ZZZ"), ("currency", "eur"), ("country", "QQ")])
async def test_codes_that_iso_does_not_know_are_refused(api, model_version, field, value):
    assert await refused_field(api, **{field: value}) == [field]


@pytest.mark.parametrize(
    "timestamp",
    [
        1765100000,
        "2026-12-07 10:00:00Z",
        "2026-12-07T10:00:00",
        "2026-12-07",
        "1969-12-31T23:59:59Z",
        "2026-13-01T00:00:00Z",
    ],
)
async def test_a_timestamp_that_is_not_rfc_3339_with_an_offset_from_1970_is_refused(api, model_version, timestamp):
    assert await refused_field(api, timestamp=timestamp) == ["timestamp"]


async def test_one_instant_written_in_two_offsets_is_the_same_content(api, model_version):
    first = await api.post(SINGLE, tx_body(external_id="tz", timestamp="2026-12-01T10:00:00Z", amount=12.5))
    again = await api.post(SINGLE, tx_body(external_id="tz", timestamp="2026-12-01T11:00:00+01:00", amount="12.50"))

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()


async def test_a_batch_repeating_an_external_id_with_other_content_refuses_the_later_item(api, model_version):
    items = [tx_body(external_id="twice"), tx_body(external_id="other"), tx_body(external_id="twice", amount="1.00")]

    response = await api.post(SINGLE + "/batch", {"transactions": items})

    assert response.status_code == 422
    assert response.json()["items"] == {"2": {"external_id": ["was used by item 0 with other content: amount"]}}
    assert await Transaction.objects.acount() == 0


async def test_a_reused_external_id_with_other_content_changes_nothing(api, model_version):
    first = (await api.post(SINGLE, tx_body(external_id="once", card_id="card-a"))).json()

    conflict = await api.post(SINGLE, tx_body(external_id="once", card_id="card-b", amount="43.00"))

    assert conflict.status_code == 409
    assert conflict.json()["fields"] == ["card_id", "amount"]
    stored = await Transaction.objects.aget(external_id="once")
    assert (stored.id, stored.card_id, stored.amount) == (first["id"], "card-a", Decimal("42.50"))


@pytest.mark.parametrize("is_fraud", ["yes", 1, "true", None])
async def test_a_label_whose_is_fraud_is_not_a_json_boolean_is_refused(api, model_version, is_fraud):
    await api.post(SINGLE, tx_body(external_id="lab"))

    response = await api.post("/api/v1/labels", {"external_id": "lab", "is_fraud": is_fraud})

    assert response.status_code == 422
    assert "is_fraud" in response.json()["fields"]


@pytest.mark.parametrize("reported_at", [0, "yesterday", "2026-12-07 10:00:00Z"])
async def test_a_label_whose_report_time_is_not_rfc_3339_is_refused(api, model_version, reported_at):
    await api.post(SINGLE, tx_body(external_id="lab"))

    response = await api.post("/api/v1/labels", {"external_id": "lab", "is_fraud": True, "reported_at": reported_at})

    assert response.status_code == 422
    assert "reported_at" in response.json()["fields"]
