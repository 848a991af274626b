"""POST /api/v1/transactions(/batch): the one HTTP implementation of ingest, and its part of the API document.

A lean ASGI application that fraudsite/asgi.py routes with Channels' URLRouter ahead of Django: under ASGI
every Django middleware is a thread hop, and a consumer's machinery costs more than the rest of a request's
HTTP handling. What the two routes accept and every answer they can give are declared here once (Contract,
REFUSALS): `respond()` maps each outcome to one of them, and `document()` writes the same into the OpenAPI
document that scoring/api.py serves, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.urls import URLPattern, path
from pydantic import BaseModel, TypeAdapter, ValidationError

from fraudsite import request_id
from scoring import keys, metrics, storage
from scoring.classifier import FeatureMismatch, NoActiveModel
from scoring.ingest import ContentConflict, ingest
from scoring.schemas import (
    DATABASE_DOWN,
    NO_CONTROL_CHARACTERS,
    TOO_LARGE,
    UNAUTHORIZED,
    BatchIn,
    BatchResult,
    Conflict,
    Error,
    Id64,
    TransactionIn,
    TransactionResult,
    refusal,
)

log = logging.getLogger(__name__)
Scope = dict[str, Any]
Answer = tuple[int, dict[str, Any]]
JSON_HEADERS = [(b"content-type", b"application/json")]
INTERNAL_ERROR = "internal error: the request may or may not have been stored; retry it with the same external_ids"

NOT_JSON_TYPE = "send the body as Content-Type: application/json"
REPEATED_KEY = "body repeats the key {key!r}; send each key once"

# Every refusal either route's POST gives, with when: the document lists exactly these (with each route's own,
# Contract.refusals), and a 405 names the route's methods.
REFUSALS = {
    400: "The body is not JSON, or repeats a key: send a JSON object with each key once",
    401: "Missing, unknown or revoked API key: send `Authorization: Bearer <key>`",
    413: "The body is larger than the limit (MAX_BODY_BYTES)",
    415: "The body is not sent as `Content-Type: application/json`",
    422: "Invalid fields: `fields` names each one (in a batch, `items` names each bad item by its index, and an "
    "item whose external_id was stored, or comes earlier in the batch, with other content); nothing was stored",
    500: "Internal error: the request may or may not have been stored; retry it with the same external_ids",
    503: "No active model, or the database is unavailable: nothing was stored; retry later",
}
LOOKUP_ANSWERS = {
    401: REFUSALS[401],
    404: "No transaction with that external_id",
    422: "`external_id` is missing or invalid",
    500: "Internal error: retry",
    503: "The database is unavailable: retry later",
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
    refusals: dict[int, str] = field(default_factory=dict)  # the route's own, besides REFUSALS
    lookup: bool = False  # GET ?external_id= too

    @property
    def methods(self) -> tuple[str, ...]:
        return ("POST", "GET") if self.lookup else ("POST",)


SINGLE = Contract(
    path="/api/v1/transactions",
    body=TransactionIn,
    result=TransactionResult,
    summary="Score and store one transaction",
    description="201 with the new result; 200 with the stored one when the external_id is known with the same "
    "content, 409 when with other content.",
    success={201: "Scored and stored", 200: "The external_id was stored before with the same content: its result"},
    refusals={409: "The external_id was stored before with other content: `fields` names what differs"},
    lookup=True,
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
        self.route = "batch" if self.batch else "transactions"  # the metrics' label

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        rid = request_id.take(_header(scope, b"x-request-id"))
        context = request_id.REQUEST_IDS.set((rid,))  # this request's log lines, and the batch it joins
        try:
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
            if 400 <= status < 500 and status != 404:  # refused: the caller's operator may ask why, by request id
                log.info("ingest refused with %d: %s", status, answer["error"], extra={"status": status})
            await _send_json(send, status, answer, methods=self.contract.methods, rid=rid)
        finally:
            request_id.REQUEST_IDS.reset(context)
        metrics.count_request(
            route=self.route, method=scope["method"], status=status, seconds=time.perf_counter() - started
        )

    async def respond(self, scope: Scope, body: bytes) -> Answer:
        if scope["method"] not in self.contract.methods:
            return 405, {"error": f"use {' or '.join(self.contract.methods)}"}
        try:
            if not await keys.is_valid(keys.bearer_key(_header(scope, b"authorization"))):
                return 401, {"error": UNAUTHORIZED}
            if scope["method"] == "GET":
                return await _look_up(scope)
            return await self._ingest(scope, body)
        except (NoActiveModel, FeatureMismatch) as exc:
            log.error("no usable model: %s", exc)
            return 503, {"error": str(exc)}
        except (OperationalError, InterfaceError) as exc:  # the key check's query too, when its answer expired
            log.error("database unavailable: %s", exc)
            return 503, {"error": DATABASE_DOWN}

    async def _ingest(self, scope: Scope, body: bytes) -> Answer:
        if _media_type(scope) != "application/json":
            return 415, {"error": NOT_JSON_TYPE}
        try:
            payload = self.contract.body.model_validate_json(body or b"{}")
        except ValidationError as exc:
            return refusal(exc.errors(include_url=False))
        if key := _repeated_key(body):
            return 400, {"error": REPEATED_KEY.format(key=key)}
        items = payload.transactions if self.batch else [payload]
        try:
            outcomes = await ingest(items)
        except ContentConflict as conflict:
            return _conflict(conflict, batch=self.batch, items=items)
        metrics.count_scored(outcomes)
        if self.batch:
            return 201, {"results": [o.result for o in outcomes]}
        return (201 if outcomes[0].created else 200), outcomes[0].result


def _conflict(conflict: ContentConflict, *, batch: bool, items: list[TransactionIn]) -> Answer:
    """A reused external_id: 409 naming the fields that differ, or in a batch a 422 naming each item."""
    if not batch:
        ((_, fields),) = conflict.items.values()
        differ = ", ".join(fields)
        error = f"external_id {items[0].external_id!r} was stored with other content ({differ}); nothing was stored"
        return 409, {"error": error, "fields": fields}
    bad = {
        str(index): {"external_id": [f"was used by {what} with other content: {', '.join(fields)}"]}
        for index, (what, fields) in sorted(conflict.items.items())
    }
    error = f"invalid transactions at index {', '.join(list(bad)[:10])}; nothing was stored"
    return 422, {"error": error, "items": bad}


async def _look_up(scope: Scope) -> Answer:
    """GET ?external_id=X: the stored result of the caller's id."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("external_id", [])
    external_id = values[0] if len(values) == 1 else ""
    if not 0 < len(external_id) <= 64 or not LOOKUP_ID.fullmatch(external_id):
        words = "send one external_id: 1 to 64 characters, no control characters"
        return 422, {"error": words, "fields": {"external_id": [words]}}
    found = await database_sync_to_async(storage.stored_transactions)([external_id])
    tx = found.get(external_id)
    if tx is None:
        return 404, {"error": f"no transaction with external_id {external_id!r}"}
    return 200, tx.result(case_id=tx.case_id)


LOOKUP_ID = re.compile(NO_CONTROL_CHARACTERS)


urlpatterns: list[URLPattern] = [path(c.path.lstrip("/"), IngestEndpoint(c)) for c in (SINGLE, BATCH)]


# --- the document ----------------------------------------------------------------------------------


def document(schema: dict[str, Any]) -> None:
    """Add both routes, their schemas and every answer they give, to an OpenAPI document."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for contract in (SINGLE, BATCH):
        schema["paths"][contract.path] = {"post": _operation(contract)} | (
            {"get": _lookup_operation()} if contract.lookup else {}
        )
        _add_component(components, contract.body, mode="validation")
        for model in (contract.result, Error, Conflict):
            _add_component(components, model, mode="serialization")


def _operation(contract: Contract) -> dict[str, Any]:
    answers = {status: (text, contract.result) for status, text in contract.success.items()}
    refusals = REFUSALS | contract.refusals
    answers |= {status: (text, Conflict if status == 409 else Error) for status, text in refusals.items()}
    return {
        "operationId": "ingest_" + ("batch" if contract is BATCH else "transaction"),
        "summary": contract.summary,
        "description": contract.description,
        "requestBody": {"required": True, "content": _json(contract.body)},
        "responses": _responses(answers),
        "security": [{"BearerKey": []}],
    }


def _lookup_operation() -> dict[str, Any]:
    answers = {200: ("The stored result", TransactionResult)} | {s: (t, Error) for s, t in LOOKUP_ANSWERS.items()}
    external_id = TypeAdapter(Id64).json_schema()
    return {
        "operationId": "transaction_by_external_id",
        "summary": "A stored result, found by the caller's external_id",
        "parameters": [{"name": "external_id", "in": "query", "required": True, "schema": external_id}],
        "responses": _responses(answers),
        "security": [{"BearerKey": []}],
    }


REQUEST_ID = {
    "description": "The caller's X-Request-ID when well formed (a letter or digit, then up to 127 of letters, digits "
    "and `._:-`), else one made here; the service's log lines about the request carry it",
    "required": True,
    "schema": {"type": "string", "pattern": f"^{request_id.WELL_FORMED.pattern}$"},
}


def _responses(answers: dict[int, tuple[str, type[BaseModel]]]) -> dict[str, Any]:
    return {
        str(status): {"description": text, "headers": {"X-Request-ID": REQUEST_ID}, "content": _json(model)}
        for status, (text, model) in answers.items()
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


async def _send_json(send: Any, status: int, answer: dict[str, Any], *, methods: tuple[str, ...], rid: str) -> None:
    content = orjson.dumps(answer)
    # With a length the server sends the body as it is, not chunked (what integrators' clients expect).
    headers = [*JSON_HEADERS, (b"content-length", str(len(content)).encode()), (b"x-request-id", rid.encode())]
    if status == 405:
        headers.append((b"allow", ", ".join(methods).encode()))  # RFC 9110: a 405 names the methods that work
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


def _media_type(scope: Scope) -> str:
    return _header(scope, b"content-type").partition(";")[0].strip().lower()


class _RepeatedKey(Exception):
    pass


def _no_repeats(pairs: list[tuple[str, Any]]) -> None:
    """An object's key-value pairs, as the parser found them: refused when a key comes twice. Nothing is built
    from them: only the check is wanted (the body is validated by its schema)."""
    if len(pairs) != len({key for key, _ in pairs}):
        seen: set[str] = set()
        raise _RepeatedKey(next(key for key, _ in pairs if key in seen or seen.add(key)))


def _repeated_key(body: bytes) -> str | None:
    """The first key an object of the body repeats (JSON parsers keep the last silently), or None."""
    try:
        json.loads(body, object_pairs_hook=_no_repeats)
    except _RepeatedKey as repeated:
        return str(repeated)
    return None


def _declared_length(scope: Scope) -> int:
    try:
        return int(_header(scope, b"content-length") or 0)
    except ValueError:
        return 0
