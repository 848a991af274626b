"""Thresholds by consequence: the figures against a history counted by hand, and set_thresholds' audit and refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import PermissionDenied

from scoring import thresholds
from scoring.classifier import active_model
from scoring.models import ModelChange, ModelChangeKind, ModelVersion
from tests.dashboards.conftest import logged_in
from tests.scoring.step_model import row, step_version

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAY_A = datetime(2026, 3, 9, 10, 0, tzinfo=UTC)
DAY_B = datetime(2026, 3, 8, 10, 0, tzinfo=UTC)


@pytest.fixture
def history(db) -> ModelVersion:
    """Seven rows the step model scores, two it cannot read and one outside the week (see each line)."""
    version = step_version()
    row(1, amount=50, card="c1", at=DAY_A, fraud=False)  # 0.05
    row(2, amount=200, card="c1", at=DAY_A, fraud=None)  # 0.35, unlabeled
    row(3, amount=700, card="c2", at=DAY_A, fraud=True)  # 0.65
    row(4, amount=700, card="c2", at=DAY_A, fraud=False)  # 0.65, the same card the same day: one case
    row(5, amount=2000, card="c3", at=DAY_B, fraud=True, currency="USD")  # 0.95
    row(6, amount=1500, card="c2", at=DAY_B, fraud=True)  # 0.95
    row(7, amount=300, card="c4", at=DAY_B, fraud=True)  # 0.35
    row(8, amount=5000, card="c5", at=DAY_B, fraud=True, features=[], model_version="imported:x")  # never scored
    ModelVersion.objects.create(version="old", artifact=b"", features=["amount", "channel"])
    row(9, amount=5000, card="c6", at=DAY_B, fraud=True, features=[5000.0, 1.0], model_version="old")
    row(10, amount=5000, card="c7", at=NOW - timedelta(days=8), fraud=True)  # before the week
    return version


def test_figures_at_a_threshold_are_the_hand_counted_ones(history: ModelVersion) -> None:
    figures = thresholds.threshold_figures(history, days=7, now=NOW)

    assert (figures.rows, figures.labeled, figures.frauds) == (7, 6, 4)
    assert (figures.without_features, figures.other_features) == (1, 1)
    assert figures.currencies == ["EUR", "USD"]
    half = figures.at(0.5)  # rows 3, 4, 5, 6: cards c2 on day A, c3 and c2 on day B
    assert half.flagged == 4
    assert half.flag_rate == pytest.approx(4 / 7)
    assert half.flagged_per_day == pytest.approx(4 / 7)
    assert half.cases_per_day == pytest.approx(3 / 7)
    assert half.precision == pytest.approx(3 / 4)
    assert half.recall == pytest.approx(3 / 4)
    assert half.caught == {"EUR": 2200.0, "USD": 2000.0}


def test_a_score_equal_to_the_threshold_is_flagged_as_serving_flags_it(history: ModelVersion) -> None:
    figures = thresholds.threshold_figures(history, days=7, now=NOW)

    assert figures.at(0.65).flagged == 4
    above = figures.at(0.66)  # rows 5 and 6 only
    assert (above.flagged, above.precision, above.recall) == (2, 1.0, 0.5)
    assert above.cases_per_day == pytest.approx(2 / 7)
    assert above.caught == {"EUR": 1500.0, "USD": 2000.0}


def test_figures_at_the_ends_of_the_scale(history: ModelVersion) -> None:
    figures = thresholds.threshold_figures(history, days=7, now=NOW)

    low = figures.at(0.3)  # everything but row 1: five (day, card) pairs
    assert (low.flagged, low.cases_per_day * 7, low.precision, low.recall) == (6, pytest.approx(5), 0.8, 1.0)
    assert low.caught == {"EUR": 2500.0, "USD": 2000.0}
    zero = figures.at(0.0)
    assert (zero.flagged, zero.precision) == (7, pytest.approx(4 / 6))
    top = figures.at(0.96)
    assert (top.flagged, top.flag_rate, top.precision, top.recall) == (0, 0.0, None, 0.0)
    assert top.caught == {"EUR": 0.0, "USD": 0.0}


def test_the_grid_runs_from_0_to_1_by_hundredths_and_agrees_with_single_thresholds(history: ModelVersion) -> None:
    figures = thresholds.threshold_figures(history, days=7, now=NOW)

    points = figures.points()
    assert [p.threshold for p in points] == [k / 100 for k in range(101)]
    assert points[50] == figures.at(0.5)
    assert [p.flagged for p in points[30:37]] == [6, 6, 6, 6, 6, 6, 4]


def test_figures_of_an_empty_period_say_nothing_rather_than_divide_by_zero(history: ModelVersion) -> None:
    figures = thresholds.threshold_figures(history, days=7, now=NOW + timedelta(days=60))

    point = figures.at(0.5)
    assert (figures.rows, point.flagged, point.flag_rate, point.precision, point.recall) == (0, 0, None, None, None)
    assert point.caught == {}


def test_figures_read_every_chunk(history: ModelVersion, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thresholds, "CHUNK", 3)

    figures = thresholds.threshold_figures(history, days=7, now=NOW)

    assert (figures.rows, figures.at(0.5).flagged, figures.at(0.5).cases_per_day * 7) == (7, 4, pytest.approx(3))


# --- setting them ------------------------------------------------------------------------------------


def test_a_lead_sets_thresholds_and_the_change_is_audited(model_version: ModelVersion, lead) -> None:
    before = model_version.updated_at

    mv = thresholds.set_thresholds(model_version.pk, user=lead, review=0.4, block=0.8, note="fewer misses")

    mv.refresh_from_db()
    assert (mv.review_threshold, mv.block_threshold) == (0.4, 0.8)
    assert mv.updated_at > before
    change = ModelChange.objects.get()
    assert change.kind == ModelChangeKind.THRESHOLDS
    assert change.before == {"review_threshold": 0.5, "block_threshold": 0.9}
    assert change.after == {"review_threshold": 0.4, "block_threshold": 0.8}
    assert (change.actor, change.note, change.model_version) == (lead, "fewer misses", mv)


def test_an_analyst_may_not_set_thresholds(model_version: ModelVersion, analyst) -> None:
    with pytest.raises(PermissionDenied, match="ask a lead"):
        thresholds.set_thresholds(model_version.pk, user=analyst, review=0.4, block=0.8)

    model_version.refresh_from_db()
    assert (model_version.review_threshold, model_version.block_threshold) == (0.5, 0.9)
    assert not ModelChange.objects.exists()


@pytest.mark.parametrize(
    ("review", "block", "says"),
    [
        (0.9, 0.5, "not be above the block"),
        (-0.1, 0.5, "between 0 and 1"),
        (0.5, 1.5, "between 0 and 1"),
        (float("nan"), 0.5, "numbers"),
        (0.5, 0.9, "already"),
    ],
)
def test_thresholds_a_version_cannot_have_are_refused(model_version, lead, review, block, says) -> None:
    with pytest.raises(ValueError, match=says):
        thresholds.set_thresholds(model_version.pk, user=lead, review=review, block=block)

    assert not ModelChange.objects.exists()


def test_the_serving_scorer_reloads_when_another_process_changes_the_thresholds(model_version, settings) -> None:
    settings.MODEL_REFRESH_SECONDS = 0
    assert active_model.get().review_threshold == 0.5
    # As another process's set_thresholds leaves it: new thresholds and a new updated_at, this process not told.
    ModelVersion.objects.filter(pk=model_version.pk).update(
        review_threshold=0.3, block_threshold=0.7, updated_at=model_version.updated_at + timedelta(seconds=1)
    )

    scorer = active_model.get()

    assert (scorer.review_threshold, scorer.block_threshold) == (0.3, 0.7)
    assert scorer.decide(0.35) == "review"


def test_setting_thresholds_reaches_this_processs_scorer_at_once(
    model_version, lead, settings, django_capture_on_commit_callbacks
) -> None:
    settings.MODEL_REFRESH_SECONDS = 3600
    assert active_model.get().block_threshold == 0.9

    with django_capture_on_commit_callbacks(execute=True):
        thresholds.set_thresholds(model_version.pk, user=lead, review=0.2, block=0.6)

    assert (active_model.get().review_threshold, active_model.get().block_threshold) == (0.2, 0.6)


def test_setting_thresholds_logs_one_line(model_version, lead, caplog, django_capture_on_commit_callbacks) -> None:
    with caplog.at_level("INFO", logger="scoring.thresholds"), django_capture_on_commit_callbacks(execute=True):
        thresholds.set_thresholds(model_version.pk, user=lead, review=0.2, block=0.6)

    assert [r.getMessage() for r in caplog.records if r.name == "scoring.thresholds"] == [
        f"thresholds of model {model_version.version} set to review 0.2, block 0.6 by lead (were 0.5, 0.9)"
    ]


# --- the admin takes the same path ---------------------------------------------------------------------


def test_thresholds_changed_in_the_admin_are_set_through_the_audited_path(model_version, lead) -> None:
    url = f"/admin/scoring/modelversion/{model_version.pk}/change/"
    before = model_version.updated_at

    response = logged_in(lead).post(url, {"review_threshold": "0.4", "block_threshold": "0.8"})

    assert response.status_code == 302
    change = ModelChange.objects.get()
    assert (change.after, change.actor, change.note) == (
        {"review_threshold": 0.4, "block_threshold": 0.8},
        lead,
        "set in the admin",
    )
    model_version.refresh_from_db()
    assert model_version.updated_at > before  # what the serving processes reload on


def test_the_admin_refuses_thresholds_out_of_range_in_its_form(model_version, lead) -> None:
    url = f"/admin/scoring/modelversion/{model_version.pk}/change/"

    response = logged_in(lead).post(url, {"review_threshold": "0.4", "block_threshold": "1.2"})

    assert response.status_code == 200
    assert b"between 0 and 1" in response.content
    assert not ModelChange.objects.exists()
