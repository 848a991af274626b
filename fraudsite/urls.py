from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from fraudsite.health import healthz, readyz
from scoring.api import api

urlpatterns = [
    path("api/v1/", api.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("dashboards.urls")),
]
