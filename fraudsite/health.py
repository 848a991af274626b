"""GET /healthz: whether this process can serve (the database and the channel layer answer).

Project-level, since it checks what both apps depend on."""

from __future__ import annotations

from typing import Any

import orjson
from channels.db import database_sync_to_async
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

from dashboards.broadcast import layer_ok
from scoring.models import ModelVersion


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
