"""The request body as HTTP delivers it: not JSON, too large, in chunks, or never finished."""

from __future__ import annotations

import orjson
import pytest

from scoring.models import Transaction
from tests.conftest import tx_body

pytestmark = pytest.mark.django_db(transaction=True)


async def count() -> int:
    return await Transaction.objects.acount()


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
