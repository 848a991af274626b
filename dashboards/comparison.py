"""The challenger against the active model on the same live transactions: both score distributions, how often each
flags at its own thresholds, where they disagree, and their precision and recall on the rows labeled since.

Each model's decision here is its own (its score against its version's thresholds): the rules and the lists, which
decide the same whichever model scores, are left out, so a disagreement is the models' alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from scoring.models import Decision, ModelVersion, Transaction

PERIODS = {
    "24h": ("24 h", timedelta(hours=24)),
    "7d": ("7 days", timedelta(days=7)),
    "30d": ("30 days", timedelta(days=30)),
}
DEFAULT_PERIOD = "7d"
BINS = 20  # score bands of the histograms, 0.05 wide
DISAGREEMENTS_SHOWN = 50  # the widest apart first


@dataclass(frozen=True)
class Side:
    """One model's figures over the compared rows."""

    version: str
    review_threshold: float
    block_threshold: float
    histogram: tuple[int, ...]  # rows per score band
    reviewed: int
    blocked: int
    rows: int
    labeled_flagged: int  # flagged rows with a label
    caught: int  # flagged rows labeled fraud
    frauds: int  # rows labeled fraud, flagged or not

    @property
    def flagged(self) -> int:
        return self.reviewed + self.blocked

    @property
    def flag_rate(self) -> float | None:
        return self.flagged / self.rows if self.rows else None

    @property
    def precision(self) -> float | None:
        return self.caught / self.labeled_flagged if self.labeled_flagged else None

    @property
    def recall(self) -> float | None:
        return self.caught / self.frauds if self.frauds else None


@dataclass(frozen=True)
class Disagreement:
    """A transaction that one model flags and the other approves."""

    id: int
    external_id: str
    card_id: str
    case_id: int | None
    received_at: datetime
    champion_score: float
    champion_decision: str
    challenger_score: float
    challenger_decision: str
    is_fraud: bool | None


@dataclass(frozen=True)
class Comparison:
    challenger: ModelVersion
    champion: Side
    shadow: Side
    rows: int
    labeled: int
    agreement: dict[str, int]  # both_flag, champion_only, challenger_only, both_approve
    disagreements: list[Disagreement]  # at most DISAGREEMENTS_SHOWN

    @property
    def disagreeing(self) -> int:
        return self.agreement["champion_only"] + self.agreement["challenger_only"]


def compare(challenger: ModelVersion, *, now: datetime, period: str = DEFAULT_PERIOD) -> Comparison:
    """The comparison over the rows received in `period` before `now` that the challenger scored."""
    since = now - PERIODS[period][1]
    scored = Transaction.objects.filter(
        challenger_version=challenger.version, challenger_score__isnull=False, received_at__gte=since
    )
    values = list(scored.values_list("id", "model_version", "score", "challenger_score", "is_fraud"))
    ids = np.array([v[0] for v in values], dtype=np.int64)
    champion_scores = np.array([v[2] for v in values], dtype=np.float64)
    shadow_scores = np.array([v[3] for v in values], dtype=np.float64)
    labels = np.array([-1 if v[4] is None else int(v[4]) for v in values], dtype=np.int8)
    review, block, active = _champion_thresholds({v[1] for v in values}, [v[1] for v in values])
    champion = decisions(champion_scores, review=review, block=block)
    shadow = decisions(
        shadow_scores,
        review=np.full(len(values), challenger.review_threshold),
        block=np.full(len(values), challenger.block_threshold),
    )
    champion_flags, shadow_flags = champion > 0, shadow > 0
    apart = np.flatnonzero(champion_flags != shadow_flags)
    widest = apart[np.argsort(-np.abs(champion_scores[apart] - shadow_scores[apart]), kind="stable")]
    shown = active or ModelVersion(version="none active")  # the field defaults' thresholds
    return Comparison(
        challenger=challenger,
        champion=_side(shown, champion_scores, champion, labels),
        shadow=_side(challenger, shadow_scores, shadow, labels),
        rows=len(values),
        labeled=int((labels >= 0).sum()),
        agreement={
            "both_flag": int((champion_flags & shadow_flags).sum()),
            "champion_only": int((champion_flags & ~shadow_flags).sum()),
            "challenger_only": int((~champion_flags & shadow_flags).sum()),
            "both_approve": int((~champion_flags & ~shadow_flags).sum()),
        },
        disagreements=_disagreements(
            ids[widest[:DISAGREEMENTS_SHOWN]].tolist(),
            champion=champion[widest[:DISAGREEMENTS_SHOWN]].tolist(),
            shadow=shadow[widest[:DISAGREEMENTS_SHOWN]].tolist(),
        ),
    )


DECISIONS = (Decision.APPROVE, Decision.REVIEW, Decision.BLOCK)  # by the codes decisions() gives


def decisions(scores: np.ndarray, *, review: np.ndarray, block: np.ndarray) -> np.ndarray:
    """0 approve, 1 review, 2 block for each score against its thresholds, as Scorer.decide does."""
    return np.where(scores >= block, 2, np.where(scores >= review, 1, 0)).astype(np.int8)


def histogram(scores: np.ndarray) -> tuple[int, ...]:
    """Rows per score band of 1/BINS; a score of exactly 1 counts in the last."""
    bands = np.minimum((scores * BINS).astype(np.int64), BINS - 1)
    return tuple(np.bincount(bands, minlength=BINS).tolist())


def _champion_thresholds(versions: set[str], per_row: list[str]) -> tuple[np.ndarray, np.ndarray, ModelVersion | None]:
    """Each row's review and block thresholds: those of the version that scored it (the active version's for a
    version since deleted), and the active version, whose thresholds the page names."""
    active = ModelVersion.objects.active()
    known = {
        mv["version"]: (mv["review_threshold"], mv["block_threshold"])
        for mv in ModelVersion.objects.filter(version__in=versions).values(
            "version", "review_threshold", "block_threshold"
        )
    }
    shown = active or ModelVersion()  # none active: the field defaults' thresholds
    fallback = (shown.review_threshold, shown.block_threshold)
    pairs = [known.get(v, fallback) for v in per_row]
    review = np.array([p[0] for p in pairs], dtype=np.float64)
    block = np.array([p[1] for p in pairs], dtype=np.float64)
    return review, block, active


def _side(mv: ModelVersion, scores: np.ndarray, codes: np.ndarray, labels: np.ndarray) -> Side:
    """One model's figures; the thresholds named are its version's (for the champion, the active version's)."""
    flagged = codes > 0
    return Side(
        version=mv.version,
        review_threshold=mv.review_threshold,
        block_threshold=mv.block_threshold,
        histogram=histogram(scores),
        reviewed=int((codes == 1).sum()),
        blocked=int((codes == 2).sum()),
        rows=len(scores),
        labeled_flagged=int((flagged & (labels >= 0)).sum()),
        caught=int((flagged & (labels == 1)).sum()),
        frauds=int((labels == 1).sum()),
    )


def _disagreements(ids: list[int], *, champion: list[int], shadow: list[int]) -> list[Disagreement]:
    """The rows named by `ids`, in that order, with both models' decisions as compare() made them."""
    rows = Transaction.objects.in_bulk(ids)
    return [
        Disagreement(
            id=tx.id,
            external_id=tx.external_id,
            card_id=tx.card_id,
            case_id=tx.case_id,
            received_at=tx.received_at,
            champion_score=tx.score,
            champion_decision=DECISIONS[champion_code],
            challenger_score=tx.challenger_score,
            challenger_decision=DECISIONS[shadow_code],
            is_fraud=tx.is_fraud,
        )
        for tx, champion_code, shadow_code in zip((rows[i] for i in ids), champion, shadow, strict=True)
    ]
