"""The models list and a version's thresholds page: who reads them, what they show, and a lead setting thresholds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from scoring import thresholds
from scoring.models import ModelChange, ModelVersion
from tests.dashboards.conftest import HTMX, logged_in
from tests.scoring.step_model import row, step_version

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_cached_figures():
    thresholds.forget_figures()
    yield
    thresholds.forget_figures()


@pytest.fixture
def step() -> ModelVersion:
    """The step model with four transactions of yesterday: scores 0.05 (legitimate), 0.35, 0.65 and 0.95 (fraud)."""
    version = step_version()
    at = timezone.now() - timedelta(days=1)
    row(1, amount=50, card="c1", at=at, fraud=False)
    row(2, amount=200, card="c2", at=at, fraud=None)
    row(3, amount=700, card="c3", at=at, fraud=True)
    row(4, amount=2000, card="c4", at=at, fraud=True, currency="USD")
    return version


def page(version: ModelVersion) -> str:
    return f"/models/{version.version}/thresholds/"


def test_the_models_list_shows_each_version_with_its_badge_figures_and_thresholds_link(model_version, analyst):
    ModelVersion.objects.filter(pk=model_version.pk).update(metrics={"auc_roc": 0.9123})
    other = step_version()

    response = logged_in(analyst).get("/models/")

    html = response.content.decode()
    assert response.status_code == 200
    assert f'href="{page(model_version)}"' in html and f'href="{page(other)}"' in html
    assert 'data-badge="active"' in html and html.count('data-badge="active"') == 1
    assert "0.912" in html


def test_an_analyst_reads_the_figures_but_gets_no_form(step, analyst):
    response = logged_in(analyst).get(page(step))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="threshold-chart"' in html and 'class="thr-line thr-line-precision"' in html
    assert 'id="threshold-row-review"' in html and 'id="threshold-row-block"' in html  # 0.5 and 0.9 marked
    assert 'id="threshold-form"' not in html
    assert "<strong>4</strong> transactions, 3 labeled (2 fraud)" in html


def test_the_table_reads_the_hand_counted_figures_at_the_current_thresholds(step, analyst):
    response = logged_in(analyst).get(page(step))

    review = response.context["table"][10]  # 0.50: rows 3 and 4
    assert (review["threshold"], review["flag_rate"], review["precision"], review["recall"]) == (
        "0.50",
        "50 %",
        "100 %",
        "100 %",
    )
    assert review["caught"] == [("EUR", 700.0), ("USD", 2000.0)]


def test_a_lead_gets_the_form_with_the_current_thresholds(step, lead):
    html = logged_in(lead).get(page(step)).content.decode()

    assert 'id="threshold-form"' in html
    assert 'name="review" id="threshold-review" min="0" max="1" step="0.01" required value="0.5"' in html


def test_the_preview_shows_what_proposed_thresholds_would_have_done_beside_the_current(step, lead):
    response = logged_in(lead).get(f"{page(step)}preview", {"review": "0.3", "block": "0.9"}, **HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert "review threshold 0.50 → <strong>0.30</strong>" in html
    assert '<th scope="row">Flag rate</th><td class="num">50 %</td><td class="num thr-proposed">75 %</td>' in html
    assert '<th scope="row">Flagged per day</th><td class="num">0.07</td><td class="num thr-proposed">0.10</td>' in html
    assert "block threshold 0.90 (unchanged)" in html
    assert not ModelChange.objects.exists()


def test_the_preview_says_what_is_wrong_with_thresholds_it_cannot_show(step, lead):
    response = logged_in(lead).get(f"{page(step)}preview", {"review": "0.95", "block": "0.9"}, **HTMX)

    assert response.status_code == 422
    assert "must not be above the block threshold" in response.content.decode()


def test_a_lead_saves_thresholds_and_the_change_is_listed_on_the_page(step, lead):
    client = logged_in(lead)

    response = client.post(f"{page(step)}set", {"review": "0.4", "block": "0.8", "note": "busy week", "days": "7"})

    assert response.status_code == 302
    assert response["Location"] == f"{page(step)}?days=7#threshold-history"
    step.refresh_from_db()
    assert (step.review_threshold, step.block_threshold) == (0.4, 0.8)
    html = client.get(response["Location"]).content.decode()
    assert "busy week" in html and "0.5 → <strong>0.4</strong>" in html
    assert "once it is activated" in html  # the step version is not the active one


def test_a_refused_change_says_why_and_changes_nothing(step, lead):
    response = logged_in(lead).post(f"{page(step)}set", {"review": "0.5", "block": "0.9"})

    assert response.status_code == 422
    assert "These are step-1&#x27;s thresholds already: nothing to change." in response.content.decode()
    assert not ModelChange.objects.exists()


def test_an_analyst_posting_thresholds_is_refused(step, analyst):
    response = logged_in(analyst).post(f"{page(step)}set", {"review": "0.4", "block": "0.8"})

    assert response.status_code == 403
    assert "Thresholds are set by leads" in response.content.decode()
    step.refresh_from_db()
    assert step.review_threshold == 0.5


def test_an_unknown_version_is_not_found(analyst):
    assert logged_in(analyst).get("/models/no-such-version/thresholds/").status_code == 404
