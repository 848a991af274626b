"""The served API document and the ingest endpoint agree: every kind of request the contract knows gets an
answer whose status the document lists for that path and method, with a body its schema accepts."""

from __future__ import annotations

import jsonschema_rs
import orjson
import pytest
from django.test import AsyncClient

from tests.conftest import tx_body

pytestmark = pytest.mark.django_db(transaction=True)
SINGLE, BATCH = "/api/v1/transactions", "/api/v1/transactions/batch"

# One invalid value for every field of a transaction, and what is missing when a required one is left out.
INVALID = {
    "external_id": "",
    "card_id": "x" * 65,
    "merchant_id": "tab\there",
    "amount": "-1",
    "currency": "euro",
    "timestamp": "yesterday",
    "country": "nl",
    "channel": "phone",
    "mcc": "54",
}
REQUIRED = ("external_id", "card_id", "merchant_id", "amount", "currency", "timestamp")


async def document() -> dict:
    response = await AsyncClient().get("/api/v1/openapi.json")
    assert response.status_code == 200
    return orjson.loads(response.content)


def assert_documented(doc: dict, *, path: str, method: str, response) -> None:
    """The document lists this answer's status for the path and method, and its schema accepts the body."""
    operation = doc["paths"][path][method.lower()]
    described = operation["responses"].get(str(response.status_code))
    assert described, f"{method} {path} answered {response.status_code}, which the document does not list"
    ref = described["content"]["application/json"]["schema"]["$ref"]
    validator = jsonschema_rs.validator_for({"$ref": ref, "components": doc["components"]})
    assert validator.is_valid(response.json()), (ref, response.json())


async def test_a_new_transaction_and_its_retry_are_answered_as_documented(api, model_version):
    doc = await document()

    created = await api.post(SINGLE, tx_body(external_id="c-1"))
    retried = await api.post(SINGLE, tx_body(external_id="c-1"))
    batch = await api.post(BATCH, {"transactions": [tx_body(external_id="c-2"), tx_body(external_id="c-1")]})

    assert (created.status_code, retried.status_code, batch.status_code) == (201, 200, 201)
    for path, response in ((SINGLE, created), (SINGLE, retried), (BATCH, batch)):
        assert_documented(doc, path=path, method="POST", response=response)


async def test_an_answer_naming_the_rules_that_hit_is_as_documented(api, model_version):
    from scoring.models import Rule, RuleStatus

    await Rule.objects.acreate(name="any_amount", condition="amount > 0.0", action="review", status=RuleStatus.ACTIVE)
    doc = await document()

    created = await api.post(SINGLE, tx_body(external_id="r-1"))
    retried = await api.post(SINGLE, tx_body(external_id="r-1"))
    looked_up = await api.get(f"{SINGLE}/{created.json()['id']}")

    assert created.json()["rules"] == [{"name": "any_amount", "action": "review"}]
    assert (retried.status_code, retried.json()["rules"]) == (200, created.json()["rules"])
    assert looked_up.json()["rules"] == created.json()["rules"]
    assert_documented(doc, path=SINGLE, method="POST", response=created)
    assert_documented(doc, path=SINGLE, method="POST", response=retried)
    assert_documented(doc, path=SINGLE + "/{tx_id}", method="GET", response=looked_up)


@pytest.mark.parametrize("field", sorted(INVALID))
async def test_each_invalid_field_is_a_documented_422_naming_it(api, model_version, field):
    doc = await document()

    single = await api.post(SINGLE, tx_body(**{field: INVALID[field]}))
    batch = await api.post(BATCH, {"transactions": [tx_body(**{field: INVALID[field]})]})

    assert single.status_code == batch.status_code == 422
    assert list(single.json()["fields"]) == [field]
    assert list(batch.json()["items"]["0"]) == [field]
    assert_documented(doc, path=SINGLE, method="POST", response=single)
    assert_documented(doc, path=BATCH, method="POST", response=batch)


@pytest.mark.parametrize("field", REQUIRED)
async def test_a_missing_required_field_is_a_documented_422(api, model_version, field):
    response = await api.post(SINGLE, tx_body(**{field: None}))

    assert response.status_code == 422
    assert response.json()["fields"] == {field: ["is required"]}
    assert_documented(await document(), path=SINGLE, method="POST", response=response)


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{not json", 400), (b"[1, 2]", 422), (b'{"extra": 1}', 422), (b'{"transactions": []}', 422)],
)
@pytest.mark.parametrize("path", [SINGLE, BATCH])
async def test_a_body_that_is_not_a_transaction_is_a_documented_refusal(api, model_version, path, body, status):
    response = await api.post(path, body)

    assert response.status_code == status
    assert_documented(await document(), path=path, method="POST", response=response)


async def test_an_oversized_body_is_a_documented_413(api, model_version, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100

    response = await api.post(BATCH, {"transactions": [tx_body(external_id=f"big-{i}") for i in range(5)]})

    assert response.status_code == 413
    assert_documented(await document(), path=BATCH, method="POST", response=response)


@pytest.mark.parametrize("path", [SINGLE, BATCH])
async def test_a_request_without_a_valid_key_is_a_documented_401(api, model_version, path):
    body = tx_body() if path == SINGLE else {"transactions": [tx_body()]}

    missing = await api.post(path, body, headers={})
    unknown = await api.post(path, body, headers={"Authorization": "Bearer fk_nope"})

    for response in (missing, unknown):
        assert response.status_code == 401
        assert_documented(await document(), path=path, method="POST", response=response)


async def test_without_an_active_model_ingest_is_a_documented_503(api):
    response = await api.post(SINGLE, tx_body())

    assert response.status_code == 503
    assert_documented(await document(), path=SINGLE, method="POST", response=response)


async def test_an_unexpected_failure_is_a_documented_500(api, model_version, monkeypatch):
    from scoring import endpoint

    async def broken(items):
        raise RuntimeError("boom")

    monkeypatch.setattr(endpoint, "ingest", broken)
    response = await api.post(BATCH, {"transactions": [tx_body()]})

    assert response.status_code == 500
    assert_documented(await document(), path=BATCH, method="POST", response=response)


async def test_a_reused_external_id_with_other_content_is_a_documented_409_or_422(api, model_version):
    doc = await document()
    await api.post(SINGLE, tx_body(external_id="r-1", amount="10.00"))

    single = await api.post(SINGLE, tx_body(external_id="r-1", amount="11.00"))
    batch = await api.post(BATCH, {"transactions": [tx_body(external_id="r-2"), tx_body(external_id="r-1")]})

    assert single.status_code == 409
    assert single.json()["fields"] == ["amount"]
    assert batch.status_code == 422
    assert list(batch.json()["items"]) == ["1"]
    assert_documented(doc, path=SINGLE, method="POST", response=single)
    assert_documented(doc, path=BATCH, method="POST", response=batch)


async def test_a_body_not_sent_as_json_is_a_documented_415(api, model_version):
    response = await api.request("POST", SINGLE, orjson.dumps(tx_body()), api.headers, content_type="text/plain")

    assert response.status_code == 415
    assert_documented(await document(), path=SINGLE, method="POST", response=response)


async def test_a_repeated_key_is_a_documented_400(api, model_version):
    body = orjson.dumps(tx_body(external_id="dup-key"))[:-1] + b', "amount": "99.00"}'

    response = await api.post(SINGLE, body)

    assert response.status_code == 400
    assert "amount" in response.json()["error"]
    assert_documented(await document(), path=SINGLE, method="POST", response=response)


@pytest.mark.parametrize(("query", "status"), [("?external_id=look-1", 200), ("?external_id=nope", 404), ("", 422)])
async def test_a_look_up_by_external_id_is_answered_as_documented(api, model_version, query, status):
    await api.post(SINGLE, tx_body(external_id="look-1"))

    response = await api.get(SINGLE + query)

    assert response.status_code == status
    assert_documented(await document(), path=SINGLE, method="GET", response=response)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", [SINGLE, BATCH])
async def test_a_wrong_method_is_a_405_whose_allow_header_names_the_documented_methods(api, path, method):
    doc = await document()

    response = await api.request(method, path, b"", api.headers)

    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert allowed == {m.upper() for m in doc["paths"][path]}


async def test_the_document_lists_no_answer_the_endpoint_cannot_give():
    from scoring.endpoint import BATCH as BATCH_ROUTE
    from scoring.endpoint import REFUSALS
    from scoring.endpoint import SINGLE as SINGLE_ROUTE

    doc = await document()

    for route in (SINGLE_ROUTE, BATCH_ROUTE):
        documented = {int(status) for status in doc["paths"][route.path]["post"]["responses"]}
        assert documented == set(route.success) | set(REFUSALS) | set(route.refusals)
