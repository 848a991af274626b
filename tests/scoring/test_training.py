"""Training: the features of stored history equal live features; trained models load and score."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone

from scoring.classifier import Scorer, active_model
from scoring.features import FEATURE_INDEX, FEATURES
from scoring.history import import_csv, write_csv
from scoring.ingest import feature_rows
from scoring.models import Decision, MerchantHour, ModelVersion, Transaction
from scoring.schemas import TransactionIn
from scoring.simulation import Simulator
from scoring.training import (
    TrainingError,
    history_features,
    labeled_frame,
    records_frame,
    save_model_version,
    train,
)

METRICS = [
    "auc_roc",
    "average_precision",
    "precision_at_review",
    "recall_at_review",
    "precision_at_block",
    "recall_at_block",
    "card_precision_at_100",
]


def simulated(*, days: int, cards: int = 60, seed: int = 5, fraud_scale: float = 3.0) -> list[dict]:
    end = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    sim = Simulator(seed=seed, cards=cards, merchants=max(5, cards // 4), fraud_scale=fraud_scale)
    return list(sim.history(start=end - timedelta(days=days), end=end))


def store(records: list[dict], tmp_path) -> None:
    path = tmp_path / "history.csv"
    with open(path, "w", newline="") as f:
        write_csv(records, f)
    import_csv(path, source="test")


def transaction_in(record: dict) -> TransactionIn:
    return TransactionIn.model_validate({k: v for k, v in record.items() if k != "is_fraud"})


@pytest.mark.django_db
def test_training_features_equal_online_features(tmp_path):
    records = simulated(days=12)
    store(records, tmp_path)
    frame = labeled_frame()
    training = history_features(frame)
    row_of = {ext: i for i, ext in enumerate(frame["external_id"])}
    later = records[len(records) * 2 // 3 :]
    sample = random.Random(1).sample(later, 150)

    online = np.array([feature_rows([transaction_in(r)])[0] for r in sample])

    offline = training[[row_of[r["external_id"]] for r in sample]]
    np.testing.assert_array_equal(offline, online)  # NaN equals NaN here, every other value to the bit
    assert (online[:, FEATURE_INDEX["merchant_fraud_count_30d"]] > 0).any()
    assert (online[:, FEATURE_INDEX["card_count_1d"]] > 0).any()


@pytest.mark.django_db
def test_history_features_forget_card_rows_older_than_the_history_span(tmp_path):
    start = timezone.now().replace(microsecond=0) - timedelta(days=40)
    base = {"merchant_id": "m1", "currency": "EUR", "channel": "pos", "is_fraud": False, "card_id": "c1"}
    records = [
        base | {"external_id": "old", "amount": "10.00", "timestamp": start.isoformat()},
        base | {"external_id": "new", "amount": "30.00", "timestamp": (start + timedelta(days=31)).isoformat()},
    ]
    store(records, tmp_path)

    offline = history_features(labeled_frame())[1]

    online = feature_rows([transaction_in(records[1])])[0]
    assert math.isnan(offline[FEATURE_INDEX["seconds_since_card_prev"]])
    assert offline[FEATURE_INDEX["merchant_count_30d"]] == 0.0  # 31 days is outside the merchant's window too
    np.testing.assert_array_equal(offline, online)


def test_history_features_see_only_earlier_rows_of_the_same_card():
    at = datetime(2026, 1, 5, 12, tzinfo=UTC)
    records = [
        {"external_id": str(i), "card_id": "c", "merchant_id": f"m{i}", "amount": "10.00", "is_fraud": False}
        | {"timestamp": (at + timedelta(minutes=i)).isoformat(), "channel": "ecom"}
        for i in range(3)
    ]
    x = history_features(records_frame(records))
    assert list(x[:, FEATURE_INDEX["card_count_1h"]]) == [0.0, 1.0, 2.0]
    assert list(x[:, FEATURE_INDEX["card_distinct_merchants_1d"]]) == [0.0, 1.0, 2.0]
    assert x[2, FEATURE_INDEX["seconds_since_card_prev"]] == 60.0


@pytest.fixture(scope="module")
def small_frame():
    end = datetime(2026, 3, 1, tzinfo=UTC)
    sim = Simulator(seed=11, cards=300, merchants=60, fraud_scale=2.0)
    return records_frame(sim.history(start=end - timedelta(days=24), end=end))


def test_train_reports_holdout_metrics_within_the_unit_interval(small_frame):
    messages = []
    result = train(small_frame, n_estimators=20, max_depth=3, progress=messages.append)
    assert set(METRICS) <= set(result.metrics)
    for name in METRICS:
        assert 0.0 <= result.metrics[name] <= 1.0, name
    assert result.rows["train"] > 0 and result.rows["holdout"] > 0
    assert result.data_range["train_end"] < result.data_range["holdout_start"]
    assert result.params["objective"] == "binary:logistic" and result.params["nthread"] == 1
    assert any("trees" in m for m in messages)


def test_train_is_reproducible(small_frame):
    first = train(small_frame, n_estimators=10, max_depth=3)
    second = train(small_frame, n_estimators=10, max_depth=3)
    assert first.artifact == second.artifact


def test_train_refuses_a_history_shorter_than_the_label_delay(small_frame):
    recent = small_frame[small_frame["timestamp"] >= small_frame["timestamp"].max() - timedelta(days=6)]
    with pytest.raises(TrainingError, match="too short"):
        train(recent.reset_index(drop=True), n_estimators=5)


@pytest.mark.django_db
def test_saved_model_version_loads_and_scores(small_frame):
    result = train(small_frame, n_estimators=20, max_depth=3)
    mv = save_model_version(result, activate=True)
    mv.refresh_from_db()
    assert mv.is_active and mv.features == FEATURES and mv.metrics == result.metrics
    rows = history_features(small_frame.tail(5).reset_index(drop=True)).tolist()
    scored = Scorer(mv).score(rows)
    assert all(0.0 <= s.score <= 1.0 for s in scored)
    assert active_model.get().version == mv.version


@pytest.mark.django_db
def test_labeled_frame_takes_old_approved_rows_without_a_label_as_legitimate():
    now = timezone.now()
    common = {"card_id": "c", "merchant_id": "m", "amount": 5, "currency": "EUR", "score": 0.1}
    common |= {"reasons": [], "features": [], "model_version": "v"}
    Transaction.objects.create(external_id="old", timestamp=now - timedelta(days=20), decision="approve", **common)
    Transaction.objects.create(external_id="young", timestamp=now - timedelta(days=1), decision="approve", **common)
    Transaction.objects.create(
        external_id="blocked", timestamp=now - timedelta(days=20), decision=Decision.BLOCK, **common
    )
    Transaction.objects.create(
        external_id="chargeback", timestamp=now - timedelta(days=1), decision="approve", is_fraud=True, **common
    )
    frame = labeled_frame().set_index("external_id")
    assert frame["labeled"].to_dict() == {"old": True, "blocked": False, "young": False, "chargeback": True}
    assert frame["is_fraud"].to_dict() == {"old": False, "blocked": False, "young": False, "chargeback": True}


@pytest.mark.django_db
def test_train_model_stores_a_working_model_version():
    out = StringIO()
    options = ["--simulate-days", "24", "--cards", "300", "--trees", "20", "--depth", "3", "--activate"]
    call_command("train_model", *options, stdout=out)
    mv = ModelVersion.objects.get()
    assert mv.is_active and mv.version in out.getvalue()
    assert "average_precision" in out.getvalue()
    assert mv.params["n_estimators"] == 20 and mv.data_range["rows"]["train"] > 0
    scored = Scorer(mv).score([[0.0] * len(FEATURES), [math.nan] * len(FEATURES)])
    assert len(scored) == 2 and all(0.0 <= s.score <= 1.0 for s in scored)


@pytest.mark.django_db
def test_train_model_simulates_history_when_too_little_is_labeled():
    out = StringIO()
    call_command("train_model", "--cards", "300", "--trees", "10", stdout=out)
    assert "simulat" in out.getvalue()
    assert not ModelVersion.objects.get().is_active


@pytest.mark.django_db
def test_labeled_frame_reads_earlier_rows_as_history_only(tmp_path):
    records = simulated(days=12)
    store(records, tmp_path)
    since = datetime.fromisoformat(records[len(records) // 2]["timestamp"])

    frame = labeled_frame(since=since)

    assert len(frame) == len(records)  # the earlier half is read as history
    assert not frame.loc[frame["timestamp"] < since, "labeled"].any()
    assert frame.loc[frame["timestamp"] >= since, "labeled"].all()


@pytest.mark.django_db
def test_evaluate_compares_the_model_with_a_baseline_and_leaves_the_database_as_it_was():
    out = StringIO()
    options = ["--days", "13", "--test-days", "2", "--cards", "150", "--trees", "10"]
    call_command("evaluate", *options, stdout=out)
    text = out.getvalue()
    assert "XGBoost" in text and "logistic regr." in text and "average_precision" in text
    assert "served features vs training features: identical" in text
    assert not Transaction.objects.exists() and not MerchantHour.objects.exists()


def _version(artifact: bytes, name: str) -> ModelVersion:
    return ModelVersion.objects.create(version=name, artifact=artifact, features=FEATURES)


@pytest.mark.django_db
def test_activation_scores_stored_transactions_first_and_refuses_a_model_that_fails(
    tiny_artifact, monkeypatch, tmp_path
):
    from scoring import classifier

    store(simulated(days=2, cards=10), tmp_path)
    good = _version(tiny_artifact, "good")
    good.activate()
    broken = _version(tiny_artifact, "broken")
    scored = []
    real_score = classifier.Scorer.score

    def failing(self, rows):
        scored.append(len(rows))
        real_score(self, rows)
        raise ValueError("cannot reshape array of size 0")

    monkeypatch.setattr(classifier.Scorer, "score", failing)

    with pytest.raises(classifier.ModelCannotServe, match="cannot reshape"):
        broken.activate()

    assert scored == [classifier.CHECK_TRANSACTIONS + 2]  # the newest stored ones, a missing row and a zero row
    assert ModelVersion.objects.get(is_active=True) == good
    broken.refresh_from_db()
    assert not broken.is_active


@pytest.mark.django_db
def test_activation_refuses_an_artifact_xgboost_cannot_load():
    with pytest.raises(ValueError, match="cannot serve"):
        _version(b"not a model", "garbage").activate()
    assert not ModelVersion.objects.filter(is_active=True).exists()


@pytest.mark.django_db
def test_train_model_on_three_weeks_of_200_cards_activates_a_model_that_serves_with_reasons(api_key):
    # Three weeks: the fit ends a 7-day label delay before the newest quarter, and ten days left it half a day,
    # with no fraud in it on some dates.
    call_command("train_model", "--simulate-days", "21", "--cards", "200", "--activate", stdout=StringIO())
    mv = ModelVersion.objects.get(is_active=True)
    scored = Scorer(mv).score([[0.0] * len(FEATURES), [math.nan] * len(FEATURES)])
    assert all(len(s.reasons) == 3 for s in scored)


@pytest.mark.django_db
def test_the_stored_model_is_fitted_on_every_labeled_row_and_its_holdout_reliability_is_reported(small_frame):
    out = []
    result = train(small_frame, n_estimators=20, max_depth=3, progress=out.append)
    assert result.rows["stored_model"] > result.rows["train"] + result.rows["holdout"]
    assert result.rows["stored_model"] == int(small_frame["labeled"].sum())
    table = result.metrics["reliability"]
    assert sum(band["rows"] for band in table) == result.rows["holdout"]
    assert 0 <= result.metrics["calibration_error"] < 0.05
    measured_only = train(small_frame, n_estimators=20, max_depth=3, holdout_fraction=0)
    assert measured_only.artifact == result.artifact  # both fit every labeled row, the same way


@pytest.mark.django_db
def test_imported_rows_without_a_label_are_not_taken_as_legitimate(tmp_path):
    records = simulated(days=12)
    newest = records[-len(records) // 4 :]
    for record in newest:
        record["is_fraud"] = None  # the newest week: its chargebacks have not all come yet
    store(records, tmp_path)

    frame = labeled_frame().set_index("external_id")

    assert not frame.loc[[r["external_id"] for r in newest], "labeled"].any()
    assert frame.loc[[r["external_id"] for r in records[: len(records) // 2]], "labeled"].all()


@pytest.mark.django_db
def test_stored_history_too_short_for_a_holdout_is_not_trained_on_but_said_so():
    """The demo's one day of labeled history: enough rows, too few days for a holdout after the label delay."""
    from scoring.training import training_frame

    start = timezone.now() - timedelta(days=1)
    Transaction.objects.bulk_create(
        Transaction(
            external_id=f"short-{i}",
            card_id=f"c{i % 50}",
            merchant_id=f"m{i % 10}",
            amount=10 + i % 90,
            currency="EUR",
            timestamp=start + timedelta(seconds=60 * i),
            score=0.0,
            decision="approve",
            reasons=[],
            features=[],
            model_version="imported:test",
            is_fraud=i % 40 == 0,
        )
        for i in range(1200)
    )
    said: list[str] = []

    with pytest.raises(TrainingError, match=r"1,200 labeled stored transactions \(30 frauds\) over 0\.8 days"):
        training_frame(simulate_if_short=False)
    frame, source = training_frame(simulate_days=None, cards=200, progress=said.append)

    assert source == "simulated" and len(frame) > 0
    assert "simulating" in said[0] and "over 0.8 days" in said[0]
