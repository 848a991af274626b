"""Thresholds by consequence: what a model version's review and block thresholds would have done to the stored
traffic of the last days, at every threshold, and the one way a lead changes them.

The figures re-score each stored row's feature values (as the model saw them when the row was scored) with the
version asked about, so a candidate version is judged on the same traffic as the active one. Every figure is a
count of scores at or above a threshold: each is one sort and one cumulative sum, then read at any threshold by
binary search, never one pass per threshold.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import connections, transaction
from django.db.models.sql.constants import MULTI
from django.utils import timezone

from scoring.classifier import SCORE_DECIMALS, active_model, load_booster, probabilities
from scoring.models import ModelChange, ModelChangeKind, ModelVersion, Transaction
from scoring.roles import require_lead

log = logging.getLogger(__name__)
DAY_CHOICES = (7, 30, 90)
DEFAULT_DAYS = 30
GRID = tuple(round(k / 100, 2) for k in range(101))  # every threshold the chart and the table are read at
CHUNK = 20_000  # stored rows read and scored at a time: memory stays bounded on a large store
CACHE_SECONDS = 60.0  # a lead trying thresholds asks for the same figures many times in a minute


@dataclass(frozen=True)
class Point:
    """What one threshold would have done: scores at or above it flagged."""

    threshold: float
    flagged: int
    flag_rate: float | None  # None without scored rows
    flagged_per_day: float
    cases_per_day: float
    precision: float | None  # of the labeled flagged rows, the share fraud; None when none is labeled
    recall: float | None  # of the labeled fraud, the share flagged; None without labeled fraud
    caught: dict[str, float]  # fraud amount flagged, per currency (amounts in different currencies never added)


@dataclass
class _Sorted:
    """Scores sorted ascending, with the running total of a weight from the top: the weight of the scores at or
    above any threshold in one binary search."""

    scores: np.ndarray
    above: np.ndarray  # above[i]: the sum of the weights of scores[i:]; one more element (0) at the end

    @classmethod
    def of(cls, scores: np.ndarray, weights: np.ndarray | None = None) -> _Sorted:
        order = np.argsort(scores, kind="stable")
        w = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=np.float64)[order]
        above = np.concatenate([np.cumsum(w[::-1])[::-1], [0.0]])
        return cls(scores=scores[order], above=above)

    def at(self, thresholds: np.ndarray) -> np.ndarray:
        return self.above[np.searchsorted(self.scores, thresholds, side="left")]


@dataclass
class ThresholdFigures:
    """A version's figures over the stored transactions of `days` days up to `until`."""

    version: str
    days: int
    since: datetime
    until: datetime
    rows: int  # scored here: the rows in the period with feature values this version reads
    labeled: int
    frauds: int
    without_features: int  # left out: imported history, never scored, has no feature values
    other_features: int  # left out: scored by a version with other features (or one no longer stored)
    currencies: list[str]
    _all: _Sorted = field(repr=False)
    _labeled: _Sorted = field(repr=False)  # labeled rows' scores, weighted by "is fraud"
    _pairs: _Sorted = field(repr=False)  # each (day, card)'s highest score: a flagged pair is a case that day
    _caught: dict[str, _Sorted] = field(repr=False)  # fraud rows' scores weighted by amount, per currency

    def at(self, threshold: float) -> Point:
        """The figures at one threshold (any value in 0..1, not only the grid's)."""
        return self.points([threshold])[0]

    def points(self, thresholds: list[float] | tuple[float, ...] = GRID) -> list[Point]:
        t = np.asarray(thresholds, dtype=np.float64)
        flagged = self._all.at(t)
        labeled_flagged = self._labeled_count.at(t)
        fraud_flagged = self._labeled.at(t)
        cases = self._pairs.at(t)
        caught = {currency: curve.at(t) for currency, curve in self._caught.items()}
        return [
            Point(
                threshold=float(t[i]),
                flagged=int(flagged[i]),
                flag_rate=float(flagged[i] / self.rows) if self.rows else None,
                flagged_per_day=float(flagged[i] / self.days),
                cases_per_day=float(cases[i] / self.days),
                precision=float(fraud_flagged[i] / labeled_flagged[i]) if labeled_flagged[i] else None,
                recall=float(fraud_flagged[i] / self.frauds) if self.frauds else None,
                caught={currency: round(float(amounts[i]), 4) for currency, amounts in caught.items()},
            )
            for i in range(len(t))
        ]

    @property
    def _labeled_count(self) -> _Sorted:
        return _Sorted(scores=self._labeled.scores, above=np.arange(len(self._labeled.scores), -1, -1.0))


def threshold_figures(
    version: ModelVersion, *, days: int = DEFAULT_DAYS, now: datetime | None = None
) -> ThresholdFigures:
    """Score every stored transaction of the last `days` days with `version` and count, at every threshold, what
    it would have flagged (see ThresholdFigures; rows without comparable feature values are left out, counted)."""
    until = (now or timezone.now()).astimezone(UTC)
    since = until - timedelta(days=days)
    reader = _Reader(version)
    for day, chunk in _chunks(since=since, until=until):
        reader.add(chunk, day=day)
    return reader.figures(version=version.version, days=days, since=since, until=until)


def cached_figures(version: ModelVersion, *, days: int = DEFAULT_DAYS) -> ThresholdFigures:
    """threshold_figures(), kept for CACHE_SECONDS per version and period: the page and its previews ask again and
    again while a lead tries thresholds. A threshold change does not change a score, so it does not stale them."""
    key = (version.pk, version.version, days)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
    figures = threshold_figures(version, days=days)
    with _cache_lock:
        _cache[key] = (time.monotonic(), figures)
    return figures


def forget_figures() -> None:
    """Drop the kept figures (tests; the next page reads the store again)."""
    with _cache_lock:
        _cache.clear()


_cache: dict[tuple[int, str, int], tuple[float, ThresholdFigures]] = {}
_cache_lock = threading.Lock()

FIELDS = ("model_version", "features", "is_fraud", "card_id", "amount_float", "currency")


def _chunks(*, since: datetime, until: datetime) -> Iterator[tuple[int, list[tuple]]]:
    """The period's rows in chunks, each chunk of one UTC day (numbered).

    Read day by day, the day is known without reading and parsing every row's timestamp; and read as the database
    driver gives them, the feature values alone converted by their field: Django's per-row converters cost more
    than the read itself on a large store.
    """
    features = Transaction._meta.get_field("features")
    start = since
    while start < until:
        end = min(datetime.combine(start.date() + timedelta(days=1), dt_time(), tzinfo=UTC), until)
        rows = Transaction.objects.filter(timestamp__gte=start, timestamp__lt=end).values_list(*FIELDS)
        db = connections[rows.db]
        chunked = not db.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")  # as QuerySet.iterator() decides
        compiler = rows.query.get_compiler(using=rows.db)
        for batch in compiler.execute_sql(MULTI, chunked_fetch=chunked, chunk_size=CHUNK):
            yield start.toordinal(), [(r[0], features.from_db_value(r[1], None, db), *r[2:]) for r in batch]
        start = end


class _Reader:
    """Scores the stored rows chunk by chunk and keeps only what the figures need, as arrays."""

    def __init__(self, version: ModelVersion) -> None:
        self.features = list(version.features)
        self.booster = load_booster(bytes(version.artifact))
        # Which stored versions' feature lists are this version's: a stored row's values are in its own
        # version's order, and only the same list means the same values.
        known = ModelVersion.objects.values_list("version", "features")
        self.readable = {name for name, features in known if list(features) == self.features}
        self.without_features = self.other_features = 0
        # Kept as arrays, cards and currencies as numbers: a million Python objects held to the end made the
        # garbage collector's full passes, run again and again while reading, cost more than the read itself.
        self.parts: dict[str, list[np.ndarray]] = defaultdict(list)
        self.card_ids: dict[str, int] = {}
        self.currency_ids: dict[str, int] = {}

    def add(self, chunk: list[tuple], *, day: int) -> None:
        kept = []
        for row in chunk:
            if not row[1]:
                self.without_features += 1
            elif row[0] not in self.readable or len(row[1]) != len(self.features):
                self.other_features += 1
            else:
                kept.append(row)
        if not kept:
            return
        matrix = np.array([row[1] for row in kept], dtype=np.float32)
        self.parts["score"].append(self._score(matrix))
        self.parts["label"].append(np.array([-1 if r[2] is None else int(r[2]) for r in kept], dtype=np.int8))
        self.parts["day"].append(np.full(len(kept), day, dtype=np.int64))
        cards, currencies = self.card_ids, self.currency_ids
        self.parts["card"].append(np.array([cards.setdefault(r[3], len(cards)) for r in kept], dtype=np.int64))
        self.parts["currency"].append(
            np.array([currencies.setdefault(r[5], len(currencies)) for r in kept], dtype=np.int32)
        )
        self.parts["amount"].append(np.array([r[4] for r in kept], dtype=np.float64))

    def _score(self, matrix: np.ndarray) -> np.ndarray:
        """The scores serving would give: the margin through the logistic in float64, rounded as served."""
        margin = self.booster.inplace_predict(matrix, missing=np.nan, predict_type="margin", validate_features=False)
        return np.round(probabilities(margin), SCORE_DECIMALS)

    def figures(self, *, version: str, days: int, since: datetime, until: datetime) -> ThresholdFigures:
        def joined(name: str, dtype: type) -> np.ndarray:
            return np.concatenate(self.parts[name]) if self.parts[name] else np.zeros(0, dtype=dtype)

        scores, labels = joined("score", np.float64), joined("label", np.int8)
        labeled = labels >= 0
        fraud = labels == 1
        currency = joined("currency", np.int32)
        caught = {}
        for name, number in sorted(self.currency_ids.items()):
            rows = fraud & (currency == number)
            if rows.any():
                caught[name] = _Sorted.of(scores[rows], joined("amount", np.float64)[rows])
        pairs = _highest_per_card_day(scores, day=joined("day", np.int64), card=joined("card", np.int64))
        return ThresholdFigures(
            version=version,
            days=days,
            since=since,
            until=until,
            rows=len(scores),
            labeled=int(labeled.sum()),
            frauds=int(fraud.sum()),
            without_features=self.without_features,
            other_features=self.other_features,
            currencies=list(caught),
            _all=_Sorted.of(scores),
            _labeled=_Sorted.of(scores[labeled], fraud[labeled]),
            _pairs=_Sorted.of(pairs),
            _caught=caught,
        )


def _highest_per_card_day(scores: np.ndarray, *, day: np.ndarray, card: np.ndarray) -> np.ndarray:
    """Each (day, card) pair's highest score: the pair opens (or keeps) one case that day when it is flagged."""
    if not len(scores):
        return scores
    key = (day - day.min()) * (int(card.max()) + 1) + card
    order = np.lexsort((scores, key))  # by pair, then by score: each pair's last row is its highest
    key = key[order]
    last = np.append(key[1:] != key[:-1], True)
    return scores[order][last]


# --- changing them -----------------------------------------------------------------------------------------


def check_thresholds(*, review: float, block: float) -> None:
    """Refuse thresholds a version cannot have, saying what would be accepted."""
    if any(not isinstance(v, int | float) or math.isnan(v) for v in (review, block)):
        raise ValueError("the thresholds are numbers between 0 and 1")
    if not 0 <= review <= 1 or not 0 <= block <= 1:
        raise ValueError("each threshold is between 0 and 1 (a score of at least that much is flagged)")
    if review > block:
        raise ValueError("the review threshold must not be above the block threshold: lower it or raise block")


def set_thresholds(
    version_id: int, *, user: AbstractBaseUser, review: float, block: float, note: str = ""
) -> ModelVersion:
    """Give a version new review and block thresholds (leads only), audited; the serving processes use them within
    MODEL_REFRESH_SECONDS (they reload on a new `updated_at`), this one at once."""
    require_lead(user, doing="set a model's thresholds")
    check_thresholds(review=review, block=block)
    with transaction.atomic():
        mv = ModelVersion.objects.select_for_update().get(pk=version_id)
        before = {"review_threshold": mv.review_threshold, "block_threshold": mv.block_threshold}
        after = {"review_threshold": float(review), "block_threshold": float(block)}
        if before == after:
            raise ValueError(f"these are {mv.version}'s thresholds already: nothing to change")
        mv.review_threshold, mv.block_threshold = after["review_threshold"], after["block_threshold"]
        mv.updated_at = timezone.now()
        mv.save(update_fields=["review_threshold", "block_threshold", "updated_at"])
        ModelChange.objects.create(
            model_version=mv, kind=ModelChangeKind.THRESHOLDS, before=before, after=after, note=note, actor=user
        )
        fields = {"model_version": mv.version, "actor": user.get_username(), **after}
        transaction.on_commit(active_model.reset)
        transaction.on_commit(
            lambda: log.info(
                "thresholds of model %s set to review %s, block %s by %s (were %s, %s)",
                mv.version,
                review,
                block,
                user.get_username(),
                before["review_threshold"],
                before["block_threshold"],
                extra=fields,
            )
        )
    return mv


def history(version: ModelVersion) -> list[ModelChange]:
    """The version's threshold changes, newest first, with who made them."""
    return list(version.changes.filter(kind=ModelChangeKind.THRESHOLDS).select_related("actor"))
