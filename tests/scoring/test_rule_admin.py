"""The rules' admin reads; its actions change rules only through the rule book."""

from __future__ import annotations

from scoring.models import Rule
from scoring.rule_book import create_rule
from tests.dashboards.conftest import logged_in


def a_rule(lead) -> Rule:
    return create_rule(user=lead, name="big", condition="amount > 500.0", action="review")


def test_a_rule_and_its_versions_are_read_only_in_the_admin(lead):
    rule = a_rule(lead)
    client = logged_in(lead)

    page = client.get(f"/admin/scoring/rule/{rule.pk}/change/")
    client.post(f"/admin/scoring/rule/{rule.pk}/change/", {"condition": "amount > 1.0", "status": "active"})

    assert page.status_code == 200 and b"created" in page.content
    assert client.get("/admin/scoring/rule/add/").status_code == 403
    rule.refresh_from_db()
    assert (rule.condition, rule.status, rule.version) == ("amount > 500.0", "draft", 1)


def test_the_admins_publish_action_goes_through_the_rule_book(lead):
    rule = a_rule(lead)

    response = logged_in(lead).post(
        "/admin/scoring/rule/", {"action": "publish_shadow", "_selected_action": [rule.pk]}, follow=True
    )

    rule.refresh_from_db()
    assert (rule.status, rule.version) == ("shadow", 2)
    version = rule.versions.first()
    assert (version.change, version.actor, version.backtest["hits"]) == ("shadowed", lead, 0)
    assert b"big (v2, shadow)" in response.content


def test_analysts_cannot_reach_rules_in_the_admin(analyst, lead):
    rule = a_rule(lead)

    assert logged_in(analyst).get(f"/admin/scoring/rule/{rule.pk}/change/").status_code == 403
