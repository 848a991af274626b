"""The hot ingest path: POST /api/v1/transactions(/batch) as a Channels HTTP consumer.

The same contract, schemas and pipeline as the django-ninja operations in scoring/api.py (which document
them), without Django's request cycle: every Django middleware is a thread hop under ASGI, and those hops
cost more than scoring a transaction does. Key check (cached), validation, `ingest()`, answer.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings
from django.db import InterfaceError, OperationalError
from pydantic import ValidationError

from scoring import keys
from scoring.classifier import FeatureMismatch, NoActiveModel
from scoring.ingest import ingest
from scoring.schemas import BatchIn, TransactionIn, refusal

log = logging.getLogger(__name__)
JSON_HEADERS = [(b"content-type", b"application/json")]


class IngestConsumer(AsyncHttpConsumer):
    """One ingest request: single (`batch=False`) or batch."""

    batch = False
    # No channel of its own: a consumer otherwise opens one per request (a Redis SUBSCRIBE each, and a
    # failed request whenever Redis is down). The broadcast goes through dashboards/broadcast.py.
    channel_layer_alias = "ingest-needs-no-channel-layer"

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Skips Channels' close_old_connections thread hop per message: the database is only reached
        # through database_sync_to_async, which does that itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def http_request(self, message: dict[str, Any]) -> None:
        # Refuse an oversized body as soon as its first chunk says so, before buffering the rest.
        if not self.body and _declared_length(self.scope) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            await self.answer(413, {"error": "body is larger than the limit; send at most 1,000 transactions a batch"})
            raise StopConsumer
        await super().http_request(message)

    async def handle(self, body: bytes) -> None:
        status, answer = await self.respond(body)
        await self.answer(status, answer)

    async def respond(self, body: bytes) -> tuple[int, dict[str, Any]]:
        if self.scope["method"] != "POST":
            return 405, {"error": "use POST"}
        if not await keys.is_valid(keys.bearer_key(_header(self.scope, b"authorization"))):
            return 401, {"error": "missing, unknown or revoked API key: send Authorization: Bearer <key>"}
        if len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return 413, {"error": "body is larger than the limit; send at most 1,000 transactions a batch"}
        try:
            payload = (BatchIn if self.batch else TransactionIn).model_validate_json(body or b"{}")
        except ValidationError as exc:
            return refusal(exc.errors(include_url=False))
        try:
            if self.batch:
                outcomes = await ingest(payload.transactions)
                return 201, {"results": [o.result for o in outcomes]}
            (outcome,) = await ingest([payload])
            return (201 if outcome.created else 200), outcome.result
        except (NoActiveModel, FeatureMismatch) as exc:
            return 503, {"error": str(exc)}
        except (OperationalError, InterfaceError) as exc:
            log.error("database unavailable: %s", exc)
            return 503, {"error": "the database is unavailable; nothing was stored, retry later"}

    async def answer(self, status: int, body: dict[str, Any]) -> None:
        await self.send_response(status, orjson.dumps(body), headers=JSON_HEADERS)


class BatchIngestConsumer(IngestConsumer):
    batch = True


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _declared_length(scope: dict[str, Any]) -> int:
    try:
        return int(_header(scope, b"content-length") or 0)
    except ValueError:
        return 0
