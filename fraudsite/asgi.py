"""ASGI entry point: Channels routes the ingest endpoint and Django for HTTP, and the dashboard sockets."""

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
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import re_path  # noqa: E402

from dashboards.routing import websocket_urlpatterns  # noqa: E402
from fraudsite.middleware import BodyDeadline  # noqa: E402
from fraudsite.origins import SameOriginValidator  # noqa: E402
from scoring import endpoint  # noqa: E402

application = ProtocolTypeRouter(
    {
        # The two ingest routes are plain ASGI applications, served ahead of Django (scoring/endpoint.py);
        # everything else, static files included, is Django's. A body must arrive in time for either.
        "http": BodyDeadline(URLRouter([*endpoint.urlpatterns, re_path(r"", ASGIStaticFilesHandler(django_app))])),
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Start-up objects live for the whole process: keep them out of full collections (long GC pauses).
gc.collect()
gc.freeze()
