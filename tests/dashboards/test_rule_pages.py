"""The rules pages: analysts read every rule, its backtest and history but change nothing; leads create, edit,
backtest, publish and disable through the pages, each change a version; a refused condition points at its
mistake; the list counts each rule's live hits of the last day."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from scoring import rule_book
from scoring.models import Rule, RuleStatus, RuleVersion
from tests.dashboards.conftest import HTMX, logged_in, make_tx

pytestmark = pytest.mark.django_db
BIG = "amount > 100"


def rule(lead: User, name: str = "big", condition: str = BIG, **fields) -> Rule:
    return rule_book.create_rule(user=lead, name=name, condition=condition, action=fields.pop("action", "review"))


def form(**overrides) -> dict[str, str]:
    return {"name": "big", "description": "", "condition": BIG, "action": "block", "priority": "50"} | overrides


@pytest.fixture
def history(db) -> None:
    """Three payments of today: two over 100 (one labeled fraud, one not labeled), one small."""
    make_tx(amount=Decimal("250.00"), is_fraud=True, card_id="card-a")
    make_tx(amount=Decimal("120.00"), currency="PLN", card_id="card-b")
    make_tx(amount=Decimal("20.00"), is_fraud=False, card_id="card-c")


# --- analysts read, and only read ---------------------------------------------------------------


def test_an_analyst_reads_the_rules_their_backtest_and_history_without_a_lead_button(alice, lena, history):
    big = rule(lena)
    client = logged_in(alice)

    listed = client.get("/rules/").content.decode()
    page = client.get(f"/rules/{big.pk}/").content.decode()
    panel = client.get(f"/rules/{big.pk}/backtest?days=7", **HTMX)

    assert f'href="/rules/{big.pk}/"' in listed and 'id="nav-rules"' in listed
    assert 'id="rule-new"' not in listed
    assert "amount &gt; 100" in page and 'id="version-1"' in page
    assert not any(f'id="rule-{button}"' in page for button in ("edit", "publish", "shadow", "disable"))
    assert panel.status_code == 200 and 'data-hits="2"' in panel.content.decode()


@pytest.mark.parametrize(
    "path",
    [
        "/rules/new",
        "/rules/backtest",
        "/rules/{id}/edit",
        "/rules/big/edit",
        "/rules/{id}/publish",
        "/rules/{id}/disable",
    ],
)
def test_an_analyst_cannot_post_a_rule_change(alice, lena, path):
    big = rule(lena)

    refused = logged_in(alice).post(path.format(id=big.pk), form(name="renamed") | {"status": "active"})

    assert refused.status_code == 403 and b"Rules are written and published by leads" in refused.content
    big.refresh_from_db()
    assert (big.name, big.status, big.version, Rule.objects.count()) == ("big", RuleStatus.DRAFT, 1, 1)


def test_an_analyst_opening_a_rule_form_is_told_it_is_the_leads(alice, lena):
    big = rule(lena)
    client = logged_in(alice)

    for path in ("/rules/new", f"/rules/{big.pk}/edit"):
        answer = client.get(path)
        assert answer.status_code == 403 and b'id="leads-only"' in answer.content, path


# --- leads change rules through the pages ------------------------------------------------------


def test_a_lead_creates_a_rule_as_a_draft_with_its_first_version(lena):
    answer = logged_in(lena).post("/rules/new", form(description="big payments"))

    created = Rule.objects.get()
    assert answer.status_code == 302 and answer["Location"] == f"/rules/{created.pk}/"
    assert (created.status, created.action, created.priority, created.author) == (RuleStatus.DRAFT, "block", 50, lena)
    version = RuleVersion.objects.get(rule=created)
    assert (version.version, version.change, version.actor, version.condition) == (1, "created", lena, BIG)


def test_a_lead_edits_a_rule_by_name_and_the_history_shows_what_changed(lena):
    big = rule(lena)
    client = logged_in(lena)

    answer = client.post("/rules/big/edit", form(condition="amount > 500", action="review", priority="100"))

    assert answer.status_code == 302
    big.refresh_from_db()
    assert (big.version, big.condition) == (2, "amount > 500")
    page = client.get(f"/rules/{big.pk}/").content.decode()
    edited = page.split('id="version-2"')[1].split("</li>\n")[0]
    assert "<del>100</del><ins>500</ins>" in edited and "edited" in edited


def test_a_lead_publishes_active_then_in_shadow_then_disables_each_a_version_with_its_backtest(lena, history):
    big = rule(lena)
    client = logged_in(lena)

    assert client.post(f"/rules/{big.pk}/publish", {"status": "active"}).status_code == 302
    assert client.post(f"/rules/{big.pk}/publish", {"status": "shadow"}).status_code == 302
    assert client.post(f"/rules/{big.pk}/disable").status_code == 302

    versions = list(RuleVersion.objects.filter(rule=big).order_by("version"))
    assert [(v.change, v.status, v.actor) for v in versions[1:]] == [
        ("published", RuleStatus.ACTIVE, lena),
        ("shadowed", RuleStatus.SHADOW, lena),
        ("disabled", RuleStatus.DISABLED, lena),
    ]
    assert versions[1].backtest["hits"] == 2 and versions[3].backtest is None
    page = client.get(f"/rules/{big.pk}/").content.decode()
    assert page.count("Published with:") == 2 and "2 hits in 30 days: 1 fraud, 0 legitimate, 1 unknown" in page


def test_a_publish_that_does_not_say_active_or_shadow_changes_nothing(lena):
    big = rule(lena)

    assert logged_in(lena).post(f"/rules/{big.pk}/publish", {"status": "draft"}).status_code == 400
    assert Rule.objects.get().status == RuleStatus.DRAFT


# --- refusals point at the mistake -------------------------------------------------------------


def test_a_refused_condition_is_shown_with_its_line_and_a_caret_under_the_column(lena):
    answer = logged_in(lena).post("/rules/new", form(condition="amount > 100 &&\n  amont < 5"))

    page = answer.content.decode()
    assert answer.status_code == 422 and not Rule.objects.exists()
    assert "line 2, column 3: unknown name &#x27;amont&#x27; (did you mean amount?)" in page
    pointer = page.split('id="condition-pointer"')[1].split("</pre>")[0]
    assert "line 2, column 3" in pointer
    assert '  amont &lt; 5\n<span class="rule-pointer-caret">  ^</span>' in pointer
    assert "amount &gt; 100 &amp;&amp;\n  amont &lt; 5</textarea>" in page  # what was typed, kept to fix


def test_every_refused_field_is_named_at_once(lena):
    rule(lena)

    page = logged_in(lena).post("/rules/new", form(name="big", condition="amount >")).content.decode()

    assert "a rule named big exists already" in page
    assert "line 1, column 9: syntax error" in page and 'id="condition-pointer"' in page


# --- the form's Backtest button ----------------------------------------------------------------


def test_the_form_backtests_the_condition_as_typed_without_saving_it(lena, history):
    answer = logged_in(lena).post("/rules/backtest", {"condition": BIG, "days": "7"}, **HTMX)

    panel = answer.content.decode()
    assert answer.status_code == 200 and not Rule.objects.exists()
    assert 'data-days="7"' in panel and 'data-hits="2"' in panel
    assert 'id="backtest-fraud">1<' in panel and 'id="backtest-extra">2<' in panel
    caught = panel.split('id="backtest-fraud-amount"')[1].split('class="figure-sub"')[0]
    assert 'data-money="250.00" data-currency="EUR"' in caught and "PLN" not in caught  # the PLN hit is unlabeled


def test_the_form_backtest_of_a_refused_condition_points_at_the_mistake(lena):
    answer = logged_in(lena).post("/rules/backtest", {"condition": "country > 5 && amount > 1"}, **HTMX)

    assert answer.status_code == 422
    assert 'id="tried-pointer"' in answer.content.decode() and "Not backtested" in answer.content.decode()


def test_a_stored_condition_that_no_longer_checks_is_shown_refused_not_backtested(alice):
    stale = Rule.objects.create(name="stale", condition="retired_feature > 1", action="review")

    answer = logged_in(alice).get(f"/rules/{stale.pk}/backtest", **HTMX)

    page = answer.content.decode()
    assert answer.status_code == 422 and "unknown name &#x27;retired_feature&#x27;" in page
    assert 'id="tried-pointer"' in page and "ask a lead to edit the rule" in page


# --- the list ----------------------------------------------------------------------------------


def test_the_list_counts_live_hits_of_the_last_day_active_and_shadow(alice, lena):
    big, bi = rule(lena), rule(lena, name="bi")
    now = timezone.now()
    make_tx(rules=[{"name": "big", "action": "block"}], received_at=now - timedelta(hours=1))
    make_tx(shadow_rules=["big"], received_at=now - timedelta(hours=23))
    make_tx(rules=[{"name": "big", "action": "block"}], received_at=now - timedelta(hours=25))  # over a day ago

    page = logged_in(alice).get("/rules/").content.decode()

    assert f'id="rule-{big.pk}-hits">2<' in page
    assert f'id="rule-{bi.pk}-hits">0<' in page  # a name inside another's is not a hit


def test_the_list_filters_by_status(alice, lena):
    rule(lena)
    shadowed = rule(lena, name="watching")
    rule_book.publish_rule(shadowed.pk, user=lena, status=RuleStatus.SHADOW)

    page = logged_in(alice).get("/rules/?status=shadow").content.decode()

    assert f'href="/rules/{shadowed.pk}/"' in page and ">big<" not in page
    assert 'id="rules-shadow" aria-current="page">Shadow <span class="rule-count">1</span>' in page


def test_a_rules_page_is_reached_by_its_name_as_by_its_id_and_an_unknown_one_is_404(alice, lena):
    big = rule(lena)
    client = logged_in(alice)

    by_name, by_id = client.get("/rules/big/"), client.get(f"/rules/{big.pk}/")

    assert by_name.status_code == by_id.status_code == 200
    assert by_name.context["rule"] == by_id.context["rule"] == big
    assert client.get("/rules/no-such-rule/").status_code == 404
