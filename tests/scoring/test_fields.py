"""Field by field: what ingest accepts and refuses, each refusal a 422 naming the field, nothing stored."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pydantic import ValidationError

from scoring.models import Transaction
from scoring.schemas import TransactionIn
from tests.conftest import tx_body

pytestmark = pytest.mark.django_db(transaction=True)


async def count() -> int:
    return await Transaction.objects.acount()


# --- validation ----------------------------------------------------------------------------------

INVALID_FIELDS = [
    ("external_id", ""),
    ("external_id", "x" * 65),
    ("external_id", 123),
    ("external_id", "nul\x00inside"),
    ("card_id", "line\nbreak"),
    ("card_id", ""),
    ("card_id", "c" * 65),
    ("merchant_id", ""),
    ("merchant_id", None),
    ("amount", 0),
    ("amount", "-5.00"),
    ("amount", "1.001"),
    ("amount", 1_000_000_000.01),
    ("amount", "abc"),
    ("amount", "NaN"),
    ("amount", True),
    ("currency", "eur"),
    ("currency", "EURO"),
    ("currency", None),
    ("timestamp", "2026-11-23T10:00:00"),
    ("timestamp", "yesterday"),
    ("timestamp", "future"),
    ("country", "nld"),
    ("country", "nl"),
    ("channel", "phone"),
    ("mcc", "54111"),
    ("mcc", "54a1"),
    ("timestamp", "1969-12-31T23:59:59Z"),
    ("timestamp", "0001-01-01T00:00:00+03:04"),  # a 500 once: its history window began before year 1
    ("timestamp", "9999-12-31T23:00:00-05:00"),  # no UTC form in datetime's range: must be refused before converting
]


@pytest.mark.parametrize(("field", "value"), INVALID_FIELDS, ids=[f"{f}={v!r}"[:40] for f, v in INVALID_FIELDS])
async def test_each_invalid_field_is_422_naming_the_field_and_nothing_is_stored(api, model_version, field, value):
    if value == "future":
        value = (datetime.now(UTC) + timedelta(minutes=6)).isoformat()
    body = tx_body()
    if value is None:
        del body[field]
    else:
        body[field] = value

    response = await api.post("/api/v1/transactions", body)

    assert response.status_code == 422
    assert field in response.json()["fields"]
    assert response.json()["error"]
    assert await count() == 0


async def test_a_control_character_in_an_id_is_refused_in_words_that_say_so(api, model_version):
    response = await api.post("/api/v1/transactions", tx_body(card_id="tab\there"))

    assert response.status_code == 422
    assert response.json()["fields"] == {"card_id": ["must not contain control characters (NUL, tab, newline, ...)"]}
    assert await count() == 0


async def test_unknown_field_is_refused(api, model_version):
    response = await api.post("/api/v1/transactions", tx_body(risk="low"))

    assert response.status_code == 422
    assert response.json()["fields"] == {"risk": ["is not a known field"]}


async def test_timestamp_a_few_minutes_ahead_and_in_the_past_are_accepted(api, model_version):
    soon = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    past = "2024-01-05T08:30:00+02:00"

    ahead = await api.post("/api/v1/transactions", tx_body(external_id="soon", timestamp=soon))
    backfill = await api.post("/api/v1/transactions", tx_body(external_id="past", timestamp=past))

    assert ahead.status_code == 201
    assert backfill.status_code == 201


async def test_amount_as_number_and_as_decimal_string_are_both_accepted(api, model_version):
    as_number = await api.post("/api/v1/transactions", tx_body(external_id="n", amount=12.5))
    as_string = await api.post("/api/v1/transactions", tx_body(external_id="s", amount="12.50"))

    assert (as_number.status_code, as_string.status_code) == (201, 201)
    stored = {t.external_id: t.amount async for t in Transaction.objects.all()}
    assert stored["n"] == stored["s"]


DOCUMENTED_STRINGS = [
    ("amount", "12.50", True),
    ("amount", "0.01", True),
    ("amount", "1000000000.00", True),
    ("amount", "999999999.99", True),
    ("amount", "7", True),
    ("amount", "", False),
    ("amount", "0", False),
    ("amount", "0.00", False),
    ("amount", "12.505", False),  # more decimals than EUR has
    ("amount", "1000000000.01", False),
    ("amount", "1e2", False),
    ("amount", "1_000", False),
    ("amount", "\u0661\u0662", False),  # Arabic-Indic digits
    ("amount", "+12.50", False),
    ("amount", " 12.50 ", False),
    ("amount", "abc", False),
    ("external_id", "ord-1", True),
    ("external_id", "ünï €", True),
    ("external_id", "a\x1fb", False),
    ("external_id", "a\nb", False),
]


@pytest.mark.parametrize(("field", "value", "valid"), DOCUMENTED_STRINGS)
def test_the_published_string_pattern_admits_exactly_what_ingest_accepts(field, value, valid):
    """For EUR (tx_body's currency): the amount rule of its currency's decimals, where the document has one."""
    document = TransactionIn.model_json_schema()
    schema = document["properties"][field]
    for rule in document.get("allOf", []):
        if field in rule["then"]["properties"] and "EUR" in rule["if"]["properties"]["currency"]["enum"]:
            schema = rule["then"]["properties"][field]
    pattern = next(s for s in schema.get("anyOf", [schema]) if s["type"] == "string")["pattern"]
    documented = re.fullmatch(pattern, value) is not None
    try:
        TransactionIn.model_validate_json(orjson.dumps(tx_body(**{field: value})))
        accepted = True
    except ValidationError:
        accepted = False

    assert documented is accepted is valid
