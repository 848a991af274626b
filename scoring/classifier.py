"""The active XGBoost model: loaded once per process, scored in batches, explained with exact SHAP
(looked up in tables built from XGBoost's own values when the trees are small: scoring/explain.py).

Each process checks every MODEL_REFRESH_SECONDS which version is active, so activating or rolling
back a version in the admin reaches every server without a restart.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import xgboost as xgb
from django.conf import settings

from scoring.explain import ShapTables
from scoring.features import FEATURES
from scoring.models import Decision, ModelVersion
from scoring.refreshed import Refreshed

# One thread per prediction: two threads on two cores pushed p99 up sharply (docs/performance.md).
os.environ.setdefault("OMP_NUM_THREADS", "1")
log = logging.getLogger(__name__)
TOP_REASONS = 3
CHECK_TRANSACTIONS = 20  # stored transactions a version must score before it is activated
SCORE_DECIMALS = 6  # a served score's rounding: the API's, the challenger's and the threshold figures' alike


class NoActiveModel(RuntimeError):
    """Raised when scoring is asked for and no model version is active."""


class FeatureMismatch(RuntimeError):
    """A stored model expects features the code does not compute (or in another order)."""


class ModelCannotServe(ValueError):
    """A model version that fails when loaded or scored as a server does: active, it would fail every request."""


@dataclass(frozen=True)
class Scored:
    score: float
    decision: str
    reasons: list[dict[str, float | str]]
    rules: list[dict[str, str]] = field(default_factory=list)  # the active rules that hit: {"name", "action"}
    shadow_rules: list[str] = field(default_factory=list)  # the shadow rules that hit: their names


class Scorer:
    """One loaded model version with its thresholds."""

    def __init__(self, mv: ModelVersion) -> None:
        if list(mv.features) != FEATURES:
            raise FeatureMismatch(
                f"model {mv.version} was trained on features {mv.features}, but this code computes "
                f"{FEATURES}; train a new model (manage.py train_model --activate)"
            )
        self.id = mv.id
        self.version = mv.version
        self.updated_at = mv.updated_at
        self.review_threshold = mv.review_threshold
        self.block_threshold = mv.block_threshold
        self.booster = load_booster(bytes(mv.artifact))
        self.tables = ShapTables.build(self.booster, len(FEATURES))

    def score(self, rows: list[list[float]] | np.ndarray) -> list[Scored]:
        """Scores and top reasons for many rows (lists, or a float32 matrix) in one vectorised call."""
        x = np.asarray(rows, dtype=np.float32).reshape(len(rows), len(FEATURES))
        contribs = self.contributions(x)
        # Exact SHAP values add up to the margin (the last column is the bias): one call gives both.
        probs = probabilities(contribs.sum(axis=1, dtype=np.float64))
        return [
            Scored(score=round(p, SCORE_DECIMALS), decision=self.decide(p), reasons=reasons)
            for p, reasons in zip(probs.tolist(), top_reasons(contribs), strict=True)
        ]

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Exact SHAP values of float32 rows, the bias last: from the tables when the model has them."""
        if self.tables is not None:
            contribs = self.tables.contributions(x)
            # NaN only for a way through a tree that none of build()'s rows took: none should exist.
            if not np.isnan(contribs).any():
                return contribs
        # nthread=1: the default (all cores) makes building each DMatrix slow and fights the server for CPU.
        # No feature names: __init__ checked the model's against FEATURES once, and naming and checking
        # them on every call was a good part of a one-row call's cost.
        matrix = xgb.DMatrix(x, missing=np.nan, nthread=1)
        return self.booster.predict(matrix, pred_contribs=True, validate_features=False)

    def decide(self, score: float) -> str:
        if score >= self.block_threshold:
            return Decision.BLOCK
        if score >= self.review_threshold:
            return Decision.REVIEW
        return Decision.APPROVE


def probabilities(margins: np.ndarray) -> np.ndarray:
    """Fraud probabilities from XGBoost margins, through the logistic in float64 (as every score here is made)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(margins, dtype=np.float64)))


def top_reasons(contribs: np.ndarray) -> list[list[dict[str, float | str]]]:
    """Each row's features that pushed hardest towards fraud, first (the last column is the bias).

    One sort for the whole batch, which costs about half of a sort per row; the reasons built in one flat
    pass and cut into rows, which costs less than building them row by row.
    """
    values = contribs[:, : len(FEATURES)]
    order = np.argsort(-values, axis=1, kind="stable")[:, :TOP_REASONS]
    top = np.take_along_axis(values, order, axis=1).ravel().tolist()
    names = [FEATURES[i] for i in order.ravel().tolist()]
    reasons = [{"feature": name, "contribution": round(v, 4)} for name, v in zip(names, top, strict=True)]
    width = order.shape[1]
    return [reasons[start : start + width] for start in range(0, len(reasons), width)]


def check_serves(mv: ModelVersion, *, transactions: int = CHECK_TRANSACTIONS) -> None:
    """Load `mv` as every server process will, and score the newest stored transactions (their features computed
    as ingest computes them) and rows of nothing but missing or zero values; ModelCannotServe says what failed."""
    try:
        scored = Scorer(mv).score([*_stored_rows(transactions), [math.nan] * len(FEATURES), [0.0] * len(FEATURES)])
    except Exception as exc:
        raise ModelCannotServe(f"model {mv.version} cannot serve ({type(exc).__name__}: {exc}); not activated") from exc
    wrong = [s for s in scored if not 0.0 <= s.score <= 1.0 or len(s.reasons) != min(TOP_REASONS, len(FEATURES))]
    if wrong:
        raise ModelCannotServe(f"model {mv.version} gave {wrong[0]} for a stored transaction; not activated")


def _stored_rows(limit: int) -> list[list[float]]:
    """Features of the newest stored transactions, each from the history stored before it (one that the schema
    refuses now is skipped: it says nothing about the model)."""
    from pydantic import ValidationError

    from scoring.features import feature_rows
    from scoring.models import Transaction
    from scoring.schemas import TransactionIn

    fields = ("external_id", "card_id", "merchant_id", "amount", "currency", "timestamp", "country", "channel", "mcc")
    rows = []
    for values in Transaction.objects.order_by("-id").values(*fields)[:limit]:
        values |= {"amount": f"{values['amount'].normalize():f}", "timestamp": values["timestamp"].isoformat()}
        try:
            item = TransactionIn.model_validate({k: v for k, v in values.items() if v not in ("", None)})
        except ValidationError:
            continue
        rows += feature_rows([item])
    return rows


def load_booster(artifact: bytes) -> xgb.Booster:
    booster = xgb.Booster(params={"nthread": 1})
    booster.load_model(bytearray(artifact))
    booster.set_param({"nthread": 1})
    return booster


def version_name(artifact: bytes) -> str:
    """A version string that sorts by time and names the artifact: the UTC time to the second, then the
    first six hex digits of the artifact's SHA-256 (YYYY-MM-DDTHH:MM:SSZ-xxxxxx)."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp}-{hashlib.sha256(artifact).hexdigest()[:6]}"


class _ActiveModel(Refreshed):
    """The process-wide cache of the active Scorer: looks at the database at most every MODEL_REFRESH_SECONDS, and
    on every use while none is active."""

    def __init__(self) -> None:
        super().__init__(seconds=lambda: settings.MODEL_REFRESH_SECONDS)
        self._scorer: Scorer | None = None

    def get(self) -> Scorer:
        """The active scorer."""
        if self._scorer is None:
            self.expire()
        self.look()
        if self._scorer is None:
            raise NoActiveModel("no model version is active: run `python manage.py train_model --activate`")
        return self._scorer

    def _refresh(self) -> None:
        row = ModelVersion.objects.filter(is_active=True).values_list("id", "updated_at").first()
        if row is None:
            self._scorer = None
        elif self._scorer is None or (self._scorer.id, self._scorer.updated_at) != row:
            self._scorer = Scorer(ModelVersion.objects.get(pk=row[0]))  # a new version, or new thresholds
            log.info("scoring with model %s", self._scorer.version)

    def reset(self) -> None:
        """Forget the cached scorer (tests, and right after activating a version in this process)."""
        with self._lock:
            self._scorer = None
        self.expire()


active_model = _ActiveModel()
