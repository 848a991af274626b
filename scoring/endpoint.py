"""POST /api/v1/transactions(/batch): the one HTTP implementation of ingest, and its part of the API document.

A lean ASGI application that fraudsite/asgi.py routes with Channels' URLRouter ahead of Django: under ASGI
every Django middleware is a thread hop, and a consumer's machinery costs more than the rest of a request's
HTTP handling. What the two routes accept and every answer they can give are declared here once (Contract,
REFUSALS): `respond()` maps each outcome to one of them, and `document()` writes the same into the OpenAPI
document that scoring/api.py serves, so the two cannot drift apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.urls import URLPattern, path
from pydantic import BaseModel, ValidationError

from scoring import keys
from scoring.classifier import FeatureMismatch, NoActiveModel
from scoring.ingest import ingest
from scoring.schemas import (
    DATABASE_DOWN,
    TOO_LARGE,
    UNAUTHORIZED,
    BatchIn,
    BatchResult,
    Error,
    TransactionIn,
    TransactionResult,
    refusal,
)

log = logging.getLogger(__name__)
Scope = dict[str, Any]
Answer = tuple[int, dict[str, Any]]
METHODS = ("POST",)
JSON_HEADERS = [(b"content-type", b"application/json")]
INTERNAL_ERROR = "internal error: the request may or may not have been stored; retry it with the same external_ids"

# Every refusal either route gives, with when: the document lists exactly these (and a 405 names METHODS).
REFUSALS = {
    400: "The body is not JSON: send a JSON object",
    401: "Missing, unknown or revoked API key: send `Authorization: Bearer <key>`",
    413: "The body is larger than the limit (MAX_BODY_BYTES)",
    422: "Invalid fields: `fields` names each one (in a batch, `items` names each bad item by its index); "
    "nothing was stored",
    500: "Internal error: the request may or may not have been stored; retry it with the same external_ids",
    503: "No active model, or the database is unavailable: nothing was stored; retry later",
}


@dataclass(frozen=True)
class Contract:
    """One ingest route: its path, what it accepts, and what it answers on success."""

    path: str
    body: type[BaseModel]
    result: type[BaseModel]
    summary: str
    description: str
    success: dict[int, str]


SINGLE = Contract(
    path="/api/v1/transactions",
    body=TransactionIn,
    result=TransactionResult,
    summary="Score and store one transaction",
    description="201 with the new result, or 200 with the stored one when the external_id is known.",
    success={201: "Scored and stored", 200: "The external_id was stored before: its stored result"},
)
BATCH = Contract(
    path="/api/v1/transactions/batch",
    body=BatchIn,
    result=BatchResult,
    summary="Score and store 1 to 1,000 transactions",
    description="All or nothing on validation; known external_ids come back as stored, in the order sent.",
    success={201: "Every item's result, in the order sent"},
)


class IngestEndpoint:
    """The ASGI application of one ingest route."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.batch = contract is BATCH

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        try:
            body = await _read_body(scope, receive)
        except _ClientGone:
            return
        try:
            status, answer = (413, {"error": TOO_LARGE}) if body is None else await self.respond(scope, body)
        except Exception:
            # A JSON answer that says what to do, rather than the server's bare 500 page.
            log.exception("ingest failed")
            status, answer = 500, {"error": INTERNAL_ERROR}
        await _send_json(send, status, answer)

    async def respond(self, scope: Scope, body: bytes) -> Answer:
        if scope["method"] not in METHODS:
            return 405, {"error": f"use {' or '.join(METHODS)}"}
        try:
            return await self._ingest(scope, body)
        except (NoActiveModel, FeatureMismatch) as exc:
            return 503, {"error": str(exc)}
        except (OperationalError, InterfaceError) as exc:  # the key check's query too, when its answer expired
            log.error("database unavailable: %s", exc)
            return 503, {"error": DATABASE_DOWN}

    async def _ingest(self, scope: Scope, body: bytes) -> Answer:
        if not await keys.is_valid(keys.bearer_key(_header(scope, b"authorization"))):
            return 401, {"error": UNAUTHORIZED}
        try:
            payload = self.contract.body.model_validate_json(body or b"{}")
        except ValidationError as exc:
            return refusal(exc.errors(include_url=False))
        if self.batch:
            outcomes = await ingest(payload.transactions)
            return 201, {"results": [o.result for o in outcomes]}
        (outcome,) = await ingest([payload])
        return (201 if outcome.created else 200), outcome.result


urlpatterns: list[URLPattern] = [path(c.path.lstrip("/"), IngestEndpoint(c)) for c in (SINGLE, BATCH)]


# --- the document ----------------------------------------------------------------------------------


def document(schema: dict[str, Any]) -> None:
    """Add both routes, their schemas and every answer they give, to an OpenAPI document."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for contract in (SINGLE, BATCH):
        schema["paths"][contract.path] = {"post": _operation(contract)}
        _add_component(components, contract.body, mode="validation")
        for model in (contract.result, Error):
            _add_component(components, model, mode="serialization")


def _operation(contract: Contract) -> dict[str, Any]:
    answers = {status: (text, contract.result) for status, text in contract.success.items()}
    answers |= {status: (text, Error) for status, text in REFUSALS.items()}
    return {
        "operationId": "ingest_" + ("batch" if contract is BATCH else "transaction"),
        "summary": contract.summary,
        "description": contract.description,
        "requestBody": {"required": True, "content": _json(contract.body)},
        "responses": {str(status): {"description": text, "content": _json(m)} for status, (text, m) in answers.items()},
        "security": [{"BearerKey": []}],
    }


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}


def _add_component(components: dict[str, Any], model: type[BaseModel], *, mode: str) -> None:
    definition = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    for name, nested in definition.pop("$defs", {}).items():
        components.setdefault(name, nested)
    components.setdefault(model.__name__, definition)


# --- HTTP by hand ----------------------------------------------------------------------------------


class _ClientGone(Exception):
    """The client disconnected before its body had arrived: there is no one to answer."""


async def _send_json(send: Any, status: int, answer: dict[str, Any]) -> None:
    content = orjson.dumps(answer)
    # With a length the server sends the body as it is, not chunked (what integrators' clients expect).
    headers = [*JSON_HEADERS, (b"content-length", str(len(content)).encode())]
    if status == 405:
        headers.append((b"allow", ", ".join(METHODS).encode()))  # RFC 9110: a 405 names the methods that work
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


async def _read_body(scope: Scope, receive: Any) -> bytes | None:
    """The whole request body; None as soon as it is known to be over the limit (the declared length, or
    what has arrived), so an oversized body is never buffered."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if _declared_length(scope) > limit:
        return None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _declared_length(scope: Scope) -> int:
    try:
        return int(_header(scope, b"content-length") or 0)
    except ValueError:
        return 0
