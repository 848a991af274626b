"""ASGI entry point: Django for HTTP (and static files), Channels for the dashboard sockets."""

from __future__ import annotations

import gc
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fraudsite.settings")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Build the Django app first: it sets up the app registry that the imports below need.
django_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from dashboards.routing import websocket_urlpatterns  # noqa: E402
from scoring.endpoint import IngestEndpoint  # noqa: E402

router = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
# The two ingest endpoints skip Django's request cycle and Channels' routing (see scoring/endpoint.py).
INGEST = {
    "/api/v1/transactions": IngestEndpoint(batch=False),
    "/api/v1/transactions/batch": IngestEndpoint(batch=True),
}


async def application(scope: dict, receive: Any, send: Any) -> None:
    """Requests to the two ingest paths go straight to their endpoint; all else to Channels' router."""
    endpoint = INGEST.get(scope.get("path", "")) if scope["type"] == "http" else None
    await (endpoint or router)(scope, receive, send)


# Start-up objects live for the whole process: keep them out of full collections (long GC pauses).
gc.collect()
gc.freeze()
