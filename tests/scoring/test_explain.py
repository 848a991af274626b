"""SHAP contributions looked up in tables equal XGBoost's own, and big trees fall back to XGBoost."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import xgboost as xgb

from scoring import explain
from scoring.classifier import TOP_REASONS, Scorer, top_reasons
from scoring.explain import ShapTables
from scoring.features import FEATURES

N_FEATURES = len(FEATURES)


def booster(*, trees: int, depth: int, seed: int = 3) -> xgb.Booster:
    """A model of `trees` trees of `depth` on rows with missing values and repeated values (ties at thresholds)."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(1.0, 1.5, size=(3000, N_FEATURES)).round(1).astype(np.float32)
    x[rng.random(x.shape) < 0.15] = np.nan
    y = (np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 3]) * 2 > 12).astype(int) ^ (rng.random(3000) < 0.05)
    params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "nthread": 1, "seed": seed}
    return xgb.train(params, xgb.DMatrix(x, label=y, missing=np.nan), num_boost_round=trees)


def rows(seed: int = 11, n: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(1.0, 1.5, size=(n, N_FEATURES)).round(1).astype(np.float32)
    x[rng.random(x.shape) < 0.15] = np.nan
    return x


def xgboost_contributions(model: xgb.Booster, x: np.ndarray) -> np.ndarray:
    return model.predict(xgb.DMatrix(x, missing=np.nan), pred_contribs=True)


def test_looked_up_contributions_equal_xgboosts_with_missing_values_and_ties():
    model = booster(trees=50, depth=3)
    tables = ShapTables.build(model, N_FEATURES)
    assert tables is not None
    x = rows()
    # Values exactly at a split's threshold (they go right), and just below it.
    x[:500, tables.features[0, 0]] = tables.thresholds[0, 0]
    x[500:1000, tables.features[0, 0]] = np.nextafter(tables.thresholds[0, 0], np.float32(-np.inf))
    expected = xgboost_contributions(model, x)
    got = tables.contributions(x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    # Margins, hence scores, as XGBoost's.
    np.testing.assert_allclose(got.sum(axis=1), model.predict(xgb.DMatrix(x), output_margin=True), atol=1e-5)


def test_looked_up_margins_equal_xgboosts_without_computing_contributions():
    model = booster(trees=50, depth=3)
    tables = ShapTables.build(model, N_FEATURES)
    assert tables is not None
    x = rows(seed=12)
    x[:300, tables.features[0, 0]] = tables.thresholds[0, 0]

    got = tables.margins(x)

    np.testing.assert_allclose(got, model.predict(xgb.DMatrix(x), output_margin=True), rtol=0, atol=1e-5)
    np.testing.assert_allclose(got, tables.contributions(x).sum(axis=1), rtol=0, atol=1e-9)


def test_trees_deeper_than_the_tables_take_get_no_tables():
    assert ShapTables.build(booster(trees=5, depth=6), N_FEATURES) is None


@pytest.mark.parametrize("split", range(7))
def test_tables_with_a_threshold_one_float32_step_off_are_not_used(monkeypatch, split):
    """The checks in build() can fail: a threshold read one step too high sends values at XGBoost's own
    threshold the wrong way (checking only the rows built from the wrong thresholds let some of these through)."""
    model = booster(trees=10, depth=3)
    assert ShapTables.build(model, N_FEATURES) is not None
    read = explain._read_trees

    def one_step_off(model):
        trees = read(model)
        trees[3].thresholds[split] = np.nextafter(trees[3].thresholds[split], np.float32(np.inf))
        return trees

    monkeypatch.setattr(explain, "_read_trees", one_step_off)
    assert ShapTables.build(model, N_FEATURES) is None


class _Version:
    """What Scorer reads of a ModelVersion."""

    def __init__(self, model: xgb.Booster) -> None:
        self.id, self.version, self.features = 1, "v", FEATURES
        self.review_threshold, self.block_threshold = 0.5, 0.9
        self.updated_at = datetime(2026, 1, 1, tzinfo=UTC)
        self.artifact = model.save_raw(raw_format="ubj")


@pytest.mark.parametrize("depth", [3, 6])
def test_scorer_gives_xgboosts_scores_and_reasons_with_or_without_tables(depth):
    model = booster(trees=30, depth=depth)
    scorer = Scorer(_Version(model))
    assert (scorer.tables is not None) == (depth == 3)
    x = rows(n=300)
    scored = scorer.score(x)
    expected = xgboost_contributions(model, x)
    probs = model.predict(xgb.DMatrix(x, missing=np.nan))
    assert [s.score for s in scored] == pytest.approx(probs.tolist(), abs=2e-6)
    for s, row in zip(scored, expected, strict=True):
        top = np.argsort(-row[:-1], kind="stable")[:3]
        assert [r["contribution"] for r in s.reasons] == pytest.approx(row[top].tolist(), abs=2e-4)


def test_each_rows_reasons_are_its_three_strongest_pushes_towards_fraud_in_order():
    rng = np.random.default_rng(4)
    contribs = rng.normal(size=(50, N_FEATURES + 1)).astype(np.float32)
    contribs[7, :N_FEATURES] = 0.25  # all tied: the first features, in FEATURES' order
    contribs[9, -1] = 99.0  # the bias is never a reason

    reasons = top_reasons(contribs)

    assert len(reasons) == 50
    for row, given in zip(contribs.tolist(), reasons, strict=True):
        strongest = sorted(range(N_FEATURES), key=lambda i: -row[i])[:TOP_REASONS]
        assert given == [{"feature": FEATURES[i], "contribution": round(row[i], 4)} for i in strongest]
    assert [r["feature"] for r in reasons[7]] == FEATURES[:TOP_REASONS]
    assert top_reasons(contribs[:0]) == []


def _trained(x: np.ndarray, y: np.ndarray, *, depth: int, trees: int) -> xgb.Booster:
    params = {"objective": "binary:logistic", "max_depth": depth, "nthread": 1, "seed": 1}
    return xgb.train(params, xgb.DMatrix(x, label=y, missing=np.nan), num_boost_round=trees)


def _any_model_xgboost_can_produce() -> dict[str, xgb.Booster]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, N_FEATURES)).astype(np.float32)
    y = (x[:, 2] > 0.8).astype(int)
    constant = np.ones((200, N_FEATURES), dtype=np.float32)
    return {
        "leaves only (constant features)": _trained(constant, np.r_[np.ones(20), np.zeros(180)], depth=3, trees=3),
        "stumps": _trained(x, y, depth=1, trees=5),
        "a single tree": _trained(x, y, depth=3, trees=1),
        "a single leaf": _trained(constant, np.r_[np.ones(20), np.zeros(180)], depth=3, trees=1),
    }


@pytest.mark.parametrize("kind", list(_any_model_xgboost_can_produce()))
def test_models_of_stumps_single_trees_and_bare_leaves_serve_with_xgboosts_scores_and_reasons(kind):
    model = _any_model_xgboost_can_produce()[kind]
    scorer = Scorer(_Version(model))
    x = rows(n=200)
    scored = scorer.score(x)
    expected = xgboost_contributions(model, x)
    assert [s.score for s in scored] == pytest.approx(model.predict(xgb.DMatrix(x, missing=np.nan)).tolist(), abs=2e-6)
    for s, row in zip(scored, expected, strict=True):
        assert len(s.reasons) == TOP_REASONS
        assert [r["contribution"] for r in s.reasons] == pytest.approx(sorted(row[:-1], reverse=True)[:3], abs=2e-4)
