"""A booster built by hand, for tests that need known scores: one tree of splits on one feature, so a row's score is
chosen by which step its value falls in (and the figures of a threshold can be counted by hand)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import xgboost as xgb

from scoring.features import FEATURE_INDEX, FEATURES
from scoring.models import ModelVersion, Transaction

ROOT_PARENT = 2147483647  # XGBoost's "no parent"
# The scores step_version()'s model gives by amount: below 100, 500, 1000 and above.
STEPS = {"cuts": [100, 500, 1000], "probs": [0.05, 0.35, 0.65, 0.95]}


def step_model(*, feature: int, n_features: int, cuts: Sequence[float], probs: Sequence[float]) -> bytes:
    """A UBJSON booster scoring probs[i] for a value of `feature` below cuts[i] (and not below the ones before),
    probs[-1] above every cut; a missing value takes the first step."""
    assert len(probs) == len(cuts) + 1
    nodes: list[dict] = []  # each: split (a cut) or leaf (a probability), its parent and children

    def add(value: float, *, split: bool, parent: int) -> int:
        nodes.append({"value": value, "split": split, "parent": parent, "left": -1, "right": -1})
        return len(nodes) - 1

    parent = ROOT_PARENT
    for k, cut in enumerate(cuts):
        node = add(cut, split=True, parent=parent)
        if parent != ROOT_PARENT:
            nodes[parent]["right"] = node
        nodes[node]["left"] = add(probs[k], split=False, parent=node)
        parent = node
    nodes[parent]["right"] = add(probs[-1], split=False, parent=parent)
    n = len(nodes)
    tree = {
        "base_weights": [0.0] * n,
        "categories": [],
        "categories_nodes": [],
        "categories_segments": [],
        "categories_sizes": [],
        "default_left": [1] * n,
        "id": 0,
        "left_children": [node["left"] for node in nodes],
        "right_children": [node["right"] for node in nodes],
        "loss_changes": [0.0] * n,
        "parents": [node["parent"] for node in nodes],
        # A leaf holds the margin; with base_score 0.5 the margin is the leaf alone: its logit is the score.
        "split_conditions": [
            float(node["value"]) if node["split"] else math.log(node["value"] / (1 - node["value"])) for node in nodes
        ],
        "split_indices": [feature if node["split"] else 0 for node in nodes],
        "split_type": [0] * n,
        "sum_hessian": [1.0] * n,
        "tree_param": {
            "num_deleted": "0",
            "num_feature": str(n_features),
            "num_nodes": str(n),
            "size_leaf_vector": "1",
        },
    }
    # A real booster's JSON to start from: the tree is replaced, the rest (objective, base score) kept.
    x = np.zeros((4, n_features), dtype=np.float32)
    params = {"max_depth": 1, "objective": "binary:logistic", "base_score": 0.5, "nthread": 1}
    model = json.loads(xgb.train(params, xgb.DMatrix(x, label=[0, 0, 1, 1]), num_boost_round=1).save_raw("json"))
    model["learner"]["gradient_booster"]["model"]["trees"] = [tree]
    booster = xgb.Booster()
    booster.load_model(bytearray(json.dumps(model).encode()))
    return bytes(booster.save_raw("ubj"))


def step_version(name: str = "step-1") -> ModelVersion:
    """A stored version of the step model over every feature, scoring by amount (STEPS)."""
    artifact = step_model(feature=FEATURE_INDEX["amount"], n_features=len(FEATURES), **STEPS)
    return ModelVersion.objects.create(version=name, artifact=artifact, features=FEATURES)


def row(
    n: int, *, amount: float, card: str, at: datetime, fraud: bool | None, currency: str = "EUR", **kw: Any
) -> None:
    """A stored transaction whose features hold `amount` (the rest missing); its stored score is not the model's."""
    features = [math.nan] * len(FEATURES)
    features[FEATURE_INDEX["amount"]] = float(amount)
    values = {
        "external_id": f"t-{n}",
        "card_id": card,
        "merchant_id": "shop-1",
        "amount": Decimal(str(amount)),
        "currency": currency,
        "timestamp": at,
        "score": 0.01,
        "decision": "approve",
        "features": features,
        "model_version": "step-1",
        "is_fraud": fraud,
    }
    Transaction.objects.create(**(values | kw))
