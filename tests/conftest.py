"""Test-wide fixtures: a tiny model trained once per session, API keys, analysts."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from scoring.classifier import active_model, version_name
from scoring.features import FEATURE_INDEX, FEATURES
from scoring.ingest import lists


@pytest.fixture(scope="session")
def tiny_artifact() -> bytes:
    """A small booster on synthetic rows where big amounts relative to the card's average are fraud."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, len(FEATURES))).astype(np.float32)
    ratio = x[:, FEATURE_INDEX["amount_vs_card_avg_30d"]]
    y = (ratio + 0.3 * rng.normal(size=2000) > 1.0).astype(int)
    booster = xgb.train(
        {"max_depth": 3, "eta": 0.3, "objective": "binary:logistic", "nthread": 1, "seed": 7},
        xgb.DMatrix(x, label=y, feature_names=FEATURES),
        num_boost_round=20,
    )
    return bytes(booster.save_raw("ubj"))


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    """Each test sees the database as it is: no scorer or list cached from another test."""
    active_model.reset()
    lists.reset()
    yield
    active_model.reset()
    lists.reset()


@pytest.fixture
def model_version(db, tiny_artifact):
    from scoring.models import ModelVersion

    mv = ModelVersion.objects.create(
        version=version_name(tiny_artifact),
        artifact=tiny_artifact,
        features=FEATURES,
        review_threshold=0.5,
        block_threshold=0.9,
    )
    mv.activate()
    return mv


@pytest.fixture
def api_key(db) -> str:
    from scoring.models import ApiKey

    _, raw = ApiKey.issue(name="tests")
    return raw
