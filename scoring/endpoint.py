"""The hot ingest path: POST /api/v1/transactions(/batch) as a plain ASGI application.

The same contract, schemas and pipeline as the django-ninja operations in scoring/api.py (which document
them), without Django's request cycle or Channels' consumer machinery: every Django middleware is a thread
hop under ASGI, and a Channels consumer costs a router lookup, a channel-layer lookup and a task per
message. Measured in-process with `ingest()` stubbed out: 55-59 µs a request as a Channels
`AsyncHttpConsumer`, 13-18 µs as this. Key check (cached), validation, `ingest()`, answer.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from django.conf import settings
from django.db import InterfaceError, OperationalError
from pydantic import ValidationError

from scoring import keys
from scoring.classifier import FeatureMismatch, NoActiveModel
from scoring.ingest import ingest
from scoring.schemas import DATABASE_DOWN, TOO_LARGE, UNAUTHORIZED, BatchIn, TransactionIn, refusal

log = logging.getLogger(__name__)
JSON_HEADERS = [(b"content-type", b"application/json")]
INTERNAL_ERROR = {
    "error": "internal error: the request may or may not have been stored; retry it with the same external_ids"
}

Scope = dict[str, Any]


class IngestEndpoint:
    """One of the two ingest endpoints: single (`batch=False`) or batch."""

    def __init__(self, *, batch: bool) -> None:
        self.batch = batch

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
            status, answer = 500, INTERNAL_ERROR
        content = orjson.dumps(answer)
        # With a length the server sends the body as it is, not chunked (what integrators' clients expect).
        headers = [*JSON_HEADERS, (b"content-length", str(len(content)).encode())]
        if status == 405:
            headers.append((b"allow", b"POST"))  # RFC 9110: a 405 names the methods that work
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def respond(self, scope: Scope, body: bytes) -> tuple[int, dict[str, Any]]:
        if scope["method"] != "POST":
            return 405, {"error": "use POST"}
        try:
            return await self._ingest(scope, body)
        except (NoActiveModel, FeatureMismatch) as exc:
            return 503, {"error": str(exc)}
        except (OperationalError, InterfaceError) as exc:  # the key check's query too, when its answer expired
            log.error("database unavailable: %s", exc)
            return 503, {"error": DATABASE_DOWN}

    async def _ingest(self, scope: Scope, body: bytes) -> tuple[int, dict[str, Any]]:
        if not await keys.is_valid(keys.bearer_key(_header(scope, b"authorization"))):
            return 401, {"error": UNAUTHORIZED}
        try:
            payload = (BatchIn if self.batch else TransactionIn).model_validate_json(body or b"{}")
        except ValidationError as exc:
            return refusal(exc.errors(include_url=False))
        if self.batch:
            outcomes = await ingest(payload.transactions)
            return 201, {"results": [o.result for o in outcomes]}
        (outcome,) = await ingest([payload])
        return (201 if outcome.created else 200), outcome.result


class _ClientGone(Exception):
    """The client disconnected before its body had arrived: there is no one to answer."""


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
