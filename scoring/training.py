"""Training: point-in-time features for stored history, a time-split XGBoost model, its holdout metrics.

The features of every historical row are computed with `scoring.features`, exactly as live scoring
would have computed them had the earlier rows been stored: the card's transactions of the 30 days
before it (what serving fetches) and the merchant's hourly counts (what serving keeps), with fraud
labels only past the label delay.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xgboost as xgb
from django.conf import settings
from django.utils import timezone

from scoring.challenger import mark as make_challenger
from scoring.classifier import active_model, version_name
from scoring.features import (
    FEATURES,
    HISTORY_SPAN,
    CardHistory,
    MerchantBuckets,
    TxFacts,
    epoch_hour,
    feature_vector,
    merchant_counts,
)
from scoring.measures import BLOCK_THRESHOLD, REVIEW_THRESHOLD, calibration_error, holdout_metrics, reliability
from scoring.models import IMPORTED, Decision, ModelVersion, Transaction
from scoring.simulation import Simulator

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

Progress = Callable[[str], None]
COLUMNS = ["external_id", "card_id", "merchant_id", "amount", "timestamp", "channel", "is_fraud", "labeled"]
DEFAULT_TREES = 50
DEFAULT_DEPTH = 3
DEFAULT_HOLDOUT = 0.25
SEED = 7
MIN_LABELED = 1000  # fewer labeled stored rows than this: train_model (and a lead's retrain) simulates history
DEFAULT_SIMULATED_DAYS = 35


class TrainingError(ValueError):
    """The data cannot train a model (too few rows, no fraud, a span shorter than the label delay)."""


@dataclass(frozen=True)
class TrainingResult:
    artifact: bytes
    params: dict[str, Any]
    metrics: dict[str, Any]  # holdout_metrics(), the calibration error and the reliability table
    data_range: dict[str, str | float]
    rows: dict[str, int]
    thresholds: dict[str, float] = field(default_factory=lambda: {"review": REVIEW_THRESHOLD, "block": BLOCK_THRESHOLD})


# --- frames ------------------------------------------------------------------------------------------


def records_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """A training frame from transactions in the API's shape with an `is_fraud` label (simulated)."""
    return _frame([_record_row(r) for r in records])


def _record_row(r: dict[str, Any]) -> tuple[Any, ...]:
    ids = (r["external_id"], r["card_id"], r["merchant_id"])
    return (*ids, float(r["amount"]), r["timestamp"], r.get("channel") or "", bool(r["is_fraud"]), True)


def labeled_frame(since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
    """Stored transactions as a training frame; `labeled` marks the rows whose label is known.

    A row's label is known when it was given (case verdict, label API, import), or when the row was scored
    here, approved, carries no label and is older than the label delay: chargebacks come within that delay,
    so an approved payment without one is taken as legitimate. Imported rows without a label are not known:
    an import gives every label it has, so a blank one is a payment whose outcome was not known yet (taken as
    legitimate, a fraud team's newest unlabeled week became the model's holdout, all of it "legitimate").
    Blocked or flagged rows without a verdict, and rows too young for their chargeback to have come, are not
    training targets either; every stored row still counts as history for the features of later ones, as it
    does when serving, and rows up to 30 days + the label delay before `since` are read for that reason alone.
    """
    mature = timezone.now() - timedelta(days=settings.FRAUD_LABEL_DELAY_DAYS)
    rows = Transaction.objects.order_by("timestamp", "id")
    if since is not None:
        rows = rows.filter(timestamp__gte=since - HISTORY_SPAN - timedelta(days=settings.FRAUD_LABEL_DELAY_DAYS))
    if until is not None:
        rows = rows.filter(timestamp__lt=until)
    fields = ("external_id", "card_id", "merchant_id", "amount", "timestamp", "channel", "is_fraud", "decision")
    out = []
    for ext, card, merchant, amount, at, channel, is_fraud, decision, version in rows.values_list(
        *fields, "model_version"
    ).iterator(chunk_size=5000):
        scored_here = not version.startswith(IMPORTED)
        known = is_fraud is not None or (scored_here and decision == Decision.APPROVE and at < mature)
        in_range = since is None or at >= since
        out.append((ext, card, merchant, float(amount), at, channel, bool(is_fraud), known and in_range))
    return _frame(out)


def training_frame(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    simulate_days: int | None = None,
    cards: int = 2000,
    seed: int = 0,
    simulate_if_short: bool = True,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, str]:
    """What train_model trains on, and its source ("stored" or "simulated"): the stored labeled history, or
    `simulate_days` of simulated history, or DEFAULT_SIMULATED_DAYS of it when fewer than MIN_LABELED stored rows
    are labeled (a TrainingError instead when `simulate_if_short` is off)."""
    say = progress or (lambda _message: None)
    days = simulate_days
    if days is None:
        frame = labeled_frame(since, until)
        labeled = int(frame["labeled"].sum())
        frauds = int(frame.loc[frame["labeled"], "is_fraud"].sum())
        span = _labeled_days(frame)
        # The holdout is the newest quarter of the span and training ends a label delay before it: a shorter span
        # (the demo's one day of history) leaves nothing to train on.
        needed = settings.FRAUD_LABEL_DELAY_DAYS / (1 - DEFAULT_HOLDOUT)
        if labeled >= MIN_LABELED and frauds and span > needed:
            say(f"training on {labeled:,} labeled stored transactions ({frauds:,} frauds)")
            return frame, "stored"
        short = (
            f"only {labeled:,} labeled stored transactions ({frauds:,} frauds) over {span:.1f} days: "
            f"{MIN_LABELED:,} with frauds over more than {needed:.1f} days needed"
        )
        if not simulate_if_short:
            raise TrainingError(short)
        say(f"{short}; simulating {DEFAULT_SIMULATED_DAYS} days of labeled history instead")
        days = DEFAULT_SIMULATED_DAYS
    end = timezone.now().replace(minute=0, second=0, microsecond=0)
    sim = Simulator(seed=seed, cards=cards, merchants=max(5, cards // 5))
    say(f"simulating {days} days of traffic on {cards:,} cards (seed {seed})")
    frame = records_frame(sim.history(start=end - timedelta(days=days), end=end))
    say(f"{len(frame):,} simulated transactions, {int(frame['is_fraud'].sum()):,} frauds")
    return frame, "simulated"


def _labeled_days(frame: pd.DataFrame) -> float:
    """Days from the first labeled transaction to the last (0 without any)."""
    stamps = frame.loc[frame["labeled"], "timestamp"]
    if stamps.empty:
        return 0.0
    return (stamps.max() - stamps.min()) / pd.Timedelta(days=1)


def _frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    frame["is_fraud"] = frame["is_fraud"].astype(bool)
    frame["labeled"] = frame["labeled"].astype(bool)
    return frame.sort_values("timestamp", kind="stable", ignore_index=True)


# --- features ----------------------------------------------------------------------------------------


def history_features(frame: pd.DataFrame, *, progress: Progress | None = None) -> np.ndarray:
    """The live features of every row of `frame` (row i of the result is frame row i), float64.

    A row sees what serving would have stored before it: its card's rows within HISTORY_SPAN before
    its instant, and its merchant's hourly counts (hours before its own), where `is_fraud` rows are
    the confirmed frauds.
    """
    ats = [ts.to_pydatetime() for ts in frame["timestamp"]]
    times = np.array([at.timestamp() for at in ats])
    amounts = frame["amount"].to_numpy(dtype=float)
    merchant_ids = frame["merchant_id"].to_numpy(dtype=object)
    channels = frame["channel"].fillna("").to_numpy(dtype=object)
    cards = _card_lists(frame["card_id"], times, amounts=amounts, merchants=merchant_ids)
    merchants = _merchant_buckets(merchant_ids, times, fraud=frame["is_fraud"].fillna(False).to_numpy(dtype=bool))
    span = HISTORY_SPAN.total_seconds()
    out = np.empty((len(frame), len(FEATURES)))
    for i, (at, card_id) in enumerate(zip(ats, frame["card_id"].to_numpy(dtype=object), strict=True)):
        t = times[i]
        c_times, c_amounts, c_merchants = cards[card_id]
        lo, hi = bisect_left(c_times, t - span), bisect_left(c_times, t)
        card = CardHistory(times=c_times[lo:hi], amounts=c_amounts[lo:hi], merchants=c_merchants[lo:hi])
        counts = merchant_counts(merchants[merchant_ids[i]], at=at)
        facts = TxFacts(at=at, amount=amounts[i], merchant_id=merchant_ids[i], channel=channels[i])
        out[i] = feature_vector(facts, card=card, merchant=counts)
        if progress and (i + 1) % 50_000 == 0:
            progress(f"features: {i + 1:,} of {len(frame):,} rows")
    return out


def _card_lists(
    keys: pd.Series, times: np.ndarray, *, amounts: np.ndarray, merchants: np.ndarray
) -> dict[str, tuple[list[float], list[float], list[str]]]:
    """Each card's times, amounts and merchants as time-sorted lists."""
    groups = {}
    for key, positions in keys.groupby(keys, sort=False).indices.items():
        order = positions[np.argsort(times[positions], kind="stable")]
        groups[key] = (times[order].tolist(), amounts[order].tolist(), merchants[order].tolist())
    return groups


def _merchant_buckets(merchant_ids: np.ndarray, times: np.ndarray, *, fraud: np.ndarray) -> dict[str, MerchantBuckets]:
    """Each merchant's transactions and confirmed frauds per hour: what serving keeps in MerchantHour."""
    hours = pd.DataFrame({"merchant": merchant_ids, "hour": [epoch_hour(t) for t in times], "fraud": fraud})
    per_hour = hours.groupby(["merchant", "hour"], sort=True)["fraud"].agg(["size", "sum"])
    buckets: dict[str, MerchantBuckets] = {}
    for merchant, rows in per_hour.groupby(level="merchant", sort=False):
        buckets[merchant] = MerchantBuckets(
            hours=rows.index.get_level_values("hour").tolist(),
            counts=rows["size"].tolist(),
            frauds=rows["sum"].astype(int).tolist(),
        )
    return buckets


# --- training ----------------------------------------------------------------------------------------


def train(
    frame: pd.DataFrame,
    *,
    n_estimators: int = DEFAULT_TREES,
    max_depth: int = DEFAULT_DEPTH,
    learning_rate: float = 0.15,
    holdout_fraction: float = DEFAULT_HOLDOUT,
    label_delay_days: float | None = None,
    seed: int = SEED,
    features: np.ndarray | None = None,
    progress: Progress | None = None,
) -> TrainingResult:
    """Measure a model fitted on the older labeled rows on the newest ones (the label delay between them, as a
    deployed model meets payments a delay after its newest label), then fit the stored model on every labeled
    row: the newest labeled weeks are the ones most like tomorrow's payments.

    `features`, when given, is `history_features(frame)` computed already.
    """
    delay = settings.FRAUD_LABEL_DELAY_DAYS if label_delay_days is None else label_delay_days
    say = progress or (lambda _message: None)
    started = time.monotonic()
    x = (_computed_features(frame, say=say) if features is None else features).astype(np.float32)
    split = _time_split(frame, holdout_fraction=holdout_fraction, delay_days=delay)
    y = frame["is_fraud"].to_numpy(dtype=bool)
    _check_trainable(y[split["train"]], what="training")
    params = _params(max_depth=max_depth, learning_rate=learning_rate, seed=seed)
    metrics = _measured(frame, x=x, y=y, split=split, params=params, rounds=n_estimators, say=say)
    booster = _fit(x[split["labeled"]], y=y[split["labeled"]], params=params, rounds=n_estimators, say=say)
    say(f"trained in {time.monotonic() - started:.1f} s")
    return TrainingResult(
        artifact=bytes(booster.save_raw("ubj")),
        params=params | {"n_estimators": n_estimators},
        metrics=metrics,
        data_range=_data_range(split, delay_days=delay),
        rows=_row_counts(y, split, total=len(frame)),
    )


def _measured(
    frame: pd.DataFrame,
    *,
    x: np.ndarray,
    y: np.ndarray,
    split: dict[str, Any],
    params: dict[str, Any],
    rounds: int,
    say: Progress,
) -> dict[str, Any]:
    """Holdout metrics and reliability table of a model fitted on the rows before the holdout (none without one)."""
    hold = split["holdout"]
    if not hold.any():
        return holdout_metrics(
            y=y[hold], scores=np.empty(0), cards=frame["card_id"][hold], timestamps=frame["timestamp"][hold]
        )
    say("fitting on the rows before the holdout, to measure")
    booster = _fit(x[split["train"]], y=y[split["train"]], params=params, rounds=rounds, say=say)
    scores = np.asarray(booster.inplace_predict(x[hold]))
    metrics: dict[str, Any] = holdout_metrics(
        y=y[hold], scores=scores, cards=frame["card_id"][hold], timestamps=frame["timestamp"][hold]
    )
    table = reliability(y=y[hold], scores=scores)
    say("fitting on every labeled row, to store")
    return metrics | {"calibration_error": calibration_error(table), "reliability": table}


def _computed_features(frame: pd.DataFrame, *, say: Progress) -> np.ndarray:
    started = time.monotonic()
    say(f"computing features for {len(frame):,} rows")
    features = history_features(frame, progress=say)
    say(f"features done in {time.monotonic() - started:.1f} s")
    return features


def _fit(x: np.ndarray, *, y: np.ndarray, params: dict[str, Any], rounds: int, say: Progress) -> xgb.Booster:
    dtrain = xgb.DMatrix(x, label=y.astype(np.float32), feature_names=FEATURES, missing=np.nan)
    return xgb.train(params, dtrain, num_boost_round=rounds, callbacks=[_TreeProgress(say, rounds)])


def _time_split(frame: pd.DataFrame, *, holdout_fraction: float, delay_days: float) -> dict[str, Any]:
    """Holdout: the newest `holdout_fraction` of the labeled span; train: labeled rows a delay before it (what
    the holdout is measured with); labeled: every labeled row (what the stored model is fitted on).

    With no holdout, every labeled row trains (the caller measures on data of its own).
    """
    labeled = frame["labeled"].to_numpy(dtype=bool) if "labeled" in frame else np.ones(len(frame), bool)
    stamps = frame["timestamp"]
    if not labeled.any():
        raise TrainingError("no labeled transactions to train on")
    first, last = stamps[labeled].min(), stamps[labeled].max()
    if holdout_fraction <= 0:
        return {"train": labeled, "holdout": labeled & False, "labeled": labeled, "first": first, "last": last}
    holdout_start = last - (last - first) * holdout_fraction
    train_end = holdout_start - pd.Timedelta(days=delay_days)
    if train_end <= first:
        raise TrainingError(
            f"labeled history from {first:%Y-%m-%d} to {last:%Y-%m-%d} is too short for a holdout of "
            f"{holdout_fraction:.0%} after a {delay_days:g}-day label delay"
        )
    return {
        "train": labeled & (stamps < train_end).to_numpy(),
        "holdout": labeled & (stamps >= holdout_start).to_numpy(),
        "labeled": labeled,
        "first": first,
        "last": last,
        "train_end": train_end,
        "holdout_start": holdout_start,
    }


def _check_trainable(y: np.ndarray, *, what: str) -> None:
    if y.size < 100 or not y.any() or y.all():
        raise TrainingError(f"{what} rows need both frauds and legitimate payments ({y.size} rows, {y.sum()} frauds)")


def positive_weight(y: np.ndarray) -> float:
    """The weight of a fraud row: the square root of legitimate rows per fraud.

    Enough for the rare class to be learned, without pushing scores past the review threshold as the
    full ratio does (on simulated data that cost much precision there for little recall).
    """
    positives = float(y.sum())
    return round(math.sqrt((y.size - positives) / positives), 4)


def _params(*, max_depth: int, learning_rate: float, seed: int) -> dict[str, Any]:
    """No class weight: a model fitted to the log loss of the rows as they are gives scores that are fraud
    probabilities (the reliability table shows it), so a threshold means the same from one version to the next;
    weighting frauds up moves every score up by the weight's odds and ranked no better on the Handbook's data."""
    return {
        "objective": "binary:logistic",
        "eval_metric": "aucpr",
        "tree_method": "hist",
        "max_depth": max_depth,
        "eta": learning_rate,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "min_child_weight": 1.0,
        "scale_pos_weight": 1.0,
        "nthread": 1,
        "seed": seed,
    }


class _TreeProgress(xgb.callback.TrainingCallback):
    def __init__(self, say: Progress, total: int) -> None:
        self.say, self.total, self.step = say, total, max(1, total // 5)

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: dict[str, Any]) -> bool:
        if (epoch + 1) % self.step == 0 or epoch + 1 == self.total:
            self.say(f"trees: {epoch + 1} of {self.total}")
        return False


def _data_range(split: dict[str, Any], *, delay_days: float) -> dict[str, str | float]:
    names = ("first", "last", "train_end", "holdout_start")
    stamps = {name: split[name].isoformat().replace("+00:00", "Z") for name in names if name in split}
    return {
        "start": stamps["first"],
        "end": stamps["last"],
        "train_end": stamps.get("train_end", stamps["last"]),
        "holdout_start": stamps.get("holdout_start", ""),
        "label_delay_days": delay_days,
    }


def _row_counts(y: np.ndarray, split: dict[str, Any], *, total: int) -> dict[str, int]:
    fit, hold, labeled = split["train"], split["holdout"], split["labeled"]
    return {
        "total": total,
        "train": int(fit.sum()),
        "train_fraud": int(y[fit].sum()),
        "holdout": int(hold.sum()),
        "holdout_fraud": int(y[hold].sum()),
        "stored_model": int(labeled.sum()),
        "stored_model_fraud": int(y[labeled].sum()),
    }


# --- storing -----------------------------------------------------------------------------------------


def save_model_version(
    result: TrainingResult, *, activate: bool, challenger: bool = False, actor: AbstractBaseUser | None = None
) -> ModelVersion:
    """Store the trained model as a new version; make it the active one, or the challenger (audited as `actor`'s
    change), when asked."""
    if activate and challenger:
        raise ValueError("a new version is made the active one or the challenger, not both")
    version = version_name(result.artifact)
    while ModelVersion.objects.filter(version=version).exists():  # the same artifact within a second
        version += "-b"
    mv = ModelVersion.objects.create(
        version=version,
        artifact=result.artifact,
        features=FEATURES,
        params=result.params,
        metrics=result.metrics,
        data_range=result.data_range | {"rows": result.rows},
        review_threshold=result.thresholds["review"],
        block_threshold=result.thresholds["block"],
    )
    if activate:
        mv.activate()
        active_model.reset()
    elif challenger:
        mv = make_challenger(mv.pk, actor=actor, note="trained as the challenger")
    return mv
