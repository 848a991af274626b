"""The challenger: scored beside the active model on the real ingest path, stored, deciding nothing; marked, ended and
promoted by leads only, each change audited."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pytest
import xgboost as xgb
from django.core.exceptions import PermissionDenied

from scoring import challenger, ingest, webhooks
from scoring.challenger import ChallengerRefused, challenger_model
from scoring.classifier import Scorer, active_model, load_booster
from scoring.features import FEATURES, feature_rows
from scoring.models import ModelChange, ModelChangeKind, ModelVersion, Transaction
from scoring.models.webhooks import EventType, WebhookEndpoint, WebhookEvent
from tests.scoring.conftest import item

pytestmark = pytest.mark.django_db


def version(artifact: bytes, *, name: str = "challenger-v", features: list[str] | None = None) -> ModelVersion:
    return ModelVersion.objects.create(
        version=name, artifact=artifact, features=features or FEATURES, review_threshold=0.5, block_threshold=0.9
    )


@pytest.fixture
def marked(model_version: ModelVersion, inverse_artifact: bytes, lead) -> ModelVersion:
    return challenger.mark_challenger(version(inverse_artifact).pk, user=lead)


@pytest.fixture
def activation_hook() -> Iterator[None]:
    """An endpoint that wants model.activated, seen at once (a test's transaction never commits), and forgotten."""
    WebhookEndpoint.objects.create(url="https://hooks.example.com/x", events=[EventType.MODEL_ACTIVATED])
    webhooks.subscriptions.reset()
    yield
    webhooks.subscriptions.reset()


# --- scored in the shadow ---------------------------------------------------------------------------------


def test_the_challengers_score_is_stored_beside_the_active_ones_and_decides_nothing(
    marked: ModelVersion, model_version: ModelVersion, inverse_artifact: bytes
) -> None:
    big, small = item(external_id="big", card_id="c-big", amount="5000.00"), item(external_id="small", amount="5.00")
    x = np.asarray(feature_rows([big, small]), dtype=np.float32)  # as ingest will compute them, nothing stored yet
    champion = Scorer(model_version).score(x)
    shadow = load_booster(inverse_artifact).inplace_predict(x)

    outcomes, _ = ingest.store([big, small])

    assert [o.result["decision"] for o in outcomes] == [s.decision for s in champion] == ["block", "approve"]
    assert [o.result["score"] for o in outcomes] == [s.score for s in champion]
    assert set(outcomes[0].result) == {
        "id",
        "external_id",
        "score",
        "decision",
        "reasons",
        "rules",
        "model_version",
        "case_id",
    }
    assert outcomes[0].result["case_id"] is not None and outcomes[1].result["case_id"] is None
    rows = {tx.external_id: tx for tx in Transaction.objects.all()}
    assert rows["small"].challenger_score == pytest.approx(float(shadow[1]), abs=1e-6) and shadow[1] > 0.9
    assert rows["big"].challenger_score == pytest.approx(float(shadow[0]), abs=1e-6) and shadow[0] < 0.5
    assert {tx.challenger_version for tx in rows.values()} == {marked.version}
    assert rows["small"].decision == "approve" and rows["small"].case_id is None  # the challenger would block it


@pytest.mark.parametrize("depth", [3, 6])  # tables looked up; trees too big for them, XGBoost's own call
def test_the_challengers_scores_are_xgboosts_probabilities_with_or_without_tables(depth: int) -> None:
    rng = np.random.default_rng(5)
    x = rng.lognormal(1.0, 1.5, size=(3000, len(FEATURES))).astype(np.float32)
    x[rng.random(x.shape) < 0.15] = np.nan
    y = (np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 3]) * 2 > 12).astype(int) ^ (rng.random(3000) < 0.05)
    params = {"objective": "binary:logistic", "max_depth": depth, "nthread": 1, "seed": 5}
    booster = xgb.train(params, xgb.DMatrix(x, label=y, missing=np.nan), num_boost_round=30)
    model = challenger.ChallengerModel(version(bytes(booster.save_raw("ubj"))))

    assert (model.tables is not None) == (depth == 3)
    np.testing.assert_allclose(model.scores(x[:500]), booster.inplace_predict(x[:500]), rtol=0, atol=2e-6)


def test_without_a_challenger_nothing_is_scored_or_stored_for_one(model_version: ModelVersion) -> None:
    ingest.store([item(external_id="plain")])

    tx = Transaction.objects.get()
    assert tx.challenger_score is None and tx.challenger_version == ""


def test_a_challenger_marked_elsewhere_is_scored_after_the_refresh_and_ended_one_is_not(
    model_version: ModelVersion, inverse_artifact: bytes, settings, lead
) -> None:
    settings.MODEL_REFRESH_SECONDS = 0  # every batch looks, as every process does after a few seconds
    ingest.store([item(external_id="before")])
    ModelVersion.objects.filter(pk=version(inverse_artifact).pk).update(is_challenger=True)  # another process
    ingest.store([item(external_id="during")])
    challenger.end_challenger(user=lead)
    ingest.store([item(external_id="after")])

    stored = dict(Transaction.objects.values_list("external_id", "challenger_version"))
    assert stored == {"before": "", "during": "challenger-v", "after": ""}


def test_a_challenger_that_cannot_score_is_logged_once_and_ingest_goes_on(
    model_version: ModelVersion, inverse_artifact: bytes, settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.MODEL_REFRESH_SECONDS = 0
    # Marked behind the domain function's back (it refuses this): a model of other features, e.g. after a deploy.
    version(inverse_artifact, features=[*FEATURES[1:], FEATURES[0]])
    ModelVersion.objects.filter(version="challenger-v").update(is_challenger=True)

    with caplog.at_level(logging.WARNING, logger="scoring.challenger"):
        ingest.store([item(external_id="one")])
        ingest.store([item(external_id="two")])

    assert Transaction.objects.filter(challenger_score__isnull=False).count() == 0
    assert Transaction.objects.count() == 2
    assert len([r for r in caplog.records if "challenger-v" in r.getMessage()]) == 1


def test_a_challenger_failing_while_scoring_is_dropped_without_failing_the_batch(
    marked: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self, x):
        raise xgb.core.XGBoostError("feature shape mismatch")

    monkeypatch.setattr(challenger.ChallengerModel, "scores", broken)
    (outcome,), _ = ingest.store([item(external_id="x")])

    assert outcome.created and Transaction.objects.get().challenger_score is None
    assert challenger_model.get() is None  # left out until the version changes


# --- mark, end, promote --------------------------------------------------------------------------------------


def test_marking_a_challenger_replaces_the_previous_one_and_audits_both(
    model_version: ModelVersion, inverse_artifact: bytes, tiny_artifact: bytes, lead
) -> None:
    first = challenger.mark_challenger(version(inverse_artifact, name="first").pk, user=lead)
    second = challenger.mark_challenger(version(tiny_artifact, name="second").pk, user=lead)

    assert list(ModelVersion.objects.filter(is_challenger=True)) == [second]
    changes = ModelChange.objects.order_by("id").values_list("model_version__version", "kind", "actor__username")
    assert list(changes) == [
        ("first", ModelChangeKind.CHALLENGER, "lead"),
        ("first", ModelChangeKind.CHALLENGER_ENDED, "lead"),
        ("second", ModelChangeKind.CHALLENGER, "lead"),
    ]
    assert ModelChange.objects.filter(model_version=first, kind=ModelChangeKind.CHALLENGER_ENDED).get().note == (
        "replaced by second"
    )


def test_the_active_version_cannot_be_the_challenger(model_version: ModelVersion, lead) -> None:
    with pytest.raises(ChallengerRefused, match="is the active version"):
        challenger.mark_challenger(model_version.pk, user=lead)
    assert not ModelChange.objects.exists()


def test_a_version_of_other_features_cannot_be_marked(model_version: ModelVersion, inverse_artifact: bytes, lead):
    other = version(inverse_artifact, features=FEATURES[:-1])
    with pytest.raises(ChallengerRefused, match="features"):
        challenger.mark_challenger(other.pk, user=lead)


def test_ending_the_challenger_is_audited_and_refused_when_there_is_none(marked: ModelVersion, lead) -> None:
    challenger.end_challenger(user=lead, note="seen enough")

    marked.refresh_from_db()
    assert not marked.is_challenger
    ended = ModelChange.objects.filter(kind=ModelChangeKind.CHALLENGER_ENDED).get()
    assert (ended.model_version, ended.note, ended.after) == (marked, "seen enough", {"is_challenger": False})
    with pytest.raises(ChallengerRefused, match="no model version is the challenger"):
        challenger.end_challenger(user=lead)


def test_promoting_activates_the_challenger_audited_with_its_webhook_event_and_leaves_no_challenger(
    marked: ModelVersion, model_version: ModelVersion, lead, activation_hook: None
) -> None:

    promoted = challenger.promote_challenger(user=lead)

    assert promoted.pk == marked.pk
    assert ModelVersion.objects.active() == marked
    assert not ModelVersion.objects.filter(is_challenger=True).exists()  # the old champion is not made one
    change = ModelChange.objects.filter(kind=ModelChangeKind.PROMOTED).get()
    assert change.actor == lead and change.before["active_version"] == model_version.version
    assert WebhookEvent.objects.filter(type=EventType.MODEL_ACTIVATED).count() == 1
    active_model.reset()
    assert active_model.get().version == marked.version


def test_a_challenger_that_cannot_serve_is_not_promoted_and_stays_the_challenger(
    model_version: ModelVersion, lead
) -> None:
    broken = version(b"not a model")
    ModelVersion.objects.filter(pk=broken.pk).update(is_challenger=True)

    with pytest.raises(ValueError, match="cannot serve"):
        challenger.promote_challenger(user=lead)

    broken.refresh_from_db()
    assert broken.is_challenger and not broken.is_active
    assert not ModelChange.objects.exists()


def test_analysts_may_not_mark_end_or_promote(marked: ModelVersion, tiny_artifact: bytes, analyst) -> None:
    other = version(tiny_artifact, name="other")
    for change in (
        lambda: challenger.mark_challenger(other.pk, user=analyst),
        lambda: challenger.end_challenger(user=analyst),
        lambda: challenger.promote_challenger(user=analyst),
    ):
        with pytest.raises(PermissionDenied):
            change()
    assert ModelVersion.objects.get(is_challenger=True) == marked
    assert ModelChange.objects.filter(actor=analyst).count() == 0
