"""Health checks for load balancers and orchestrators.

`/healthz` is liveness: 200 while the process serves requests. `/readyz` is readiness: 200 only when the
database and the channel layer answer and a model is active, else 503 naming what is down or missing, so a
load balancer stops sending traffic that could only be refused. Project-level: it checks what both apps
depend on.
"""

from __future__ import annotations

from typing import Any

import orjson
from channels.db import database_sync_to_async
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

from dashboards.broadcast import layer_ok
from scoring.models import ModelVersion


async def healthz(request: HttpRequest) -> HttpResponse:
    """200 while the process serves."""
    return _json({"status": "ok"}, status=200)


async def readyz(request: HttpRequest) -> HttpResponse:
    """200 when the database and the channel layer answer and a model is active; 503 naming what is not."""
    body: dict[str, Any] = {"database": "ok", "channel_layer": "ok", "model_version": None}
    try:
        body["model_version"] = await database_sync_to_async(_active_version)()
    except DatabaseError:
        body["database"] = "down"
    if not await layer_ok():
        body["channel_layer"] = "down"
    missing = [name for name in ("database", "channel_layer") if body[name] != "ok"]
    if body["database"] == "ok" and body["model_version"] is None:
        missing.append("model_version")
        body["model_version"] = "none active: activate one (train_model --activate, or the admin)"
    return _json(body | {"missing": missing}, status=503 if missing else 200)


def _active_version() -> str | None:
    return ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()


def _json(body: dict[str, Any], *, status: int) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), status=status, content_type="application/json")
