"""ASGI entry point: Django for HTTP (and static files), Channels for the dashboard sockets."""

from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fraudsite.settings")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Build the Django app first: it sets up the app registry that the imports below need.
django_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from dashboards.routing import websocket_urlpatterns  # noqa: E402
from scoring.consumers import BatchIngestConsumer, IngestConsumer  # noqa: E402

# The two ingest endpoints skip Django's request cycle (see scoring/consumers.py); all else is Django.
http_routes = [
    path("api/v1/transactions", IngestConsumer.as_asgi()),
    path("api/v1/transactions/batch", BatchIngestConsumer.as_asgi()),
    re_path(r"", ASGIStaticFilesHandler(django_app)),
]

application = ProtocolTypeRouter(
    {
        "http": URLRouter(http_routes),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Start-up objects live for the whole process: keep them out of full collections (long GC pauses).
gc.collect()
gc.freeze()
