"""The challenger model: scored on every live transaction in the shadow of the active one, deciding nothing.

A lead marks one model version as the challenger (`mark_challenger`), ends it (`end_challenger`) or promotes it to
be the active version (`promote_challenger`); the dashboard, the admin and `train_model --challenger` all go through
these functions, which check the role and write the audit record (ModelChange) in the change's transaction.

Each process holds the challenger's booster in `challenger_model`, looking at the database every
MODEL_REFRESH_SECONDS as the active model's cache does, so a challenger marked anywhere is scored everywhere within
seconds. With none marked, ingest pays one comparison a batch.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import xgboost as xgb
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from scoring.classifier import SCORE_DECIMALS, active_model, load_booster, probabilities
from scoring.explain import ShapTables
from scoring.features import FEATURES
from scoring.models import ModelChange, ModelChangeKind, ModelVersion
from scoring.refreshed import Refreshed
from scoring.roles import require_lead
from scoring.storage import NewRow

log = logging.getLogger(__name__)


class ChallengerRefused(ValueError):
    """The change cannot be made (the active version, no challenger, features this code does not compute)."""


class ChallengerModel:
    """One loaded challenger version, scoring without explanations.

    Small trees are scored by looking up each tree's leaf in the tables the active model explains with
    (scoring/explain.py): XGBoost's own prediction call costs several times as much for the one-row batches of
    single requests, and the challenger's cost is paid on every batch. Bigger trees, or a row taking a way through
    a tree that the tables never saw, go to XGBoost's inplace_predict.
    """

    def __init__(self, mv: ModelVersion) -> None:
        self.id = mv.id
        self.version = mv.version
        self.updated_at = mv.updated_at
        self.booster: xgb.Booster = load_booster(bytes(mv.artifact))
        self.tables = ShapTables.build(self.booster, len(FEATURES))

    def scores(self, x: np.ndarray) -> list[float]:
        """Probabilities of fraud for a float32 matrix of FEATURES, rounded as the active model's scores are."""
        margins = self.tables.margins(x) if self.tables is not None else None
        if margins is None or np.isnan(margins).any():
            margins = self.booster.inplace_predict(x, missing=np.nan, predict_type="margin", validate_features=False)
        return [round(p, SCORE_DECIMALS) for p in probabilities(margins).tolist()]


class _Challenger(Refreshed):
    """The process-wide cache of the challenger, refreshed by time, safe across threads.

    A version that cannot be loaded or cannot score is logged once and left out until it changes (its id or
    updated_at): ingest never fails because of the challenger.
    """

    def __init__(self) -> None:
        super().__init__(seconds=lambda: settings.MODEL_REFRESH_SECONDS)
        self._model: ChallengerModel | None = None
        self._key: tuple[int, Any] | None = None  # (id, updated_at) of the marked version last looked at

    def get(self) -> ChallengerModel | None:
        """The challenger, or None; looks at the database at most every MODEL_REFRESH_SECONDS."""
        self.look()
        return self._model

    def _refresh(self) -> None:
        key = ModelVersion.objects.filter(is_challenger=True).values_list("id", "updated_at").first()
        if key == self._key:
            return
        self._key, self._model = key, None
        if key is None:
            return
        mv = ModelVersion.objects.get(pk=key[0])
        if list(mv.features) != FEATURES:
            log.warning("challenger %s expects other features than this code computes: not scored", mv.version)
            return
        try:
            self._model = ChallengerModel(mv)
        except Exception:
            log.exception("challenger %s cannot be loaded: not scored", mv.version)
            return
        log.info("scoring challenger %s in the shadow", mv.version)

    def drop(self, model: ChallengerModel) -> None:
        """Leave out a challenger that failed to score, until its version or updated_at changes."""
        with self._lock:
            if self._model is model:
                self._model = None

    def reset(self) -> None:
        """Forget the cached challenger (tests, and right after a change in this process)."""
        with self._lock:
            self._model, self._key = None, None
        self.expire()


challenger_model = _Challenger()


def score_challenger(rows: list[NewRow], *, features: Any) -> None:
    """Set each row's challenger score and version when a version is marked as the challenger."""
    model = challenger_model.get()
    if model is None or not rows:
        return
    try:
        scores = model.scores(np.ascontiguousarray(features, dtype=np.float32))
    except Exception:
        log.exception("challenger %s failed to score a batch: no longer scored until it changes", model.version)
        challenger_model.drop(model)
        return
    for row, score in zip(rows, scores, strict=True):
        row.challenger_score = score
        row.challenger_version = model.version


# --- the lead's changes ----------------------------------------------------------------------------------


def mark_challenger(version_id: int, *, user: AbstractBaseUser, note: str = "") -> ModelVersion:
    """Make a version the challenger (not the active one), ending any other challenger: both changes audited."""
    require_lead(user, doing="mark a challenger")
    return mark(version_id, actor=user, note=note)


def mark(version_id: int, *, actor: AbstractBaseUser | None, note: str = "") -> ModelVersion:
    """`mark_challenger` without the role check: for `train_model --challenger` and a lead's retrain job."""
    with transaction.atomic():
        mv = ModelVersion.objects.select_for_update().get(pk=version_id)
        if mv.is_challenger:
            return mv
        if mv.is_active:
            raise ChallengerRefused(f"model {mv.version} is the active version: it cannot also be its challenger")
        if list(mv.features) != FEATURES:
            raise ChallengerRefused(
                f"model {mv.version} expects features that this code does not compute: it could not score; "
                "train a new model"
            )
        previous = ModelVersion.objects.select_for_update().filter(is_challenger=True).first()
        if previous is not None:
            _unmark(previous, actor=actor, note=f"replaced by {mv.version}")
        _set_challenger(mv, flag=True)
        _audit(mv, kind=ModelChangeKind.CHALLENGER, actor=actor, note=note, flag=True)
        said = f" in place of {previous.version}" if previous is not None else ""
        _log_on_commit(f"model %s made the challenger{said} by %s", mv, actor=actor)
    return mv


def end_challenger(*, user: AbstractBaseUser, note: str = "") -> ModelVersion:
    """Stop scoring the challenger; its stored scores stay. ChallengerRefused when there is none."""
    require_lead(user, doing="end the challenger")
    with transaction.atomic():
        mv = _current_challenger()
        _unmark(mv, actor=user, note=note)
        _log_on_commit("challenger %s ended by %s", mv, actor=user)
    return mv


def promote_challenger(*, user: AbstractBaseUser, note: str = "") -> ModelVersion:
    """Make the challenger the active version (checked as every activation is, the model.activated event
    recorded); there is no challenger afterwards: the previous active version is not made one."""
    require_lead(user, doing="promote the challenger")
    with transaction.atomic():
        mv = _current_challenger()
        previous = ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()
        _set_challenger(mv, flag=False)  # before activate(): a version is never active and challenger at once
        mv.activate()
        ModelChange.objects.create(
            model_version=mv,
            kind=ModelChangeKind.PROMOTED,
            before={"is_active": False, "is_challenger": True, "active_version": previous},
            after={"is_active": True, "is_challenger": False},
            note=note,
            actor=user,
        )
        transaction.on_commit(active_model.reset)
        _log_on_commit(f"challenger %s promoted to active (in place of {previous or 'none'}) by %s", mv, actor=user)
    return mv


def current() -> ModelVersion | None:
    """The version marked as the challenger, if any."""
    return ModelVersion.objects.filter(is_challenger=True).first()


def _current_challenger() -> ModelVersion:
    mv = ModelVersion.objects.select_for_update().filter(is_challenger=True).first()
    if mv is None:
        raise ChallengerRefused("no model version is the challenger now")
    return mv


def _unmark(mv: ModelVersion, *, actor: AbstractBaseUser | None, note: str) -> None:
    _set_challenger(mv, flag=False)
    _audit(mv, kind=ModelChangeKind.CHALLENGER_ENDED, actor=actor, note=note, flag=False)


def _set_challenger(mv: ModelVersion, *, flag: bool) -> None:
    mv.is_challenger = flag
    mv.save(update_fields=["is_challenger"])
    # After the commit: a reload before it would keep the old challenger for a whole refresh period.
    transaction.on_commit(challenger_model.reset)


def _audit(mv: ModelVersion, *, kind: str, actor: AbstractBaseUser | None, note: str, flag: bool) -> None:
    ModelChange.objects.create(
        model_version=mv,
        kind=kind,
        before={"is_challenger": not flag},
        after={"is_challenger": flag},
        note=note,
        actor=actor,
        at=timezone.now(),
    )


def _log_on_commit(message: str, mv: ModelVersion, *, actor: AbstractBaseUser | None) -> None:
    who = actor.get_username() if actor is not None else "a command"
    fields = {"model_version": mv.version, "actor": who}
    transaction.on_commit(lambda: log.info(message, mv.version, who, extra=fields))
