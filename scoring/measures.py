"""How good a model's scores are on labeled rows: ranking (AUC, average precision, card precision@100), the
review and block thresholds, and calibration (does a score of 0.3 mean fraud three times in ten?)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score

REVIEW_THRESHOLD = 0.5
BLOCK_THRESHOLD = 0.9
TOP_CARDS = 100
METRICS = (
    "auc_roc",
    "average_precision",
    "precision_at_review",
    "recall_at_review",
    "precision_at_block",
    "recall_at_block",
    "card_precision_at_100",
)
# Score bands of the reliability table: narrow where most scores fall, and edges at both thresholds.
RELIABILITY_EDGES = (0.0, 0.01, 0.05, 0.1, 0.25, REVIEW_THRESHOLD, 0.75, BLOCK_THRESHOLD, 1.0)


def holdout_metrics(
    *, y: np.ndarray, scores: np.ndarray, cards: pd.Series, timestamps: pd.Series
) -> dict[str, float | None]:
    """AUC, average precision, precision/recall at the review and block thresholds, card precision@100."""
    if not len(y):
        return dict.fromkeys(METRICS)
    both = 0 < y.sum() < y.size
    metrics: dict[str, float | None] = {
        "auc_roc": float(roc_auc_score(y, scores)) if both else None,
        "average_precision": float(average_precision_score(y, scores)) if both else None,
    }
    for name, threshold in (("review", REVIEW_THRESHOLD), ("block", BLOCK_THRESHOLD)):
        flagged = scores >= threshold
        metrics[f"precision_at_{name}"] = float(precision_score(y, flagged, zero_division=0))
        metrics[f"recall_at_{name}"] = float(recall_score(y, flagged, zero_division=0))
    metrics["card_precision_at_100"] = card_precision_at_k(y=y, scores=scores, cards=cards, timestamps=timestamps)
    return metrics


def card_precision_at_k(
    *, y: np.ndarray, scores: np.ndarray, cards: pd.Series, timestamps: pd.Series, k: int = TOP_CARDS
) -> float | None:
    """Per day, the k cards with the highest score that day: the share that had a fraud that day, averaged.

    On a day with fewer than k cards, all of that day's cards are the top.
    """
    if not len(y):
        return None
    per_card = (
        pd.DataFrame({"day": timestamps.dt.floor("D").to_numpy(), "card": cards.to_numpy(), "score": scores, "y": y})
        .groupby(["day", "card"], sort=False)
        .agg(score=("score", "max"), y=("y", "max"))
    )
    top = per_card.sort_values("score", ascending=False, kind="stable").groupby(level="day").head(k)
    return float(top.groupby(level="day")["y"].mean().mean())


def reliability(*, y: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
    """Per score band: how many rows, their mean score and the share that was fraud (None for an empty band).

    A calibrated model's mean score and fraud share agree in every band with enough rows.
    """
    bands = np.clip(np.searchsorted(RELIABILITY_EDGES, scores, side="right") - 1, 0, len(RELIABILITY_EDGES) - 2)
    table = []
    for band, (low, high) in enumerate(pairwise(RELIABILITY_EDGES)):
        inside = bands == band
        rows = int(inside.sum())
        table.append(
            {
                "band": f"{low:g}–{high:g}",
                "rows": rows,
                "mean_score": round(float(scores[inside].mean()), 4) if rows else None,
                "fraud_share": round(float(y[inside].mean()), 4) if rows else None,
            }
        )
    return table


def calibration_error(table: list[dict[str, Any]]) -> float | None:
    """The rows' average gap between mean score and fraud share, band by band (expected calibration error)."""
    rows = sum(band["rows"] for band in table)
    if not rows:
        return None
    gaps = sum(band["rows"] * abs(band["mean_score"] - band["fraud_share"]) for band in table if band["rows"])
    return round(gaps / rows, 5)
