"""The admin: analysts resolve cases there; only leads manage models, lists and API keys."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from scoring import cases
from scoring.features import FEATURES
from scoring.models import ActiveModelDeletion, ApiKey, Case, CaseEvent, ListEntry, ModelVersion, Transaction
from scoring.roles import ensure_roles, make_lead
from tests.dashboards.conftest import logged_in

pytestmark = pytest.mark.django_db


def flagged_case(external_id: str = "tx-1", *, score: float = 0.95) -> Case:
    """A case of its own card (`card-<external_id>`) with one flagged transaction."""
    tx = Transaction.objects.create(
        external_id=external_id,
        card_id=f"card-{external_id}",
        merchant_id="merch-9",
        amount=Decimal("500.00"),
        currency="EUR",
        timestamp=timezone.now(),
        score=score,
        decision="block",
        model_version="t",
        reasons=[{"feature": "amount", "contribution": 1.2}],
        features=[],
    )
    case = Case.objects.create(card_id=tx.card_id, decision=tx.decision, top_score=score, alert_count=1)
    tx.case = case
    tx.save(update_fields=["case"])
    return case


def run_action(client: Client, action: str, case: Case):
    return client.post("/admin/scoring/case/", {"action": action, "_selected_action": [case.pk]}, follow=True)


def test_confirm_fraud_action_resolves_the_case_and_labels_the_transaction(analyst):
    case = flagged_case()

    response = run_action(logged_in(analyst), "confirm_fraud", case)

    assert response.status_code == 200
    case.refresh_from_db()
    assert case.status == "fraud"
    assert case.resolved_by == analyst
    assert case.resolved_at is not None
    assert case.alerts.get().is_fraud is True
    assert CaseEvent.objects.filter(case=case, action="fraud", actor=analyst).exists()


def test_mark_legitimate_action_labels_the_transaction_legitimate(analyst):
    case = flagged_case()

    run_action(logged_in(analyst), "mark_legitimate", case)

    case.refresh_from_db()
    assert case.status == "legitimate"
    assert case.alerts.get().is_fraud is False


def test_resolving_an_already_resolved_case_is_refused_with_a_message(analyst):
    case = flagged_case()
    client = logged_in(analyst)
    run_action(client, "confirm_fraud", case)

    response = run_action(client, "mark_legitimate", case)

    case.refresh_from_db()
    assert case.status == "fraud"
    assert b"already resolved" in response.content


def test_case_list_filters_by_status_decision_and_score_band_and_searches_by_card(analyst):
    high = flagged_case("tx-high", score=0.97)
    low = flagged_case("tx-low", score=0.6)
    client = logged_in(analyst)

    by_band = client.get("/admin/scoring/case/", {"score_band": "ge90", "status__exact": "open"})
    by_search = client.get("/admin/scoring/case/", {"q": "tx-low"})

    assert by_band.status_code == 200
    assert list(by_band.context["cl"].result_list) == [high]
    assert list(by_search.context["cl"].result_list) == [low]


def test_transactions_are_read_only_in_the_admin(analyst, lead):
    case = flagged_case()
    url = f"/admin/scoring/transaction/{case.alerts.get().pk}/change/"

    for user in (analyst, lead):
        response = logged_in(user).post(url, {"score": "0.01", "decision": "approve"})
        assert response.status_code == 403
    case.alerts.get().refresh_from_db()
    assert case.alerts.get().score == 0.95


def test_a_transactions_admin_page_shows_the_values_the_model_saw_by_name(analyst, model_version):
    case = flagged_case()
    values = [float(i) for i in range(len(FEATURES))]
    values[FEATURES.index("seconds_since_card_prev")] = math.nan
    Transaction.objects.filter(pk=case.alerts.get().pk).update(features=values, model_version=model_version.version)

    body = logged_in(analyst).get(f"/admin/scoring/transaction/{case.alerts.get().pk}/change/").content.decode()

    assert "values the model saw" in body.lower()
    position = FEATURES.index("card_count_1d")
    assert f"<tr><th>card_count_1d</th><td>{position}</td></tr>" in body
    assert "<tr><th>seconds_since_card_prev</th><td>—</td></tr>" in body


def test_analyst_cannot_reach_models_keys_or_lists_in_the_admin(analyst):
    client = logged_in(analyst)

    for path in (
        "/admin/scoring/modelversion/",
        "/admin/scoring/apikey/",
        "/admin/scoring/listentry/",
        "/admin/scoring/apikey/add/",
        "/admin/scoring/listentry/add/",
    ):
        assert client.get(path).status_code == 403, path


def test_analyst_cannot_create_an_api_key_or_list_entry_by_posting(analyst):
    client = logged_in(analyst)

    client.post("/admin/scoring/apikey/add/", {"name": "sneaky"})
    client.post("/admin/scoring/listentry/add/", {"kind": "allow", "entity": "card", "value": "c", "reason": "x"})

    assert not ApiKey.objects.exists()
    assert not ListEntry.objects.exists()


def test_lead_creates_an_api_key_in_the_admin_and_sees_it_once(lead):
    response = logged_in(lead).post("/admin/scoring/apikey/add/", {"name": "acquirer-eu"}, follow=True)

    key = ApiKey.objects.get(name="acquirer-eu")
    shown = [str(m) for m in response.context["messages"]]
    raw = next(m.rsplit(": ", 1)[1] for m in shown if "shown once" in m)
    assert ApiKey.objects.check_key(raw) == key


def test_lead_revokes_an_api_key_in_the_admin(lead, api_key):
    key = ApiKey.objects.get()

    logged_in(lead).post("/admin/scoring/apikey/", {"action": "revoke", "_selected_action": [key.pk]})

    assert ApiKey.objects.check_key(api_key) is None


def test_lead_activates_a_model_version_in_the_admin(lead, model_version, tiny_artifact):
    other = ModelVersion.objects.create(version="v-next", artifact=tiny_artifact, features=model_version.features)

    logged_in(lead).post("/admin/scoring/modelversion/", {"action": "activate", "_selected_action": [other.pk]})

    assert ModelVersion.objects.active() == other
    model_version.refresh_from_db()
    assert model_version.is_active is False


def test_lead_adds_a_block_list_entry_recording_the_author(lead):
    logged_in(lead).post(
        "/admin/scoring/listentry/add/", {"kind": "block", "entity": "card", "value": "card-x", "reason": "stolen"}
    )

    entry = ListEntry.objects.get()
    assert entry.created_by == lead


def test_activating_a_model_whose_features_do_not_match_the_code_is_refused(lead, model_version, tiny_artifact):
    stale = ModelVersion.objects.create(version="v-stale", artifact=tiny_artifact, features=["amount"])

    response = logged_in(lead).post(
        "/admin/scoring/modelversion/", {"action": "activate", "_selected_action": [stale.pk]}, follow=True
    )

    assert ModelVersion.objects.active() == model_version
    assert any("train a new model" in str(m) for m in response.context["messages"])


def test_the_transactions_list_tells_imported_history_from_scored_traffic(analyst):
    flagged_case("scored-1")
    imported = flagged_case("bank-a-1").alerts.get()
    Transaction.objects.filter(pk=imported.pk).update(model_version="imported:bank-a", decision="approve", score=0)
    client = logged_in(analyst)

    everything = client.get("/admin/scoring/transaction/").content.decode()
    only_scored = client.get("/admin/scoring/transaction/?source=scored").content.decode()
    only_imported = client.get("/admin/scoring/transaction/?source=imported").content.decode()

    assert 'title="imported:bank-a">history</span>' in everything
    assert "scored-1" in only_scored and "bank-a-1" not in only_scored
    assert "bank-a-1" in only_imported and "scored-1" not in only_imported


# --- cases change only through scoring/cases.py ------------------------------------------------------


@pytest.fixture
def group_lead(django_user_model):
    """A lead by group membership, not a superuser."""
    ensure_roles()
    user = django_user_model.objects.create_user("lena", password="pw-lena-123")
    make_lead(user)
    return user


def trail(case: Case) -> list[tuple[str | None, str]]:
    return [(e.actor.username if e.actor else None, e.action) for e in CaseEvent.objects.filter(case=case)]


def test_an_analyst_cannot_assign_a_case_to_themself_in_the_admin_while_a_lead_holds_it(analyst, group_lead):
    case = flagged_case()
    case.assignee = group_lead
    case.save()

    response = logged_in(analyst).post(
        f"/admin/scoring/case/{case.pk}/change/", {"assignee": analyst.pk, "status": "open", "note": "mine now"}
    )

    assert response.status_code == 403
    case.refresh_from_db()
    assert (case.assignee, case.note) == (group_lead, "")
    assert trail(case) == []


def test_a_resolved_cases_note_cannot_be_edited_in_the_admin(analyst, lead):
    case = flagged_case()
    cases.resolve(case.pk, user=analyst, is_fraud=True, note="the cardholder confirmed")

    for user in (analyst, lead):
        response = logged_in(user).post(f"/admin/scoring/case/{case.pk}/change/", {"note": "rewritten"})
        assert response.status_code == 403
    case.refresh_from_db()
    assert case.note == "the cardholder confirmed"


def test_the_admins_case_page_shows_every_field_read_only_with_a_link_to_the_desk(analyst):
    case = flagged_case()

    body = logged_in(analyst).get(f"/admin/scoring/case/{case.pk}/change/").content.decode()

    assert 'name="assignee"' not in body and 'name="note"' not in body and 'name="_save"' not in body
    assert f'href="/cases/{case.pk}/"' in body


def test_claiming_in_the_admin_refuses_a_case_another_holds_with_a_message(analyst, group_lead):
    case = flagged_case()
    cases.claim(case.pk, user=group_lead)

    response = run_action(logged_in(analyst), "claim", case)

    case.refresh_from_db()
    assert case.assignee == group_lead
    assert b"is claimed by lena" in response.content
    assert trail(case) == [("lena", "claimed")]


def test_a_lead_claiming_in_the_admin_takes_the_case_over_on_the_record(analyst, group_lead):
    case = flagged_case()
    cases.claim(case.pk, user=analyst)

    run_action(logged_in(group_lead), "claim", case)

    case.refresh_from_db()
    assert case.assignee == group_lead
    assert trail(case) == [("alice", "claimed"), ("lena", "takeover"), ("lena", "claimed")]


def test_releasing_in_the_admin_is_audited(analyst):
    case = flagged_case()
    client = logged_in(analyst)
    run_action(client, "claim", case)

    run_action(client, "release", case)

    case.refresh_from_db()
    assert case.assignee is None
    assert trail(case) == [("alice", "claimed"), ("alice", "released")]


def test_an_analyst_cannot_use_lead_actions_or_forms_by_posting(analyst, model_version, api_key):
    client = logged_in(analyst)
    key = ApiKey.objects.get()

    responses = [
        client.post("/admin/scoring/modelversion/", {"action": "activate", "_selected_action": [model_version.pk]}),
        client.post(f"/admin/scoring/modelversion/{model_version.pk}/change/", {"review_threshold": "0.99"}),
        client.post("/admin/scoring/apikey/", {"action": "revoke", "_selected_action": [key.pk]}),
        client.post("/admin/auth/user/add/", {"username": "eve", "password1": "x-Secret-9", "password2": "x-Secret-9"}),
    ]

    assert [r.status_code for r in responses] == [403, 403, 403, 403]
    model_version.refresh_from_db()
    assert model_version.review_threshold == 0.5
    assert ApiKey.objects.check_key(api_key) == key
    assert not User.objects.filter(username="eve").exists()


# --- the active model cannot be deleted ---------------------------------------------------------------


def test_the_active_model_version_refuses_to_be_deleted(model_version):
    with pytest.raises(ActiveModelDeletion, match="activate another version first"):
        model_version.delete()
    with pytest.raises(ActiveModelDeletion, match=model_version.version):
        ModelVersion.objects.all().delete()

    assert ModelVersion.objects.active() == model_version


def test_a_version_that_is_not_active_can_be_deleted(model_version, tiny_artifact):
    old = ModelVersion.objects.create(version="v-old", artifact=tiny_artifact, features=model_version.features)

    ModelVersion.objects.filter(pk=old.pk).delete()

    assert list(ModelVersion.objects.all()) == [model_version]


def test_the_admin_offers_no_delete_for_the_active_model(lead, model_version):
    client = logged_in(lead)

    page = client.get(f"/admin/scoring/modelversion/{model_version.pk}/delete/")
    posted = client.post(f"/admin/scoring/modelversion/{model_version.pk}/delete/", {"post": "yes"})

    assert (page.status_code, posted.status_code) == (403, 403)
    assert ModelVersion.objects.active() == model_version


def test_the_admins_bulk_delete_refuses_a_selection_holding_the_active_model(lead, model_version, tiny_artifact):
    old = ModelVersion.objects.create(version="v-old", artifact=tiny_artifact, features=model_version.features)

    response = logged_in(lead).post(
        "/admin/scoring/modelversion/",
        {"action": "delete_selected", "_selected_action": [model_version.pk, old.pk], "post": "yes"},
    )

    assert response.status_code == 200
    assert "activate another version first" in response.content.decode()
    assert ModelVersion.objects.count() == 2


def test_a_models_page_shows_its_reliability_table_from_training(lead, model_version):
    reliability = [
        {"band": "0–0.5", "rows": 990, "mean_score": 0.01, "fraud_share": 0.0101},
        {"band": "0.5–1", "rows": 10, "mean_score": 0.8, "fraud_share": 0.7},
    ]
    model_version.metrics = {"reliability": reliability, "calibration_error": 0.0011}
    model_version.save(update_fields=["metrics"])

    page = logged_in(lead).get(f"/admin/scoring/modelversion/{model_version.pk}/change/").content.decode()

    assert "<tr><td>0.5–1</td><td>10</td><td>0.8</td><td>0.7</td></tr>" in page
    assert "calibration error: 0.0011" in page


def test_card_and_merchant_ids_in_the_admin_link_to_their_desk_pages(analyst):
    case = flagged_case("links-1")
    client = logged_in(analyst)

    cases = client.get("/admin/scoring/case/").content.decode()
    one_case = client.get(f"/admin/scoring/case/{case.pk}/change/").content.decode()
    transactions = client.get("/admin/scoring/transaction/").content.decode()

    for page in (cases, one_case, transactions):
        assert '<a href="/cards/card-links-1/">card-links-1</a>' in page
    assert '<a href="/merchants/merch-9/">merch-9</a>' in transactions
