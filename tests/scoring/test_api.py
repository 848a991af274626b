"""The ingest API as API.md words it: answers, refusals, idempotency, nothing stored on refusal."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.test import AsyncClient
from django.utils import timezone
from pydantic import ValidationError

from scoring.models import ApiKey, Case, Transaction
from scoring.schemas import TransactionIn
from tests.conftest import tx_body

pytestmark = pytest.mark.django_db(transaction=True)


async def count() -> int:
    return await Transaction.objects.acount()


async def test_ingest_scores_stores_and_answers_201(api, model_version):
    response = await api.post("/api/v1/transactions", tx_body())

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "external_id", "score", "decision", "reasons", "model_version", "case_id"}
    assert 0 <= body["score"] <= 1
    assert body["decision"] in {"approve", "review", "block"}
    assert len(body["reasons"]) == 3
    assert all(set(r) == {"feature", "contribution"} for r in body["reasons"])
    contributions = [r["contribution"] for r in body["reasons"]]
    assert contributions == sorted(contributions, reverse=True)
    assert body["model_version"] == model_version.version
    stored = await Transaction.objects.aget(pk=body["id"])
    assert stored.external_id == "ext-1"
    assert stored.score == body["score"]


async def test_answers_are_json_with_their_length_not_chunked(api, model_version):
    created = await api.post("/api/v1/transactions", tx_body())
    refused = await api.post("/api/v1/transactions", tx_body(external_id="x", amount="-1"))

    for response in (created, refused):
        assert response.headers["content-type"] == "application/json"
        assert int(response.headers["content-length"]) == len(response.content)


async def test_flagged_transaction_opens_a_case_and_approved_does_not(api, model_version):
    # The tiny test model flags amounts far above the card's average.
    low = await api.post("/api/v1/transactions", tx_body(external_id="t-low", amount="10.00"))
    high = await api.post(
        "/api/v1/transactions",
        tx_body(external_id="t-high", amount="9000.00", timestamp=(timezone.now()).isoformat()),
    )

    assert low.json()["decision"] == "approve"
    assert low.json()["case_id"] is None
    assert high.json()["decision"] in {"review", "block"}
    case = await Case.objects.select_related("transaction").aget(pk=high.json()["case_id"])
    assert case.transaction.external_id == "t-high"
    assert case.status == "open"


async def test_same_external_id_again_returns_200_with_the_stored_result(api, model_version):
    first = await api.post("/api/v1/transactions", tx_body())
    again = await api.post("/api/v1/transactions", tx_body(amount="42.5"))  # the same amount, written otherwise

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert await count() == 1


async def test_concurrent_retries_of_one_transaction_store_one_row(api, model_version):
    responses = await asyncio.gather(*[api.post("/api/v1/transactions", tx_body()) for _ in range(8)])

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1
    assert statuses.count(200) == 7
    assert len({r.json()["id"] for r in responses}) == 1
    assert await count() == 1


async def test_get_returns_the_stored_result(api, model_version):
    created = (await api.post("/api/v1/transactions", tx_body())).json()

    response = await api.get(f"/api/v1/transactions/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created


async def test_get_of_an_unknown_id_is_404(api, model_version):
    response = await api.get("/api/v1/transactions/999999")

    assert response.status_code == 404
    assert "error" in response.json()


# --- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}],
    ids=["missing", "unknown", "wrong-scheme", "empty"],
)
async def test_ingest_without_a_valid_key_is_401_and_stores_nothing(api, model_version, headers):
    response = await api.post("/api/v1/transactions", tx_body(), headers=headers)

    assert response.status_code == 401
    assert "error" in response.json()
    assert await count() == 0


async def test_revoked_key_is_refused(api, api_key, model_version):
    await ApiKey.objects.aupdate(revoked_at=timezone.now())

    response = await api.post("/api/v1/transactions", tx_body())

    assert response.status_code == 401
    assert await count() == 0


async def test_bad_key_is_refused_before_the_body_is_looked_at(api, model_version):
    response = await api.post("/api/v1/transactions", "{not json", headers={"Authorization": "Bearer nope"})

    assert response.status_code == 401


async def test_only_the_hash_of_a_key_is_stored(api_key):
    stored = await ApiKey.objects.aget()

    assert api_key not in (stored.key_hash, stored.prefix, stored.name)
    assert len(stored.key_hash) == 64


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


@pytest.mark.parametrize(
    "body", ["{not json", "", "[1, 2", b"\xff\xfe"], ids=["broken", "empty", "truncated", "binary"]
)
async def test_body_that_is_not_json_is_400(api, model_version, body):
    response = await api.post("/api/v1/transactions", body)

    assert response.status_code in (400, 422) if body == "" else response.status_code == 400
    assert "error" in response.json()
    assert await count() == 0


async def test_json_that_is_not_an_object_is_refused(api, model_version):
    response = await api.post("/api/v1/transactions", "[1, 2]")

    assert response.status_code in (400, 422)
    assert await count() == 0


async def test_body_over_the_limit_is_413(api, model_version, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = {"transactions": [tx_body(external_id=f"big-{i}") for i in range(20)]}

    response = await api.post("/api/v1/transactions/batch", body)

    assert response.status_code == 413
    assert "error" in response.json()
    assert await count() == 0


async def _post_in_chunks(chunks: list[bytes], headers: list[tuple[bytes, bytes]], *, more: bool = False):
    """A POST whose body arrives in several ASGI messages, with no content-length (a chunked upload);
    `more`: the last chunk sent says more is to come, and the answer is read without sending it."""
    from channels.testing import ApplicationCommunicator

    from fraudsite.asgi import application

    scope = {"type": "http", "method": "POST", "path": "/api/v1/transactions", "headers": headers}
    communicator = ApplicationCommunicator(application, scope)
    for i, chunk in enumerate(chunks):
        await communicator.send_input({"type": "http.request", "body": chunk, "more_body": more or i < len(chunks) - 1})
    start = await communicator.receive_output(timeout=10)
    body = await communicator.receive_output(timeout=10)
    return start["status"], orjson.loads(body["body"])


async def test_a_body_in_several_chunks_is_read_whole(api, model_version):
    body = orjson.dumps(tx_body(external_id="chunked-1"))
    headers = [(b"authorization", api.headers["Authorization"].encode()), (b"content-type", b"application/json")]

    status, answer = await _post_in_chunks([body[:10], body[10:40], body[40:]], headers)

    assert status == 201
    assert answer["external_id"] == "chunked-1"
    assert await count() == 1


async def test_a_chunked_body_over_the_limit_is_413_before_it_has_all_arrived(api, model_version, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    headers = [(b"authorization", api.headers["Authorization"].encode()), (b"content-type", b"application/json")]

    # The answer comes once the second chunk is over the limit, though more of the body was announced.
    status, answer = await _post_in_chunks([b"x" * 60, b"x" * 60], headers, more=True)

    assert status == 413
    assert "limit" in answer["error"]
    assert await count() == 0


async def test_a_client_gone_before_its_body_arrived_gets_no_answer_and_stores_nothing(api, model_version):
    from channels.testing import ApplicationCommunicator

    from fraudsite.asgi import application

    scope = {"type": "http", "method": "POST", "path": "/api/v1/transactions", "headers": []}
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b'{"external_id": ', "more_body": True})
    await communicator.send_input({"type": "http.disconnect"})

    await communicator.wait(timeout=5)  # the application returned, raising nothing
    assert await communicator.receive_nothing()
    assert await count() == 0


# --- batch ---------------------------------------------------------------------------------------


async def test_batch_answers_one_result_per_item_in_order(api, model_version):
    items = [tx_body(external_id=f"b-{i}", card_id=f"card-{i % 3}") for i in range(10)]

    response = await api.post("/api/v1/transactions/batch", {"transactions": items})

    assert response.status_code == 201
    results = response.json()["results"]
    assert [r["external_id"] for r in results] == [f"b-{i}" for i in range(10)]
    assert await count() == 10


async def test_batch_with_one_invalid_item_is_422_naming_the_item_and_stores_nothing(api, model_version):
    items = [tx_body(external_id=f"b-{i}") for i in range(10)]
    items[7]["amount"] = "-1"

    response = await api.post("/api/v1/transactions/batch", {"transactions": items})

    assert response.status_code == 422
    assert list(response.json()["items"]) == ["7"]
    assert "amount" in response.json()["items"]["7"]
    assert await count() == 0


async def test_batch_returns_known_items_as_stored_without_storing_them_again(api, model_version):
    first = (await api.post("/api/v1/transactions", tx_body(external_id="known"))).json()
    items = [tx_body(external_id="new-1"), tx_body(external_id="known"), tx_body(external_id="new-2")]

    response = await api.post("/api/v1/transactions/batch", {"transactions": items})

    assert response.status_code == 201
    assert response.json()["results"][1] == first
    assert await count() == 3


async def test_batch_repeating_an_external_id_stores_it_once(api, model_version):
    items = [tx_body(external_id="twice"), tx_body(external_id="twice")]

    response = await api.post("/api/v1/transactions/batch", {"transactions": items})

    assert response.status_code == 201
    a, b = response.json()["results"]
    assert a == b
    assert await count() == 1


@pytest.mark.parametrize("size", [0, 1001])
async def test_batch_size_outside_1_to_1000_is_422(api, model_version, size, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000_000
    items = [tx_body(external_id=f"s-{i}") for i in range(size)]

    response = await api.post("/api/v1/transactions/batch", {"transactions": items})

    assert response.status_code == 422
    assert await count() == 0


async def test_ingest_without_an_active_model_is_503_saying_what_to_do(api):
    response = await api.post("/api/v1/transactions", tx_body())

    assert response.status_code == 503
    assert "train_model" in response.json()["error"]
    assert await count() == 0


# --- docs -----------------------------------------------------------------------------


async def test_openapi_document_describes_the_endpoints():
    response = await AsyncClient().get("/api/v1/openapi.json")

    assert response.status_code == 200
    paths = orjson.loads(response.content)["paths"]
    assert {"/api/v1/transactions", "/api/v1/transactions/batch", "/api/v1/transactions/{tx_id}"} <= set(paths)
    schema = orjson.loads(response.content)["components"]["schemas"]["TransactionIn"]
    assert schema["additionalProperties"] is False
    # Every answer an operation can give is documented (a fuzzer found 422 and 400 missing).
    assert set(paths["/api/v1/transactions/{tx_id}"]["get"]["responses"]) == {"200", "401", "404", "422", "503"}
    assert set(paths["/api/v1/labels"]["post"]["responses"]) == {"200", "400", "401", "404", "413", "422", "503"}


async def test_docs_page_is_served_without_a_cdn():
    response = await AsyncClient().get("/api/v1/docs")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger" in html.lower()
    assert "cdn." not in html
    assert "unpkg" not in html


async def test_a_model_trained_on_other_features_is_refused_with_a_clear_error(api, model_version):
    from scoring.models import ModelVersion

    await ModelVersion.objects.filter(pk=model_version.pk).aupdate(features=["amount", "something_else"])

    response = await api.post("/api/v1/transactions", tx_body())

    assert response.status_code == 503
    assert "train" in response.json()["error"]
    assert await count() == 0


async def test_database_outage_is_503_and_stores_nothing(api, model_version, monkeypatch):
    from django.db import OperationalError

    from scoring import ingest

    def down(items):
        raise OperationalError("connection refused")

    monkeypatch.setattr(ingest, "store", down)

    response = await api.post("/api/v1/transactions", tx_body())

    assert response.status_code == 503
    assert "retry" in response.json()["error"]


async def test_a_database_outage_during_the_key_check_is_503_and_stores_nothing(api, model_version, monkeypatch):
    from django.db import OperationalError

    from scoring import keys
    from scoring.models import ApiKeyQuerySet

    def down(self, raw_key):
        raise OperationalError("connection refused")

    keys.reset()  # the key's answer expired: this request asks the database
    monkeypatch.setattr(ApiKeyQuerySet, "check_key", down)

    response = await api.post("/api/v1/transactions", tx_body())

    assert response.status_code == 503
    assert "retry" in response.json()["error"]
    monkeypatch.undo()
    assert await Transaction.objects.acount() == 0


async def test_an_unexpected_failure_is_a_json_500_that_says_to_retry(api, model_version, monkeypatch, caplog):
    from scoring import endpoint

    async def broken(items):
        raise RuntimeError("boom")

    monkeypatch.setattr(endpoint, "ingest", broken)
    response = await api.post("/api/v1/transactions", tx_body())

    assert response.status_code == 500
    assert "retry it with the same external_ids" in response.json()["error"]
    assert "ingest failed" in caplog.text


async def test_put_on_the_ingest_endpoint_is_405_naming_its_methods(api, model_version):
    response = await api.request("PUT", "/api/v1/transactions", b"", api.headers)

    assert response.status_code == 405
    assert response.headers["allow"] == "POST, GET"
