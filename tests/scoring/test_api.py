"""The ingest API as API.md words it: answers, refusals, idempotency, nothing stored on refusal."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from django.test import AsyncClient
from django.utils import timezone

from scoring.models import ApiKey, Case, Transaction
from tests.conftest import tx_body

pytestmark = pytest.mark.django_db(transaction=True)


async def count() -> int:
    return await Transaction.objects.acount()


async def test_ingest_scores_stores_and_answers_201(api, model_version):
    response = await api.post("/api/v1/transactions", tx_body())

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "external_id", "score", "decision", "reasons", "rules", "model_version", "case_id"}
    assert body["rules"] == []  # no rule is live
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
    case = await Case.objects.aget(pk=high.json()["case_id"])
    assert (await case.alerts.aget()).external_id == "t-high"
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
