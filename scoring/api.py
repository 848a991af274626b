"""The JSON API (API.md): thin async views over `scoring.ingest`, documented by their schemas.

Under ASGI the two POST ingest endpoints are answered by scoring/endpoint.py (same schemas, same
pipeline, no Django middleware); the operations here describe them in the OpenAPI document and answer
any client that reaches Django itself.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from channels.db import database_sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.renderers import BaseRenderer
from ninja.security import HttpBearer

from dashboards.broadcast import layer_ok
from scoring import keys, labels
from scoring.classifier import FeatureMismatch, NoActiveModel
from scoring.ingest import ingest
from scoring.models import ModelVersion, Transaction
from scoring.schemas import (
    DATABASE_DOWN,
    NOT_JSON,
    TOO_LARGE,
    UNAUTHORIZED,
    BatchIn,
    BatchResult,
    Error,
    LabelIn,
    LabelResult,
    TransactionIn,
    TransactionResult,
    refusal,
)

log = logging.getLogger(__name__)


class ORJSONRenderer(BaseRenderer):
    media_type = "application/json"

    def render(self, request: HttpRequest, data: Any, *, response_status: int) -> bytes:
        return orjson.dumps(data)


class BearerKey(HttpBearer):
    """`Authorization: Bearer <key>`: an active key whose hash is stored."""

    is_async = True  # ninja awaits what __call__ returns: our coroutine, or None without a header

    async def authenticate(self, request: HttpRequest, token: str) -> bool:
        return await keys.is_valid(token)


api = NinjaAPI(
    title="Fraud scoring API",
    version="1",
    description="Ingest transactions, get a fraud score and a decision in milliseconds (see API.md).",
    renderer=ORJSONRenderer(),
    auth=BearerKey(),
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
)

REFUSALS = {400: Error, 401: Error, 413: Error, 422: Error, 503: Error}


@api.post(
    "/transactions",
    response={201: TransactionResult, 200: TransactionResult, **REFUSALS},
    summary="Score and store one transaction",
    exclude_unset=True,
)
async def create_transaction(request: HttpRequest, payload: TransactionIn) -> Status:
    """201 with the new result, or 200 with the stored one when the external_id is known."""
    (outcome,) = await ingest([payload])
    return Status(201 if outcome.created else 200, outcome.result)


@api.post(
    "/transactions/batch",
    response={201: BatchResult, **REFUSALS},
    summary="Score and store 1 to 1,000 transactions",
    exclude_unset=True,
)
async def create_batch(request: HttpRequest, payload: BatchIn) -> Status:
    """All or nothing on validation; known external_ids come back as stored."""
    outcomes = await ingest(payload.transactions)
    return Status(201, {"results": [o.result for o in outcomes]})


@api.get(
    "/transactions/{tx_id}",
    response={200: TransactionResult, 401: Error, 404: Error, 422: Error, 503: Error},
    summary="A stored result",
    exclude_unset=True,
)
async def get_transaction(request: HttpRequest, tx_id: int) -> Status:
    tx = await Transaction.objects.select_related("case").filter(pk=tx_id).afirst()
    if tx is None:
        return Status(404, {"error": f"no transaction with id {tx_id}"})
    return Status(200, tx.result(case_id=tx.case_id))


@api.post(
    "/labels",
    response={200: LabelResult, 404: Error, **REFUSALS},
    summary="Record a chargeback or a confirmation",
    exclude_unset=True,
)
async def create_label(request: HttpRequest, payload: LabelIn) -> Status:
    tx = await database_sync_to_async(labels.record)(
        external_id=payload.external_id, is_fraud=payload.is_fraud, reported_at=payload.reported_at
    )
    if tx is None:
        return Status(404, {"error": f"no transaction with external_id {payload.external_id!r}"})
    return Status(200, {"external_id": tx.external_id, "is_fraud": tx.is_fraud, "labeled_at": tx.labeled_at})


async def healthz(request: HttpRequest) -> HttpResponse:
    """200 when the database and the channel layer answer; 503 naming what is down."""
    body: dict[str, Any] = {"database": "ok", "channel_layer": "ok", "model_version": None}
    try:
        body["model_version"] = await database_sync_to_async(_active_version)()
    except DatabaseError:
        body["database"] = "down"
    if not await layer_ok():
        body["channel_layer"] = "down"
    status = 200 if body["database"] == "ok" and body["channel_layer"] == "ok" else 503
    return HttpResponse(orjson.dumps(body), status=status, content_type="application/json")


def _active_version() -> str | None:
    return ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()


# --- error bodies as API.md words them -------------------------------------------------------------


def _error(request: HttpRequest, status: int, body: dict[str, Any]) -> HttpResponse:
    return api.create_response(request, body, status=status)


@api.exception_handler(ValidationError)
def invalid_fields(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    # ninja prefixes locations with ("body", "payload")
    status, body = refusal([err | {"loc": err["loc"][2:]} for err in exc.errors])
    return _error(request, status, body)


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    message = str(exc)
    if exc.status_code == 400 and message.startswith("Cannot parse request body"):
        message = NOT_JSON
    return _error(request, exc.status_code, {"error": message})


@api.exception_handler(AuthenticationError)
def unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _error(request, 401, {"error": UNAUTHORIZED})


@api.exception_handler(RequestDataTooBig)
def too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return _error(request, 413, {"error": TOO_LARGE})


@api.exception_handler(FeatureMismatch)
@api.exception_handler(NoActiveModel)
def no_model(request: HttpRequest, exc: Exception) -> HttpResponse:
    return _error(request, 503, {"error": str(exc)})


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def database_down(request: HttpRequest, exc: Exception) -> HttpResponse:
    log.error("database unavailable: %s", exc)
    return _error(request, 503, {"error": DATABASE_DOWN})
