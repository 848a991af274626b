"""The JSON API's other operations (docs/api.md) and its OpenAPI document, with django-ninja.

The two ingest routes are served by scoring/endpoint.py, ahead of Django; their part of the document is
written by that module from the same declarations it answers by (FraudAPI adds it here).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from channels.db import database_sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.renderers import BaseRenderer
from ninja.security import HttpBearer

from scoring import endpoint, keys, labels
from scoring.classifier import FeatureMismatch, NoActiveModel
from scoring.models import Transaction
from scoring.schemas import (
    DATABASE_DOWN,
    NOT_JSON,
    TOO_LARGE,
    UNAUTHORIZED,
    Error,
    LabelIn,
    LabelResult,
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


class FraudAPI(NinjaAPI):
    """django-ninja's API, whose document also has the ingest routes (scoring/endpoint.py serves them)."""

    def get_openapi_schema(self, **kwargs: Any) -> dict[str, Any]:
        schema = super().get_openapi_schema(**kwargs)
        endpoint.document(schema)
        return schema


api = FraudAPI(
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
    try:
        tx = await database_sync_to_async(labels.record)(
            external_id=payload.external_id, is_fraud=payload.is_fraud, reported_at=payload.reported_at
        )
    except labels.ReportedBeforeTransaction as exc:
        fields = {"reported_at": [str(exc)]}
        return Status(422, {"error": "invalid fields: reported_at; nothing was stored", "fields": fields})
    if tx is None:
        return Status(404, {"error": f"no transaction with external_id {payload.external_id!r}"})
    return Status(200, {"external_id": tx.external_id, "is_fraud": tx.is_fraud, "labeled_at": tx.labeled_at})


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
