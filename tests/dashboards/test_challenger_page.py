"""The challenger's comparison page: its figures against a small history worked out by hand, who may read it and who
may change the challenger from it (and from the admin)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from dashboards import comparison, comparison_charts
from scoring import challenger
from scoring.features import FEATURES
from scoring.models import ModelChange, ModelChangeKind, ModelVersion, Transaction
from tests.dashboards.conftest import logged_in, make_case, make_tx

pytestmark = pytest.mark.django_db

CHAMP, CHAL = "champ-v", "chal-v"


@pytest.fixture
def versions(tiny_artifact: bytes) -> tuple[ModelVersion, ModelVersion]:
    """The active version (thresholds 0.5 / 0.9) and the challenger (0.4 / 0.8): both serve the tiny model."""
    fields = {"artifact": tiny_artifact, "features": FEATURES}
    champ = ModelVersion.objects.create(
        version=CHAMP, is_active=True, review_threshold=0.5, block_threshold=0.9, **fields
    )
    chal = ModelVersion.objects.create(
        version=CHAL, is_challenger=True, review_threshold=0.4, block_threshold=0.8, **fields
    )
    return champ, chal


def shadow(score: float, challenger_score: float, **fields) -> Transaction:
    return make_tx(
        score=score, challenger_score=challenger_score, model_version=CHAMP, challenger_version=CHAL, **fields
    )


@pytest.fixture
def history(versions) -> dict[str, Transaction]:
    """Five rows in the last 7 days, one older, one scored by another challenger.

    active (0.5 / 0.9)     challenger (0.4 / 0.8)   label
    0.95 block             0.85 block               fraud        both flag
    0.60 review            0.10 approve             legitimate   active only (in a case)
    0.10 approve           0.45 review              fraud        challenger only
    0.05 approve           0.02 approve             —            both approve
    0.20 approve           0.30 approve             legitimate   both approve
    """
    flagged = {"model_version": CHAMP, "challenger_version": CHAL, "decision": "review", "is_fraud": False}
    case = make_case(score=0.6, challenger_score=0.1, external_id="active-only", **flagged)
    rows = {
        "both": shadow(0.95, 0.85, is_fraud=True, external_id="both"),
        "active-only": case.alerts.get(),
        "challenger-only": shadow(0.1, 0.45, is_fraud=True, external_id="challenger-only", card_id="card-a"),
        "quiet": shadow(0.05, 0.02, external_id="quiet"),
        "quiet-legit": shadow(0.2, 0.3, is_fraud=False, external_id="quiet-legit"),
        "old": shadow(0.99, 0.01, is_fraud=True, external_id="old", received_at=timezone.now() - timedelta(days=10)),
    }
    make_tx(score=0.99, challenger_score=0.0, model_version=CHAMP, challenger_version="earlier-challenger")
    return rows


def test_the_figures_match_the_hand_counted_week(history, versions) -> None:
    _, chal = versions
    c = comparison.compare(chal, now=timezone.now(), period="7d")

    assert (c.rows, c.labeled) == (5, 4)
    assert (c.champion.reviewed, c.champion.blocked, c.champion.flag_rate) == (1, 1, 0.4)
    assert (c.shadow.reviewed, c.shadow.blocked, c.shadow.flag_rate) == (1, 1, 0.4)
    assert (c.champion.caught, c.champion.labeled_flagged, c.champion.frauds) == (1, 2, 2)
    assert (c.champion.precision, c.champion.recall) == (0.5, 0.5)
    assert (c.shadow.precision, c.shadow.recall) == (1.0, 1.0)
    assert c.agreement == {"both_flag": 1, "champion_only": 1, "challenger_only": 1, "both_approve": 2}
    assert [d.external_id for d in c.disagreements] == ["active-only", "challenger-only"]  # furthest apart first
    first = c.disagreements[0]
    assert (first.champion_decision, first.challenger_decision) == ("review", "approve")
    assert [i for i, n in enumerate(c.champion.histogram) if n] == [1, 2, 4, 12, 19]
    assert [i for i, n in enumerate(c.shadow.histogram) if n] == [0, 2, 6, 9, 17]
    assert (c.champion.version, c.champion.review_threshold, c.shadow.block_threshold) == (CHAMP, 0.5, 0.8)


def test_a_longer_period_takes_the_older_rows_in(history, versions) -> None:
    c = comparison.compare(versions[1], now=timezone.now(), period="30d")

    assert c.rows == 6 and c.agreement["champion_only"] == 2
    assert c.disagreements[0].external_id == "old"  # 0.99 against 0.01


def test_no_labels_means_no_precision_or_recall(versions) -> None:
    shadow(0.95, 0.1)

    c = comparison.compare(versions[1], now=timezone.now())

    assert c.labeled == 0 and c.champion.precision is None and c.shadow.recall is None


def test_the_histogram_is_drawn_on_a_log_scale_so_a_single_flag_shows_beside_thousands() -> None:
    assert comparison_charts.log_height(0, top=5000) == 0
    assert comparison_charts.log_height(5000, top=5000) == 100
    assert 5 < comparison_charts.log_height(1, top=5000) < 10  # a tenth of a percent of the rows, still visible
    assert comparison.histogram(np.array([0.0, 0.049, 0.05, 1.0])) == (2, 1, *[0] * 17, 1)


# --- the page ---------------------------------------------------------------------------------------------------


def test_analysts_read_the_comparison_with_its_links_but_no_buttons(history, alice: User) -> None:
    page = logged_in(alice).get("/models/challenger/")

    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="compared-rows">5<' in html and 'id="champion-flag-rate">40 %<' in html
    assert 'id="champion-only">1<' in html and 'id="challenger-only">1<' in html
    case_id = history["active-only"].case_id
    assert f'href="/cases/{case_id}/" title="Case #{case_id}">active-only</a>' in html
    assert 'href="/cards/card-a/" title="No case: the card\'s page">challenger-only</a>' in html
    assert '<a href="/cards/card-a/">card-a</a>' in html
    assert 'id="confirm-promote"' not in html and 'id="end-challenger"' not in html


def test_leads_see_promote_and_end_and_the_period_selector(history, lena: User) -> None:
    html = logged_in(lena).get("/models/challenger/?period=30d").content.decode()

    assert 'id="confirm-promote"' in html and 'id="end-challenger"' in html
    assert 'id="compared-rows">6<' in html and 'id="period-30d" aria-current="page"' in html


def test_with_no_challenger_the_page_says_how_to_make_one_and_offers_leads_the_stored_versions(
    versions, lena: User, alice: User
) -> None:
    ModelVersion.objects.filter(version=CHAL).update(is_challenger=False)

    lead_page = logged_in(lena).get("/models/challenger/").content.decode()
    analyst_page = logged_in(alice).get("/models/challenger/").content.decode()

    for html in (lead_page, analyst_page):
        assert "train_model --challenger" in html and "No challenger now" in html
    assert f'action="/models/{CHAL}/challenger"' in lead_page
    assert ">Make challenger</button>" not in analyst_page


def test_no_labels_yet_is_said(versions, alice: User) -> None:
    shadow(0.95, 0.1)

    assert 'id="no-labels"' in logged_in(alice).get("/models/challenger/").content.decode()


def test_a_lead_promotes_the_challenger_from_the_page(versions, lena: User) -> None:
    chal = versions[1]

    answer = logged_in(lena).post("/models/challenger/promote", follow=True)

    assert answer.redirect_chain == [("/models/challenger/", 302)]
    assert ModelVersion.objects.active() == chal
    assert not ModelVersion.objects.filter(is_challenger=True).exists()
    assert ModelChange.objects.get(kind=ModelChangeKind.PROMOTED).actor == lena
    assert f"{CHAL} is now the active model" in answer.content.decode()


def test_a_lead_ends_the_challenger_and_ending_none_says_so(versions, lena: User) -> None:
    client = logged_in(lena)

    client.post("/models/challenger/end")
    again = client.post("/models/challenger/end", follow=True)

    assert not ModelVersion.objects.filter(is_challenger=True).exists()
    assert ModelChange.objects.filter(kind=ModelChangeKind.CHALLENGER_ENDED, actor=lena).count() == 1
    assert "no model version is the challenger now" in again.content.decode()


def test_a_lead_marks_a_version_and_goes_back_where_the_form_was(versions, tiny_artifact: bytes, lena: User) -> None:
    other = ModelVersion.objects.create(version="other-v", artifact=tiny_artifact, features=versions[0].features)

    answer = logged_in(lena).post("/models/other-v/challenger", {"next": "/jobs/"})
    outside = logged_in(lena).post(f"/models/{CHAL}/challenger", {"next": "https://evil.example/"})

    assert answer.status_code == 302 and answer["Location"] == "/jobs/"
    assert outside["Location"] == "/models/challenger/"
    assert ModelVersion.objects.get(is_challenger=True).version == CHAL  # marked again, after other-v
    assert list(ModelChange.objects.filter(model_version=other).values_list("kind", flat=True).order_by("id")) == [
        ModelChangeKind.CHALLENGER,
        ModelChangeKind.CHALLENGER_ENDED,
    ]


def test_marking_the_active_version_is_refused_with_the_reason(versions, lena: User) -> None:
    answer = logged_in(lena).post(f"/models/{CHAMP}/challenger", follow=True)

    assert "is the active version: it cannot also be its challenger" in answer.content.decode()
    assert ModelVersion.objects.get(is_challenger=True).version == CHAL


def test_analysts_are_refused_every_change(versions, tiny_artifact: bytes, alice: User) -> None:
    ModelVersion.objects.create(version="other-v", artifact=tiny_artifact, features=versions[0].features)
    client = logged_in(alice)

    answers = [
        client.post(url)
        for url in ("/models/challenger/promote", "/models/challenger/end", "/models/other-v/challenger")
    ]

    assert [a.status_code for a in answers] == [403, 403, 403]
    assert "Changing the challenger is for leads" in answers[0].content.decode()
    assert (
        ModelVersion.objects.active().version == CHAMP and ModelVersion.objects.get(is_challenger=True).version == CHAL
    )
    assert not ModelChange.objects.exists()


def test_the_models_list_offers_leads_make_challenger_and_everyone_the_comparison(
    versions, tiny_artifact: bytes, lena: User, alice: User
) -> None:
    other = ModelVersion.objects.create(version="other-v", artifact=tiny_artifact, features=versions[0].features)
    champ, chal = versions

    lead_page = logged_in(lena).get("/models/").content.decode()
    analyst_page = logged_in(alice).get("/models/").content.decode()

    assert f'id="make-challenger-{other.pk}"' in lead_page and f'id="make-challenger-{champ.pk}"' not in lead_page
    assert f'id="compare-{chal.pk}"' in lead_page and f'id="compare-{chal.pk}"' in analyst_page
    assert "make-challenger-" not in analyst_page
    marked = logged_in(lena).post(f"/models/{other.version}/challenger", {"next": "/models/"})
    assert marked["Location"] == "/models/" and ModelVersion.objects.get(is_challenger=True) == other


# --- the admin ---------------------------------------------------------------------------------------------------


def test_a_lead_marks_and_promotes_a_challenger_in_the_admin(versions, tiny_artifact: bytes, lead: User) -> None:
    other = ModelVersion.objects.create(version="other-v", artifact=tiny_artifact, features=versions[0].features)
    client = logged_in(lead)

    client.post("/admin/scoring/modelversion/", {"action": "make_challenger", "_selected_action": [other.pk]})
    assert ModelVersion.objects.get(is_challenger=True) == other

    refused = client.post(
        "/admin/scoring/modelversion/",
        {"action": "promote_challenger", "_selected_action": [versions[0].pk]},
        follow=True,
    )
    assert "Select the challenger alone" in refused.content.decode()

    client.post("/admin/scoring/modelversion/", {"action": "promote_challenger", "_selected_action": [other.pk]})
    assert ModelVersion.objects.active() == other
    kinds = ModelChange.objects.order_by("id").values_list("model_version__version", "kind", "actor__username")
    assert list(kinds) == [
        (CHAL, ModelChangeKind.CHALLENGER_ENDED, "lead"),
        ("other-v", ModelChangeKind.CHALLENGER, "lead"),
        ("other-v", ModelChangeKind.PROMOTED, "lead"),
    ]


def test_activating_the_challenger_in_the_admin_promotes_it_audited(versions, tiny_artifact: bytes, lead: User) -> None:
    other = ModelVersion.objects.create(version="other-v", artifact=tiny_artifact, features=versions[0].features)
    client = logged_in(lead)
    client.post("/admin/scoring/modelversion/", {"action": "make_challenger", "_selected_action": [other.pk]})

    answer = client.post("/admin/scoring/modelversion/", {"action": "activate", "_selected_action": [other.pk]})

    assert answer.status_code == 302  # not the constraint's 500: a version is never active and challenger at once
    other.refresh_from_db()
    assert other.is_active and not other.is_challenger
    assert ModelChange.objects.filter(model_version=other, kind=ModelChangeKind.PROMOTED, actor=lead).exists()


def test_activate_refuses_the_challenger_which_is_promoted_instead(versions, tiny_artifact: bytes, lead: User) -> None:
    other = ModelVersion.objects.create(version="other-v", artifact=tiny_artifact, features=versions[0].features)
    challenger.mark_challenger(other.pk, user=lead)
    other.refresh_from_db()
    with pytest.raises(ValueError, match="is the challenger: promote it"):
        other.activate()
