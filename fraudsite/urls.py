from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import urls as auth_urls
from django.urls import URLPattern, include, path

from fraudsite.health import healthz, readyz
from fraudsite.metrics import metrics
from scoring.api import api


def account_routes(*, reset: bool) -> list[URLPattern]:
    """Django's login, logout and password change; password reset only when a mail can carry its link."""
    return [route for route in auth_urls.urlpatterns if reset or not route.name.startswith("password_reset")]


urlpatterns = [
    path("api/v1/", api.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include(account_routes(reset=settings.PASSWORD_RESET_OFFERED))),
    path("", include("dashboards.urls")),
]
