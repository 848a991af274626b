"""Liveness and readiness: /healthz says the process serves, /readyz whether traffic should come to it."""

from __future__ import annotations

import pytest
from django.test import AsyncClient

pytestmark = pytest.mark.django_db(transaction=True)


async def _layer_down() -> bool:
    return False


async def test_healthz_answers_while_the_process_serves_even_without_a_model():
    response = await AsyncClient().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_names_the_model_and_components_when_all_is_ready(model_version):
    response = await AsyncClient().get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "database": "ok",
        "channel_layer": "ok",
        "model_version": model_version.version,
        "missing": [],
    }


async def test_readyz_is_503_naming_a_missing_active_model():
    response = await AsyncClient().get("/readyz")

    assert response.status_code == 503
    assert response.json()["missing"] == ["model_version"]
    assert "train_model" in response.json()["model_version"]


async def test_readyz_is_503_naming_the_channel_layer_when_it_is_down(model_version, monkeypatch):
    from fraudsite import health

    monkeypatch.setattr(health, "layer_ok", _layer_down)

    response = await AsyncClient().get("/readyz")

    assert response.status_code == 503
    assert response.json()["channel_layer"] == "down"
    assert response.json()["missing"] == ["channel_layer"]


async def test_readyz_is_503_naming_the_database_when_it_is_down(model_version, monkeypatch):
    from django.db import OperationalError

    from fraudsite import health

    def unreachable() -> str:
        raise OperationalError("connection refused")

    monkeypatch.setattr(health, "_active_version", unreachable)

    response = await AsyncClient().get("/readyz")

    assert response.status_code == 503
    assert response.json()["database"] == "down"
    assert response.json()["missing"] == ["database"]
