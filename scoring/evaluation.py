"""Offline evaluation: train on earlier simulated weeks, score the later ones as live traffic is scored.

The simulated history is imported like any CSV (`scoring.history`); the model trains on the weeks
before the test period minus the label delay; every test transaction is then featured from the
database by `scoring.features.feature_rows` and scored by `Scorer`, the serving path, next to a
logistic-regression baseline on the same features. By default everything imported is rolled back.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from scoring.classifier import Scorer
from scoring.features import FEATURES, feature_rows
from scoring.history import import_csv, write_csv
from scoring.measures import BLOCK_THRESHOLD, REVIEW_THRESHOLD, holdout_metrics
from scoring.models import ModelVersion
from scoring.schemas import TransactionIn
from scoring.simulation import Simulator
from scoring.training import (
    DEFAULT_DEPTH,
    DEFAULT_TREES,
    Progress,
    TrainingResult,
    history_features,
    positive_weight,
    records_frame,
    train,
)

SCORE_CHUNK = 1000


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, dict[str, float | None]]  # by model: "xgboost", "logistic_regression"
    rows: dict[str, int]
    mismatched_rows: int  # test rows whose served features differ from the training features
    seconds: float


def evaluate(
    *,
    days: int = 35,
    test_days: int = 7,
    cards: int = 2000,
    seed: int = 0,
    n_estimators: int = DEFAULT_TREES,
    max_depth: int = DEFAULT_DEPTH,
    keep: bool = False,
    progress: Progress | None = None,
) -> Evaluation:
    """Simulate, import, train, then score the last `test_days` through the serving path."""
    say = progress or (lambda _message: None)
    started = time.monotonic()
    with transaction.atomic():
        end = timezone.now().replace(minute=0, second=0, microsecond=0)
        records = _simulate_and_import(days=days, cards=cards, seed=seed, end=end, say=say)
        test_start = pd.Timestamp(end - timedelta(days=test_days))
        evaluation = _train_and_score(
            records, test_start=test_start, n_estimators=n_estimators, max_depth=max_depth, say=say
        )
        if not keep:
            transaction.set_rollback(True)  # leave the database as it was
    return Evaluation(**evaluation, seconds=time.monotonic() - started)


def _simulate_and_import(*, days: int, cards: int, seed: int, end: datetime, say: Progress) -> list[dict[str, Any]]:
    # A fresh id prefix: the simulated cards and merchants share no history with stored traffic.
    sim = Simulator(seed=seed, cards=cards, merchants=max(5, cards // 5), prefix=f"eval{secrets.token_hex(3)}-")
    records = list(sim.history(start=end - timedelta(days=days), end=end))
    say(f"simulated {len(records):,} transactions over {days} days on {cards:,} cards")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "history.csv"
        with open(path, "w", newline="") as f:
            write_csv(records, f)
        report = import_csv(path, source="evaluate", batch_size=5000, progress=say)
    say(f"imported: {report.summary()}")
    return records


def _train_and_score(
    records: list[dict[str, Any]], *, test_start: pd.Timestamp, n_estimators: int, max_depth: int, say: Progress
) -> dict[str, Any]:
    frame = records_frame(records)
    x = history_features(frame, progress=say)
    y = frame["is_fraud"].to_numpy(dtype=bool)
    train_end = test_start - pd.Timedelta(days=settings.FRAUD_LABEL_DELAY_DAYS)
    frame["labeled"] = (frame["timestamp"] < train_end).to_numpy()
    fit = frame["labeled"].to_numpy()
    result = train(frame, n_estimators=n_estimators, max_depth=max_depth, holdout_fraction=0, features=x, progress=say)
    baseline = baseline_model(x[fit], y[fit])
    test = (frame["timestamp"] >= test_start).to_numpy()
    by_id = {r["external_id"]: r for r in records}
    served = serve_features([by_id[ext] for ext in frame["external_id"][test]], say=say)
    scores = {
        "xgboost": _serving_scores(result, served),
        "logistic_regression": baseline.predict_proba(served)[:, 1],
    }
    cards, stamps = frame["card_id"][test], frame["timestamp"][test]
    return {
        "metrics": {
            name: holdout_metrics(y=y[test], scores=s, cards=cards, timestamps=stamps) for name, s in scores.items()
        },
        "rows": {"train": int(fit.sum()), "train_fraud": int(y[fit].sum())}
        | {"test": int(test.sum()), "test_fraud": int(y[test].sum())},
        "mismatched_rows": _mismatches(served, x[test]),
    }


def baseline_model(x: np.ndarray, y: np.ndarray) -> Pipeline:
    """Logistic regression on the same features: missing values imputed (and flagged), then scaled."""
    model = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(max_iter=2000),
    )
    weights = np.where(y, positive_weight(y), 1.0)
    return model.fit(x, y, logisticregression__sample_weight=weights)


def serve_features(records: list[dict[str, Any]], *, say: Progress) -> np.ndarray:
    """The features serving computes from the database for each (stored) transaction, one at a time.

    One at a time because `feature_rows` adds a batch's own items to the stored history, and these
    transactions are stored already.
    """
    rows = []
    for i, record in enumerate(records, start=1):
        item = TransactionIn.model_validate({k: v for k, v in record.items() if k != "is_fraud"})
        rows.extend(feature_rows([item]))
        if i % 2000 == 0:
            say(f"served features: {i:,} of {len(records):,} test transactions")
    return np.array(rows, dtype=float).reshape(len(rows), len(FEATURES))


def _serving_scores(result: TrainingResult, rows: np.ndarray) -> np.ndarray:
    mv = ModelVersion(
        version="evaluation",
        artifact=result.artifact,
        features=FEATURES,
        review_threshold=REVIEW_THRESHOLD,
        block_threshold=BLOCK_THRESHOLD,
    )
    scorer = Scorer(mv)
    scored = []
    for i in range(0, len(rows), SCORE_CHUNK):
        scored += [s.score for s in scorer.score(rows[i : i + SCORE_CHUNK].tolist())]
    return np.array(scored)


def _mismatches(served: np.ndarray, trained: np.ndarray) -> int:
    same = (served == trained) | (np.isnan(served) & np.isnan(trained))
    return int((~same.all(axis=1)).sum())
