"""Exact SHAP contributions of a small-tree model, looked up instead of recomputed for every row.

XGBoost's exact (path-dependent) TreeSHAP looks at a row only to see which child it takes at each split
of a tree: everything else it computes comes from the tree itself. A tree of depth 3 has at most 7 splits,
so at most 128 ways through it, and its contributions are one of 128 vectors. `ShapTables` asks XGBoost
for those vectors once, when a model loads (a row taking each way that a row can take, through one tree
at a time), and then explains a batch with array lookups, several times faster than XGBoost for the
default model of 50 trees of depth 3, for a fraction of a second spent building them at load.

The values are XGBoost's own, summed in another order. `build()` gives None, and the scorer calls XGBoost
per batch instead, for trees of more than 8 splits, for a model it does not know how to read, when rows
taking the same way through a tree got different values from XGBoost, or when 2,000 rows with values on,
just below and just above the thresholds get other values from the tables than from XGBoost.
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import xgboost as xgb

log = logging.getLogger(__name__)

MAX_SPLITS = 8  # splits a tree (256 ways through it, at most 3**8 rows to ask); the default depth 3 has 7
TOLERANCE = 1e-5  # float32 sums in another order
BIG = np.finfo(np.float32).max
CHECK_ROWS = 2000  # rows checked through the whole model: values at, just below and just above thresholds


@dataclass(frozen=True)
class _Tree:
    features: np.ndarray  # the feature of each split (int)
    thresholds: np.ndarray  # a row goes left when its value is below (float32)
    default_left: np.ndarray  # where a missing value goes (bool)


@dataclass(frozen=True)
class ShapTables:
    """The model's splits as (trees, MAX_SPLITS) arrays and, per tree, the contributions of each way."""

    features: np.ndarray  # (trees, splits) feature index of each split; padding splits read feature 0
    thresholds: np.ndarray  # (trees, splits) float32; padding: -inf, so a row never goes left
    default_left: np.ndarray  # (trees, splits) bool; padding: False
    table: np.ndarray  # (trees * 2**splits, features) float32 contributions; NaN for ways no row takes
    first_way: np.ndarray  # (1, trees): where each tree's ways start in `table`
    bias: float  # the expected margin: XGBoost's last contribution column, the same for every row

    @classmethod
    def build(cls, booster: xgb.Booster, n_features: int) -> ShapTables | None:
        """Tables for `booster`, or None when they would be too big or cannot be checked equal."""
        trees = _read_trees(booster)
        if not trees or len(trees) != booster.num_boosted_rounds():  # one tree a round: slices are trees
            return None
        if max(len(t.features) for t in trees) > MAX_SPLITS:
            return None
        splits = _padded(trees)
        table = _way_table(booster, trees=trees, n_features=n_features, splits=splits)
        if table is None:
            return None
        # A threshold read wrongly, a missing value sent the wrong way: rows through every tree that sit on,
        # just below and just above the splits' thresholds take other ways than XGBoost's somewhere.
        x = _straddling_rows(trees, n_features, CHECK_ROWS)
        expected = booster.predict(_matrix(x), pred_contribs=True, validate_features=False)
        first_way = np.arange(len(trees))[None, :] << splits[0].shape[1]
        tables = cls(*splits, table, first_way, bias=float(expected[0, -1]))
        if not np.allclose(tables.contributions(x), expected, rtol=0, atol=TOLERANCE * len(trees)):
            log.warning("looked-up contributions differ from XGBoost's; not using tables")
            return None
        return tables

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """XGBoost's `pred_contribs` for the float32 rows `x`: (rows, features + 1), the bias last."""
        ways = _ways(x, self.features, self.thresholds, self.default_left)
        phi = self.table[ways + self.first_way].sum(axis=1, dtype=np.float64)
        return np.concatenate([phi, np.full((len(x), 1), self.bias)], axis=1)

    def margins(self, x: np.ndarray) -> np.ndarray:
        """What `contributions` add up to for each row (its margin), without them: one value a tree, looked up.
        NaN for a row taking a way that none of build()'s rows took (the caller asks XGBoost then)."""
        ways = _ways(x, self.features, self.thresholds, self.default_left)
        return self._way_totals[ways + self.first_way].sum(axis=1, dtype=np.float64) + self.bias

    @cached_property
    def _way_totals(self) -> np.ndarray:
        """Each way's contributions added up: the tree's leaf value, less its share of the bias."""
        return self.table.sum(axis=1, dtype=np.float64)


Splits = tuple[np.ndarray, np.ndarray, np.ndarray]  # features, thresholds, default_left: (trees, splits)


def _padded(trees: list[_Tree]) -> Splits:
    """Every tree's splits in (trees, splits) arrays, the smaller trees padded with splits no row goes left at."""
    # At least one split a tree: a model of leaves alone (a stump, constant features) still gets arrays it can index.
    splits = max(1, *(len(t.features) for t in trees))
    features = np.zeros((len(trees), splits), dtype=np.intp)
    thresholds = np.full((len(trees), splits), -np.inf, dtype=np.float32)
    default_left = np.zeros((len(trees), splits), dtype=bool)
    for i, tree in enumerate(trees):
        n = len(tree.features)
        features[i, :n], thresholds[i, :n], default_left[i, :n] = tree.features, tree.thresholds, tree.default_left
    return features, thresholds, default_left


def _way_table(booster: xgb.Booster, *, trees: list[_Tree], n_features: int, splits: Splits) -> np.ndarray | None:
    """XGBoost's contributions for every way through every tree, or None when rows taking one way differ."""
    features, thresholds, default_left = splits
    bits = features.shape[1]
    table = np.full((len(trees) << bits, n_features), np.nan, dtype=np.float32)
    for i, tree in enumerate(trees):
        x = _rows_taking_every_way(tree, n_features)
        # One tree's contributions; its bias column also holds the base score, left out here.
        phi = booster[i : i + 1].predict(_matrix(x), pred_contribs=True, validate_features=False)[:, :n_features]
        ways = _ways(x, features[i : i + 1], thresholds[i : i + 1], default_left[i : i + 1])[:, 0] + (i << bits)
        table[ways] = phi
        if not np.allclose(table[ways], phi, rtol=0, atol=TOLERANCE, equal_nan=True):
            log.warning("tree %d: rows taking the same way got different contributions; not using tables", i)
            return None
    return table


def _ways(x: np.ndarray, features: np.ndarray, thresholds: np.ndarray, default_left: np.ndarray) -> np.ndarray:
    """(rows, trees): which way each row takes through each tree, as bits (1: left at that split)."""
    values = x[:, features]  # (rows, trees, splits)
    left = np.where(np.isnan(values), default_left, values < thresholds)
    return left @ (1 << np.arange(features.shape[1]))


def _matrix(x: np.ndarray) -> xgb.DMatrix:
    return xgb.DMatrix(x, missing=np.nan, nthread=1)


def _read_trees(booster: xgb.Booster) -> list[_Tree] | None:
    """The splits of each tree of a binary gbtree model with numerical splits; None for anything else."""
    model = json.loads(booster.save_raw(raw_format="json"))["learner"]
    gbm = model["gradient_booster"]
    if gbm.get("name") != "gbtree" or model["objective"]["name"] != "binary:logistic":
        return None
    trees = []
    for tree in gbm["model"]["trees"]:
        if any(tree.get("split_type", [])) or tree.get("categories"):
            return None
        inner = [i for i, left in enumerate(tree["left_children"]) if left != -1]
        trees.append(
            _Tree(
                features=np.array([tree["split_indices"][i] for i in inner], dtype=np.intp),
                thresholds=np.array([tree["split_conditions"][i] for i in inner], dtype=np.float32),
                default_left=np.array([bool(tree["default_left"][i]) for i in inner], dtype=bool),
            )
        )
    return trees


def _straddling_rows(trees: list[_Tree], n_features: int, count: int) -> np.ndarray:
    """`count` rows whose every value is, at random, one of its feature's thresholds (in any tree), a value
    just below or just above one, the most negative or positive float32, 0 or missing (XGBoost refuses
    infinities)."""
    rng = np.random.default_rng(0)
    x = np.empty((count, n_features), dtype=np.float32)
    features = np.concatenate([t.features for t in trees])
    thresholds = np.concatenate([t.thresholds for t in trees])
    for feature in range(n_features):
        cuts = thresholds[features == feature]
        values = np.concatenate(
            [
                cuts,
                np.nextafter(cuts, np.float32(-np.inf)),
                np.nextafter(cuts, np.float32(np.inf)),
                np.array([-BIG, BIG, 0, np.nan], dtype=np.float32),
            ]
        )
        x[:, feature] = rng.choice(values, size=count)
    return x


def _rows_taking_every_way(tree: _Tree, n_features: int) -> np.ndarray:
    """Rows that between them take every way a row can take through `tree`: each feature it splits on
    takes a value from every interval its thresholds make, and a missing value, in every combination (at
    most 3**splits rows: a feature with k thresholds gives k + 2 values)."""
    used = sorted(set(tree.features.tolist()))
    if not used:  # a leaf alone: every row takes its one way
        return np.zeros((1, n_features), dtype=np.float32)
    choices = []
    for feature in used:
        cuts = np.unique(tree.thresholds[tree.features == feature])
        below = np.nextafter(cuts[0], np.float32(-np.inf))
        choices.append([below, *cuts, np.float32(np.nan)])  # a value at a threshold goes right
    combos = np.array(list(itertools.product(*choices)), dtype=np.float32).reshape(-1, len(used))
    x = np.zeros((len(combos), n_features), dtype=np.float32)
    x[:, used] = combos
    return x
