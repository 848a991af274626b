"""Data migrations: stored rows survive a change of how they are kept, both ways."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from importlib import import_module

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = ("scoring", "0006_transaction_insert_autovacuum")
AFTER = ("scoring", "0007_features_as_values")
migration = import_module("scoring.migrations.0007_features_as_values")


def _migrate(target: tuple[str, str]):
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    executor.loader.build_graph()
    return executor.loader.project_state([target]).apps


def _latest() -> tuple[str, str]:
    """The scoring app's newest migration: where the other tests expect the database to be."""
    (leaf,) = MigrationExecutor(connection).loader.graph.leaf_nodes("scoring")
    return leaf


def _tx(apps, external_id: str, *, features, model_version: str) -> None:
    apps.get_model("scoring", "Transaction").objects.create(
        external_id=external_id,
        card_id="c",
        merchant_id="m",
        amount=5,
        currency="EUR",
        timestamp=datetime(2026, 11, 1, tzinfo=UTC),
        score=0.5,
        decision="review",
        reasons=[],
        features=features,
        model_version=model_version,
    )


@pytest.mark.django_db(transaction=True)
def test_feature_objects_become_lists_in_their_model_versions_order_and_back():
    try:
        old = _migrate(BEFORE)
        old.get_model("scoring", "ModelVersion").objects.create(version="v-a", artifact=b"", features=["b", "a"])
        _tx(old, "known", features={"a": 1.5, "b": None}, model_version="v-a")
        _tx(old, "imported", features={}, model_version="imported:bank")
        by_then = {name: float(i) for i, name in enumerate(migration.FEATURES_THEN)}
        _tx(old, "version-gone", features=by_then, model_version="v-deleted")

        new = _migrate(AFTER)
        stored = dict(new.get_model("scoring", "Transaction").objects.values_list("external_id", "features"))
        assert math.isnan(stored["known"][0]) and stored["known"][1] == 1.5  # "b" first, as the model read it
        assert len(stored["known"]) == 2
        assert stored["imported"] == []
        assert stored["version-gone"] == [float(i) for i in range(len(migration.FEATURES_THEN))]

        back = _migrate(BEFORE)
        stored = dict(back.get_model("scoring", "Transaction").objects.values_list("external_id", "features"))
        assert stored == {"known": {"a": 1.5, "b": None}, "imported": {}, "version-gone": by_then}
    finally:
        _migrate(_latest())
